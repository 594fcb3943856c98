//! Arbitrary inode rows (names, parents, modes) and arbitrary bytes as an `.fl`: opening,
//! listing, looking up and resolving paths never panic, and no served name could escape
//! the mount (no `/`, `.`, `..`, NUL, or empty names).
#![no_main]

use initagent::flist::fs::{safe_name, FlistFs};
use initagent::flist::meta::Manifest;
use initagent::flist::router::{RetryPolicy, Router};
use initagent::flist::source::BlockSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("initagent-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("f.fl");
    // Half the time: the bytes are the file. Otherwise: rows built from the bytes.
    if data.first().is_some_and(|b| b & 1 == 0) {
        let _ = std::fs::write(&path, data);
    } else {
        let _ = std::fs::remove_file(&path);
        let Ok(conn) = rusqlite::Connection::open(&path) else { return };
        let _ = conn.execute_batch(
            "CREATE TABLE inode (ino INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER, name VARCHAR(255), size INTEGER,
               uid INTEGER, gid INTEGER, mode INTEGER, rdev INTEGER, ctime INTEGER, mtime INTEGER);
             CREATE TABLE extra (ino INTEGER PRIMARY KEY, data VARCHAR(4096));
             CREATE TABLE block (ino INTEGER, id VARCHAR(32), key VARCHAR(32));
             CREATE TABLE route (start integer, end integer, url VARCHAR(2048));
             INSERT INTO inode VALUES (1, 0, '/', 0, 0, 0, 16877, 0, 0, 0);",
        );
        for chunk in data.get(1..).unwrap_or_default().chunks(8) {
            let parent = i64::from(chunk[0] % 6);
            let mode = if chunk.get(1).is_some_and(|b| b & 1 == 1) { 0o040755 } else { 0o100644 };
            let name = String::from_utf8_lossy(chunk.get(2..).unwrap_or_default()).into_owned();
            let _ = conn.execute(
                "INSERT INTO inode (parent, name, size, uid, gid, mode, rdev, ctime, mtime) VALUES (?1, ?2, 0, 0, 0, ?3, 0, 0, 0)",
                rusqlite::params![parent, name, mode],
            );
        }
    }
    let Ok(manifest) = Manifest::open(&path) else { return };
    let source = BlockSource::new(Router::from_stores(Vec::new(), RetryPolicy::default()), 1 << 20, None);
    let fs = FlistFs::new(manifest, source);
    for ino in 1..=64u64 {
        if let Ok(entries) = fs.readdir(ino, 0) {
            for (child, _, _, name) in entries {
                assert!(name == "." || name == ".." || safe_name(&name), "unsafe name served: {name:?}");
                let _ = fs.attr(child);
                let _ = fs.lookup(ino, &name);
            }
        }
        let _ = fs.manifest.path_of(ino);
        let _ = fs.readlink(ino);
        let _ = fs.read(ino, 0, 10);
    }
    for path in ["/", "/a/../..", "a/b/c", "../../etc"] {
        let _ = fs.manifest.resolve(path);
    }
});
