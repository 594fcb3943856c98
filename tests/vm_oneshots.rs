//! No oneshot blocks the boot: Debian's kernel in QEMU, the agent as `/init`, the real
//! zinit (v0.2.14) as PID 1 after the handoff, and inputs a node can really have —
//! a module list naming modules that do not exist, a module built for another kernel, a
//! file that is no module, a built-in module and an alias whose module is blacklisted;
//! no module list at all and a `/run` with no room left. Every zinit service reaches
//! `Success` (each exits 0 because what waits on it may go on), and the boot report,
//! read with `initagent status` in the guest, says why each step is degraded, stage 1's
//! and the services' alike.
#![cfg(feature = "system-tests")]

mod common;

use common::kernel::{debian_tree, foreign_module, foreign_release, garbage_module};
use common::vm::{Boot, Vm};

/// The late step `name` of the report (a zinit service), checked to be the `unit` step.
fn late<'a>(report: &'a serde_json::Value, name: &str, unit: &str) -> &'a serde_json::Value {
    let step = common::step(report, name);
    assert_eq!(step["unit"], unit, "{step:#}");
    assert_ne!(step["pid"], 1, "{step:#}");
    step
}

/// `initagent status` in the guest lists the service after the handoff with its outcome.
fn status_lists(boot: &Boot, service: &str, outcome: &str) {
    let shown = boot.lines("status: ");
    let after = shown
        .iter()
        .position(|l| l.starts_with("after the handoff"))
        .unwrap_or_else(|| panic!("no late steps in `initagent status`: {shown:#?}"));
    assert!(
        shown[after..]
            .iter()
            .any(|l| l.trim_start().starts_with(&format!("{service} (")) && l.contains(outcome)),
        "{service} {outcome} not in {shown:#?}"
    );
}

#[test]
fn modules_that_do_not_exist_or_were_built_for_another_kernel_block_nothing() {
    let (root, release) = debian_tree();
    let tree = root.join("lib/modules").join(&release);
    let read = |path: &str| std::fs::read(tree.join(path)).unwrap();
    let boot = Vm::new("oneshots-bad-list")
        .with_nic()
        .file(
            &format!("/lib/modules/{release}/kernel/drivers/net/dummy.ko"),
            read("kernel/drivers/net/dummy.ko"),
            0o644,
        )
        .file(
            &format!("/lib/modules/{release}/extra/foreign_vermagic.ko"),
            foreign_module(&read("kernel/lib/crc7.ko"), &release),
            0o644,
        )
        .file(
            &format!("/lib/modules/{release}/kernel/drivers/net/ifb.ko"),
            read("kernel/drivers/net/ifb.ko"),
            0o644,
        )
        // Not a module at all: the repaired maps list it (as depmod does), the loader
        // meets it.
        .file(
            &format!("/lib/modules/{release}/extra/garbage.ko"),
            garbage_module(),
            0o644,
        )
        // A device node (the console, 4:64) where the image's maps list a module: the
        // check finds the maps do not match the tree, the repaired maps leave it out, and
        // nothing opens it (opened, it could become PID 1's controlling terminal).
        .file(
            &format!("/lib/modules/{release}/extra/devnode.ko"),
            read("kernel/lib/crc7.ko"),
            0o644,
        )
        .chardev(&format!("/lib/modules/{release}/extra/devnode.ko"), 4, 64)
        .file("/etc/modprobe.d/deny.conf", "blacklist ifb\n", 0o644)
        .file(
            "/etc/initagent/modules",
            "no_such_module\nforeign_vermagic\ngarbage\nunix\nrtnl-link-ifb\ndevnode\ndummy\n",
            0o644,
        )
        .zinit_with_report("tests/vm/guest/node-check.sh")
        .boot();
    boot.assert_zinit_ran_every_service();
    assert!(
        boot.lines("module: ").contains(&"dummy"),
        "{}",
        boot.explain()
    );

    // Blacklisted: asked for by alias, not loaded.
    assert!(
        !boot.lines("module: ").contains(&"ifb"),
        "{}",
        boot.explain()
    );
    let report = boot.report();
    let foreign = format!(
        "built for another kernel (vermagic {}, running {release})",
        foreign_release(&release)
    );
    for step in [
        common::step(&report, "modules"),
        late(&report, "initagent-modules", "modules"),
        late(&report, "initagent-late-modules", "modules"),
    ] {
        assert_eq!(step["outcome"], "degraded", "{step:#}");
        let detail = step["detail"].as_str().unwrap();
        assert!(
            detail.contains("no_such_module") && detail.contains(&foreign),
            "{step:#}"
        );
        // Through the loader: a file that is no module is refused by the kernel and
        // named; a built-in one counts as built in; a blacklisted alias loads nothing.
        assert!(
            detail.contains("garbage: not a valid module for this kernel"),
            "{step:#}"
        );
        assert!(
            detail.contains("rtnl-link-ifb: every match is blacklisted"),
            "{step:#}"
        );
        assert_eq!(step["counters"]["builtin"], 1, "{step:#}");
        assert!(detail.contains("devnode: "), "{step:#}");
    }
    let depmod = common::step(&report, "depmod");
    let detail = depmod["detail"].as_str().unwrap();
    assert!(
        detail.contains("in modules.dep.bin but not on disk") && detail.contains("devnode"),
        "{depmod:#}"
    );
    // The service said why it let the boot go on, in zinit's log on the console.
    assert!(
        boot.console.contains("initagent-modules: degraded: ")
            && boot.console.contains("initagent-modules: going on"),
        "{}",
        boot.explain()
    );
    status_lists(&boot, "initagent-modules", "degraded");
    // A degraded boot: the kernel log's summary counts the failed modules, and the
    // monitoring verdict is a warning naming the step.
    let summary: serde_json::Value =
        serde_json::from_str(boot.result("kmsg-summary: ").unwrap_or("null")).unwrap();
    assert_eq!(summary["steps"]["modules"][0], "degraded", "{summary}");
    assert!(
        summary["module_failures"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert_eq!(boot.result("check-rc: "), Some("1"), "{}", boot.explain());
    assert!(
        boot.result("check: ")
            .is_some_and(|l| l.starts_with("WARNING: ") && l.contains("modules degraded")),
        "{}",
        boot.explain()
    );
    status_lists(&boot, "udev-trigger", "ok");
}

#[test]
fn no_module_list_and_a_full_run_block_nothing_and_the_report_says_why() {
    let (root, release) = debian_tree();
    let tree = root.join("lib/modules").join(&release);
    // A module that arrived after the maps were made: the maps must be regenerated into
    // /run, which has no room left by then.
    let boot = Vm::new("oneshots-full-run")
        .with_nic()
        .without("/etc/initagent/modules")
        .file_after_maps(
            &format!("/lib/modules/{release}/kernel/drivers/net/dummy.ko"),
            std::fs::read(tree.join("kernel/drivers/net/dummy.ko")).unwrap(),
        )
        .append("initagent.break=depmod")
        .type_after(
            "(initagent break before depmod) #",
            "\nmount -o remount,size=2m /run; dd if=/dev/zero of=/run/fill bs=4k 2>/dev/null; \
             echo run-full: $(df -k /run | awk 'NR == 2 { print $4 }') > /dev/ttyS1; exit\n",
        )
        .zinit_with_report("tests/vm/guest/node-check.sh")
        .boot();
    assert_eq!(boot.result("run-full: "), Some("0"), "{}", boot.explain());
    boot.assert_zinit_ran_every_service();
    // The report went into the room kept for it, and kept every step.
    assert!(
        boot.console.contains(
            "/run/initagent/report.json: no room left in /run/initagent; written into the room kept for it"
        ),
        "{}",
        boot.explain()
    );
    let report = boot.report();
    assert_eq!(report["result"]["status"], "handed-off", "{report:#}");
    for step in [
        common::step(&report, "depmod"),
        late(&report, "initagent-depmod", "depmod"),
    ] {
        assert_eq!(step["outcome"], "degraded", "{step:#}");
        let detail = step["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("maps could not be checked or repaired: ")
                && detail.contains("to /run/initagent/depmod/")
                && detail.contains("No space left on device")
                && detail.contains("nothing kept in /run/initagent/depmod"),
            "{step:#}"
        );
    }
    for step in [
        common::step(&report, "modules"),
        late(&report, "initagent-modules", "modules"),
        late(&report, "initagent-late-modules", "modules"),
    ] {
        assert_eq!(step["outcome"], "degraded", "{step:#}");
        assert!(
            step["detail"]
                .as_str()
                .unwrap()
                .starts_with("no module list at /etc/initagent/modules"),
            "{step:#}"
        );
    }
    late(&report, "internet", "net");
    status_lists(&boot, "initagent-depmod", "degraded");
    status_lists(&boot, "internet", "ok");
}
