//! Coldplug on Debian's real kernel in QEMU, with and without udevd. Without: the baseline module list is
//! skipped, so every driver the VM's devices need — a virtio NIC, a second NIC of another
//! model (e1000), a virtio disk — must come from the agent's own coldplug: the scan of
//! `/sys/devices` modaliases, then the events of devices that appear once virtio_pci
//! binds. Devices with no module in the image's tree are listed, not fatal. With Debian's
//! own udevd copied into the image (binary, libraries, the driver rule): stage 1 starts
//! it, triggers every device, waits until it has settled, and stops it again.
#![cfg(feature = "system-tests")]

mod common;

use common::vm::Vm;

/// The test's report runs under the real zinit once zinit's own coldplug (`udev-trigger`,
/// which honours `initagent.skip` like stage 1) has run; these VMs' networks do not matter.
const REPORT_AFTER: &[&str] = &["udev-trigger", "initagent-status"];

#[test]
fn udev_less_coldplug_loads_the_drivers_of_the_vms_devices() {
    let disk = common::scratch("coldplug-disk").join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let drive = format!("file={},if=virtio,format=raw", disk.display());
    let boot = Vm::new("coldplug")
        .zinit_with_report_after("tests/vm/guest/coldplug-check.sh", REPORT_AFTER)
        .append("initagent.skip=bootstrap,modules")
        .qemu(&[
            "-nic",
            "user,model=virtio-net-pci",
            "-nic",
            "user,model=e1000",
            "-drive",
            &drive,
        ])
        .boot();
    boot.assert_clean();
    assert!(boot.has_result("done rc=0"), "{}", boot.explain());

    let loaded: Vec<&str> = boot.lines("module: ");
    for driver in ["virtio_pci", "virtio_net", "virtio_blk", "e1000"] {
        assert!(
            loaded.contains(&driver),
            "{driver} not loaded: {loaded:?}\n{}",
            boot.explain()
        );
    }
    // The devices are there: two NICs and the disk.
    let netdevs: Vec<&str> = boot.lines("netdev: ");
    assert!(
        netdevs
            .iter()
            .filter(|n| n.starts_with("eth") || n.starts_with("en"))
            .count()
            >= 2,
        "{netdevs:?}"
    );
    assert!(boot.has_result("block: vda"), "{}", boot.explain());

    let coldplug = boot.json("coldplug")["result"].clone();
    assert!(coldplug["devices"].as_u64().unwrap() >= 4, "{coldplug:#}");
    // virtio_net and virtio_blk bind to devices that exist only once virtio_pci is loaded:
    // they came from uevents, not from the first scan.
    assert!(coldplug["events"].as_u64().unwrap() >= 2, "{coldplug:#}");
    assert_eq!(coldplug["timed_out"], false);
    let modules = coldplug["modules"].as_array().unwrap();
    let outcome = |name: &str| {
        modules
            .iter()
            .find(|m| m[0] == name)
            .map(|m| m[1]["result"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(outcome("e1000").as_deref(), Some("loaded"), "{coldplug:#}");
    // The image's tree holds only the vm-test target's modules: some devices have none.
    let undriven = coldplug["undriven"].as_array().unwrap();
    assert!(
        undriven
            .iter()
            .all(|d| d["devpath"].as_str().unwrap().starts_with("/devices/")),
        "{coldplug:#}"
    );

    // `initagent status` points the operator at them.
    assert_eq!(
        boot.result("status: devices without a driver: "),
        Some(format!("{} (/run/initagent/steps/coldplug.json)", undriven.len()).as_str()),
        "{}",
        boot.explain()
    );

    let report = boot.report();
    let step = common::step(&report, "coldplug");
    assert_eq!(step["outcome"], "ok", "{step:#}");
    assert!(
        step["counters"]["loaded"].as_u64().unwrap() >= 4,
        "{step:#}"
    );
    for skipped in ["bootstrap", "modules"] {
        assert_eq!(common::step(&report, skipped)["outcome"], "skipped");
    }
}

#[test]
fn with_debians_udevd_in_the_image_trigger_and_settle_load_the_drivers() {
    let boot = Vm::new("coldplug-udevd")
        .zinit_with_report_after("tests/vm/guest/coldplug-check.sh", REPORT_AFTER)
        .append("initagent.skip=bootstrap,modules")
        .qemu(&["-nic", "user,model=e1000"])
        .with_debian_udevd()
        .boot();
    boot.assert_clean();
    assert!(boot.has_result("done rc=0"), "{}", boot.explain());
    let loaded = boot.lines("module: ");
    assert!(
        loaded.contains(&"e1000"),
        "e1000 not loaded by udevd: {loaded:?}\n{}",
        boot.explain()
    );
    let coldplug = boot.json("coldplug")["result"].clone();
    assert_eq!(coldplug["settled"], true, "{coldplug:#}");
    assert!(
        coldplug["modules_loaded"].as_u64().unwrap() >= 1,
        "{coldplug:#}"
    );
    assert_eq!(
        coldplug["started"], "/lib/systemd/systemd-udevd",
        "{coldplug:#}"
    );
    assert!(coldplug["triggered"].as_u64().unwrap() > 10, "{coldplug:#}");
    assert!(coldplug["processed"].as_u64().unwrap() > 10, "{coldplug:#}");
    let report = boot.report();
    let step = common::step(&report, "coldplug");
    assert_eq!(step["outcome"], "ok", "{step:#}");
    assert!(
        step["detail"].as_str().unwrap().starts_with("udevd ("),
        "{step:#}"
    );
    // The udevd started for coldplug is gone again (zinit runs its own); so is the one
    // zinit's udev-trigger started for the same step.
    assert!(!boot.has_result("udevd-running"), "{}", boot.explain());
}

#[test]
fn a_udevd_that_cannot_run_is_reported_at_once() {
    // A udevd that exits at start (here busybox's `false`): the step says so and the boot
    // goes on. Waiting out the coldplug deadline would say "did not create … in time".
    let boot = Vm::new("coldplug-udevd-broken")
        .zinit_with_report_after("tests/vm/guest/coldplug-check.sh", REPORT_AFTER)
        .append("initagent.skip=bootstrap,modules")
        .symlink("/lib/systemd/systemd-udevd", "/bin/false")
        .boot();
    boot.assert_clean();
    assert!(boot.has_result("done rc=0"), "{}", boot.explain());
    let report = boot.report();
    let step = common::step(&report, "coldplug");
    assert_eq!(step["outcome"], "degraded", "{step:#}");
    let detail = step["detail"].as_str().unwrap();
    assert!(
        detail.contains("/lib/systemd/systemd-udevd ended at start"),
        "{detail}"
    );
}

#[test]
fn named_devices_and_subsystems_only_and_udev_triggers_subsystems_first() {
    let boot = Vm::new("coldplug-select")
        .zinit_with_report_after("tests/vm/guest/coldplug-select.sh", REPORT_AFTER)
        .append("initagent.skip=bootstrap,modules,coldplug")
        .qemu(&[
            "-nic",
            "user,model=e1000",
            "-nic",
            "user,model=virtio-net-pci",
        ])
        .with_debian_udevd()
        .boot();
    boot.assert_clean();
    assert!(boot.has_result("done rc=0"), "{}", boot.explain());
    let device = boot.result("e1000-device ").unwrap_or_default();
    assert!(device.starts_with("/sys/devices/pci"), "{}", boot.explain());

    // The agent's own coldplug, one device named: its driver only.
    let own = boot
        .result("own rc=0 modules: ")
        .unwrap_or_else(|| panic!("{}", boot.explain()));
    let own: Vec<&str> = own.split_whitespace().collect();
    assert!(own.contains(&"e1000"), "{own:?}");
    assert!(!own.contains(&"virtio_pci"), "{own:?}");

    // Through udevd: the pci subsystem only, then everything.
    assert_eq!(boot.result("pci rc="), Some("0"), "{}", boot.explain());
    assert_eq!(boot.result("all rc="), Some("0"), "{}", boot.explain());
    let (pci, all) = (
        boot.json("pci")["result"].clone(),
        boot.json("all")["result"].clone(),
    );
    assert_eq!(pci["settled"], true, "{pci:#}");
    assert_eq!(all["settled"], true, "{all:#}");
    let (pci_triggered, all_triggered) = (
        pci["triggered"].as_u64().unwrap(),
        all["triggered"].as_u64().unwrap(),
    );
    assert!(
        pci_triggered >= 2 && pci_triggered < all_triggered / 2,
        "{pci:#} {all:#}"
    );
    // The full trigger sent `add` to the buses (and modules, drivers) before the devices.
    let buses: u64 = boot.result("buses: ").unwrap().trim().parse().unwrap();
    assert!(all_triggered > buses, "{all:#}");
    let after = boot.result("after-udev modules: ").unwrap();
    assert!(
        after.split_whitespace().any(|m| m == "virtio_pci"),
        "{after}"
    );
}
