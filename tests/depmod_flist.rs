//! `depmod check`/`ensure` on a modules tree served lazily from an flist over FUSE, with
//! the blocks behind a real HTTP server whose request log is the witness: checking a
//! valid, stamped tree fetches no module block at all (the stamp is compared with the
//! flist's own block keys; a tree packed with the maps proof is not even read: the
//! proof holds only while the manifest holds the tree it was made for); a tree whose maps went stale is repaired into tmpfs and the
//! resolver then agrees with kmod's modprobe on it.
#![cfg(feature = "system-tests")]

mod common;

use initagent::flist::meta::Manifest;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The modules-mini fixture's own release (its KVER.txt): these tests only read its tree.
const RELEASE: &str = "6.1.0-56-amd64";

fn run(args: &[&str]) -> std::process::Output {
    common::agent(args)
}

/// The fixture's module tree, dated one second (as an image would be), stamped; then
/// `damage` runs; then it is packed. Returns (scratch dir, flist, store dir).
fn packed_tree(name: &str, damage: impl FnOnce(&Path)) -> (PathBuf, PathBuf, PathBuf) {
    let dir = common::scratch(name);
    let root = dir.join("src");
    common::dated_fixture_tree(&root);
    let out = run(&[
        "depmod",
        "stamp",
        "--root",
        root.to_str().unwrap(),
        "--kernel",
        RELEASE,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = root.join("lib/modules").join(RELEASE);
    damage(&tree);
    let flist = dir.join("modules.fl");
    let store = dir.join("store");
    common::pack(&flist, &format!("dir://{}", store.display()), &tree);
    (dir, flist, store)
}

/// Mounts `flist` at `<root>/lib/modules/<release>` from an HTTP store.
fn mount(dir: &Path, flist: &Path, port: u16) -> PathBuf {
    let root = dir.join("root");
    let target = root.join("lib/modules").join(RELEASE);
    std::fs::create_dir_all(&target).unwrap();
    let out = run(&[
        "flist",
        "mount",
        "-m",
        flist.to_str().unwrap(),
        "--store",
        &format!("http://127.0.0.1:{port}"),
        target.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    root
}

/// `depmod check --json` of the flist mounted from `store` served over HTTP (requests
/// logged): the exit code, the report and the request log; unmounted afterwards.
fn check_over_http(
    dir: &Path,
    flist: &Path,
    store: &Path,
) -> (Option<i32>, serde_json::Value, PathBuf) {
    let log = dir.join("http.log");
    let server = common::servers::http_dir_logged(store, &log);
    let root = mount(dir, flist, server.port);
    let out = run(&[
        "depmod",
        "check",
        "--json",
        "--root",
        root.to_str().unwrap(),
        "--kernel",
        RELEASE,
    ]);
    let _ = run(&[
        "flist",
        "umount",
        "--lazy",
        root.join("lib/modules").join(RELEASE).to_str().unwrap(),
    ]);
    let report = serde_json::from_slice(&out.stdout).unwrap();
    (out.status.code(), report, log)
}

/// One check of a `depmod check --json` report, by id.
fn check<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

fn block_ids_of(flist: &Path, wanted: impl Fn(&str) -> bool) -> HashSet<String> {
    let manifest = Manifest::open(flist).unwrap();
    manifest
        .inodes()
        .filter(|i| i.is_file() && wanted(&i.name))
        .flat_map(|i| manifest.blocks(i.ino).unwrap())
        .map(|b| b.id.iter().map(|x| format!("{x:02x}")).collect())
        .collect()
}

fn requested_ids(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split("\"GET ").nth(1))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|path| path.rsplit('/').next().map(str::to_string))
        .collect()
}

#[test]
fn checking_a_valid_mounted_tree_fetches_no_module_block() {
    let (dir, flist, store) = packed_tree("depmod-flist-valid", |_| {});
    let (code, report, log) = check_over_http(&dir, &flist, &store);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["accounting"]["module_bytes_read"], 0);
    let stamp = check(&report, "stamp");
    assert_eq!(stamp["status"], "pass", "{stamp:#}");
    let module_blocks = block_ids_of(&flist, |name| name.ends_with(".ko"));
    let requested = requested_ids(&log);
    let fetched_modules: Vec<&String> = requested
        .iter()
        .filter(|id| module_blocks.contains(*id))
        .collect();
    assert!(
        fetched_modules.is_empty(),
        "module blocks were fetched: {fetched_modules:?}"
    );
    assert!(
        requested.len() <= 2,
        "only the stamp should be read: {requested:?}"
    );
    println!(
        "valid tree over FUSE: {} store requests, none for a module",
        requested.len()
    );
}

#[test]
fn the_packed_proof_holds_only_for_the_tree_it_was_made_for() {
    use initagent::depmod::proof;
    let (dir, flist, store) = packed_tree("depmod-flist-proof", |_| {});
    let packed = Manifest::open(&flist).unwrap();
    assert!(proof::holds(&packed, RELEASE), "{:?}", packed.tags());
    assert!(!proof::holds(&packed, "6.1.0-99-amd64"));
    // Mounted as packed: proven by the pack's deep check, the stamp not even read.
    let (code, report, log) = check_over_http(&dir, &flist, &store);
    assert_eq!(code, Some(0), "{report:#}");
    let proven = "proven when the flist was packed";
    assert!(
        check(&report, "stamp")["reasons"]
            .to_string()
            .contains(proven),
        "{report:#}"
    );
    assert_eq!(requested_ids(&log), Vec::<String>::new());
    // The manifest changed afterwards by another tool (one module's mtime): the proof no
    // longer holds, and the stamp proves the maps as it does without one.
    let edited = dir.join("edited.fl");
    std::fs::copy(&flist, &edited).unwrap();
    rusqlite::Connection::open(&edited)
        .unwrap()
        .execute(
            "UPDATE inode SET mtime = mtime - 1 WHERE name = 'loop.ko'",
            [],
        )
        .unwrap();
    assert!(!proof::holds(&Manifest::open(&edited).unwrap(), RELEASE));
    let (code, report, _) = check_over_http(&dir, &edited, &store);
    assert_eq!(code, Some(0), "{report:#}");
    let stamp = check(&report, "stamp");
    assert_eq!(stamp["status"], "pass", "{stamp:#}");
    assert!(!stamp["reasons"].to_string().contains(proven), "{stamp:#}");
}

#[test]
fn content_changed_behind_the_stamp_is_seen_through_the_flist_block_keys() {
    // Same size, same mtime, different bytes: only content digests can tell.
    let (dir, flist, store) = packed_tree("depmod-flist-content", |tree| {
        let path = tree.join("kernel/drivers/block/loop.ko");
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 100;
        data[last] ^= 0xff;
        std::fs::write(&path, data).unwrap();
        let status = Command::new("touch")
            .args(["-d", "@1700000000"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
    });
    let (code, report, log) = check_over_http(&dir, &flist, &store);
    assert_eq!(code, Some(1), "{report:#}");
    let stamp = check(&report, "stamp");
    assert!(
        stamp["reasons"]
            .to_string()
            .contains("kernel/drivers/block/loop.ko (content differs (flist block keys))"),
        "{stamp:#}"
    );
    let module_blocks = block_ids_of(&flist, |name| name == "loop.ko");
    assert!(
        requested_ids(&log)
            .iter()
            .all(|id| !module_blocks.contains(id)),
        "no block of loop.ko was fetched to see it"
    );
}

#[test]
fn stale_maps_in_a_mounted_flist_are_regenerated_into_tmpfs() {
    let (dir, flist, store) = packed_tree("depmod-flist-ensure", |tree| {
        std::fs::remove_file(tree.join("kernel/net/802/stp.ko")).unwrap();
    });
    let server = common::servers::http_dir(&store);
    let root = dir.join("root");
    let target = root.join("lib/modules").join(RELEASE);
    std::fs::create_dir_all(&target).unwrap();
    let (empty, cmdline, output) = (dir.join("modprobe.d"), dir.join("cmdline"), dir.join("out"));
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(&cmdline, "quiet\n").unwrap();
    let names = "virtio_net fuse bridge garp 8021q vxlan e1000e loop overlay";
    // Everything in one private mount namespace: the FUSE mount, the bind mounts.
    let script = format!(
        "set -e; mount --bind {cmdline} /proc/cmdline\n\
         {agent} flist mount -m {flist} --store http://127.0.0.1:{port} {target} > /dev/null\n\
         {agent} depmod ensure --root {root} --kernel {RELEASE} --output {output} > {dir}/ensure.txt\n\
         {agent} modules resolve --show-depends --root {root} --kernel {RELEASE} --modprobe-d {empty} --cmdline-file {cmdline} {names} > {dir}/ours.txt\n\
         for m in {names}; do modprobe -C {empty} -d {root} -S {RELEASE} --show-depends $m; done > {dir}/kmod.txt\n\
         {agent} flist umount --lazy {target}",
        cmdline = cmdline.display(),
        agent = env!("CARGO_BIN_EXE_initagent"),
        flist = flist.display(),
        port = server.port,
        target = target.display(),
        root = root.display(),
        output = output.display(),
        dir = dir.display(),
        empty = empty.display(),
    );
    common::sh_in_private_mount_namespace(&script);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let ensure = read("ensure.txt");
    assert!(ensure.contains("action: depmod -a"), "{ensure}");
    assert!(
        ensure.contains(&format!(
            "regenerated into {}",
            output.join("lib/modules").join(RELEASE).display()
        )),
        "{ensure}"
    );
    assert!(!read("ours.txt").contains("stp.ko"));
    assert_eq!(read("ours.txt"), read("kmod.txt"));
}
