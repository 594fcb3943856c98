//! `flist pack`: a directory tree into an rfs-format `.fl` and its blocks into stores,
//! byte-compatible with what `rfs pack` makes (same schema, same block ids and keys: the
//! codec is deterministic). Unlike rfs: entries in name order (the same tree always
//! gives the same manifest), one transaction (seconds, not minutes, for big trees), the
//! manifest written to a temporary file and renamed only when every block is stored.

use super::codec::{self, BLOCK_SIZE};
use super::store::{self, redact, BlockStore, StoreOptions};
use rusqlite::{params, Connection};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inode (
    ino INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER, name VARCHAR(255), size INTEGER,
    uid INTEGER, gid INTEGER, mode INTEGER, rdev INTEGER, ctime INTEGER, mtime INTEGER);
CREATE INDEX IF NOT EXISTS parents ON inode (parent);
CREATE INDEX IF NOT EXISTS names ON inode (name);
CREATE TABLE IF NOT EXISTS extra (ino INTEGER PRIMARY KEY, data VARCHAR(4096));
CREATE TABLE IF NOT EXISTS block (ino INTEGER, id VARCHAR(32), key VARCHAR(32));
CREATE INDEX IF NOT EXISTS block_ino ON block (ino);
CREATE TABLE IF NOT EXISTS tag (key VARCHAR(10) PRIMARY KEY, value VARCHAR(255));
CREATE TABLE IF NOT EXISTS route (start integer, end integer, url VARCHAR(2048));
";

/// A store to pack into: blocks whose id starts with a byte in `start..=end`.
#[derive(Debug, Clone)]
pub struct PackStore {
    /// First byte of the range.
    pub start: u8,
    /// Last byte (inclusive).
    pub end: u8,
    /// Store URL.
    pub url: String,
}

/// Parses rfs's store spec `[xx-yy=]URL` (lower-case hex range).
pub fn parse_store_spec(spec: &str) -> Result<PackStore, String> {
    if let Some((range, url)) = spec.split_once('=') {
        if let Some((a, b)) = range.split_once('-') {
            let hex = |s: &str| {
                (s.len() == 2
                    && s.bytes()
                        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)))
                .then(|| u8::from_str_radix(s, 16).ok())
                .flatten()
            };
            if let (Some(start), Some(end)) = (hex(a), hex(b)) {
                if start > end {
                    return Err(format!("{spec}: range start is after its end"));
                }
                return Ok(PackStore {
                    start,
                    end,
                    url: url.to_string(),
                });
            }
        }
    }
    Ok(PackStore {
        start: 0,
        end: 255,
        url: spec.to_string(),
    })
}

/// What a pack did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PackReport {
    /// Entries written.
    pub entries: u64,
    /// Regular files.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Block rows.
    pub blocks: u64,
    /// Bytes stored (encoded blobs, counting each store write).
    pub stored_bytes: u64,
    /// For a module directory (it has `modules.dep`): whether its maps were proven and
    /// the manifest tagged (`depmod::proof`), or why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maps: Option<String>,
}

struct Packer {
    stores: Vec<(PackStore, Arc<dyn BlockStore>)>,
    report: PackReport,
}

impl Packer {
    fn put(&mut self, id: &[u8; 32], blob: &[u8]) -> Result<(), String> {
        let mut stored = false;
        for (spec, store) in &self.stores {
            if spec.start <= id[0] && id[0] <= spec.end {
                store
                    .put(id, blob)
                    .map_err(|e| format!("{}: {e}", redact(&spec.url)))?;
                self.report.stored_bytes += blob.len() as u64;
                stored = true;
            }
        }
        if stored {
            Ok(())
        } else {
            Err(format!(
                "block {}: no store covers its first byte",
                codec::hex(id)
            ))
        }
    }
}

fn insert(
    tx: &Connection,
    parent: u64,
    name: &str,
    meta: &std::fs::Metadata,
    size: u64,
) -> Result<u64, rusqlite::Error> {
    tx.execute(
        "INSERT INTO inode (parent, name, size, uid, gid, mode, rdev, ctime, mtime) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![parent as i64, name, size as i64, meta.uid(), meta.gid(), meta.mode(), meta.rdev() as i64, meta.ctime(), meta.mtime()],
    )?;
    Ok(tx.last_insert_rowid() as u64)
}

/// Packs `source` into `output`.
pub fn pack(
    source: &Path,
    output: &Path,
    stores: &[PackStore],
    keep_passwords: bool,
    store_options: &StoreOptions,
) -> Result<PackReport, String> {
    if stores.is_empty() {
        return Err("name at least one store with -s/--store [xx-yy=]URL".into());
    }
    let root_meta = std::fs::metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
    if !root_meta.is_dir() {
        return Err(format!("{}: not a directory", source.display()));
    }
    let mut packer = Packer {
        stores: Vec::new(),
        report: PackReport::default(),
    };
    for spec in stores {
        let store = store::open(&spec.url, store_options).map_err(|e| e.to_string())?;
        packer.stores.push((spec.clone(), store));
    }
    let temporary = PathBuf::from(format!(
        "{}.{}.partial",
        output.display(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&temporary);
    let result = (|| -> Result<(), String> {
        let sql = |e: rusqlite::Error| format!("{}: {e}", temporary.display());
        let mut conn = Connection::open(&temporary).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "DELETE")
            .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        let tx = conn.transaction().map_err(sql)?;
        for spec in stores {
            let url = if keep_passwords {
                spec.url.clone()
            } else {
                crate::redact::strip_password(&spec.url)
            };
            tx.execute(
                "INSERT INTO route (start, end, url) VALUES (?1, ?2, ?3)",
                params![spec.start, spec.end, url],
            )
            .map_err(sql)?;
        }
        let root = insert(&tx, 0, "/", &root_meta, root_meta.len()).map_err(sql)?;
        packer.report.entries += 1;
        // Depth first, children in name order: the same tree gives the same manifest.
        let mut pending = vec![(source.to_path_buf(), root)];
        while let Some((dir, dir_ino)) = pending.pop() {
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            names.sort();
            let mut subdirs = Vec::new();
            for name in names {
                let path = dir.join(&name);
                let meta = std::fs::symlink_metadata(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let shown = name.to_string_lossy().into_owned();
                let kind = meta.file_type();
                if kind.is_dir() {
                    let ino = insert(&tx, dir_ino, &shown, &meta, meta.len()).map_err(sql)?;
                    subdirs.push((path, ino));
                } else if kind.is_symlink() {
                    let target = std::fs::read_link(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    let bytes = target.as_os_str().as_encoded_bytes().to_vec();
                    let ino =
                        insert(&tx, dir_ino, &shown, &meta, bytes.len() as u64).map_err(sql)?;
                    tx.execute(
                        "INSERT INTO extra (ino, data) VALUES (?1, ?2)",
                        params![ino as i64, bytes],
                    )
                    .map_err(sql)?;
                } else if kind.is_file() {
                    let ino = insert(&tx, dir_ino, &shown, &meta, meta.len()).map_err(sql)?;
                    let mut file = std::fs::File::open(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    let mut buffer = vec![0u8; BLOCK_SIZE];
                    loop {
                        let mut filled = 0;
                        while filled < BLOCK_SIZE {
                            let n = file
                                .read(&mut buffer[filled..])
                                .map_err(|e| format!("{}: {e}", path.display()))?;
                            if n == 0 {
                                break;
                            }
                            filled += n;
                        }
                        if filled == 0 {
                            break;
                        }
                        let (id, key, blob) = codec::encode(&buffer[..filled]);
                        packer.put(&id, &blob)?;
                        tx.execute(
                            "INSERT INTO block (ino, id, key) VALUES (?1, ?2, ?3)",
                            params![ino as i64, &id[..], &key[..]],
                        )
                        .map_err(sql)?;
                        packer.report.blocks += 1;
                        packer.report.bytes += filled as u64;
                        if filled < BLOCK_SIZE {
                            break;
                        }
                    }
                    packer.report.files += 1;
                } else {
                    insert(&tx, dir_ino, &shown, &meta, 0).map_err(sql)?;
                }
                packer.report.entries += 1;
            }
            // LIFO, like rfs: the last subdirectory is walked first.
            pending.extend(subdirs.into_iter().rev());
        }
        tx.commit().map_err(sql)?;
        packer.report.maps = prove_maps(source, &temporary, &conn)?;
        Ok(())
    })();
    match result {
        Ok(()) => {
            std::fs::rename(&temporary, output)
                .map_err(|e| format!("{}: {e}", output.display()))?;
            Ok(packer.report)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            Err(e)
        }
    }
}

/// For a module directory, the deep check's proof of its maps as a manifest tag
/// ([`crate::depmod::proof`]); what came of it, or `None` for any other tree.
fn prove_maps(source: &Path, manifest: &Path, conn: &Connection) -> Result<Option<String>, String> {
    if !source.join("modules.dep").is_file() {
        return Ok(None);
    }
    let packed = Arc::new(super::meta::Manifest::open(manifest).map_err(|e| e.to_string())?);
    let release = match crate::depmod::proof::prove(source, Arc::clone(&packed)) {
        Ok(release) => release,
        Err(why) => {
            return Ok(Some(format!(
                "maps not proven ({why}): nodes check them at boot"
            )))
        }
    };
    let digest = packed.content_digest().map_err(|e| e.to_string())?;
    conn.execute(
        "INSERT OR REPLACE INTO tag (key, value) VALUES (?1, ?2)",
        params![
            crate::depmod::proof::TAG,
            crate::depmod::proof::tag_value(&release, &digest)
        ],
    )
    .map_err(|e| format!("{}: {e}", manifest.display()))?;
    Ok(Some(format!(
        "maps proven for {release} (tag {})",
        crate::depmod::proof::TAG
    )))
}

/// Replaces the routes of an existing flist (an operator's override: routes baked into
/// an `.fl` are a known pain). Passwords are kept as given: a read credential is the
/// point. The old rows are vacuumed away so no old URL lingers in free space.
pub fn set_routes(flist: &Path, stores: &[PackStore]) -> Result<(), String> {
    if stores.is_empty() {
        return Err("name at least one store: [xx-yy=]URL".into());
    }
    super::meta::Manifest::open(flist).map_err(|e| e.to_string())?;
    let sql = |e: rusqlite::Error| format!("{}: {e}", flist.display());
    let mut conn = Connection::open(flist).map_err(sql)?;
    let tx = conn.transaction().map_err(sql)?;
    tx.execute("DELETE FROM route", []).map_err(sql)?;
    for spec in stores {
        tx.execute(
            "INSERT INTO route (start, end, url) VALUES (?1, ?2, ?3)",
            params![spec.start, spec.end, spec.url],
        )
        .map_err(sql)?;
    }
    tx.commit().map_err(sql)?;
    conn.execute_batch("VACUUM").map_err(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_specs_and_password_stripping() {
        let s = parse_store_spec("00-7f=dir:///a").unwrap();
        assert_eq!((s.start, s.end, s.url.as_str()), (0, 127, "dir:///a"));
        let s = parse_store_spec("dir:///b").unwrap();
        assert_eq!((s.start, s.end), (0, 255));
        assert!(parse_store_spec("80-10=dir:///c").is_err());
        // Upper-case ranges are not ranges (rfs's regex), so the whole text is a URL.
        assert_eq!(
            parse_store_spec("00-FF=dir:///d").unwrap().url,
            "00-FF=dir:///d"
        );
    }
}
