//! Stage 1 on S3 as operators deploy it, in QEMU on Debian's kernel (the fixture's own, so
//! the module tree is the rfs fixture's): both flists routed to
//! `s3s://KEY:SECRET@10.0.2.2/bucket?region=garage` (no port: 443), s3s-fs behind nginx
//! TLS with a private CA that the image carries (`mkinitramfs --ca-file`, so the profile
//! sets `flist.ca_file`). Stage 1 mounts both, loads from them and hands off to the real
//! zinit, whose services all succeed; after that the secret is in no output of the
//! operator's commands, no file under `/run/initagent`, no kernel log line and no
//! process's argv. A node whose clock is hours off still mounts and reads, and its report
//! says by how much the clock was off.
#![cfg(feature = "system-tests")]

mod common;

use common::kernel::Kernel;
use common::netns::NetNs;
use common::node;
use common::s3tls::{self, S3Tls, ACCESS, BUCKET, SECRET};
use common::vm::{Boot, Vm};
use std::path::Path;

/// The packed node's blobs as S3 objects: flat keys in the bucket (hard links).
fn into_bucket(store: &Path, bucket: &Path) {
    for shard in std::fs::read_dir(store).unwrap() {
        for blob in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let blob = blob.unwrap();
            std::fs::hard_link(blob.path(), bucket.join(blob.file_name())).unwrap();
        }
    }
}

/// Boots a node whose flists live in S3 behind TLS (`vm` adds to the VM); returns the
/// boot and the server's access log.
fn boot_on_s3(name: &str, vm: impl FnOnce(Vm) -> Vm) -> (Boot, String) {
    let dir = common::scratch(&format!("{name}-s3"));
    let ns = NetNs::create();
    let store = S3Tls::start(&dir, &ns, "IP:10.0.2.2");
    let kernel = Kernel::fixture();
    // The fixture's tree, dated one second and stamped, so stage 1 proves its maps
    // without reading it.
    let root = common::scratch(&format!("{name}-tree")).join("root");
    common::dated_fixture_tree(&root);
    let tree = kernel.module_dir_in(&root);
    let out = common::agent(&[
        "depmod",
        "stamp",
        "--root",
        root.to_str().unwrap(),
        "--kernel",
        &kernel.release,
    ]);
    assert!(out.status.success(), "{out:?}");
    let packed = node::pack(name, &tree, &kernel.release);
    into_bucket(&packed.store, &store.buckets.join(BUCKET));
    let route = s3tls::url("10.0.2.2", BUCKET, SECRET);
    for manifest in [&packed.modules, &packed.firmware] {
        let out = common::agent(&[
            "flist",
            "route",
            "set",
            "-m",
            manifest.to_str().unwrap(),
            &route,
        ]);
        assert!(out.status.success(), "{out:?}");
    }
    let boot = vm(Vm::new(name)
        .kernel(kernel)
        .in_netns(&ns)
        .ca_file(&store.ca)
        .flist(&packed.modules)
        .flist(&packed.firmware)
        .zinit_with_report("tests/vm/guest/secrets-check.sh")
        .repo_file("/sbin/node-check.sh", "tests/vm/guest/node-check.sh", 0o755))
    .boot();
    let log = std::fs::read_to_string(dir.join("nginx.access")).unwrap_or_default();
    (boot, log)
}

/// Stage 1 mounted both flists over S3 and loaded the baseline from them.
fn mounted_and_loaded(boot: &Boot, access_log: &str) -> serde_json::Value {
    boot.assert_clean();
    assert!(boot.has_result("done rc=0"), "{}", boot.explain());
    let report = boot.report();
    assert_eq!(report["result"]["status"], "handed-off", "{report:#}");
    let flists = common::step(&report, "flists");
    assert_eq!(flists["outcome"], "ok", "{flists:#}");
    assert_eq!(flists["counters"]["mounted"], 2, "{flists:#}");
    let loaded = boot.lines("module: ");
    for name in ["bridge", "8021q", "overlay"] {
        assert!(loaded.contains(&name), "{name} not loaded: {loaded:?}");
    }
    assert_eq!(common::step(&report, "modules")["outcome"], "ok");
    boot.assert_zinit_ran_every_service();
    // The blocks came over TLS from the S3 server, signed.
    let served = access_log
        .lines()
        .filter(|l| l.contains(&format!("\"GET /{BUCKET}/")) && l.contains("\" 200 "))
        .count();
    assert!(served > 0, "no GET served by the S3 store:\n{access_log}");
    report
}

#[test]
fn stage1_mounts_flists_from_s3_over_tls_and_the_secret_shows_nowhere() {
    let (boot, access_log) = boot_on_s3("s3-node", |vm| vm);
    mounted_and_loaded(&boot, &access_log);

    // Everything the guest showed: the commands' outputs, /run/initagent, the kernel log,
    // every argv. Each part was really there, and none holds the secret.
    let seen: Vec<&str> = boot.lines("seen ");
    for part in [
        "status: ",
        "status-json: ",
        "config: ",
        "config-json: ",
        "flists: ",
        "net-status: ",
        "file /run/initagent/report.json: ",
        "kmsg: ",
        "cmdline 1: ",
    ] {
        assert!(
            seen.iter().any(|l| l.starts_with(part)),
            "nothing seen of {part}: {}",
            boot.explain()
        );
    }
    let masked = format!("s3s://{ACCESS}:***@10.0.2.2/{BUCKET}?region=garage");
    assert!(
        seen.iter()
            .any(|l| l.starts_with("inspect: ") && l.contains(&masked)),
        "the route is not shown masked: {seen:#?}"
    );
    let daemons: Vec<&&str> = seen
        .iter()
        .filter(|l| l.starts_with("cmdline ") && l.contains("flist mount --foreground"))
        .collect();
    assert_eq!(daemons.len(), 2, "{seen:#?}");
    let everything = boot.results.join("\n");
    for piece in SECRET.split(['/', '+', '=']) {
        assert!(
            !everything.contains(piece),
            "the secret's part {piece:?} is shown: {}",
            boot.results
                .iter()
                .filter(|l| l.contains(piece))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // The report is root's alone.
    assert!(
        boot.results
            .iter()
            .any(|l| l == "mode: -rw------- /run/initagent/report.json"),
        "{}",
        boot.explain()
    );
}

#[test]
fn a_node_whose_clock_is_hours_ahead_still_mounts_and_says_by_how_much() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ahead = initagent::flist::store::sigv4::amz_date(now + 5 * 3600);
    // YYYYMMDDTHHMMSSZ -> YYYY-MM-DDTHH:MM:SS, QEMU's -rtc base.
    let base = format!(
        "{}-{}-{}T{}:{}:{}",
        &ahead[0..4],
        &ahead[4..6],
        &ahead[6..8],
        &ahead[9..11],
        &ahead[11..13],
        &ahead[13..15]
    );
    let (boot, access_log) =
        boot_on_s3("s3-skew", |vm| vm.qemu(&["-rtc", &format!("base={base}")]));
    let report = mounted_and_loaded(&boot, &access_log);
    let flists = common::step(&report, "flists");
    let off = flists["counters"]["clock_off_by_s"].as_i64().unwrap_or(0);
    assert!((off - 5 * 3600).abs() < 300, "{flists:#}");
    let detail = flists["detail"].as_str().unwrap();
    assert!(
        detail.contains("the node's clock is off the store's by -4h") || detail.contains("by -5h"),
        "{detail}"
    );
}
