//! `initagent flist pack` against the real rfs: packing a fixture's source tree gives the
//! same entries and the same block ids and keys as the flist rfs made from it, and the
//! packed flist mounts back to the source tree.
#![cfg(feature = "system-tests")]

mod common;

use common::{agent, fixtures};

use initagent::flist::meta::Manifest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn unpack_source(name: &str, fixture: &str) -> PathBuf {
    let dir = common::scratch(name);
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let status = Command::new("tar")
        .args(["--numeric-owner", "-xpf"])
        .arg(fixtures().join(fixture).join("src.tar"))
        .arg("-C")
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// (mode, uid, gid, size, mtime, target, blocks) of one entry.
type Entry = (
    u32,
    u32,
    u32,
    u64,
    i64,
    Option<Vec<u8>>,
    Vec<([u8; 32], [u8; 32])>,
);
/// Path → entry.
type Summary = BTreeMap<String, Entry>;

fn summarize(flist: &Path) -> Summary {
    let manifest = Manifest::open(flist).unwrap();
    manifest
        .inodes()
        .map(|i| {
            let blocks = manifest
                .blocks(i.ino)
                .unwrap()
                .iter()
                .map(|b| (b.id, b.key))
                .collect();
            (
                manifest.path_of(i.ino),
                (
                    i.mode,
                    i.uid,
                    i.gid,
                    i.size,
                    i.mtime,
                    i.target.clone(),
                    blocks,
                ),
            )
        })
        .collect()
}

#[test]
fn packing_the_fixture_sources_gives_rfs_block_ids_and_keys() {
    for fixture in ["odd-tree", "big-file"] {
        let dir = unpack_source(&format!("pack-{fixture}"), fixture);
        let out = dir.join("packed.fl");
        let status = Command::new(env!("CARGO_BIN_EXE_initagent"))
            .args(["flist", "pack", "-m"])
            .arg(&out)
            .arg("--store")
            .arg(format!("dir://{}", dir.join("store").display()))
            .arg(dir.join("src"))
            .status()
            .unwrap();
        assert!(status.success());
        let ours = summarize(&out);
        let theirs = summarize(&fixtures().join(fixture).join(format!("{fixture}.fl")));
        assert_eq!(ours.len(), theirs.len(), "{fixture}: entry count");
        for (path, rfs) in &theirs {
            let mine = ours
                .get(path)
                .unwrap_or_else(|| panic!("{fixture}: {path} missing from our flist"));
            if path == "/" {
                continue; // the root's attributes are the unpack directory's
            }
            // Directory sizes depend on the filesystem the tree was unpacked on.
            let comparable = |s: &Entry| {
                let size = if s.0 & 0o170000 == 0o040000 { 0 } else { s.3 };
                (s.0, s.1, s.2, size, s.4, s.5.clone(), s.6.clone())
            };
            assert_eq!(comparable(mine), comparable(rfs), "{fixture}: {path}");
        }
        // Every blob we wrote is byte-identical to rfs's.
        for (_, (_, _, _, _, _, _, blocks)) in ours {
            for (id, _) in blocks {
                let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
                let ours = std::fs::read(dir.join("store").join(&hex[..2]).join(&hex)).unwrap();
                let theirs = std::fs::read(
                    fixtures()
                        .join(fixture)
                        .join("store")
                        .join(&hex[..2])
                        .join(&hex),
                )
                .unwrap();
                assert_eq!(ours, theirs, "{fixture}: blob {hex}");
            }
        }
    }
}

#[test]
fn pack_then_mount_gives_back_the_tree() {
    let dir = unpack_source("pack-roundtrip", "odd-tree");
    let out = dir.join("packed.fl");
    let store = format!("00-7f=dir://{}", dir.join("a").display());
    let store_b = format!("80-ff=dir://{}", dir.join("b").display());
    let status = Command::new(env!("CARGO_BIN_EXE_initagent"))
        .args(["flist", "pack", "-m"])
        .arg(&out)
        .args(["--store", &store, "--store", &store_b])
        .arg(dir.join("src"))
        .status()
        .unwrap();
    assert!(status.success());
    let manifest = Manifest::open(&out).unwrap();
    assert_eq!(manifest.routes().len(), 2);
    let target = dir.join("mnt");
    std::fs::create_dir_all(&target).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_initagent"))
        .args(["flist", "mount", "-m"])
        .arg(&out)
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success());
    // diff reports special files as different even when both are fifos: check it apart.
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference", "-x", "fifo"])
        .arg(dir.join("src"))
        .arg(&target)
        .output()
        .unwrap();
    let fifo = std::fs::symlink_metadata(target.join("fifo"))
        .map(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
    let _ = Command::new(env!("CARGO_BIN_EXE_initagent"))
        .args(["flist", "umount", "--lazy"])
        .arg(&target)
        .status();
    assert!(matches!(fifo, Ok(true)), "{fifo:?}");
    assert!(
        diff.status.success(),
        "{}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
}

#[test]
fn a_failed_pack_leaves_nothing_behind() {
    let dir = unpack_source("pack-fail", "odd-tree");
    let out = dir.join("packed.fl");
    let output = Command::new(env!("CARGO_BIN_EXE_initagent"))
        .args(["flist", "pack", "-m"])
        .arg(&out)
        .args(["--store", "00-0f=dir:///nonexistent-initagent/store"])
        .arg(dir.join("src"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("no store covers") || err.contains("nonexistent"),
        "{err}"
    );
    assert!(!out.exists());
    assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("partial")));
}

#[test]
fn moved_store_is_followed_by_route_set_and_prefetched_blocks_survive_its_loss() {
    let dir = unpack_source("route-prefetch", "odd-tree");
    let out = dir.join("packed.fl");
    let first = dir.join("first");
    let moved = dir.join("moved");
    let cache = dir.join("cache");
    let fl = out.to_str().unwrap();
    common::pack(
        &out,
        &format!("dir://{}", first.display()),
        &dir.join("src"),
    );
    std::fs::rename(&first, &moved).unwrap();
    // The route in the flist now points at nothing: reading fails, naming the store.
    let output = agent(&[
        "flist",
        "cat",
        "-m",
        fl,
        "--store-timeout",
        "1",
        "/hello.txt",
    ]);
    assert_ne!(output.status.code(), Some(0), "{output:?}");
    let output = agent(&[
        "flist",
        "route",
        "set",
        "-m",
        fl,
        &format!("dir://{}", moved.display()),
    ]);
    assert!(output.status.success(), "{output:?}");
    let listed =
        String::from_utf8_lossy(&agent(&["flist", "route", "list", "-m", fl]).stdout).to_string();
    assert!(listed.contains(moved.to_str().unwrap()), "{listed}");
    let output = agent(&[
        "flist",
        "prefetch",
        "-m",
        fl,
        "--cache",
        cache.to_str().unwrap(),
        "/",
    ]);
    assert!(output.status.success(), "{output:?}");
    let summary = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(summary.contains("0 failed"), "{summary}");
    std::fs::remove_dir_all(&moved).unwrap();
    let output = agent(&[
        "flist",
        "cat",
        "-m",
        fl,
        "--cache",
        cache.to_str().unwrap(),
        "/hello.txt",
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        output.stdout,
        std::fs::read(dir.join("src/hello.txt")).unwrap()
    );
}

#[test]
fn a_mounted_flist_keeps_its_files_modes_for_other_users() {
    // allow_other lets every user into the mount; default_permissions keeps each file's
    // own mode: nobody reads the world-readable file, not the 0600 one nor into a 0700 dir.
    let dir = std::env::temp_dir().join(format!("initagent-modes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("locked")).unwrap();
    std::fs::write(src.join("open.txt"), b"for everyone\n").unwrap();
    std::fs::write(src.join("secret.txt"), b"root only\n").unwrap();
    std::fs::write(src.join("locked/inside.txt"), b"root only\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    mode(&dir, 0o755);
    mode(&src.join("open.txt"), 0o644);
    mode(&src.join("secret.txt"), 0o600);
    mode(&src.join("locked"), 0o700);
    let flist = dir.join("modes.fl");
    let store = format!("dir://{}", dir.join("store").display());
    common::pack(&flist, &store, &src);
    let target = dir.join("mnt");
    std::fs::create_dir_all(&target).unwrap();
    mode(&target, 0o755);
    let out = agent(&[
        "flist",
        "mount",
        "-m",
        flist.to_str().unwrap(),
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let as_nobody = |file: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(target.join(file))
            .output()
            .unwrap()
    };
    let open = as_nobody("open.txt");
    let secret = as_nobody("secret.txt");
    let inside = as_nobody("locked/inside.txt");
    let root_reads = std::fs::read(target.join("secret.txt"));
    let _ = agent(&["flist", "umount", "--lazy", target.to_str().unwrap()]);
    assert_eq!(open.stdout, b"for everyone\n", "{open:?}");
    for denied in [&secret, &inside] {
        assert!(!denied.status.success(), "{denied:?}");
        assert!(
            String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
            "{denied:?}"
        );
    }
    assert_eq!(root_reads.unwrap(), b"root only\n");
    std::fs::remove_dir_all(&dir).unwrap();
}
