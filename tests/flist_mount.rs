//! Flists made by the real rfs (`../shared/fixtures`), mounted over FUSE by
//! `initagent flist mount` (mount(2), no fusermount) and compared entry by entry with the
//! manifests written from the source trees: type, mode, uid, gid, size, mtime, link
//! target and content. Stores: dir (2-level and flat), sharded with a replica, HTTP from
//! Python's http.server (2-level and the flat fallback). Faults: corrupt and missing
//! blocks, 5xx, a store that never answers, a refused connection, a damaged manifest, a
//! killed daemon. Needs root and /dev/fuse (`make test` runs it).
#![cfg(feature = "system-tests")]

mod common;

use common::{agent, fixtures, mount};

use sha2_free::sha256_file;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// SHA-256 without a crate: the coreutils tool.
mod sha2_free {
    pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
        let out = std::process::Command::new("sha256sum").arg(path).output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string())
    }
}

fn rewrite() -> String {
    format!(
        "dir:///srv/initagent-fixtures/=dir://{}/",
        fixtures().display()
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct Entry {
    path: String,
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: i64,
    last: String,
}

fn manifest(path: &Path) -> Vec<Entry> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Entry {
                path: f[0].to_string(),
                kind: f[1].to_string(),
                mode: u32::from_str_radix(f[2], 8).unwrap(),
                uid: f[3].parse().unwrap(),
                gid: f[4].parse().unwrap(),
                size: f[5].parse().unwrap(),
                mtime: f[6].parse().unwrap(),
                last: f[8].to_string(),
            }
        })
        .collect()
}

/// Every manifest entry equals what the mount shows; returns how many were compared.
fn compare(mnt: &Path, manifest_path: &Path) -> usize {
    let entries = manifest(manifest_path);
    let mut problems = Vec::new();
    for e in &entries {
        let path = mnt.join(e.path.trim_start_matches('/'));
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(err) => {
                problems.push(format!("{}: {err}", e.path));
                continue;
            }
        };
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "file"
        };
        let got = (
            kind,
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid(),
            meta.mtime(),
        );
        let want = (e.kind.as_str(), e.mode, e.uid, e.gid, e.mtime);
        if got != want {
            problems.push(format!("{}: got {got:?}, want {want:?}", e.path));
        }
        if meta.size() != e.size {
            problems.push(format!("{}: size {} != {}", e.path, meta.size(), e.size));
        }
        if e.kind != "dir" && meta.nlink() < 1 {
            problems.push(format!("{}: nlink 0", e.path));
        }
        match e.kind.as_str() {
            "file" => match sha256_file(&path) {
                Ok(sum) if sum == e.last => {}
                Ok(sum) => problems.push(format!("{}: content sha256 {sum} != {}", e.path, e.last)),
                Err(err) => problems.push(format!("{}: {err}", e.path)),
            },
            "symlink" => {
                let target = std::fs::read_link(&path).unwrap();
                if target.to_string_lossy() != e.last {
                    problems.push(format!("{}: link {target:?} != {}", e.path, e.last));
                }
            }
            _ => {}
        }
    }
    assert!(
        problems.is_empty(),
        "{} mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
    entries.len()
}

/// Every listed directory lists exactly its manifest children (fifos included).
fn compare_listings(mnt: &Path, manifest_path: &Path) {
    let entries = manifest(manifest_path);
    for dir in entries.iter().filter(|e| e.kind == "dir") {
        let prefix = if dir.path == "/" {
            "/".to_string()
        } else {
            format!("{}/", dir.path)
        };
        let mut want: Vec<String> = entries
            .iter()
            .filter(|e| {
                e.path != "/"
                    && e.path.starts_with(&prefix)
                    && !e.path[prefix.len()..].contains('/')
            })
            .map(|e| e.path[prefix.len()..].to_string())
            .collect();
        want.sort();
        let mut got: Vec<String> = std::fs::read_dir(mnt.join(dir.path.trim_start_matches('/')))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        got.sort();
        assert_eq!(got, want, "listing of {}", dir.path);
    }
}

#[test]
fn every_dir_store_fixture_mounts_and_matches_its_manifest() {
    let f = fixtures();
    let rw = rewrite();
    for (name, flist, manifest_path) in [
        (
            "fl-odd-tree",
            "odd-tree/odd-tree.fl",
            "odd-tree/MANIFEST.txt",
        ),
        (
            "fl-sharded",
            "odd-tree-variants/sharded.fl",
            "odd-tree-variants/MANIFEST.txt",
        ),
        (
            "fl-flat",
            "odd-tree-variants/flat.fl",
            "odd-tree-variants/MANIFEST.txt",
        ),
        (
            "fl-modules",
            "modules-mini/modules-6.1.0-56-amd64.fl",
            "modules-mini/MANIFEST.txt",
        ),
        ("fl-big", "big-file/big-file.fl", "big-file/MANIFEST.txt"),
    ] {
        let mounted = mount(name, &f.join(flist), &["--store-rewrite", &rw]);
        // The daemon reads ahead 4 MiB (whole blocks per READ), not the kernel's 128 KiB.
        let dev = std::fs::metadata(&mounted.target).unwrap().dev();
        let bdi = format!(
            "/sys/class/bdi/{}:{}/read_ahead_kb",
            rustix::fs::major(dev),
            rustix::fs::minor(dev)
        );
        assert_eq!(
            std::fs::read_to_string(&bdi).unwrap().trim(),
            "4096",
            "{bdi}"
        );
        let compared = compare(&mounted.target, &f.join(manifest_path));
        compare_listings(&mounted.target, &f.join(manifest_path));
        // No extended attributes, and asking is an answer, not ENOSYS.
        let mut names = [0u8; 64];
        assert_eq!(
            rustix::fs::listxattr(&mounted.target, &mut names[..]),
            Ok(0)
        );
        let mut value = [0u8; 64];
        assert_eq!(
            rustix::fs::getxattr(&mounted.target, "user.any", &mut value[..]),
            Err(rustix::io::Errno::NODATA)
        );
        println!("{flist}: {compared} entries match");
    }
}

#[test]
fn sharded_flist_fails_over_to_the_replica_and_back() {
    let f = fixtures();
    let scratch = common::scratch("fl-failover");
    let copy = scratch.join("variants");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(f.join("odd-tree-variants"))
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    let rw = format!(
        "dir:///srv/initagent-fixtures/odd-tree-variants/=dir://{}/",
        copy.display()
    );
    // Shards empty: everything comes from the replica.
    for shard in ["storeA", "storeB"] {
        std::fs::remove_dir_all(copy.join(shard)).unwrap();
        std::fs::create_dir(copy.join(shard)).unwrap();
    }
    let mounted = mount(
        "fl-failover-replica",
        &f.join("odd-tree-variants/sharded.fl"),
        &["--store-rewrite", &rw],
    );
    let expected = manifest(&f.join("odd-tree-variants/MANIFEST.txt"));
    let hello = expected.iter().find(|e| e.path == "/hello.txt").unwrap();
    assert_eq!(
        sha256_file(&mounted.target.join("hello.txt")).unwrap(),
        hello.last
    );
    // And back, on the same mount: the shards restored and the replica emptied, every
    // other file comes from the shards (nothing stuck to the replica).
    for shard in ["storeA", "storeB"] {
        std::fs::remove_dir_all(copy.join(shard)).unwrap();
        assert!(Command::new("cp")
            .arg("-a")
            .arg(f.join("odd-tree-variants").join(shard))
            .arg(copy.join(shard))
            .status()
            .unwrap()
            .success());
    }
    std::fs::remove_dir_all(copy.join("replica")).unwrap();
    std::fs::create_dir(copy.join("replica")).unwrap();
    compare(&mounted.target, &f.join("odd-tree-variants/MANIFEST.txt"));
}

#[test]
fn http_stores_two_level_and_flat_fallback() {
    let f = fixtures();
    let two_level = common::servers::http_dir(&f.join("odd-tree"));
    let log = common::scratch("http-flat-log").join("requests.log");
    let flat = common::servers::http_dir_logged(&f.join("odd-tree-variants"), &log);
    let cases = [
        (
            "fl-http",
            "odd-tree-variants/http.fl",
            format!(
                "http://127.0.0.1:18080/=http://127.0.0.1:{}/",
                two_level.port
            ),
        ),
        (
            "fl-http-flat",
            "odd-tree-variants/http-flat.fl",
            format!("http://127.0.0.1:18081/=http://127.0.0.1:{}/", flat.port),
        ),
    ];
    for (name, flist, rw) in cases {
        let mounted = mount(name, &f.join(flist), &["--store-rewrite", &rw]);
        compare(&mounted.target, &f.join("odd-tree-variants/MANIFEST.txt"));
    }
    // The flat store's layout is learnt, not asked again per block: after the first
    // blocks (some may be in flight together before one answers) every block is one 200.
    let requests = std::fs::read_to_string(&log).unwrap();
    let count = |status: &str| {
        requests
            .lines()
            .filter(|l| l.contains(&format!("\" {status} ")))
            .count()
    };
    let (found, missing) = (count("200"), count("404"));
    println!("flat store: {found} × 200, {missing} × 404");
    assert!(found >= 10, "{requests}");
    assert!(
        missing <= 4,
        "a 404 per block again: {found} × 200, {missing} × 404"
    );
}

/// A private copy of odd-tree's store, so blobs can be damaged.
fn store_copy(name: &str) -> (PathBuf, String) {
    let scratch = common::scratch(name);
    let store = scratch.join("store");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(fixtures().join("odd-tree/store"))
        .arg(&store)
        .status()
        .unwrap()
        .success());
    (store.clone(), format!("dir://{}", store.display()))
}

/// The stored blob of /hello.txt (the fixture's test vector).
const HELLO_ID: &str = "30ee1d63f9dcdd993f73bdfad60ed773e26350dcde159d42b5736b6bc3e46971";

fn read_error(path: &Path) -> Option<i32> {
    std::fs::read(path).err().and_then(|e| e.raw_os_error())
}

#[test]
fn a_corrupt_or_missing_block_is_eio_and_nothing_wrong_is_served() {
    let flist = fixtures().join("odd-tree/odd-tree.fl");
    let (store, url) = store_copy("fl-corrupt");
    let blob = store.join(&HELLO_ID[..2]).join(HELLO_ID);
    let mut data = std::fs::read(&blob).unwrap();
    data[5] ^= 0x40;
    std::fs::write(&blob, data).unwrap();
    let mounted = mount("fl-corrupt-mnt", &flist, &["--store", &url]);
    assert_eq!(
        read_error(&mounted.target.join("hello.txt")),
        Some(nix_eio())
    );
    // Every other file still reads, byte for byte (its SHA-256 against the manifest's).
    let mut others = 0;
    for entry in manifest(&fixtures().join("odd-tree/MANIFEST.txt")) {
        if entry.kind != "file" || entry.path.starts_with("/hello") {
            continue;
        }
        let path = mounted.target.join(entry.path.trim_start_matches('/'));
        assert_eq!(sha256_file(&path).unwrap(), entry.last, "{}", entry.path);
        others += 1;
    }
    assert!(others > 10, "{others} other files");
    drop(mounted);

    std::fs::remove_file(&blob).unwrap();
    let mounted = mount("fl-missing-mnt", &flist, &["--store", &url]);
    assert_eq!(
        read_error(&mounted.target.join("hello.txt")),
        Some(nix_eio())
    );
    let out = agent(&[
        "flist",
        "verify",
        "-m",
        flist.to_str().unwrap(),
        "--store",
        &url,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(
        report.contains("MISSING /hello.txt") && report.contains("MISSING /hello-hardlink.txt"),
        "{report}"
    );
}

fn nix_eio() -> i32 {
    5
}

#[test]
fn unreachable_and_misbehaving_stores_fail_in_bounded_time() {
    let flist = fixtures().join("odd-tree/odd-tree.fl");
    let refused = common::servers::free_port();
    let errors = common::servers::http_status(503);
    let silent = common::servers::silent();
    for (name, url) in [
        ("fl-refused", format!("http://127.0.0.1:{refused}/store")),
        ("fl-5xx", format!("http://127.0.0.1:{}/store", errors.port)),
        (
            "fl-silent",
            format!("http://127.0.0.1:{}/store", silent.port),
        ),
    ] {
        let mounted = mount(name, &flist, &["--store", &url, "--store-timeout", "1"]);
        let started = Instant::now();
        assert_eq!(
            read_error(&mounted.target.join("hello.txt")),
            Some(nix_eio()),
            "{name}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name}: a read must end (deadline), not hang"
        );
        // Metadata does not need the store at all.
        let root_entries = manifest(&fixtures().join("odd-tree/MANIFEST.txt"))
            .iter()
            .filter(|e| e.path != "/" && !e.path[1..].contains('/'))
            .count();
        assert_eq!(
            std::fs::read_dir(&mounted.target).unwrap().count(),
            root_entries,
            "{name}"
        );
    }
}

#[test]
fn damaged_and_foreign_manifests_are_clear_errors() {
    let scratch = common::scratch("fl-damaged");
    let target = scratch.join("mnt");
    std::fs::create_dir_all(&target).unwrap();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "garbage.fl",
            b"this is not sqlite".to_vec(),
            "not an rfs flist (no SQLite header)",
        ),
        (
            "old.flist",
            vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0],
            "old v1 .flist format",
        ),
        (
            "truncated.fl",
            std::fs::read(fixtures().join("odd-tree/odd-tree.fl")).unwrap()[..8192].to_vec(),
            "damaged flist",
        ),
    ];
    // Crafted from a real rfs flist: a row listed twice (no primary key), a cycle of
    // parents (a/b/c made b's parent): refused at open, before anything is walked.
    let crafted = |name: &str, sql: &str| -> (String, Vec<u8>) {
        let path = scratch.join(format!("{name}.source"));
        std::fs::copy(fixtures().join("odd-tree/odd-tree.fl"), &path).unwrap();
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        (name.to_string(), std::fs::read(&path).unwrap())
    };
    let mut cases: Vec<(String, Vec<u8>, &str)> = cases
        .into_iter()
        .map(|(name, content, expected)| (name.to_string(), content, expected))
        .collect();
    let (name, content) = crafted(
        "twice.fl",
        "CREATE TABLE copy AS SELECT * FROM inode; DROP TABLE inode; \
         ALTER TABLE copy RENAME TO inode; INSERT INTO inode SELECT * FROM inode WHERE ino = 18;",
    );
    cases.push((name, content, "inode 18 appears more than once"));
    let (name, content) = crafted("cycle.fl", "UPDATE inode SET parent = 20 WHERE ino = 19;");
    cases.push((name, content, "is its own ancestor"));
    for (name, content, expected) in cases {
        let name = name.as_str();
        let path = scratch.join(name);
        std::fs::write(&path, content).unwrap();
        let out = agent(&[
            "flist",
            "mount",
            "-m",
            path.to_str().unwrap(),
            target.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = text(&out.stderr);
        assert!(
            err.contains(name) && err.contains(expected),
            "{name}: {err}"
        );
    }
    assert!(
        std::fs::read_dir(&target).unwrap().next().is_none(),
        "nothing was mounted"
    );
}

#[test]
fn a_killed_daemon_leaves_a_stale_mount_that_the_next_mount_replaces() {
    let flist = fixtures().join("odd-tree/odd-tree.fl");
    let rw = rewrite();
    let mounted = mount("fl-stale", &flist, &["--store-rewrite", &rw]);
    let out = Command::new("pkill")
        .args([
            "-KILL",
            "-f",
            &format!("flist mount --foreground .*{}", mounted.target.display()),
        ])
        .status()
        .unwrap();
    assert!(out.success(), "the daemon was found and killed");
    std::thread::sleep(Duration::from_millis(200));
    let statfs = Command::new("stat")
        .arg("-f")
        .arg(&mounted.target)
        .output()
        .unwrap();
    assert!(!statfs.status.success(), "the mount is stale");
    assert!(
        text(&statfs.stderr).contains("not connected"),
        "{}",
        text(&statfs.stderr)
    );
    let out = agent(&[
        "flist",
        "mount",
        "-m",
        flist.to_str().unwrap(),
        "--store-rewrite",
        &rw,
        mounted.target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(mounted.target.join("hello.txt")).unwrap(),
        b"hello flist\n"
    );
    // Something else mounted there is refused.
    let other = common::scratch("fl-other").join("mnt");
    std::fs::create_dir_all(&other).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&other)
        .status()
        .unwrap()
        .success());
    let out = agent(&[
        "flist",
        "mount",
        "-m",
        flist.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    let _ = Command::new("umount").arg(&other).status();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already has a tmpfs mount"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn subtype_and_allow_other_are_the_operators_choice() {
    let f = fixtures();
    let flist = f.join("odd-tree/odd-tree.fl");
    let out = agent(&[
        "flist",
        "mount",
        "-m",
        flist.to_str().unwrap(),
        "--fs-subtype",
        "Bad Name",
        "/tmp",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("--fs-subtype"), "{out:?}");
    let extra = [
        "--store-rewrite",
        &rewrite(),
        "--fs-subtype",
        "nodeflist",
        "--no-allow-other",
    ];
    let mounted = mount("fl-subtype", &flist, &extra);
    let target = mounted.target.canonicalize().unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.contains(&format!(" {} ", target.display())))
        .expect("mounted");
    assert!(line.contains(" - fuse.nodeflist "), "{line}");
    assert!(line.contains(" ro,"), "{line}");
    assert!(!line.contains("allow_other"), "{line}");
    // Mounting the same flist again is a success, under the same subtype.
    let mut again = vec!["flist", "mount", "-m", flist.to_str().unwrap()];
    again.extend_from_slice(&extra);
    again.push(target.to_str().unwrap());
    let out = agent(&again);
    assert!(text(&out.stdout).contains("already serves"), "{out:?}");
    // umount knows an flist mount of any subtype.
    let out = agent(&["flist", "umount", target.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(!std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(&format!(" {} ", target.display())));
}
