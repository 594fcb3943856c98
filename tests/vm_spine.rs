//! Stage 1 on Debian's real kernel in QEMU: the agent is /init, mounts the
//! pseudo-filesystems, records its steps, hands off to the real zinit (v0.2.14), and never
//! lets the kernel panic when the handoff target is missing or the cmdline is garbage;
//! on a full `/run` its failure bundle is partial and names what did not fit.
//! These VMs have no NIC: zinit's `internet` keeps trying, and nothing that does not need
//! the network waits for it.
#![cfg(feature = "system-tests")]

mod common;

use common::step;
use common::vm::{Boot, Vm};
use serde_json::Value;

/// The test's report, once the services that need no network have run.
const REPORT: &str = "tests/vm/guest/handoff-check.sh";
const REPORT_AFTER: &[&str] = &["udev-trigger", "initagent-status"];

/// zinit is PID 1, started as stage 1's handoff said, and without a NIC only the network
/// and what waits for it are not done.
fn assert_zinit_took_over(boot: &Boot) {
    assert_eq!(
        boot.result("handoff pid1="),
        Some("zinit cmdline=/sbin/zinit init"),
        "{}",
        boot.explain()
    );
    let states = boot.zinit_states();
    for (name, state) in [
        ("initagent-depmod", "Success"),
        ("initagent-modules", "Success"),
        ("udev-trigger", "Success"),
        ("initagent-status", "Success"),
        ("internet", "Running"),
        ("initagent-flists", "Blocked"),
    ] {
        assert_eq!(states.get(name).copied(), Some(state), "{name}: {states:?}");
    }
}

fn assert_console(boot: &Boot, expected: &[&str]) {
    for text in expected {
        assert!(
            boot.console.contains(text),
            "console lacks {text:?}; {}",
            boot.explain()
        );
    }
}

fn assert_timeline(report: &Value, boot: &Boot) {
    assert!(report["result"].is_object(), "{}", boot.explain());
    common::assert_stage1_order(report);
    for name in common::MAIN_LINE.iter().chain(&["coldplug"]) {
        assert_eq!(step(report, name)["pid"], 1, "{name} did not run as PID 1");
    }
}

#[test]
fn stage1_mounts_records_and_hands_off() {
    let boot = Vm::new("spine-handoff")
        .zinit_with_report_after(REPORT, REPORT_AFTER)
        .boot();
    boot.assert_clean();
    assert_zinit_took_over(&boot);
    assert!(boot.has_result("done rc=0"), "{}", boot.explain());
    let report = boot.report();
    assert_timeline(&report, &boot);
    let pseudofs = step(&report, "pseudofs");
    assert_eq!(pseudofs["outcome"], "ok", "{pseudofs:#}");
    // The kernel mounts nothing for an initramfs /init (devtmpfs is not automounted).
    assert_eq!(pseudofs["counters"]["mounted"], 5, "{pseudofs:#}");
    assert_eq!(step(&report, "config")["outcome"], "ok");
    assert_eq!(step(&report, "handoff")["outcome"], "ok");
    assert_eq!(step(&report, "handoff")["after"][0], "coldplug");
    // No NIC in this VM: the network step says so at once and the boot goes on.
    let net = step(&report, "net");
    assert_eq!(net["outcome"], "degraded", "{net:#}");
    assert!(
        net["detail"]
            .as_str()
            .unwrap()
            .starts_with("no candidate link"),
        "{net:#}"
    );
    assert_eq!(report["result"]["status"], "handed-off");
    assert_eq!(report["result"]["detail"], "/sbin/zinit init");
    assert!(report["kernel_release"]
        .as_str()
        .unwrap()
        .starts_with(char::is_numeric));
    assert!(
        report["warnings"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    // The human view ran inside the guest too.
    assert!(
        boot.has_result("status: critical path:"),
        "{}",
        boot.explain()
    );
}

#[test]
fn missing_handoff_target_reboots_after_countdown() {
    let boot = Vm::new("spine-missing-reboot")
        .append("initagent.reboot_delay=1")
        .boot();
    boot.assert_clean();
    assert_console(
        &boot,
        &[
            "handoff target /sbin/zinit does not exist",
            "boot report: /run/initagent/report.json",
            "rebooting in 1 s",
            "rebooting now",
        ],
    );
}

#[test]
fn missing_handoff_target_gives_a_rescue_shell() {
    let boot = Vm::new("spine-missing-shell")
        .append("initagent.on_failure=shell initagent.reboot_delay=0")
        // Typed once the shell shows its prompt: text typed earlier, while the shell sets
        // up the terminal, can be discarded.
        .type_after(
            "(initagent rescue) #",
            "\necho report-begin > /dev/ttyS1; initagent status --json > /dev/ttyS1; \
             echo report-end > /dev/ttyS1; echo bundle: $(ls /run/initagent/failure) > /dev/ttyS1; \
             echo kmsg-lines: $(wc -l < /run/initagent/failure/kmsg.txt) > /dev/ttyS1; \
             echo rescue-ok pid=$$ > /dev/ttyS1; exit\n",
        )
        .boot();
    boot.assert_clean();
    assert!(boot.has_result("rescue-ok pid="), "{}", boot.explain());
    let report = boot.report();
    let handoff = step(&report, "handoff");
    assert_eq!(handoff["outcome"], "failed");
    assert_eq!(
        handoff["detail"],
        "handoff target /sbin/zinit does not exist"
    );
    assert_eq!(report["result"]["status"], "failed");
    assert!(report["result"]["detail"]
        .as_str()
        .unwrap()
        .contains("on_failure=shell"));
    assert_console(&boot, &["rescue shell ended", "rebooting now"]);
    // The failed boot's one-line summary is in the kernel log and on the console.
    let summary = boot
        .console
        .lines()
        .find_map(|l| l.split("initagent: summary ").nth(1))
        .unwrap_or_else(|| panic!("no summary line: {}", boot.explain()));
    let summary: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
    assert_eq!(summary["result"], "failed", "{summary}");
    assert_eq!(summary["steps"]["handoff"][0], "failed", "{summary}");
    // The failure bundle was written before the shell, and its path shown on the console.
    let bundle = boot.result("bundle: ").unwrap_or_default();
    for file in ["kmsg.txt", "mountinfo.txt", "report.json"] {
        assert!(
            bundle.split(' ').any(|f| f == file),
            "{file} not in the bundle: {bundle}"
        );
    }
    let kmsg_lines: usize = boot
        .result("kmsg-lines: ")
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(kmsg_lines > 10, "kernel log tail: {kmsg_lines} lines");
    assert_console(
        &boot,
        &["failure bundle (report, kernel log, mounts, lease, modules): /run/initagent/failure"],
    );
}

#[test]
fn missing_handoff_target_halts_when_asked() {
    let boot = Vm::new("spine-missing-halt")
        .append("initagent.on_failure=halt")
        .stop_on("System halted")
        .boot();
    boot.assert_clean();
    assert_console(
        &boot,
        &["halting (initagent.on_failure=halt)", "System halted"],
    );
}

#[test]
fn garbage_cmdline_boots_with_defaults_and_warnings() {
    let garbage = "initagent.log=loud initagent.on_failure=explode initagent.reboot_delay=-5 \
                   initagent.nosuchkey=1 runmode=bogus farmer_id=abc version= =stray \
                   initagent.handoff=relative/path initagent.log=\"debug";
    let boot = Vm::new("spine-garbage")
        .zinit_with_report_after(REPORT, REPORT_AFTER)
        .append(garbage)
        .boot();
    boot.assert_clean();
    assert_zinit_took_over(&boot);
    let report = boot.report();
    assert_timeline(&report, &boot);
    let warnings: Vec<&str> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    for expected in [
        "quote opened at byte",
        "initagent.log=\"loud\"",
        "initagent.on_failure=\"explode\"",
        "initagent.reboot_delay=\"-5\"",
        "unknown key initagent.nosuchkey",
        "runmode=\"bogus\"",
        "farmer_id=\"abc\"",
        "version=\"\"",
        "ignored \"=stray\"",
        "initagent.handoff=\"relative/path\"",
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(expected)),
            "no warning with {expected:?} in {warnings:#?}"
        );
    }
    let config = step(&report, "config");
    assert_eq!(config["outcome"], "degraded");
    assert_eq!(config["counters"]["warnings"], warnings.len() as u64);
    assert_eq!(report["zos"]["runmode"], "prod");
    assert_eq!(report["zos"]["farmer_id"], Value::Null);
    assert_eq!(report["config"]["on_failure"], "reboot");
    assert_eq!(
        report["config"]["log_level"], "debug",
        "the unterminated value still counts"
    );
    assert_eq!(report["result"]["status"], "handed-off");
}

#[test]
fn break_stops_before_the_step_with_a_shell_and_goes_on() {
    let boot = Vm::new("spine-break")
        .zinit_with_report_after(REPORT, REPORT_AFTER)
        .append("initagent.break=net")
        .type_after(
            "(initagent break before net) #",
            "\necho in-break bootstrap=$(initagent status --json | grep -c '\"name\": \"bootstrap\"') \
             net=$(initagent status --json | grep -c '\"name\": \"net\"') > /dev/ttyS1; exit\n",
        )
        .boot();
    boot.assert_clean();
    // In the shell, the steps before had run and `net` had not started.
    assert_eq!(
        boot.result("in-break "),
        Some("bootstrap=1 net=0"),
        "{}",
        boot.explain()
    );
    assert!(boot.has_result("done rc=0"), "{}", boot.explain());
    let report = boot.report();
    let pause = step(&report, "break");
    assert_eq!(pause["detail"], "shell before net (initagent.break=net)");
    assert_eq!(step(&report, "net")["after"][0], "break");
    assert_eq!(report["result"]["status"], "handed-off");
}

#[test]
fn a_failure_bundle_on_a_full_run_is_partial_and_names_what_is_missing() {
    // /run a tmpfs of 1 MiB, mounted before the agent and filled but for 14 pages (as a
    // node whose /run something else filled; no /dev/zero before stage 1 mounts /dev): stage 1 fails to hand off and writes its
    // bundle into what is left.
    let full_run = "#!/bin/sh\nmount -t tmpfs -o size=1m,mode=0755,nosuid,nodev tmpfs /run\n\
                    yes | head -c 991232 > /run/ballast\nexec /init \"$@\"\n";
    let out = "/dev/ttyS1";
    let bundle = "/run/initagent/failure";
    let boot = Vm::new("spine-full-run-bundle")
        .file("/full-run-init", full_run, 0o755)
        .append("rdinit=/full-run-init initagent.on_failure=shell initagent.reboot_delay=0")
        .type_after(
            "(initagent rescue) #",
            &format!(
                "\necho df: $(df -k /run | tail -1) > {out}; echo bundle: $(ls {bundle}) > {out}; sed 's/^/missing: /' {bundle}/missing.txt > {out}; \
                 echo bundle-report-begin > {out}; cat {bundle}/report.json > {out}; echo > {out}; \
                 echo bundle-report-end > {out}; echo rescue-ok > {out}; exit\n"
            ),
        )
        .boot();
    boot.assert_clean();
    assert!(boot.has_result("rescue-ok"), "{}", boot.explain());
    let df = boot.result("df: ").unwrap_or_default();
    assert!(df.ends_with(" 0 100% /run"), "/run was not full: {df}");
    // Partial: what did not fit is named, on the console and in missing.txt, and is not
    // in the bundle; what is there is whole (the report parses).
    let missing = boot.lines("missing: ");
    assert!(!missing.is_empty(), "{}", boot.explain());
    let written = boot.result("bundle: ").unwrap_or_default();
    let written: Vec<&str> = written.split(' ').collect();
    assert!(written.contains(&"missing.txt"), "{written:?}");
    for line in &missing {
        let name = line.split(':').next().unwrap();
        assert!(
            !written.contains(&name),
            "{name} is written and named missing"
        );
    }
    assert!(
        missing.iter().any(|l| l.starts_with("kmsg.txt: ")),
        "{missing:?}"
    );
    let report = boot.json("bundle-report");
    assert_eq!(report["result"]["status"], "failed", "{report:#}");
    assert_console(
        &boot,
        &["failure bundle, partial: /run/initagent/failure (not written: "],
    );
}
