//! The filesystem as FUSE sees it, without FUSE: attributes, lookup, directory listing,
//! symlinks and reads over a [`Manifest`] and a [`BlockSource`]. Unlike rfs: the real
//! gid, nlink ≥ 1, every file type listed, short reads at EOF. Names that could escape
//! the mount (empty, `.`, `..`, containing `/` or NUL) are never served.

use super::meta::{self, BlockRef, Inode, Manifest};
use super::source::BlockSource;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// File kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Directory.
    Dir,
    /// Regular file.
    File,
    /// Symbolic link.
    Symlink,
    /// FIFO.
    Fifo,
    /// Socket.
    Socket,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
}

/// Attributes of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Kind.
    pub kind: Kind,
    /// Permission bits (07777).
    pub perm: u16,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number.
    pub rdev: u32,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Change time, seconds.
    pub ctime: i64,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsError {
    /// No such entry.
    NotFound,
    /// Not a directory.
    NotDir,
    /// A directory where a file was expected.
    IsDir,
    /// Not a symlink.
    NotLink,
    /// Content could not be fetched or verified.
    Io(String),
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsError::NotFound => write!(f, "no such entry"),
            FsError::NotDir => write!(f, "not a directory"),
            FsError::IsDir => write!(f, "is a directory"),
            FsError::NotLink => write!(f, "not a symbolic link"),
            FsError::Io(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for FsError {}

/// A name that is safe to serve as one path component.
pub fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// The mounted flist.
pub struct FlistFs {
    /// The manifest (shared with the other users of the same file in this process).
    pub manifest: Arc<Manifest>,
    /// File content.
    pub source: Arc<BlockSource>,
    blocks: Mutex<HashMap<u64, Arc<Vec<BlockRef>>>>,
}

fn kind_of(inode: &Inode) -> Kind {
    match inode.kind() {
        meta::S_IFDIR => Kind::Dir,
        meta::S_IFLNK => Kind::Symlink,
        0o010000 => Kind::Fifo,
        0o140000 => Kind::Socket,
        0o020000 => Kind::CharDevice,
        0o060000 => Kind::BlockDevice,
        _ => Kind::File,
    }
}

impl FlistFs {
    /// A filesystem over a manifest and a block source.
    pub fn new(manifest: impl Into<Arc<Manifest>>, source: Arc<BlockSource>) -> FlistFs {
        FlistFs {
            manifest: manifest.into(),
            source,
            blocks: Mutex::new(HashMap::new()),
        }
    }

    /// Attributes of `ino`.
    pub fn attr(&self, ino: u64) -> Result<Attr, FsError> {
        let inode = self.manifest.inode(ino).ok_or(FsError::NotFound)?;
        let kind = kind_of(inode);
        let nlink = match kind {
            Kind::Dir => {
                let subdirs = self
                    .manifest
                    .children(ino)
                    .iter()
                    .filter(|c| self.manifest.inode(**c).is_some_and(Inode::is_dir))
                    .count();
                2 + subdirs as u32
            }
            _ => 1,
        };
        Ok(Attr {
            ino,
            size: inode.size,
            kind,
            perm: (inode.mode & 0o7777) as u16,
            nlink,
            uid: inode.uid,
            gid: inode.gid,
            rdev: inode.rdev as u32,
            mtime: inode.mtime,
            ctime: inode.ctime,
        })
    }

    /// The child `name` of directory `parent`.
    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr, FsError> {
        let dir = self.manifest.inode(parent).ok_or(FsError::NotFound)?;
        if !dir.is_dir() {
            return Err(FsError::NotDir);
        }
        if !safe_name(name) {
            return Err(FsError::NotFound);
        }
        let child = self
            .manifest
            .lookup(parent, name)
            .ok_or(FsError::NotFound)?;
        self.attr(child.ino)
    }

    /// Entries of a directory from `offset` on: (ino, offset of the next entry, kind,
    /// name). `.` and `..` first; unsafe names skipped.
    pub fn readdir(&self, ino: u64, offset: u64) -> Result<Vec<(u64, u64, Kind, String)>, FsError> {
        let dir = self.manifest.inode(ino).ok_or(FsError::NotFound)?;
        if !dir.is_dir() {
            return Err(FsError::NotDir);
        }
        let parent = if ino == 1 { 1 } else { dir.parent };
        let mut entries = vec![
            (ino, Kind::Dir, ".".to_string()),
            (parent, Kind::Dir, "..".to_string()),
        ];
        for child in self.manifest.children(ino) {
            if let Some(inode) = self.manifest.inode(*child) {
                if safe_name(&inode.name) {
                    entries.push((inode.ino, kind_of(inode), inode.name.clone()));
                }
            }
        }
        Ok(entries
            .into_iter()
            .enumerate()
            .skip(offset as usize)
            .map(|(i, (ino, kind, name))| (ino, i as u64 + 1, kind, name))
            .collect())
    }

    /// A symlink's target.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        let inode = self.manifest.inode(ino).ok_or(FsError::NotFound)?;
        match (&inode.target, kind_of(inode)) {
            (Some(target), Kind::Symlink) => Ok(target.clone()),
            _ => Err(FsError::NotLink),
        }
    }

    fn block_list(&self, ino: u64) -> Result<Arc<Vec<BlockRef>>, FsError> {
        if let Some(list) = self
            .blocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ino)
        {
            return Ok(list.clone());
        }
        let list = Arc::new(
            self.manifest
                .blocks(ino)
                .map_err(|e| FsError::Io(e.to_string()))?,
        );
        let mut cache = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(ino, list.clone());
        Ok(list)
    }

    /// Reads file content; short at EOF.
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        self.read_with(ino, offset, size, <[u8]>::to_vec)
    }

    /// Reads file content and hands it to `consume` (lent from the block cache when the
    /// range is inside one block); short at EOF.
    pub fn read_with<R>(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
        consume: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, FsError> {
        let inode = self.manifest.inode(ino).ok_or(FsError::NotFound)?;
        if inode.is_dir() {
            return Err(FsError::IsDir);
        }
        let blocks = self.block_list(ino)?;
        self.source
            .read_with(&blocks, inode.size, offset, size, consume)
            .map_err(FsError::Io)
    }

    /// The block list of a file (prefetch).
    pub fn blocks_of(&self, ino: u64) -> Result<Arc<Vec<BlockRef>>, FsError> {
        self.block_list(ino)
    }
}
