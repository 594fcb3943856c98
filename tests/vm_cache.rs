//! The persistent block cache on a virtio disk, on Debian's kernel in QEMU (`vm-cache`
//! target: `initagent.flist.cache=/dev/vda`, the disk driver and ext4 in the bootstrap
//! set). One disk image through four boots of the same VM:
//!
//! 1. blank disk, store up: stage 1 formats it and starts filling it; QEMU is killed in
//!    the middle of the prefetch's cache writes (a power cut);
//! 2. store up: the disk mounts (the journal replayed), what the cut boot had written is
//!    served, the rest fetched; the boot is complete;
//! 3. store up: nothing is fetched at all — every block comes from the disk;
//! 4. store down (no server in the VM's network): the boot is complete, not degraded.
//!
//! Then `e2fsck` on the host finds the filesystem consistent, and the host tears one
//! entry (its bytes replaced, its length kept): the fifth boot drops it, fetches that one
//! block again and nothing else.
#![cfg(feature = "system-tests")]

mod common;

use common::node::{self, NodeStore};
use common::vm::{Boot, Vm};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn vm(name: &str, packed: &NodeStore, disk: &Path, store_up: bool) -> Vm {
    vm_on(name, packed, disk, store_up.then_some(Duration::ZERO))
}

/// The VM, its store answering each request `store` late (`None`: no store).
fn vm_on(name: &str, packed: &NodeStore, disk: &Path, store: Option<Duration>) -> Vm {
    let drive = format!("file={},if=virtio,format=raw", disk.display());
    let vm = Vm::new(name)
        .target("vm-cache")
        .flist(&packed.modules)
        .flist(&packed.firmware)
        .repo_file(
            "/sbin/cache-check.sh",
            "tests/vm/guest/node-check.sh",
            0o755,
        )
        .qemu(&["-drive", &drive])
        .timeout(Duration::from_secs(150));
    match store {
        Some(delay) => vm.serve_dir_slowly(&packed.store, delay),
        None => vm.with_nic(),
    }
}

/// Bytes fetched from the store by stage 1's steps and by the mount daemons.
fn fetched(boot: &Boot, report: &serde_json::Value) -> (u64, u64) {
    let steps: u64 = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["counters"]["bytes_fetched"].as_u64())
        .sum();
    let daemons: u64 = ["stats-modules", "stats-firmware"]
        .iter()
        .map(|name| boot.json(name)["bytes_fetched"].as_u64().unwrap_or(0))
        .sum();
    (steps, daemons)
}

fn complete(boot: &Boot, which: &str) -> serde_json::Value {
    boot.assert_clean();
    assert!(boot.has_result("done rc=0"), "{which}: {}", boot.explain());
    let report = boot.report();
    assert_eq!(
        report["result"]["status"], "handed-off",
        "{which}: {report:#}"
    );
    for name in [
        "cache", "net", "flists", "depmod", "prefetch", "modules", "coldplug",
    ] {
        let step = common::step(&report, name);
        assert_eq!(step["outcome"], "ok", "{which}: {step:#}");
    }
    assert!(
        boot.result("cache-mount: ")
            .is_some_and(|m| m.starts_with("/dev/vda /run/initagent/cachedisk ext4 ")),
        "{which}: {}",
        boot.explain()
    );
    report
}

#[test]
fn a_cache_disk_survives_a_power_cut_and_boots_the_node_without_fetching() {
    let (root, release) = common::kernel::debian_tree();
    let tree = root.join("lib/modules").join(&release);
    let packed = node::pack("node-cache", &tree, &release);
    let disk = common::vm::blank_disk("cache.img", 256 << 20);

    // 1. Killed while the prefetch writes blocks: the store answers each request a second
    //    late, so the prefetch runs on for about ten seconds after the flists step ends,
    //    and ext3 commits every five.
    let cut = vm_on("cache-1-cut", &packed, &disk, Some(Duration::from_secs(1)))
        .cut_after("initagent: flists: ok", Duration::from_secs(6))
        .boot();
    assert!(
        cut.console.contains("blank, formatted as ext3"),
        "{}",
        cut.explain()
    );
    assert!(
        !cut.has_result("done rc=0"),
        "the boot was meant to be cut short"
    );

    // 2. The same disk after the power cut: it mounts, nothing torn is served, the boot
    //    is complete.
    let second = vm("cache-2-after-cut", &packed, &disk, true).boot();
    let report = complete(&second, "after the cut");
    let cache = common::step(&report, "cache");
    assert!(
        cache["detail"]
            .as_str()
            .unwrap()
            .contains("/dev/vda (an existing ext3 labelled \"initagent-cache\")"),
        "{cache:#}"
    );
    assert_eq!(cache["counters"]["formatted"], 0, "{cache:#}");
    for name in ["stats-modules", "stats-firmware"] {
        assert_eq!(
            second.json(name)["corrupt"],
            0,
            "{name}: {}",
            second.explain()
        );
    }
    let (steps2, daemons2) = fetched(&second, &report);
    let prefetch = common::step(&report, "prefetch");
    let counter = |name: &str| prefetch["counters"][name].as_u64().unwrap();
    assert!(
        counter("cached") > 0 && counter("fetched") > 0,
        "the cut boot's committed blocks are served, the rest fetched: {prefetch:#}"
    );

    // 3. Warm: nothing fetched, by stage 1 or by the daemons.
    let third = vm("cache-3-warm", &packed, &disk, true).boot();
    let report = complete(&third, "warm");
    let (steps3, daemons3) = fetched(&third, &report);
    assert!(
        third
            .result("cache-entries: ")
            .is_some_and(|n| n.parse::<u64>().unwrap() > 50),
        "{}",
        third.explain()
    );
    let prefetch = common::step(&report, "prefetch");
    assert_eq!(prefetch["counters"]["fetched"], 0, "{prefetch:#}");
    assert!(
        prefetch["counters"]["cached"].as_u64().unwrap() > 0,
        "{prefetch:#}"
    );

    // 4. The store is down: the node still boots completely from its disk.
    let fourth = vm("cache-4-store-down", &packed, &disk, false).boot();
    let report = complete(&fourth, "store down");
    let (steps4, daemons4) = fetched(&fourth, &report);
    let modules: Vec<&str> = fourth.lines("module: ");
    assert!(modules.contains(&"virtio_balloon"), "{modules:?}");

    eprintln!(
        "bytes fetched (stage 1 steps + mount daemons): after the cut {steps2} + {daemons2}, warm {steps3} + {daemons3}, store down {steps4} + {daemons4}"
    );
    assert_eq!((steps3, daemons3), (0, 0), "{}", third.explain());
    assert_eq!((steps4, daemons4), (0, 0), "{}", fourth.explain());

    // The filesystem after four power-offs without unmounting: the journal replays and
    // nothing else needs mending (exit 0, or 1 when only the journal was recovered).
    let fsck = std::process::Command::new("e2fsck")
        .arg("-fy")
        .arg(&disk)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&fsck.stdout);
    assert!(
        fsck.status.code().is_some_and(|c| c <= 1),
        "e2fsck -fy: {:?}\n{text}",
        fsck.status
    );

    // 5. A torn entry: the largest block of the modules cache keeps its name and length,
    //    its bytes are garbage. It is dropped, never served: that block alone is fetched.
    let (torn, length) = tear_largest_entry(&disk);
    let fifth = vm("cache-5-torn", &packed, &disk, true).boot();
    let report = complete(&fifth, "torn entry");
    // Whoever read it says so: stage 1 on the console, a mount daemon in the kernel log.
    let damaged = fifth
        .result("kmsg-damaged:")
        .is_some_and(|path| path.ends_with(&torn));
    assert!(
        damaged
            || fifth
                .console
                .contains(&format!("{torn}: damaged cache entry removed")),
        "{}",
        fifth.explain()
    );
    // That block alone: what the store sent is that block, encoded (snappy's worst case
    // and the cipher's tag over its length at most).
    let (steps5, daemons5) = fetched(&fifth, &report);
    let bytes = steps5 + daemons5;
    assert!(
        bytes > 0 && bytes <= length + length / 6 + 64,
        "{bytes} bytes fetched for one torn block of {length}: {}",
        fifth.explain()
    );
    std::fs::remove_file(&disk).unwrap();
}

/// Replaces the bytes of the largest entry in the image's modules cache with garbage of
/// the same length (through a loop mount); its name and length.
fn tear_largest_entry(disk: &Path) -> (String, u64) {
    let mnt = disk.with_extension("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "ext4", "-o", "loop"])
        .arg(disk)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success(), "mount -o loop {}", disk.display());
    let mut largest: Option<(u64, PathBuf)> = None;
    let mut stack = vec![mnt.join("initagent-cache/modules")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else if !largest
                .as_ref()
                .is_some_and(|(size, _)| meta.len() <= *size)
            {
                largest = Some((meta.len(), entry.path()));
            }
        }
    }
    let (size, path) = largest.expect("an entry in the modules cache");
    std::fs::write(&path, vec![0x5a; size as usize]).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let status = std::process::Command::new("umount")
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success());
    (name, size)
}
