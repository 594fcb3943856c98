//! Flists on a real Debian kernel in QEMU: the rfs-made modules flist (`modules-mini`),
//! its blocks served over HTTP by the host inside the run's network namespace, mounted over
//! FUSE on `/lib/modules/<kver>` by the agent in the guest; every file read back through
//! the mount equals the fixture's manifest; the maps check on the mount and a module is
//! loaded from it with `finit_module`. The guest runs the fixture's own kernel, the only
//! one its modules load into, whatever kernel Debian ships today.
#![cfg(feature = "system-tests")]

mod common;

use common::kernel::Kernel;
use common::vm::Vm;
use std::collections::BTreeMap;

#[test]
fn modules_flist_from_a_host_store_mounts_and_reads_back_in_the_vm() {
    let fixture = common::fixtures().join("modules-mini");
    let kernel = Kernel::fixture();
    let flist = fixture.join(format!("modules-{}.fl", kernel.release));
    let boot = Vm::new("flist-modules")
        .kernel(kernel)
        .zinit_with_report("tests/vm/guest/flist-check.sh")
        .file("/modules.fl", std::fs::read(&flist).unwrap(), 0o644)
        .serve_dir(&fixture.join("store"))
        .boot();
    boot.assert_clean();
    assert!(boot.has_result("done rc=0"), "{}", boot.explain());
    // Stage 1 brought the network up: DHCP from QEMU's user network on the e1000 NIC,
    // applied, the lease handed over, the resolver written.
    assert_eq!(boot.result("net rc="), Some("0"), "{}", boot.explain());
    let eth0 = boot
        .results
        .iter()
        .find(|l| l.starts_with("net: eth0 "))
        .unwrap_or_else(|| panic!("no eth0 in net status: {}", boot.explain()));
    assert!(
        eth0.contains("up carrier 10.0.2.15/24") && eth0.contains("lease 10.0.2.15 from 10.0.2.2"),
        "{eth0}"
    );
    assert!(
        boot.results
            .iter()
            .any(|l| l == "resolv: nameserver 10.0.2.3"),
        "{}",
        boot.explain()
    );
    let step = boot
        .results
        .iter()
        .find(|l| l.starts_with("step: "))
        .unwrap_or_else(|| panic!("no net step in the report: {}", boot.explain()));
    assert!(
        step.contains(" net ")
            && step.contains(" ok ")
            && step.contains("eth0 10.0.2.15/24 via 10.0.2.2"),
        "{step}"
    );
    assert_eq!(boot.result("mount rc="), Some("0"), "{}", boot.explain());
    assert!(
        boot.results
            .iter()
            .any(|l| l.starts_with("mounted: ") && l.contains("fuse.initagent ro,nosuid,nodev")),
        "{}",
        boot.explain()
    );

    // Every regular file and link equals the manifest; nothing is missing or extra.
    let manifest = std::fs::read_to_string(fixture.join("MANIFEST.txt")).unwrap();
    let mut expected = BTreeMap::new();
    for line in manifest.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            [path, "file", .., sum] => expected.insert(format!("sum {path}"), sum.to_string()),
            [path, "symlink", .., target] => {
                expected.insert(format!("link {path}"), target.to_string())
            }
            _ => None,
        };
    }
    let mut seen = BTreeMap::new();
    for line in &boot.results {
        if let Some(rest) = line.strip_prefix("sum ") {
            if let Some((sum, path)) = rest.split_once(' ') {
                seen.insert(format!("sum {path}"), sum.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("link ") {
            if let Some((path, target)) = rest.split_once(' ') {
                seen.insert(format!("link {path}"), target.to_string());
            }
        }
    }
    assert!(expected.len() > 40, "manifest read wrongly: {expected:?}");
    assert_eq!(seen, expected, "{}", boot.explain());

    assert_eq!(
        boot.result("depmod_check rc="),
        Some("0"),
        "{}",
        boot.explain()
    );
    assert_eq!(
        boot.result("load_loop rc="),
        Some("0 loaded=1"),
        "{}",
        boot.explain()
    );
    assert_eq!(boot.result("umount rc="), Some("0"), "{}", boot.explain());
}
