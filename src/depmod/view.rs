//! Accounted access to a module directory: every file opened and byte read under it is
//! counted (module contents separately), so `depmod check` can show — and tests can
//! assert — that validating a tree reads no `.ko` content.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Endings of module files (kmod's `path_ends_with_kmod_ext`).
pub const MODULE_ENDINGS: &[&str] = &[".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

/// Whether a file name is a kernel module.
pub fn is_module_file(name: &str) -> bool {
    MODULE_ENDINGS.iter().any(|e| name.ends_with(e))
}

/// Counters of what was read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Accounting {
    /// Files opened for reading.
    pub files_opened: u64,
    /// Bytes read from them.
    pub bytes_read: u64,
    /// Module files among them.
    pub module_files_opened: u64,
    /// Bytes of module content read.
    pub module_bytes_read: u64,
    /// Directory entries and attributes looked at (no content).
    pub entries_stat: u64,
}

/// A module file found by walking the tree.
#[derive(Debug, Clone)]
pub struct FoundModule {
    /// Path relative to the module directory.
    pub relative: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime: SystemTime,
    /// Its inode in the flist it was listed from (none from a walk of the filesystem).
    pub flist_ino: Option<u64>,
}

/// The module directory, with counters.
pub struct TreeView {
    /// `<root>/lib/modules/<release>`.
    pub dir: PathBuf,
    files_opened: AtomicU64,
    bytes_read: AtomicU64,
    module_files_opened: AtomicU64,
    module_bytes_read: AtomicU64,
    entries_stat: AtomicU64,
}

impl TreeView {
    /// A view of `dir`.
    pub fn new(dir: PathBuf) -> TreeView {
        TreeView {
            dir,
            files_opened: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            module_files_opened: AtomicU64::new(0),
            module_bytes_read: AtomicU64::new(0),
            entries_stat: AtomicU64::new(0),
        }
    }

    /// What has been read so far.
    pub fn accounting(&self) -> Accounting {
        Accounting {
            files_opened: self.files_opened.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            module_files_opened: self.module_files_opened.load(Ordering::Relaxed),
            module_bytes_read: self.module_bytes_read.load(Ordering::Relaxed),
            entries_stat: self.entries_stat.load(Ordering::Relaxed),
        }
    }

    /// Absolute path of `relative`.
    pub fn path(&self, relative: &str) -> PathBuf {
        if relative.starts_with('/') {
            PathBuf::from(relative)
        } else {
            self.dir.join(relative)
        }
    }

    /// Reads a whole file under the tree.
    pub fn read(&self, relative: &str) -> io::Result<Vec<u8>> {
        let path = self.path(relative);
        let data = std::fs::read(&path)?;
        self.count_read(&path, data.len() as u64);
        Ok(data)
    }

    fn count_read(&self, path: &Path, bytes: u64) {
        self.files_opened.fetch_add(1, Ordering::Relaxed);
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_module_file)
        {
            self.module_files_opened.fetch_add(1, Ordering::Relaxed);
            self.module_bytes_read.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Attributes of a file under the tree (symlinks followed).
    pub fn metadata(&self, relative: &str) -> io::Result<std::fs::Metadata> {
        self.entries_stat.fetch_add(1, Ordering::Relaxed);
        std::fs::metadata(self.path(relative))
    }

    /// Every module file under the tree, like depmod's walk: `build` and `source` are
    /// skipped at any depth and symlinks are followed. Like depmod it works relative to
    /// open directories (openat, getdents, fstatat): no path is resolved twice. In
    /// directory order (callers that need an order sort).
    pub fn modules(&self) -> io::Result<Vec<FoundModule>> {
        use rustix::fs::{Mode, OFlags};
        let root = rustix::fs::open(
            &self.dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.dir.display())))?;
        let mut pending = vec![(root, String::new())];
        let mut found = Vec::new();
        // One getdents buffer for the whole walk.
        let mut buffer = vec![std::mem::MaybeUninit::<u8>::uninit(); 32 * 1024];
        let mut visited = 0usize;
        while let Some((fd, relative)) = pending.pop() {
            visited += 1;
            if visited > 100_000 {
                return Err(io::Error::other(
                    "more than 100000 directories (a symlink loop?)",
                ));
            }
            self.read_directory(&fd, &relative, &mut buffer, &mut found, &mut pending);
        }
        Ok(found)
    }

    /// One directory: its modules into `found`, its subdirectories (opened) into `pending`.
    fn read_directory(
        &self,
        fd: &rustix::fd::OwnedFd,
        relative_dir: &str,
        buffer: &mut [std::mem::MaybeUninit<u8>],
        found: &mut Vec<FoundModule>,
        pending: &mut Vec<(rustix::fd::OwnedFd, String)>,
    ) {
        use rustix::fs::{AtFlags, FileType, Mode, OFlags};
        let open_dir = |name: &std::ffi::CStr| {
            rustix::fs::openat(
                fd,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        };
        let mut dir = rustix::fs::RawDir::new(fd, buffer);
        while let Some(Ok(entry)) = dir.next() {
            let name_c = entry.file_name();
            let name = name_c.to_string_lossy();
            if name == "." || name == ".." || name == "build" || name == "source" {
                continue;
            }
            self.entries_stat.fetch_add(1, Ordering::Relaxed);
            let kind = entry.file_type();
            let is_module = is_module_file(&name);
            if kind == FileType::RegularFile && !is_module {
                continue;
            }
            let relative = if relative_dir.is_empty() {
                name.to_string()
            } else {
                format!("{relative_dir}/{name}")
            };
            if kind == FileType::Directory {
                if let Ok(sub) = open_dir(name_c) {
                    pending.push((sub, relative));
                }
                continue;
            }
            // Modules, symlinks and unknown types: stat, following links as depmod does.
            let Ok(stat) = rustix::fs::statat(fd, name_c, AtFlags::empty()) else {
                continue;
            };
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {
                    if let Ok(sub) = open_dir(name_c) {
                        pending.push((sub, relative));
                    }
                }
                FileType::RegularFile if is_module => {
                    let mtime = UNIX_EPOCH
                        + std::time::Duration::new(
                            stat.st_mtime.max(0) as u64,
                            stat.st_mtime_nsec.clamp(0, 999_999_999) as u32,
                        );
                    found.push(FoundModule {
                        relative,
                        size: stat.st_size.max(0) as u64,
                        mtime,
                        flist_ino: None,
                    });
                }
                _ => {}
            }
        }
    }
}
