//! Stage 1 end to end on Debian's real kernel in QEMU, with the `vm-node` target: only
//! the bootstrap set (NIC drivers, fuse) is in the initramfs; Debian's whole module tree
//! and a firmware tree are flists packed by `initagent flist pack` into a store the host
//! serves inside the run's network namespace. Stage 1 brings the network up with QEMU's
//! DHCP, mounts both flists lazily, checks the maps, prefetches what this VM will load,
//! loads the baseline from the mounted tree, coldplugs and hands off to the real zinit.
//! Then: a `/run` of 12 MiB (the caches' bound follows it; filled to the last page, both
//! trees still read back byte for byte), the store down at boot (a degraded boot that says
//! why, healed after the handoff by zinit's services once the store is back), and maps in
//! the modules flist that do not match its tree (regenerated in tmpfs, the modules still
//! load; that one packs the rfs fixture's tree and boots the fixture's own kernel).
#![cfg(feature = "system-tests")]

mod common;

use common::kernel::Kernel;
use common::node::{self, NodeStore};
use common::vm::{Boot, Vm};

/// `vm` with the packed node's manifests in its image and its store served.
fn with_node_store(vm: Vm, packed: &NodeStore) -> Vm {
    vm.flist(&packed.modules)
        .flist(&packed.firmware)
        .serve_dir(&packed.store)
}

fn handed_off(boot: &Boot) -> serde_json::Value {
    boot.assert_clean();
    assert!(boot.has_result("done rc=0"), "{}", boot.explain());
    let report = boot.report();
    assert_eq!(report["result"]["status"], "handed-off", "{report:#}");
    report
}

#[test]
fn a_node_boots_on_lazy_module_and_firmware_trees() {
    let (root, release) = common::kernel::debian_tree();
    let tree = node::stamped_copy(
        "node-happy-tree",
        &root.join("lib/modules").join(&release),
        &release,
    );
    let packed = node::pack("node-happy", &tree, &release);
    // Under zinit, every step is run again twice, then an operator restarts the lease
    // renewal, then the usual report.
    let boot = with_node_store(Vm::new("node-happy").target("vm-node"), &packed)
        .repo_file("/sbin/node-check.sh", "tests/vm/guest/node-check.sh", 0o755)
        .repo_file(
            "/sbin/after-idempotence.sh",
            "tests/vm/guest/renew-restart.sh",
            0o755,
        )
        .zinit_with_report("tests/vm/guest/idempotence.sh")
        .boot();
    let report = handed_off(&boot);
    boot.assert_zinit_ran_every_service();
    assert_reruns_change_nothing(&boot);
    // `zinit stop net-renew` then `zinit start net-renew`: the same address throughout
    // and the same lease after.
    let stopped = boot.result("renew-stopped: ").unwrap_or_default();
    assert!(
        stopped.starts_with("net-renew: ") && !stopped.contains("Running"),
        "{stopped}"
    );
    assert_eq!(
        boot.result("renew-started: "),
        Some("net-renew: Running"),
        "{}",
        boot.explain()
    );
    for moment in ["before", "stopped", "after"] {
        assert_eq!(
            boot.result(&format!("renew-address-{moment}: ")),
            Some("10.0.2.15/24"),
            "{moment}: {}",
            boot.explain()
        );
    }
    assert_eq!(boot.result("renew-lease-same: "), Some("yes"));

    // The one-line summary stage 1 left in the kernel log, and the monitoring verdict.
    let summary: serde_json::Value =
        serde_json::from_str(boot.result("kmsg-summary: ").unwrap_or("null")).unwrap();
    assert_eq!(summary["result"], "handed-off", "{summary}");
    assert_eq!(summary["steps"]["modules"][0], "ok", "{summary}");
    assert_eq!(summary["module_failures"], 0, "{summary}");
    assert!(summary["bytes_fetched"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(boot.result("check-rc: "), Some("0"), "{}", boot.explain());
    assert!(
        boot.result("check: ")
            .is_some_and(|l| l.starts_with("OK: handed off at ")),
        "{}",
        boot.explain()
    );

    // The order of the issue, each step ok; the prefetch runs beside the maps check and
    // the loads, coldplug beside the baseline.
    common::assert_stage1_order(&report);
    for name in common::MAIN_LINE.iter().chain(&["prefetch", "coldplug"]) {
        let step = common::step(&report, name);
        assert_eq!(step["outcome"], "ok", "{step:#}");
    }

    // Both flists are mounted, served by daemons that outlived the handoff.
    let mounts = boot.lines("flist-mount: ");
    assert!(
        mounts.contains(
            &format!("/etc/initagent/flists/modules-{release}.fl /lib/modules/{release}").as_str()
        ) && mounts.contains(&"/etc/initagent/flists/firmware.fl /lib/firmware"),
        "{mounts:?}"
    );
    let flists = common::step(&report, "flists");
    assert_eq!(flists["counters"]["mounted"], 2, "{flists:#}");

    // The maps of Debian's tree hold, proven when the flist was packed (the deep check and
    // the stamp, its proof tagged in the manifest): nothing read.
    let depmod = common::step(&report, "depmod");
    assert_eq!(
        depmod["detail"],
        "maps valid (proven when the flist was packed)"
    );
    assert_eq!(depmod["counters"]["module_bytes_read"], 0, "{depmod:#}");

    // The prefetch read the baseline, this VM's devices' drivers and the firmware a
    // baseline module names (usbduxsigma's, from the firmware flist) through the mounts.
    let prefetch = common::step(&report, "prefetch");
    let counters = &prefetch["counters"];
    assert!(counters["modules"].as_u64().unwrap() >= 15, "{prefetch:#}");
    assert_eq!(counters["firmware"], 1, "{prefetch:#}");
    assert!(counters["fetched"].as_u64().unwrap() > 0, "{prefetch:#}");
    assert_eq!(counters["failed"], 0, "{prefetch:#}");

    // The baseline came from the mounted tree (none of it is in the initramfs).
    let loaded = boot.lines("module: ");
    for name in [
        "virtio_net",
        "fuse",
        "bridge",
        "8021q",
        "overlay",
        "9p",
        "usbduxsigma",
    ] {
        assert!(loaded.contains(&name), "{name} not loaded: {loaded:?}");
    }
    let modules = common::step(&report, "modules");
    assert_eq!(modules["counters"]["failed"], 0, "{modules:#}");
    // The bootstrap set loaded the driver of this VM's virtio NIC, and not e1000, which
    // has no device here.
    let bootstrap = common::step(&report, "bootstrap");
    assert!(
        bootstrap["detail"]
            .as_str()
            .unwrap()
            .starts_with("4 requested: 9 loaded; no device for e1000;"),
        "{bootstrap:#}"
    );
    assert!(!loaded.contains(&"e1000"), "{loaded:?}");

    // The daemons keep their counters for `status`; the loads were served from the disk
    // cache the prefetch filled, so the modules daemon fetched next to nothing itself.
    let stats = boot.json("stats-modules");
    assert_eq!(
        stats["target"],
        format!("/lib/modules/{release}"),
        "{stats:#}"
    );
    assert!(stats["disk_hits"].as_u64().unwrap() > 0, "{stats:#}");
    assert!(
        stats["bytes_fetched"].as_u64().unwrap() * 10
            < prefetch["counters"]["bytes_fetched"].as_u64().unwrap(),
        "{stats:#} {prefetch:#}"
    );
    assert_eq!(boot.json("stats-firmware")["target"], "/lib/firmware");
    let status = boot.lines("status: ");
    assert!(
        status.iter().any(|l| l.starts_with("flist modules ")),
        "{status:#?}"
    );
}

#[test]
fn a_store_down_at_boot_gives_a_degraded_boot_that_zinit_heals_once_it_is_back() {
    let (root, release) = common::kernel::debian_tree();
    let tree = root.join("lib/modules").join(&release);
    let packed = node::pack("node-unreachable", &tree, &release);
    // The store's server starts 30 s after the VM: stage 1 (its flists step runs a few
    // seconds in) finds it refusing, boots degraded on the initramfs's own modules and
    // hands off; zinit's initagent-flists keeps trying (--retry, backoff) until the
    // store answers, then the late services load the baseline and coldplug. Nobody
    // touches the node.
    let boot = with_node_store(Vm::new("node-unreachable").target("vm-node"), &packed)
        .serve_dir_after(&packed.store, std::time::Duration::from_secs(30))
        .zinit_with_report("tests/vm/guest/node-check.sh")
        .timeout(std::time::Duration::from_secs(200))
        .boot();
    let report = handed_off(&boot);
    let flists = common::step(&report, "flists");
    assert_eq!(flists["outcome"], "degraded", "{flists:#}");
    let detail = flists["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "store unreachable (00-ff {})",
            node::GUEST_STORE_URL
        )) && detail.contains("the initramfs's own modules are used"),
        "{detail}"
    );
    // The boot went on with the initramfs's tree: its maps hold, the bootstrap set is
    // loaded, the baseline is missing and said to be.
    assert_eq!(common::step(&report, "depmod")["outcome"], "ok");
    assert_eq!(common::step(&report, "prefetch")["outcome"], "skipped");
    let modules = common::step(&report, "modules");
    assert_eq!(modules["outcome"], "degraded", "{modules:#}");
    assert!(
        modules["detail"].as_str().unwrap().contains("bridge"),
        "{modules:#}"
    );
    let bootstrap = common::step(&report, "bootstrap");
    assert_eq!(bootstrap["outcome"], "ok", "{bootstrap:#}");

    // Healed by zinit's services alone: every one reached Success, both flists are
    // mounted, and the baseline the initramfs lacked is loaded from the mounted tree.
    boot.assert_zinit_ran_every_service();
    assert!(
        boot.console.contains("flists: trying again in"),
        "the flists service never had to retry: {}",
        boot.explain()
    );
    assert_eq!(boot.lines("flist-mount: ").len(), 2, "{}", boot.explain());
    let loaded = boot.lines("module: ");
    for name in ["virtio_net", "fuse", "bridge", "8021q", "overlay"] {
        assert!(loaded.contains(&name), "{name} not loaded: {loaded:?}");
    }

    // The report shows the late steps, run by the services after the handoff, with
    // their times: the flists mounted after retrying, then the baseline, then coldplug.
    let late = |name: &str| {
        let step = common::step(&report, name);
        let (start, end) = (step["start_us"].as_u64().unwrap(), step["end_us"].as_u64());
        assert!(end.is_some_and(|end| end >= start), "{step:#}");
        (step.clone(), start)
    };
    let (mounted, mounted_at) = late("initagent-flists");
    assert_eq!(mounted["outcome"], "ok", "{mounted:#}");
    assert!(
        mounted["counters"]["attempts"].as_u64().unwrap() >= 2,
        "{mounted:#}"
    );
    let (maps, maps_at) = late("initagent-late-depmod");
    assert_eq!(maps["outcome"], "ok", "{maps:#}");
    let (baseline, baseline_at) = late("initagent-late-modules");
    assert_eq!(baseline["outcome"], "ok", "{baseline:#}");
    let (coldplug, coldplug_at) = late("initagent-late-coldplug");
    assert_eq!(coldplug["unit"], "coldplug", "{coldplug:#}");
    assert!(
        mounted_at > report["result"]["at_us"].as_u64().unwrap()
            && mounted_at < maps_at
            && maps_at < baseline_at
            && baseline_at < coldplug_at,
        "{report:#}"
    );
    let shown = boot.lines("status: ");
    assert!(
        shown.iter().any(|l| l
            .trim_start()
            .starts_with("initagent-late-modules (modules) @")),
        "{shown:#?}"
    );
}

#[test]
fn a_store_gone_for_good_holds_only_what_needs_the_flists() {
    // The flists' store never answers (nothing listens on port 9): a small part of the
    // tree is packed only to have manifests, nothing is ever read from it.
    let (root, release) = common::kernel::debian_tree();
    let part = root
        .join("lib/modules")
        .join(&release)
        .join("kernel/net/802");
    let packed = node::pack("node-store-gone", &part, &release);
    let boot = with_node_store(Vm::new("node-store-gone").target("vm-node"), &packed)
        .append("initagent.flist.store=http://10.0.2.2:9/")
        .repo_file("/sbin/node-check.sh", "tests/vm/guest/node-check.sh", 0o755)
        .zinit_with_report_after(
            "tests/vm/guest/late-check.sh",
            &["internet", "net-renew", "initagent-status"],
        )
        .boot();
    let report = handed_off(&boot);
    assert_eq!(common::step(&report, "flists")["outcome"], "degraded");
    // The network and everything zos's bootstrap waits for went on; the flists service
    // keeps trying, and only what needs the flists waits for it.
    let states = boot.zinit_states();
    for (name, state) in [
        ("initagent-depmod", "Success"),
        ("initagent-modules", "Success"),
        ("udev-trigger", "Success"),
        ("internet", "Success"),
        ("initagent-status", "Success"),
        ("net-renew", "Running"),
        ("initagent-flists", "Running"),
        ("initagent-late-depmod", "Blocked"),
        ("initagent-late-modules", "Blocked"),
        ("initagent-late-coldplug", "Blocked"),
    ] {
        assert_eq!(states.get(name).copied(), Some(state), "{name}: {states:?}");
    }
    assert!(
        boot.console.contains("flists: trying again in"),
        "{}",
        boot.explain()
    );
}

#[test]
fn maps_that_do_not_match_the_flists_tree_are_regenerated_and_modules_load() {
    // The rfs fixture's small tree, booted on the fixture's own kernel (the only one its
    // modules load into), with maps kmod's depmod made while veth.ko was away: the tree
    // holds a module its maps do not know.
    let kernel = Kernel::fixture();
    let release = kernel.release.clone();
    let root = common::scratch("node-broken-maps-tree").join("root");
    let tree = root.join("lib/modules").join(&release);
    std::fs::create_dir_all(tree.parent().unwrap()).unwrap();
    let veth = "kernel/drivers/net/veth.ko";
    let script = format!(
        "cp -a \"$0\" \"$1\" && chmod -R u+w \"$1\" && mv \"$1/{veth}\" \"$2/veth.ko\" \
         && depmod -b \"$2\" {release} && mv \"$2/veth.ko\" \"$1/{veth}\""
    );
    assert!(std::process::Command::new("sh")
        .args(["-c", &script])
        .arg(kernel.module_dir())
        .arg(&tree)
        .arg(&root)
        .status()
        .unwrap()
        .success());
    let packed = node::pack("node-broken-maps", &tree, &release);
    let boot = with_node_store(Vm::new("node-broken-maps").kernel(kernel), &packed)
        .repo_file("/sbin/node-check.sh", "tests/vm/guest/node-check.sh", 0o755)
        .zinit_with_report("tests/vm/guest/idempotence.sh")
        .file("/etc/initagent/modules", "bridge\n8021q\nveth\n", 0o644)
        .boot();
    let report = handed_off(&boot);
    boot.assert_zinit_ran_every_service();
    let depmod = common::step(&report, "depmod");
    assert_eq!(depmod["outcome"], "degraded", "{depmod:#}");
    let detail = depmod["detail"].as_str().unwrap();
    assert!(detail.starts_with("maps regenerated"), "{detail}");
    assert!(detail.contains("veth"), "{detail}");
    let modules = common::step(&report, "modules");
    assert_eq!(modules["outcome"], "ok", "{modules:#}");
    let loaded = boot.lines("module: ");
    for name in ["veth", "bridge", "8021q"] {
        assert!(loaded.contains(&name), "{name} not loaded: {loaded:?}");
    }
    // After the repair, every step run again changes nothing either: the repaired maps
    // are found valid where they are bind-mounted, nothing is regenerated or mounted.
    assert_reruns_change_nothing(&boot);
}

/// `idempotence.sh` ran every step twice on the booted node: neither run changed the
/// mount table (mounts, bind mounts) or made the daemons fetch, the steps fetched nothing
/// themselves, sent no DHCP packet, loaded nothing, repaired nothing (`action: none`), and
/// each let what waits on it go on.
fn assert_reruns_change_nothing(boot: &Boot) {
    let runs = boot.lines("idem: ");
    assert_eq!(runs.len(), 14, "{runs:#?}; {}", boot.explain());
    for run in runs {
        let (head, said) = run.split_once(" said=").unwrap();
        let words: Vec<&str> = head.split(' ').collect();
        let step = words[0];
        let said: serde_json::Value =
            serde_json::from_str(said).unwrap_or_else(|e| panic!("{step}: {e}: {said}"));
        assert_eq!(words[2], "mounts_changed=no", "{run}");
        assert_eq!(words[3], "daemon_bytes=0", "{run}");
        assert_eq!(said["go_on"], true, "{run}");
        let counter = |name: &str| said["counters"][name].as_u64().unwrap_or(0);
        assert_eq!(counter("bytes_fetched"), 0, "{run}");
        assert_eq!(counter("fetched"), 0, "{run}");
        assert_eq!(counter("loaded"), 0, "{run}");
        assert_eq!(counter("dhcp_packets_sent"), 0, "{run}");
        if step == "depmod" {
            let detail = said["detail"].as_str().unwrap_or_default();
            assert!(detail.starts_with("maps valid"), "{run}");
            assert_eq!(said["result"]["action"], "none", "{run}");
        }
    }
}

/// The result line `prefix` as a number of milliseconds (the guest's clock).
fn millis(boot: &Boot, prefix: &str) -> u64 {
    let value = boot
        .result(prefix)
        .unwrap_or_else(|| panic!("no {prefix}; {}", boot.explain()));
    value.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn mount_daemons_stopped_or_killed_after_the_handoff_wedge_nothing_and_come_back() {
    let (root, release) = common::kernel::debian_tree();
    let tree = node::stamped_copy(
        "node-daemons-tree",
        &root.join("lib/modules").join(&release),
        &release,
    );
    let packed = node::pack("node-daemons", &tree, &release);
    let boot = with_node_store(Vm::new("node-daemons").target("vm-node"), &packed)
        .timeout(std::time::Duration::from_secs(300))
        .repo_file("/sbin/node-check.sh", "tests/vm/guest/node-check.sh", 0o755)
        .zinit_with_report_after(
            "tests/vm/guest/daemon-faults.sh",
            &[
                "initagent-late-coldplug",
                "initagent-status",
                "net-renew",
                "initagent-flists-guard",
            ],
        )
        .boot();
    let report = handed_off(&boot);
    boot.assert_zinit_ran_every_service();
    // The kernel kills the daemons last.
    assert_eq!(
        boot.result("oom: "),
        Some("-999 -999"),
        "{}",
        boot.explain()
    );

    // SIGSTOP: `initagent status` answers within 2 s and says the daemon is stopped;
    // `flist umount` answers within seconds (it waited forever before), the daemon gone.
    assert!(
        millis(&boot, "stopped-status-ms: ") < 2000,
        "{}",
        boot.explain()
    );
    let status = boot.result("stopped-status: ").unwrap_or_default();
    assert!(
        status.contains("NOT ANSWERING") && status.contains("is STOPPED (state T"),
        "{status}"
    );
    assert!(
        millis(&boot, "stopped-umount-ms: ") < 5000,
        "{}",
        boot.explain()
    );
    assert_eq!(boot.result("after-umount-mounted: "), Some("no"));
    assert_eq!(boot.result("old-daemon: "), Some("gone"));
    // `initagent flists` mounts it again, same bytes.
    assert!(
        boot.result("remount-ms: ")
            .is_some_and(|r| r.ends_with(" rc=0")),
        "{}",
        boot.explain()
    );
    assert_eq!(
        boot.result("remount-read: "),
        Some("same"),
        "{}",
        boot.explain()
    );
    // `flist mount` over a stopped daemon's mount replaces it within seconds.
    assert!(
        millis(&boot, "mount-over-stopped-ms: ") < 10_000,
        "{}",
        boot.explain()
    );
    assert_eq!(
        boot.result("mount-over-read: "),
        Some("same"),
        "{}",
        boot.explain()
    );

    // SIGKILL: reads fail at once (ENOTCONN), status says stale, the guard mounts it
    // again by itself (it looks every 10 s) and the bytes are the same.
    assert!(millis(&boot, "dead-read-ms: ") < 1000, "{}", boot.explain());
    let dead = boot.result("dead-read: ").unwrap_or_default();
    assert!(dead.contains("not connected"), "{dead}");
    let status = boot.result("dead-status: ").unwrap_or_default();
    assert!(status.contains("STALE"), "{status}");
    assert_eq!(
        boot.result("healed-read: "),
        Some("same"),
        "{}",
        boot.explain()
    );
    assert!(millis(&boot, "healed-ms: ") < 40_000, "{}", boot.explain());
    let guard = common::step(&report, "initagent-flists-guard");
    assert_eq!(guard["outcome"], "ok", "{guard:#}");
    assert_eq!(guard["unit"], "flists", "{guard:#}");
}

/// `md5sum` of every file under `dir/sub`, relative and in byte order, summed: what
/// `full-run.sh` prints for the same files read through the mounts.
fn tree_sum(dir: &std::path::Path, sub: &str) -> String {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "cd \"$0\" && find \"$1\" -type f | LC_ALL=C sort | xargs md5sum | md5sum | cut -d' ' -f1",
        ])
        .arg(dir)
        .arg(sub)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_small_run_bounds_the_caches_and_a_full_one_still_serves_every_byte() {
    let (root, release) = common::kernel::debian_tree();
    let tree = node::stamped_copy(
        "node-small-run-tree",
        &root.join("lib/modules").join(&release),
        &release,
    );
    let packed = node::pack("node-small-run", &tree, &release);
    // /run a tmpfs of 12 MiB, mounted before the agent starts (as an initramfs hook
    // would; stage 1 keeps a /run it finds mounted).
    let small_run = "#!/bin/sh\nmount -t tmpfs -o size=12m,mode=0755,nosuid,nodev tmpfs /run\nexec /init \"$@\"\n";
    let boot = with_node_store(Vm::new("node-small-run").target("vm-node"), &packed)
        .file("/small-run-init", small_run, 0o755)
        .append("rdinit=/small-run-init")
        .repo_file("/sbin/node-check.sh", "tests/vm/guest/node-check.sh", 0o755)
        .zinit_with_report("tests/vm/guest/full-run.sh")
        .boot();
    let report = handed_off(&boot);
    boot.assert_zinit_ran_every_service();
    assert_eq!(boot.result("run-size-kib: "), Some("12288"));
    // Each daemon's bound is a quarter of the room /run had, shared by the two (~1.5 MiB),
    // not the gigabyte a large node gets; the caches kept to it.
    let bounds = boot.lines("daemon-cache-bytes: ");
    assert_eq!(bounds.len(), 2, "{}", boot.explain());
    for bound in bounds {
        let bytes: u64 = bound.parse().unwrap();
        assert!((1 << 20..=(3 << 19)).contains(&bytes), "{bound}");
    }
    let caches: u64 = boot.result("caches-kib: ").unwrap().parse().unwrap();
    assert!(caches <= 3 << 10, "caches hold {caches} KiB");
    // /run filled to the last page: every file of both trees still read back byte for
    // byte, and the caches, unable to write, gave room back.
    assert_eq!(boot.result("free-after-fill-kib: "), Some("0"));
    assert_eq!(
        boot.result("nls-sum: ").unwrap_or_default(),
        tree_sum(&tree, "kernel/fs/nls")
    );
    assert_eq!(
        boot.result("firmware-sum: ").unwrap_or_default(),
        tree_sum(&node::firmware_tree(), ".")
    );
    let freed: u64 = boot
        .result("free-after-reads-kib: ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(freed > 0, "{}", boot.explain());
    let status = boot.lines("status: flist modules ");
    assert!(
        status
            .iter()
            .any(|l| l.contains(" blocks not kept (cache full")),
        "{status:?}"
    );
    // No temporary file anywhere in /run; the report read back whole (node-check's
    // `status --json`); the prefetch run again on the full /run goes on,
    assert_eq!(boot.result("temporaries: "), Some("none"));
    // and says the blocks it fetched could not be kept (the loads would fetch them again).
    assert_eq!(
        boot.result("prefetch-rc: "),
        Some("1"),
        "{}",
        boot.explain()
    );
    let prefetch = boot.lines("prefetch: ");
    assert!(
        prefetch.iter().any(
            |l| l.contains("degraded") && l.contains("blocks not kept in /run/initagent/cache")
        ),
        "{prefetch:#?}"
    );
    assert_eq!(report["result"]["status"], "handed-off");
}
