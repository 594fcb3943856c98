//! The module loader on Debian's real kernel in QEMU: stage 1 loads the VM target's list
//! (with its dependencies, one module xz-compressed so it goes through in-process
//! decompression); a second run changes nothing; a missing module and a module built for
//! another kernel fail with clear messages while the rest loads; the kernel's own
//! request_module reaches the agent's modprobe personality.
#![cfg(feature = "system-tests")]

mod common;

use common::kernel::{debian_tree, foreign_module, foreign_release};
use common::vm::Vm;

#[test]
fn baseline_loads_reruns_cleanly_and_failures_are_explained() {
    let (root, release) = debian_tree();
    let tree = root.join("lib/modules").join(&release);
    let read = |path: &str| std::fs::read(tree.join(path)).unwrap();
    let boot = Vm::new("modules-baseline")
        // An e1000 NIC and no virtio device: of the bootstrap set's NIC drivers, only
        // e1000 has a device here.
        .qemu(&["-netdev", "user,id=e0", "-device", "e1000,netdev=e0"])
        .zinit_with_report_after(
            "tests/vm/guest/modules-check.sh",
            &["udev-trigger", "initagent-status"],
        )
        .xz("8021q")
        .file(
            &format!("/lib/modules/{release}/kernel/drivers/net/dummy.ko"),
            read("kernel/drivers/net/dummy.ko"),
            0o644,
        )
        .file(
            &format!("/lib/modules/{release}/kernel/drivers/net/ifb.ko"),
            read("kernel/drivers/net/ifb.ko"),
            0o644,
        )
        .file(
            &format!("/lib/modules/{release}/extra/foreign_vermagic.ko"),
            foreign_module(&read("kernel/lib/crc7.ko"), &release),
            0o644,
        )
        .boot();
    boot.assert_clean();
    assert!(boot.has_result("done rc=0"), "{}", boot.explain());

    // /sbin/modprobe is the agent's: a real load with a parameter, --first-time, a real
    // removal, each saying what kmod's says.
    assert_eq!(boot.result("sbin_modprobe "), Some("initagent"));
    assert_eq!(boot.result("mp_insert "), Some("rc=0 loaded=1 links=2"));
    assert_eq!(
        boot.lines("mp-insert: "),
        vec![format!(
            "insmod /lib/modules/{release}/kernel/drivers/net/dummy.ko numdummies=2"
        )]
    );
    // The load is in the boot's module record (`initagent modules status` reads it).
    let recorded: u32 = boot.result("mp_recorded ").unwrap_or("0").parse().unwrap();
    assert!(recorded > 0, "{}", boot.explain());
    assert_eq!(boot.result("mp_first "), Some("rc=1"));
    assert_eq!(
        boot.lines("mp-first: "),
        vec!["modprobe: ERROR: could not insert 'dummy': Module already in kernel"]
    );
    assert_eq!(boot.result("mp_remove "), Some("rc=0 loaded=0"));
    assert_eq!(boot.lines("mp-remove: "), vec!["rmmod dummy"]);
    assert_eq!(boot.result("mp_remove_again "), Some("rc=1"));
    assert_eq!(
        boot.lines("mp-remove-again: "),
        vec!["modprobe: FATAL: Module dummy is not in kernel."]
    );

    // `modules status --lsmod`: lsmod's header, then a row for each module in the kernel.
    let lsmod = boot.lines("lsmod: ");
    assert_eq!(
        lsmod.first(),
        Some(&"Module                  Size  Used by")
    );
    for name in boot.lines("module ") {
        assert!(
            lsmod
                .iter()
                .any(|row| row.split_whitespace().next() == Some(name)),
            "{name} not in {lsmod:#?}"
        );
    }

    // Stage 1 loaded the list and every dependency.
    let loaded: Vec<&str> = boot.lines("module ");
    assert!(
        loaded.len() >= 20,
        "only {} modules in /proc/modules: {loaded:?}",
        loaded.len()
    );
    for name in [
        "virtio_blk",
        "fuse",
        "e1000",
        "9p",
        "9pnet_virtio",
        "bridge",
        "8021q",
        "overlay",
    ] {
        assert!(
            loaded.contains(&name),
            "{name} is not in /proc/modules: {loaded:?}"
        );
    }
    // The bootstrap set (NIC drivers, fuse) before the network, the baseline after. Of
    // the NIC drivers only the one of a device present: no virtio device, no virtio_pci.
    for absent in ["virtio_pci", "virtio_net", "failover"] {
        assert!(!loaded.contains(&absent), "{absent} loaded: {loaded:?}");
    }
    let report = boot.report();
    let mut loaded_by_steps = 0;
    for name in ["bootstrap", "modules"] {
        let step = common::step(&report, name);
        assert_eq!(step["outcome"], "ok", "{step:#}");
        assert_eq!(step["counters"]["failed"], 0);
        loaded_by_steps += step["counters"]["loaded"].as_u64().unwrap();
    }
    assert!(loaded_by_steps >= 20, "{report:#}");
    let bootstrap = common::step(&report, "bootstrap");
    assert_eq!(bootstrap["counters"]["no_device"], 2, "{bootstrap:#}");
    assert!(
        bootstrap["detail"]
            .as_str()
            .unwrap()
            .contains("no device for virtio_pci, virtio_net;"),
        "{bootstrap:#}"
    );

    // The xz module went through in-process decompression (Debian's kernel cannot).
    let outcomes = boot.json("outcomes");
    let vlan = outcomes["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m[0] == "8021q")
        .unwrap();
    assert_eq!(vlan[1]["via"], "init_module", "{vlan}");

    // A second run is a no-op success.
    assert_eq!(
        boot.result("second_run rc="),
        Some("0"),
        "{}",
        boot.explain()
    );
    let second = boot.json("second");
    let outcomes = second["modules"].as_array().unwrap();
    assert!(
        outcomes
            .iter()
            .all(|m| m[1]["result"] == "already_loaded" || m[1]["result"] == "builtin"),
        "{second:#}"
    );

    // Bad input: clear errors, the good module still loads, non-zero exit.
    assert_eq!(
        boot.result("third_run rc="),
        Some("1"),
        "{}",
        boot.explain()
    );
    let third: Vec<&str> = boot.lines("third: ");
    let line = |prefix: &str| {
        third
            .iter()
            .find(|l| l.starts_with(prefix))
            .copied()
            .unwrap_or_else(|| panic!("no {prefix} in {third:#?}"))
    };
    assert!(
        line("no_such_module: NOT FOUND").contains("no module, alias or built-in named"),
        "{third:#?}"
    );
    assert!(
        line("foreign_vermagic: FAILED").contains(&format!(
            "built for another kernel (vermagic {}, running {release})",
            foreign_release(&release)
        )),
        "{third:#?}"
    );
    assert!(line("dummy: loaded").contains("Finit"), "{third:#?}");

    // The kernel's own request_module ran the agent as modprobe.
    assert_eq!(
        boot.result("kernel_modprobe "),
        Some("/run/initagent/bin/modprobe")
    );
    assert_eq!(
        boot.result("kernel_request rc="),
        Some("0 ifb_loaded=1"),
        "{}",
        boot.explain()
    );
}

#[test]
fn maps_broken_behind_their_stamp_are_regenerated_in_tmpfs_and_modules_still_load() {
    let (root, release) = debian_tree();
    let tree = root.join("lib/modules").join(&release);
    // A module that arrived after the maps were made (old mtime, so `depmod -A` would
    // not notice) and the list asks for it.
    let boot = Vm::new("modules-broken-maps")
        .zinit_with_report_after(
            "tests/vm/guest/handoff-check.sh",
            &["udev-trigger", "initagent-status"],
        )
        .file_after_maps(
            &format!("/lib/modules/{release}/kernel/drivers/net/dummy.ko"),
            std::fs::read(tree.join("kernel/drivers/net/dummy.ko")).unwrap(),
        )
        .file_after_maps("/etc/initagent/modules", "virtio_net\nfuse\ndummy\n")
        .boot();
    boot.assert_clean();
    let report = boot.report();
    let step = |name: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    let depmod = step("depmod");
    assert_eq!(depmod["outcome"], "degraded", "{depmod:#}");
    let detail = depmod["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("maps regenerated (in-process)"),
        "{detail}"
    );
    assert!(
        detail.contains("module-set") && detail.contains("dummy"),
        "{detail}"
    );
    assert!(
        depmod["counters"]["maps_placed"].as_u64().unwrap() >= 5,
        "{depmod:#}"
    );
    let modules = step("modules");
    assert_eq!(modules["outcome"], "ok", "{modules:#}");
    assert_eq!(modules["counters"]["failed"], 0, "{modules:#}");
    assert_eq!(
        modules["counters"]["not_found"], 0,
        "dummy was found through the regenerated maps: {modules:#}"
    );
}

#[test]
fn dracut_and_systemd_keys_on_the_command_line_do_what_operators_expect() {
    let (root, release) = debian_tree();
    let tree = root.join("lib/modules").join(&release);
    let read = |path: &str| std::fs::read(tree.join(path)).unwrap();
    let boot = Vm::new("modules-dracut-keys")
        .with_nic()
        .zinit_with_report("tests/vm/guest/node-check.sh")
        .file(
            &format!("/lib/modules/{release}/kernel/drivers/net/dummy.ko"),
            read("kernel/drivers/net/dummy.ko"),
            0o644,
        )
        .file(
            &format!("/lib/modules/{release}/kernel/drivers/net/ifb.ko"),
            read("kernel/drivers/net/ifb.ko"),
            0o644,
        )
        .append("rd.driver.pre=dummy modules_load=ifb rd.shell rd.break=soon")
        .boot();
    boot.assert_clean();
    boot.assert_zinit_ran_every_service();
    let loaded = boot.lines("module: ");
    for name in ["dummy", "ifb"] {
        assert!(loaded.contains(&name), "{name} not loaded: {loaded:?}");
    }
    let report = boot.report();
    // rd.driver.pre= went with the bootstrap set, modules_load= with the baseline: each
    // step was asked for one more module than its list holds.
    let listed = |list: &str| {
        std::fs::read_to_string(common::vm::repo_root().join("targets/vm-test").join(list))
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count() as u64
    };
    for (step, list) in [("bootstrap", "bootstrap"), ("modules", "modules")] {
        let step = common::step(&report, step);
        assert_eq!(
            step["counters"]["requested"].as_u64(),
            Some(listed(list) + 1),
            "{step:#}"
        );
    }
    let config = &report["config"];
    assert_eq!(config["on_failure"], "shell", "{config:#}");
    assert_eq!(config["via"]["on_failure"], "rd.shell", "{config:#}");
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("rd.break=soon: not a breakpoint"),
        "{warnings}"
    );
}
