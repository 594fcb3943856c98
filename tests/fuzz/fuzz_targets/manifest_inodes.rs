//! Crafted manifests whose inode table has no key: the same inode twice, parents that
//! loop, parents that do not exist. Opening refuses them or gives a tree every walk of
//! which ends: listing every directory and prefetching `/` (no store: every fetch fails
//! at once) finish.
#![no_main]

use initagent::flist::fs::FlistFs;
use initagent::flist::meta::Manifest;
use initagent::flist::router::{RetryPolicy, Router};
use initagent::flist::source::BlockSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("initagent-fuzz-inodes-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("f.fl");
    let _ = std::fs::remove_file(&path);
    let Ok(conn) = rusqlite::Connection::open(&path) else { return };
    let _ = conn.execute_batch(
        "CREATE TABLE inode (ino INTEGER, parent INTEGER, name VARCHAR(255), size INTEGER,
           uid INTEGER, gid INTEGER, mode INTEGER, rdev INTEGER, ctime INTEGER, mtime INTEGER);
         CREATE TABLE extra (ino INTEGER PRIMARY KEY, data VARCHAR(4096));
         CREATE TABLE block (ino INTEGER, id VARCHAR(32), key VARCHAR(32));
         CREATE TABLE route (start integer, end integer, url VARCHAR(2048));
         INSERT INTO inode VALUES (1, 0, '/', 0, 0, 0, 16877, 0, 0, 0);",
    );
    // Three bytes a row: inode 1..8, parent 0..8, a directory or a 4 KiB file.
    for (n, row) in data.chunks(3).enumerate().take(32) {
        let ino = i64::from(row[0] % 8) + 1;
        let parent = i64::from(row.get(1).copied().unwrap_or(1) % 9);
        let directory = row.get(2).is_some_and(|b| b & 1 == 1);
        let (mode, size) = if directory { (0o040755, 0) } else { (0o100644, 4096) };
        let _ = conn.execute(
            "INSERT INTO inode VALUES (?1, ?2, ?3, ?4, 0, 0, ?5, 0, 0, 0)",
            rusqlite::params![ino, parent, format!("n{n}"), size, mode],
        );
        if !directory {
            let _ = conn.execute(
                "INSERT INTO block VALUES (?1, ?2, ?3)",
                rusqlite::params![ino, vec![n as u8; 32], vec![1u8; 32]],
            );
        }
    }
    drop(conn);
    let Ok(manifest) = Manifest::open(&path) else { return };
    let source = BlockSource::new(Router::from_stores(Vec::new(), RetryPolicy::default()), 1 << 20, None);
    let fs = FlistFs::new(manifest, source);
    for ino in 1..=9u64 {
        let _ = fs.readdir(ino, 0);
        let _ = fs.manifest.path_of(ino);
    }
    let _ = initagent::flist::prefetch::prefetch_paths(&fs, &["/".to_string()], std::time::Duration::from_secs(5));
});
