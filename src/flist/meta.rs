//! Reader of rfs `.fl` manifests: a SQLite database with the tables `inode`, `extra`,
//! `block`, `tag` and `route`. Opened read-only and immutable; the whole tree (inodes,
//! names, symlink targets) is loaded into memory at open, so lookups, attributes and
//! directory listings never touch SQLite again. Block lists are read on demand, in rowid
//! order (rfs relies on that order without asking for it). Unlike rfs, the real `gid`
//! column is used.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// File type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;

/// One entry of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// Inode number (the root is 1).
    pub ino: u64,
    /// Parent directory (0 for the root).
    pub parent: u64,
    /// One path component (`/` for the root).
    pub name: String,
    /// `st_size`.
    pub size: u64,
    /// Owner.
    pub uid: u32,
    /// Group (the real column; rfs reports the uid here).
    pub gid: u32,
    /// Full `st_mode`, type bits included.
    pub mode: u32,
    /// Device number for device nodes.
    pub rdev: u64,
    /// Change time, seconds.
    pub ctime: i64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Symlink target (raw bytes).
    pub target: Option<Vec<u8>>,
}

impl Inode {
    /// `mode & S_IFMT`.
    pub fn kind(&self) -> u32 {
        self.mode & S_IFMT
    }

    /// A directory?
    pub fn is_dir(&self) -> bool {
        self.kind() == S_IFDIR
    }

    /// A regular file?
    pub fn is_file(&self) -> bool {
        self.kind() == S_IFREG
    }
}

/// One block of a file: where it is stored (`id`) and how to decrypt it (`key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockRef {
    /// BLAKE2b-256 of the stored (encrypted, compressed) blob.
    pub id: [u8; 32],
    /// BLAKE2b-256 of the plaintext: the AES key.
    pub key: [u8; 32],
}

/// A store route: blocks whose id starts with a byte in `start..=end` live at `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// First byte of the range.
    pub start: u8,
    /// Last byte of the range (inclusive).
    pub end: u8,
    /// Store URL (may hold credentials: never log it unredacted).
    pub url: String,
}

/// What is wrong with a manifest; every variant names the file.
#[derive(Debug)]
pub enum MetaError {
    /// It could not be opened or read.
    Io(PathBuf, String),
    /// It is not an rfs flist.
    NotAnFlist(PathBuf, String),
    /// It is an flist, but damaged.
    Damaged(PathBuf, String),
}

impl std::fmt::Display for MetaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetaError::Io(path, why) => write!(f, "{}: cannot read: {why}", path.display()),
            MetaError::NotAnFlist(path, why) => write!(f, "{}: not an rfs flist ({why})", path.display()),
            MetaError::Damaged(path, why) => write!(
                f,
                "{}: damaged flist ({why}); fetch it again or rebuild it with `initagent flist pack`",
                path.display()
            ),
        }
    }
}

impl std::error::Error for MetaError {}

/// An opened manifest.
pub struct Manifest {
    path: PathBuf,
    conn: Mutex<Connection>,
    inodes: HashMap<u64, Inode>,
    children: HashMap<u64, Vec<u64>>,
    /// Each directory's children sorted by name (a stable sort: of children with the
    /// same name, the one listed first comes first), for lookups by name.
    by_name: HashMap<u64, Vec<u64>>,
    /// Every file's block keys, once asked for.
    keys: std::sync::OnceLock<Arc<BlockKeys>>,
    /// [`Manifest::content_digest`], once asked for.
    content: std::sync::OnceLock<[u8; 32]>,
    routes: Vec<Route>,
    tags: BTreeMap<String, String>,
}

fn text(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

fn digest(value: ValueRef<'_>) -> Option<[u8; 32]> {
    let bytes = match value {
        ValueRef::Blob(b) => b,
        ValueRef::Text(t) => t,
        _ => return None,
    };
    let mut out = [0u8; 32];
    if bytes.len() == 32 {
        out.copy_from_slice(bytes);
        return Some(out);
    }
    // A text column holding hex (hand-made or converted manifests).
    if bytes.len() == 64 {
        for (i, slot) in out.iter_mut().enumerate() {
            let pair = std::str::from_utf8(bytes.get(2 * i..2 * i + 2)?).ok()?;
            *slot = u8::from_str_radix(pair, 16).ok()?;
        }
        return Some(out);
    }
    None
}

/// An inode whose chain of parents comes back to itself, if any (each chain is followed
/// once: linear in the number of inodes).
fn parent_cycle(inodes: &HashMap<u64, Inode>) -> Option<u64> {
    // 0: not seen, 1: on the chain being followed, 2: known to end.
    let mut state: HashMap<u64, u8> = HashMap::with_capacity(inodes.len());
    for &start in inodes.keys() {
        let mut chain = Vec::new();
        let mut current = start;
        loop {
            match state.get(&current).copied().unwrap_or(0) {
                2 => break,
                1 => return Some(current),
                _ => {}
            }
            let Some(inode) = inodes.get(&current).filter(|_| current != 1) else {
                break; // the root, or a parent not in the manifest: the chain ends
            };
            state.insert(current, 1);
            chain.push(current);
            current = inode.parent;
        }
        for ino in chain {
            state.insert(ino, 2);
        }
    }
    None
}

/// Every file's block keys in order, by inode.
pub type BlockKeys = HashMap<u64, Vec<[u8; 32]>>;

/// What tells one version of a file from another: device, inode, size, mtime.
type FileId = (u64, u64, u64, i64, i64);

fn file_id(path: &Path) -> std::io::Result<FileId> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
    ))
}

impl Manifest {
    /// [`Manifest::open`], or the manifest of the same file (path, device, inode, size,
    /// modification time) that another user in this process has open: stage 1's maps
    /// check shares the one its flists step mounted instead of reading it again.
    pub fn open_shared(path: &Path) -> Result<Arc<Manifest>, MetaError> {
        type Opened = Vec<(PathBuf, FileId, Weak<Manifest>)>;
        static OPENED: Mutex<Opened> = Mutex::new(Vec::new());
        let id = file_id(path).map_err(|e| MetaError::Io(path.to_path_buf(), e.to_string()))?;
        let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
        opened.retain(|(_, _, manifest)| manifest.strong_count() > 0);
        let same = opened
            .iter()
            .find(|(p, i, _)| p == path && *i == id)
            .and_then(|(_, _, manifest)| manifest.upgrade());
        if let Some(manifest) = same {
            return Ok(manifest);
        }
        let manifest = Arc::new(Manifest::open(path)?);
        opened.push((path.to_path_buf(), id, Arc::downgrade(&manifest)));
        Ok(manifest)
    }

    /// Opens `path` read-only and loads the tree.
    pub fn open(path: &Path) -> Result<Manifest, MetaError> {
        let p = || path.to_path_buf();
        let mut header = [0u8; 16];
        let read = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header));
        match read {
            Ok(()) if &header == b"SQLite format 3\0" => {}
            Ok(()) if header.starts_with(&[0x1f, 0x8b]) => {
                return Err(MetaError::NotAnFlist(
                    p(),
                    "a gzip'd tar: the old v1 .flist format, which needs g8ufs".into(),
                ))
            }
            Ok(()) => return Err(MetaError::NotAnFlist(p(), "no SQLite header".into())),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(MetaError::NotAnFlist(
                    p(),
                    "shorter than a SQLite header".into(),
                ))
            }
            Err(e) => return Err(MetaError::Io(p(), e.to_string())),
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| MetaError::Io(p(), e.to_string()))?;
        let damaged = |e: rusqlite::Error| MetaError::Damaged(p(), e.to_string());
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
            .map_err(damaged)?;
        for table in ["inode", "extra", "block", "route"] {
            if !tables.iter().any(|t| t == table) {
                return Err(MetaError::NotAnFlist(p(), format!("no `{table}` table")));
            }
        }
        let mut extra: HashMap<u64, Vec<u8>> = HashMap::new();
        {
            let mut stmt = conn
                .prepare("SELECT ino, data FROM extra")
                .map_err(damaged)?;
            let mut rows = stmt.query([]).map_err(damaged)?;
            while let Some(row) = rows.next().map_err(damaged)? {
                let ino: i64 = row.get(0).map_err(damaged)?;
                let data = match row.get_ref(1).map_err(damaged)? {
                    ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
                    _ => continue,
                };
                extra.insert(ino as u64, data);
            }
        }
        let mut inodes = HashMap::new();
        let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
        {
            let mut stmt = conn
                .prepare(
                    "SELECT ino, parent, name, size, uid, gid, mode, rdev, ctime, mtime FROM inode",
                )
                .map_err(damaged)?;
            let mut rows = stmt.query([]).map_err(damaged)?;
            while let Some(row) = rows.next().map_err(damaged)? {
                let int = |i: usize| -> Result<i64, MetaError> {
                    match row.get_ref(i).map_err(damaged)? {
                        ValueRef::Integer(v) => Ok(v),
                        ValueRef::Null => Ok(0),
                        other => Err(MetaError::Damaged(
                            p(),
                            format!("column {i} holds {:?}", other.data_type()),
                        )),
                    }
                };
                let ino = int(0)? as u64;
                let inode = Inode {
                    ino,
                    parent: int(1)? as u64,
                    name: text(row.get_ref(2).map_err(damaged)?).unwrap_or_default(),
                    size: int(3)?.max(0) as u64,
                    uid: int(4)? as u32,
                    gid: int(5)? as u32,
                    mode: int(6)? as u32,
                    rdev: int(7)? as u64,
                    ctime: int(8)?,
                    mtime: int(9)?,
                    target: extra.remove(&ino),
                };
                if ino != 1 {
                    children.entry(inode.parent).or_default().push(ino);
                }
                if inodes.insert(ino, inode).is_some() {
                    // Listed twice, a directory would be walked twice (or forever).
                    return Err(MetaError::Damaged(
                        p(),
                        format!("inode {ino} appears more than once"),
                    ));
                }
            }
        }
        if let Some(ino) = parent_cycle(&inodes) {
            return Err(MetaError::Damaged(
                p(),
                format!("inode {ino} is its own ancestor (a cycle of parents)"),
            ));
        }
        for list in children.values_mut() {
            list.sort_unstable();
        }
        match inodes.get(&1) {
            Some(root) if root.is_dir() => {}
            Some(_) => {
                return Err(MetaError::Damaged(
                    p(),
                    "inode 1 (the root) is not a directory".into(),
                ))
            }
            None => return Err(MetaError::Damaged(p(), "no root inode (ino 1)".into())),
        }
        let mut routes = Vec::new();
        {
            let mut stmt = conn
                .prepare("SELECT start, \"end\", url FROM route ORDER BY rowid")
                .map_err(damaged)?;
            let mut rows = stmt.query([]).map_err(damaged)?;
            while let Some(row) = rows.next().map_err(damaged)? {
                let start: i64 = row.get(0).map_err(damaged)?;
                let end: i64 = row.get(1).map_err(damaged)?;
                let url = text(row.get_ref(2).map_err(damaged)?).unwrap_or_default();
                let (Ok(start), Ok(end)) = (u8::try_from(start), u8::try_from(end)) else {
                    return Err(MetaError::Damaged(
                        p(),
                        format!("route range {start}-{end} is outside 0-255"),
                    ));
                };
                routes.push(Route { start, end, url });
            }
        }
        let mut tags = BTreeMap::new();
        if tables.iter().any(|t| t == "tag") {
            let mut stmt = conn
                .prepare("SELECT key, value FROM tag")
                .map_err(damaged)?;
            let mut rows = stmt.query([]).map_err(damaged)?;
            while let Some(row) = rows.next().map_err(damaged)? {
                if let (Some(k), Some(v)) = (
                    text(row.get_ref(0).map_err(damaged)?),
                    text(row.get_ref(1).map_err(damaged)?),
                ) {
                    tags.insert(k, v);
                }
            }
        }
        let by_name = children
            .iter()
            .map(|(parent, kids)| {
                let mut named: Vec<(&str, u64)> = kids
                    .iter()
                    .filter_map(|kid| Some((inodes.get(kid)?.name.as_str(), *kid)))
                    .collect();
                named.sort_by(|a, b| a.0.cmp(b.0));
                (*parent, named.into_iter().map(|(_, kid)| kid).collect())
            })
            .collect();
        Ok(Manifest {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            inodes,
            children,
            by_name,
            keys: std::sync::OnceLock::new(),
            content: std::sync::OnceLock::new(),
            routes,
            tags,
        })
    }

    /// The file it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An inode.
    pub fn inode(&self, ino: u64) -> Option<&Inode> {
        self.inodes.get(&ino)
    }

    /// Every inode, in no particular order.
    pub fn inodes(&self) -> impl Iterator<Item = &Inode> {
        self.inodes.values()
    }

    /// Number of inodes.
    pub fn len(&self) -> usize {
        self.inodes.len()
    }

    /// Whether the tree is empty (never: a valid manifest has a root).
    pub fn is_empty(&self) -> bool {
        self.inodes.is_empty()
    }

    /// Children of a directory, by inode number.
    pub fn children(&self, ino: u64) -> &[u64] {
        self.children.get(&ino).map_or(&[], Vec::as_slice)
    }

    /// The first child of `parent` called `name` (names are not unique in the schema;
    /// rfs also takes the first).
    pub fn lookup(&self, parent: u64, name: &str) -> Option<&Inode> {
        let sorted = self.by_name.get(&parent)?;
        let name_of = |ino: &u64| self.inodes.get(ino).map_or("", |i| i.name.as_str());
        let first = sorted.partition_point(|ino| name_of(ino) < name);
        let inode = self.inodes.get(sorted.get(first)?)?;
        (inode.name == name).then_some(inode)
    }

    /// The inode at a `/`-separated path from the root.
    pub fn resolve(&self, path: &str) -> Option<&Inode> {
        let mut inode = self.inode(1)?;
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            inode = self.lookup(inode.ino, part)?;
        }
        Some(inode)
    }

    /// The path of an inode from the root.
    pub fn path_of(&self, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut current = ino;
        while current != 1 {
            let Some(inode) = self.inodes.get(&current) else {
                break;
            };
            parts.push(inode.name.as_str());
            current = inode.parent;
            if parts.len() > 4096 {
                break; // a parent cycle in a damaged manifest
            }
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// The block list of a file, in order.
    pub fn blocks(&self, ino: u64) -> Result<Vec<BlockRef>, MetaError> {
        let p = || self.path.clone();
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let damaged = |e: rusqlite::Error| MetaError::Damaged(p(), e.to_string());
        let mut stmt = conn
            .prepare_cached("SELECT id, key FROM block WHERE ino = ? ORDER BY rowid")
            .map_err(damaged)?;
        let mut rows = stmt.query([ino as i64]).map_err(damaged)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(damaged)? {
            let id = digest(row.get_ref(0).map_err(damaged)?);
            let key = digest(row.get_ref(1).map_err(damaged)?);
            match (id, key) {
                (Some(id), Some(key)) => out.push(BlockRef { id, key }),
                _ => {
                    return Err(MetaError::Damaged(
                        p(),
                        format!("block of inode {ino} has an id or key that is not 32 bytes"),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// Every file's block keys in order, by inode, in one query.
    pub fn block_keys(&self) -> Result<Arc<BlockKeys>, MetaError> {
        if let Some(keys) = self.keys.get() {
            return Ok(Arc::clone(keys));
        }
        let p = || self.path.clone();
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let damaged = |e: rusqlite::Error| MetaError::Damaged(p(), e.to_string());
        let mut stmt = conn
            .prepare("SELECT ino, key FROM block ORDER BY rowid")
            .map_err(damaged)?;
        let mut rows = stmt.query([]).map_err(damaged)?;
        let mut out: HashMap<u64, Vec<[u8; 32]>> = HashMap::new();
        while let Some(row) = rows.next().map_err(damaged)? {
            let ino: i64 = row.get(0).map_err(damaged)?;
            let key = digest(row.get_ref(1).map_err(damaged)?).ok_or_else(|| {
                MetaError::Damaged(
                    p(),
                    format!("block of inode {ino} has a key that is not 32 bytes"),
                )
            })?;
            out.entry(ino as u64).or_default().push(key);
        }
        Ok(Arc::clone(self.keys.get_or_init(|| Arc::new(out))))
    }

    /// BLAKE2b-256 of the tree the manifest holds: every inode in inode order (number,
    /// parent, name, size, mode, mtime, link target) and each file's block keys — the
    /// content, not the routes or the tags. Any change to the tree changes it.
    pub fn content_digest(&self) -> Result<[u8; 32], MetaError> {
        if let Some(digest) = self.content.get() {
            return Ok(*digest);
        }
        let keys = self.block_keys()?;
        let mut inodes: Vec<&Inode> = self.inodes.values().collect();
        inodes.sort_unstable_by_key(|inode| inode.ino);
        // Laid out in one buffer, hashed once (the tree of a kernel's modules: ~0.5 MB).
        let mut bytes = Vec::with_capacity(inodes.len() * 96);
        for inode in inodes {
            let target = inode.target.as_deref().unwrap_or_default();
            let file_keys = keys.get(&inode.ino).map_or(&[][..], Vec::as_slice);
            for number in [inode.ino, inode.parent, inode.name.len() as u64, inode.size] {
                bytes.extend_from_slice(&number.to_le_bytes());
            }
            bytes.extend_from_slice(inode.name.as_bytes());
            bytes.extend_from_slice(&inode.mode.to_le_bytes());
            bytes.extend_from_slice(&inode.mtime.to_le_bytes());
            bytes.extend_from_slice(&(target.len() as u64).to_le_bytes());
            bytes.extend_from_slice(target);
            bytes.extend_from_slice(&(file_keys.len() as u64).to_le_bytes());
            for key in file_keys {
                bytes.extend_from_slice(key);
            }
        }
        let digest = crate::depmod::stamp::blake2b256(&bytes);
        Ok(*self.content.get_or_init(|| digest))
    }

    /// Every block row of the manifest (for `verify` and prefetch accounting).
    pub fn all_blocks(&self) -> Result<Vec<(u64, BlockRef)>, MetaError> {
        let mut files: Vec<u64> = self
            .inodes
            .values()
            .filter(|i| i.is_file())
            .map(|i| i.ino)
            .collect();
        files.sort_unstable();
        let mut out = Vec::new();
        for ino in files {
            for block in self.blocks(ino)? {
                out.push((ino, block));
            }
        }
        Ok(out)
    }

    /// The store routes, in table order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Tags (`version`, `description`, … when set).
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.tags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_by_name_find_the_first_child_listed_with_that_name() {
        let dir =
            std::env::temp_dir().join(format!("initagent-meta-lookup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let tree = dir.join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        for name in ["zeta", "alpha", "mid", "sub/inner"] {
            std::fs::write(tree.join(name), name).unwrap();
        }
        let flist = dir.join("t.fl");
        let store =
            super::super::pack::parse_store_spec(&format!("dir://{}", dir.join("store").display()))
                .unwrap();
        super::super::pack::pack(&tree, &flist, &[store], false, &Default::default()).unwrap();
        // A second row named "zeta" under the root, listed after the first.
        let conn = Connection::open(&flist).unwrap();
        conn.execute_batch(
            "INSERT INTO inode (ino, parent, name, size, uid, gid, mode, rdev, ctime, mtime) \
             SELECT 1000, parent, name, 99, uid, gid, mode, rdev, ctime, mtime FROM inode \
             WHERE name = 'zeta'",
        )
        .unwrap();
        drop(conn);
        let manifest = Manifest::open(&flist).unwrap();
        for name in ["alpha", "mid", "sub"] {
            assert_eq!(
                manifest.lookup(1, name).map(|i| i.name.as_str()),
                Some(name)
            );
        }
        let zeta = manifest.lookup(1, "zeta").unwrap();
        assert_ne!(
            zeta.ino, 1000,
            "the first row named zeta, not the later one"
        );
        assert!(manifest.lookup(1, "absent").is_none() && manifest.lookup(1, "").is_none());
        assert_eq!(manifest.resolve("/sub/inner").unwrap().size, 9); // "sub/inner"
        assert!(manifest.resolve("/sub/zeta").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
