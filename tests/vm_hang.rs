//! No kernel call holds the boot (issue 15, point 1): Debian's kernel in QEMU, the agent
//! as `/init`, the real zinit after the handoff, and two loads that never end — a real
//! out-of-tree module (`tests/vm/sleepy`, built now against Debian's linux-headers for
//! the booted kernel) whose init sleeps uninterruptibly for ten minutes, and an `install`
//! rule that never returns. Stage 1 hands off within the modules deadline plus a small
//! margin, the report names what is still loading, the rule is stopped, and the zinit
//! oneshot for modules ends within its deadline too.
#![cfg(feature = "system-tests")]

mod common;

use common::kernel::{debian_tree, sleepy_module};
use common::vm::Vm;

/// The modules deadline the test sets (`initagent.modules_deadline`), in seconds.
const DEADLINE_S: u64 = 20;
/// What the runner may add to a step's deadline before it gives up on the step thread.
const MARGIN_S: u64 = 6;

fn seconds(step: &serde_json::Value) -> f64 {
    let start = step["start_us"].as_u64().unwrap();
    let end = step["end_us"]
        .as_u64()
        .unwrap_or_else(|| panic!("never ended: {step:#}"));
    (end - start) as f64 / 1e6
}

#[test]
fn a_module_whose_init_never_returns_and_an_install_rule_that_never_ends_hold_nothing() {
    let (root, release) = debian_tree();
    let tree = root.join("lib/modules").join(&release);
    let boot = Vm::new("hang-module")
        .with_nic()
        .timeout(std::time::Duration::from_secs(300))
        .file(
            &format!("/lib/modules/{release}/extra/sleepy.ko"),
            sleepy_module(&release),
            0o644,
        )
        .file(
            &format!("/lib/modules/{release}/kernel/drivers/net/dummy.ko"),
            std::fs::read(tree.join("kernel/drivers/net/dummy.ko")).unwrap(),
            0o644,
        )
        .file(
            "/etc/modprobe.d/hang.conf",
            "install hang_rule /bin/sleep 100000\n",
            0o644,
        )
        .file(
            "/etc/initagent/modules",
            "sleepy\nhang_rule\ndummy\n",
            0o644,
        )
        .append(&format!("initagent.modules_deadline={DEADLINE_S}"))
        .zinit_with_report("tests/vm/guest/node-check.sh")
        .boot();
    boot.assert_zinit_ran_every_service();
    // The module's init really is still running when the services are done.
    assert!(
        boot.lines("module-state: ").contains(&"sleepy Loading"),
        "{}",
        boot.explain()
    );
    assert!(
        boot.lines("module: ").contains(&"dummy"),
        "{}",
        boot.explain()
    );
    let report = boot.report();
    assert_eq!(report["result"]["status"], "handed-off", "{report:#}");
    let limit = (DEADLINE_S + MARGIN_S) as f64;
    for name in ["modules", "initagent-modules", "initagent-late-modules"] {
        let step = common::step(&report, name);
        assert_eq!(step["outcome"], "degraded", "{step:#}");
        let detail = step["detail"].as_str().unwrap();
        assert!(
            detail.contains("sleepy: still loading after"),
            "{name} does not name what is still loading: {step:#}"
        );
        assert!(
            seconds(step) <= limit,
            "{name} took over {limit} s: {step:#}"
        );
    }
    let stage1 = common::step(&report, "modules");
    assert!(
        stage1["detail"].as_str().unwrap().contains(
            "hang_rule: install rule for hang_rule (/bin/sleep 100000) did not finish within"
        ),
        "{stage1:#}"
    );
}
