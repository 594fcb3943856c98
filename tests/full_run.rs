//! A full `/run` (issue 15, point 5), on the host: small tmpfs mounts stand for a `/run`
//! of a few MiB that is full. A mount daemon whose disk cache fills its tmpfs still serves
//! every file byte for byte, leaves no temporary file and gives room back; the failure
//! bundle written into a full tmpfs is partial, each file whole or absent and named in
//! `missing.txt`. The VM side (a small `/run` under stage 1 and zinit) is `vm_node`'s
//! `a_small_run_fills_...`. Needs root and /dev/fuse (`make test` runs it).
#![cfg(feature = "system-tests")]

mod common;

use common::{fixtures, mount, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `kib` KiB on a fresh scratch directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(name: &str, kib: u32) -> Tmpfs {
        let dir = scratch(name).join("tmpfs");
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0755"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs on {}", dir.display());
        Tmpfs(dir)
    }

    /// Bytes free.
    fn free(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(&self.0)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut figures = text.split_whitespace().map(|f| f.parse::<u64>().unwrap());
        figures.next().unwrap() * figures.next().unwrap()
    }

    /// Fills it with 4 KiB files until it is full, then removes `leave` of them: exactly
    /// `leave` pages free.
    fn fill_leaving(&self, leave: usize) {
        let ballast = self.0.join("ballast");
        std::fs::create_dir_all(&ballast).unwrap();
        let mut written = Vec::new();
        loop {
            let path = ballast.join(written.len().to_string());
            if std::fs::write(&path, [7u8; 4096]).is_err() {
                let _ = std::fs::remove_file(&path);
                break;
            }
            written.push(path);
        }
        assert!(
            written.len() > leave,
            "the tmpfs took {} pages",
            written.len()
        );
        for path in written.iter().rev().take(leave) {
            std::fs::remove_file(path).unwrap();
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every path under `dir` whose name looks like a temporary file.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else if entry.file_name().to_string_lossy().contains("tmp") {
                found.push(path);
            }
        }
    }
    found
}

/// Every regular file under `root`, relative.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                found.push(entry.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn a_cache_that_fills_its_filesystem_still_serves_every_byte_and_gives_room_back() {
    // 512 KiB for the cache of a tree whose blocks are ~2.5 MB.
    let cache = Tmpfs::new("full-cache", 512);
    let rewrite = format!(
        "dir:///srv/initagent-fixtures/=dir://{}/",
        fixtures().display()
    );
    let mini = fixtures().join("modules-mini");
    let mounted = mount(
        "full-cache-mnt",
        &mini.join("modules-6.1.0-56-amd64.fl"),
        &[
            "--store-rewrite",
            &rewrite,
            "--cache",
            cache.0.to_str().unwrap(),
        ],
    );
    let tree = mini.join("tree/lib/modules").join(
        std::fs::read_to_string(mini.join("KVER.txt"))
            .unwrap()
            .trim(),
    );
    let names = files(&tree);
    assert!(names.len() > 20, "{}", names.len());
    // Twice: the second pass reads what the cache kept and fetches what it gave back.
    for pass in 0..2 {
        for name in &names {
            let served = std::fs::read(mounted.target.join(name))
                .unwrap_or_else(|e| panic!("pass {pass}: {}: {e}", name.display()));
            assert!(
                served == std::fs::read(tree.join(name)).unwrap(),
                "pass {pass}: {} differs",
                name.display()
            );
        }
    }
    assert_eq!(temporaries(&cache.0), Vec::<PathBuf>::new());
    // The cache found the filesystem full and gave room back (a quarter of what it held,
    // and evicted down to 90 % of that): others can still write.
    let free = cache.free();
    assert!(
        free >= 32 << 10,
        "only {free} bytes free in the cache's tmpfs"
    );
    std::fs::write(cache.0.join("someone-else"), [1u8; 16 << 10]).expect("room for another writer");
}

#[test]
fn a_failure_bundle_in_a_full_run_is_partial_each_file_whole_or_named() {
    let run = Tmpfs::new("full-bundle", 128);
    let report = scratch("full-bundle-report").join("report.json");
    let text = serde_json::json!({
        "result": {"status": "failed", "detail": "x".repeat(5000)},
        "steps": [],
    })
    .to_string();
    std::fs::write(&report, &text).unwrap();
    // Four pages: the placeholder of missing.txt, the report (two), one more.
    run.fill_leaving(4);
    let dir = run.0.join("failure");
    let bundle = initagent::stage1::bundle::write(&dir, &report).unwrap();
    // The report went first and is whole.
    assert_eq!(
        std::fs::read_to_string(dir.join("report.json")).unwrap(),
        text
    );
    // The kernel log tail (hundreds of lines) did not fit; it is named, not half there.
    assert!(
        bundle.missing.iter().any(|m| m.starts_with("kmsg.txt: ")),
        "{:?}",
        bundle.missing
    );
    let listed = std::fs::read_to_string(dir.join("missing.txt")).unwrap();
    assert_eq!(listed, bundle.missing.join("\n") + "\n");
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.contains("tmp"), "temporary file left: {name}");
        assert!(
            !bundle
                .missing
                .iter()
                .any(|m| m.starts_with(&format!("{name}: "))),
            "{name} is both written and named missing"
        );
        let data = std::fs::read(entry.path()).unwrap();
        match name.as_str() {
            "mountinfo.txt" => assert!(String::from_utf8_lossy(&data).ends_with('\n')),
            n if n.ends_with(".json") => {
                serde_json::from_slice::<serde_json::Value>(&data)
                    .unwrap_or_else(|e| panic!("{name} is not whole: {e}"));
            }
            _ => {}
        }
    }
}
