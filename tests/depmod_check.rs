//! `initagent depmod check|stamp|ensure` on real module trees: the rfs fixture's 35
//! Debian modules with the maps depmod made for them, and Debian's whole tree. Every
//! mismatch class is detected with its own reason; `ensure` repairs a broken tree so
//! that the resolver agrees with kmod's modprobe on it again (both reading the maps
//! bind-mounted over the tree inside a private mount namespace).
#![cfg(feature = "system-tests")]

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The modules-mini fixture's own release (its KVER.txt): these tests only read its tree.
const RELEASE: &str = "6.1.0-56-amd64";

fn agent() -> &'static str {
    env!("CARGO_BIN_EXE_initagent")
}

/// A fresh copy of the fixture tree, every file dated the same second (as an initramfs
/// or an flist presents it).
fn tree(name: &str) -> PathBuf {
    let root = common::scratch(name).join("t");
    common::dated_fixture_tree(&root);
    root
}

fn module_dir(root: &Path) -> PathBuf {
    root.join("lib/modules").join(RELEASE)
}

fn check(root: &Path, extra: &[&str]) -> (i32, Value) {
    check_release(root, RELEASE, extra)
}

/// `depmod check --json` of `root` for kernel `release`: exit code and report.
fn check_release(root: &Path, release: &str, extra: &[&str]) -> (i32, Value) {
    let out = Command::new(agent())
        .args(["depmod", "check", "--json", "--root"])
        .arg(root)
        .args(["--kernel", release])
        .args(extra)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), report)
}

fn failed(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["reasons"].to_string(),
            )
        })
        .collect()
}

fn stamp(root: &Path) {
    let out = Command::new(agent())
        .args(["depmod", "stamp", "--root"])
        .arg(root)
        .args(["--kernel", RELEASE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn set_mtime(path: &Path, seconds: i64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds as u64))
        .unwrap();
}

/// Runs `case` on a fresh tree and returns the failed checks of a deep check.
fn mismatch(name: &str, stamped: bool, case: impl FnOnce(&Path)) -> Vec<(String, String)> {
    let root = tree(name);
    if stamped {
        stamp(&root);
    }
    case(&module_dir(&root));
    let (code, report) = check(&root, &[]);
    assert_eq!(code, 1, "{name}: {report:#}");
    failed(&report)
}

fn assert_caught(failures: &[(String, String)], id: &str, words: &str) {
    assert!(
        failures
            .iter()
            .any(|(i, reasons)| i == id && reasons.contains(words)),
        "expected {id} to fail with {words:?}; failures: {failures:#?}"
    );
}

#[test]
fn a_valid_tree_passes_and_a_stamped_one_reads_no_module_content() {
    let root = tree("depmod-valid");
    let (code, report) = check(&root, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert!(failed(&report).is_empty());
    stamp(&root);
    let (code, report) = check(&root, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["accounting"]["module_bytes_read"], 0, "{report:#}");
    assert_eq!(report["accounting"]["module_files_opened"], 0, "{report:#}");
    let (code, _) = check(&root, &["--deep"]);
    assert_eq!(code, 0);
}

#[test]
fn debians_whole_tree_passes() {
    let (root, release) = common::kernel::debian_tree();
    let out = Command::new(agent())
        .args(["depmod", "check", "--json", "--root"])
        .arg(&root)
        .args(["--kernel", &release])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
}

#[test]
fn every_mismatch_class_is_caught_with_its_reason() {
    let f = mismatch("depmod-missing-bin", false, |d| {
        std::fs::remove_file(d.join("modules.alias.bin")).unwrap()
    });
    assert_caught(&f, "indexes", "modules.alias.bin");

    let f = mismatch("depmod-corrupt-bin", false, |d| {
        let path = d.join("modules.dep.bin");
        let mut data = std::fs::read(&path).unwrap();
        data.truncate(data.len() / 2);
        std::fs::write(&path, data).unwrap();
        set_mtime(&path, 1700000000);
    });
    assert_caught(&f, "indexes", "modules.dep.bin");

    let f = mismatch("depmod-deleted-module", false, |d| {
        std::fs::remove_file(d.join("kernel/net/802/stp.ko")).unwrap()
    });
    assert_caught(&f, "module-set", "stp");

    let f = mismatch("depmod-added-old-mtime", false, |d| {
        let (debian, release) = common::kernel::debian_tree();
        let source = debian
            .join("lib/modules")
            .join(release)
            .join("kernel/drivers/net/dummy.ko");
        let target = d.join("kernel/drivers/net/dummy.ko");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(source, &target).unwrap();
        set_mtime(&target, 1600000000);
    });
    assert_caught(&f, "module-set", "dummy");

    let f = mismatch("depmod-updated", false, |d| {
        set_mtime(&d.join("kernel/fs/fuse/fuse.ko"), 1800000000)
    });
    assert_caught(&f, "mtime", "kernel/fs/fuse/fuse.ko");

    let f = mismatch("depmod-order-newer", false, |d| {
        set_mtime(&d.join("modules.order"), 1800000000)
    });
    assert_caught(&f, "inputs", "modules.order is newer");
    let f = mismatch("depmod-builtin-newer", false, |d| {
        set_mtime(&d.join("modules.builtin"), 1800000000)
    });
    assert_caught(&f, "inputs", "modules.builtin is newer");

    let f = mismatch("depmod-text-vs-bin", false, |d| {
        let path = d.join("modules.alias");
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = text.lines().filter(|l| !l.contains(" e1000")).collect();
        std::fs::write(&path, kept.join("\n") + "\n").unwrap();
        set_mtime(&path, 1700000000);
    });
    assert_caught(&f, "text-vs-bin", "modules.alias vs modules.alias.bin");

    // Same name, same old mtime, different content: only the stamp can tell.
    let f = mismatch("depmod-stamp", true, |d| {
        let path = d.join("kernel/drivers/block/loop.ko");
        let mut data = std::fs::read(&path).unwrap();
        data.extend_from_slice(b"extra");
        std::fs::write(&path, data).unwrap();
        set_mtime(&path, 1700000000);
    });
    assert_caught(&f, "stamp", "kernel/drivers/block/loop.ko");
    assert_eq!(f.len(), 1, "only the stamp sees it: {f:#?}");
}

#[test]
fn wrong_release_directory_and_wrong_vermagic() {
    let root = tree("depmod-release");
    let (code, report) = check_release(&root, "6.1.0-99-amd64", &[]);
    assert_eq!(code, 1);
    assert_caught(&failed(&report), "release-dir", RELEASE);

    // The tree is for 6.1.0-56-amd64 but sits where 6.1.0-99-amd64's should be.
    std::fs::rename(module_dir(&root), root.join("lib/modules/6.1.0-99-amd64")).unwrap();
    let (_, report) = check_release(&root, "6.1.0-99-amd64", &[]);
    assert_caught(
        &failed(&report),
        "vermagic",
        "built for 6.1.0-56-amd64, not 6.1.0-99-amd64",
    );

    let out = Command::new(agent())
        .args([
            "depmod",
            "check",
            "--root",
            "/nonexistent/root",
            "--kernel",
            RELEASE,
        ])
        .output()
        .unwrap();
    // Not checkable is a failure (1), told apart from a mismatch by its text; 2 is
    // a wrong command line only.
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("could not check"), "{said}");
}

/// In a private mount namespace: ensure, then the resolver and modprobe on every module.
fn repaired_resolutions(root: &Path, ensure_flags: &str) -> (String, String, String) {
    let mut names: Vec<String> = walk_modules(&module_dir(root));
    names.sort();
    let scratch = root.parent().unwrap();
    let (empty, cmdline, output) = (
        scratch.join("modprobe.d"),
        scratch.join("cmdline"),
        scratch.join("out"),
    );
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(&cmdline, "quiet\n").unwrap();
    let script = format!(
        "set -e; mount --bind {cmdline} /proc/cmdline\n\
         {agent} depmod ensure {ensure_flags} --root {root} --kernel {RELEASE} --output {output} > {scratch}/ensure.txt\n\
         {agent} modules resolve --show-depends --root {root} --kernel {RELEASE} --modprobe-d {empty} --cmdline-file {cmdline} {names} > {scratch}/ours.txt\n\
         for m in {names}; do modprobe -C {empty} -d {root} -S {RELEASE} --show-depends $m; done > {scratch}/kmod.txt",
        cmdline = cmdline.display(),
        agent = agent(),
        root = root.display(),
        output = output.display(),
        scratch = scratch.display(),
        empty = empty.display(),
        names = names.join(" "),
    );
    common::sh_in_private_mount_namespace(&script);
    let read = |f: &str| std::fs::read_to_string(scratch.join(f)).unwrap();
    (read("ensure.txt"), read("ours.txt"), read("kmod.txt"))
}

/// The lines of `text`, sorted (the same modules for every request, whatever their order).
fn sorted_lines(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    lines.join("\n")
}

fn walk_modules(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            names.extend(walk_modules(&path));
        } else if let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ko"))
        {
            names.push(name.replace('-', "_"));
        }
    }
    names
}

#[test]
fn ensure_repairs_with_depmod_and_the_resolver_agrees_with_kmod_again() {
    let root = tree("depmod-ensure");
    std::fs::remove_file(module_dir(&root).join("kernel/net/802/stp.ko")).unwrap();
    let (ensure, ours, kmod) = repaired_resolutions(&root, "");
    assert!(ensure.contains("action: depmod -a"), "{ensure}");
    assert!(
        ensure.contains("mounted over the tree: modules.dep modules.dep.bin"),
        "{ensure}"
    );
    assert!(!ours.contains("stp.ko"), "{ours}");
    assert_eq!(ours, kmod);
    // The tree itself is untouched: outside the namespace the maps are still the old ones.
    let (code, _) = check(&root, &[]);
    assert_eq!(code, 1);

    let root = tree("depmod-ensure-quick");
    set_mtime(
        &module_dir(&root).join("kernel/fs/fuse/fuse.ko"),
        1800000000,
    );
    let (ensure, ours, kmod) = repaired_resolutions(&root, "");
    assert!(ensure.contains("action: depmod -A"), "{ensure}");
    assert_eq!(ours, kmod);
}

#[test]
fn ensure_without_depmod_regenerates_in_process() {
    let root = tree("depmod-inprocess");
    std::fs::remove_file(module_dir(&root).join("kernel/net/802/stp.ko")).unwrap();
    let (ensure, ours, kmod) = repaired_resolutions(&root, "--in-process");
    assert!(ensure.contains("action: in-process"), "{ensure}");
    assert!(!ours.contains("stp.ko"), "{ours}");
    // Same modules for every request; the order within may differ from depmod's, but
    // every module still comes after everything it depends on (checked in unit tests).
    assert_eq!(sorted_lines(&ours), sorted_lines(&kmod));
}

#[test]
fn a_file_that_is_no_module_is_listed_as_depmod_lists_it_and_the_rest_still_resolves() {
    let root = tree("depmod-garbage");
    std::fs::write(
        module_dir(&root).join("kernel/garbage.ko"),
        common::kernel::garbage_module(),
    )
    .unwrap();
    let (ensure, ours, kmod) = repaired_resolutions(&root, "--in-process");
    assert!(ensure.contains("action: in-process"), "{ensure}");
    assert!(ours.contains("kernel/garbage.ko"), "{ours}");
    assert_eq!(sorted_lines(&ours), sorted_lines(&kmod));
}

#[test]
fn maps_made_for_a_tree_that_another_replaced_are_dropped_once_the_new_one_checks_valid() {
    let root = tree("depmod-later-tree");
    let output = root.parent().unwrap().join("out");
    let ensure = || {
        let out = Command::new(agent())
            .args(["depmod", "ensure", "--no-mount", "--in-process", "--root"])
            .arg(&root)
            .args(["--kernel", RELEASE, "--output"])
            .arg(&output)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The initramfs's tree with broken maps: repaired into the output, marked as its own.
    std::fs::remove_file(module_dir(&root).join("kernel/net/802/stp.ko")).unwrap();
    assert!(ensure().contains("action: in-process"));
    let repaired = output.join("lib/modules").join(RELEASE);
    assert!(repaired.join("initagent-made-for").is_file());
    // Run again on the same tree: its own repaired maps stay.
    ensure();
    assert!(repaired.join("modules.dep").is_file());
    // A flist brings another tree to the same path, with valid maps of its own: the maps
    // made for the first are dropped, so nothing reads them in its place.
    std::fs::rename(&root, root.with_file_name("first-tree")).unwrap();
    common::dated_fixture_tree(&root);
    let said = ensure();
    assert!(said.contains("action: none"), "{said}");
    assert!(said.contains("made for another tree"), "{said}");
    assert!(!repaired.exists());
}

#[test]
fn a_valid_tree_is_left_alone() {
    let root = tree("depmod-noop");
    let out = Command::new(agent())
        .args(["depmod", "ensure", "--no-mount", "--root"])
        .arg(&root)
        .args(["--kernel", RELEASE, "--output"])
        .arg(root.parent().unwrap().join("out"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("action: none"));
    assert!(
        !root.parent().unwrap().join("out").exists(),
        "nothing is written for a valid tree"
    );
}

#[test]
fn a_broken_tree_is_never_stamped() {
    let root = tree("depmod-stamp-refused");
    std::fs::remove_file(module_dir(&root).join("kernel/net/802/stp.ko")).unwrap();
    let out = Command::new(agent())
        .args(["depmod", "stamp", "--root"])
        .arg(&root)
        .args(["--kernel", RELEASE])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to stamp"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!module_dir(&root).join("modules.initagent-stamp").exists());
}
