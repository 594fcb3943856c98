//! The persistent block cache on the node's own disk (`initagent.flist.cache=`): find the
//! device (waiting a bounded time for its driver), look at what it holds, format it only
//! when it is blank, mount it on `/run/initagent/cachedisk`, and use one directory of its
//! own there (`initagent-cache/`), whatever else the filesystem holds. Stage 1's `cache`
//! step runs it; the flists step reads the record it leaves and gives the mount daemons
//! that directory, so they keep using it after the handoff.

pub mod extfs;
pub mod probe;

use probe::{CacheSpec, Content};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The label given to a filesystem the agent formats.
pub const LABEL: &str = "initagent-cache";
/// The cache's own directory in the filesystem.
pub const DIR: &str = "initagent-cache";

/// What the `cache` step prepared, kept in [`crate::rundir::CACHE_RECORD`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    /// The device (`/dev/vdb`).
    pub device: String,
    /// The filesystem (`ext3`, `btrfs`, …).
    pub kind: String,
    /// Its label.
    pub label: String,
    /// Formatted by this boot (it was blank).
    pub formatted: bool,
    /// Where it is mounted.
    pub mount_point: String,
    /// The block caches' directory (`<mount point>/initagent-cache`).
    pub dir: String,
}

/// Why the cache device cannot be used (the boot goes on with the cache in `/run`).
#[derive(Debug)]
pub enum CacheDevError {
    /// No device matched within the wait.
    NotFound {
        /// What was asked for.
        spec: String,
        /// How long the agent waited.
        waited: Duration,
    },
    /// The device could not be read or written.
    Io {
        /// The device.
        device: String,
        /// What was being done.
        doing: &'static str,
        /// The error.
        error: std::io::Error,
    },
    /// The device holds something that is not a filesystem the cache can share.
    Refused {
        /// The device.
        device: String,
        /// What it holds.
        holds: &'static str,
    },
    /// A blank device too small to be worth formatting.
    TooSmall {
        /// The device.
        device: String,
        /// Why.
        why: extfs::TooSmall,
    },
}

impl std::fmt::Display for CacheDevError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheDevError::NotFound { spec, waited } => write!(
                f,
                "no device {spec} appeared within {} s (is its disk driver in the target's bootstrap set? `initagent.flist.cache` names LABEL=, PARTLABEL= or /dev/…)",
                waited.as_secs()
            ),
            CacheDevError::Io {
                device,
                doing,
                error,
            } => write!(f, "{device}: {doing}: {error}"),
            CacheDevError::Refused { device, holds } => write!(
                f,
                "{device} holds {holds}; it is left untouched (a blank device is formatted, an ext2/3/4, btrfs or XFS filesystem is shared)"
            ),
            CacheDevError::TooSmall { device, why } => write!(f, "{device}: {why}"),
        }
    }
}

impl std::error::Error for CacheDevError {}

fn io(device: &Path, doing: &'static str) -> impl FnOnce(std::io::Error) -> CacheDevError {
    let device = device.display().to_string();
    move |error| CacheDevError::Io {
        device,
        doing,
        error,
    }
}

/// Block devices that never hold a cache (memory, loops, optical, floppies).
fn ignored(name: &str) -> bool {
    ["ram", "loop", "zram", "sr", "fd", "nbd"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// The first mebibyte of `device` (all of it when smaller); a short read is an error, so
/// a device is never taken for blank on a partial look.
fn read_head(device: &Path) -> Result<Vec<u8>, CacheDevError> {
    let mut file = File::open(device).map_err(io(device, "opening it to look at"))?;
    let size = file
        .seek(SeekFrom::End(0))
        .map_err(io(device, "reading its size"))?;
    file.seek(SeekFrom::Start(0))
        .map_err(io(device, "reading its first mebibyte"))?;
    let wanted = size.min(probe::PROBE_BYTES as u64) as usize;
    let mut head = vec![0u8; wanted];
    file.read_exact(&mut head)
        .map_err(io(device, "reading its first mebibyte"))?;
    Ok(head)
}

/// The device `spec` names, if it is there now.
fn find_once(spec: &CacheSpec, sys_block: &Path, dev: &Path) -> Option<PathBuf> {
    if let CacheSpec::Device(path) = spec {
        return Path::new(path).exists().then(|| PathBuf::from(path));
    }
    let mut names: Vec<String> = std::fs::read_dir(sys_block)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !ignored(name))
        .collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let uevent = std::fs::read_to_string(sys_block.join(&name).join("uevent")).ok()?;
        let node = dev.join(probe::uevent_value(&uevent, "DEVNAME").unwrap_or(&name));
        let found = match spec {
            CacheSpec::PartLabel(label) => {
                probe::uevent_value(&uevent, "PARTNAME") == Some(label.as_str())
            }
            CacheSpec::Label(label) => matches!(
                read_head(&node).map(|head| probe::probe(&head)),
                Ok(Content::Filesystem { label: l, .. }) if &l == label
            ),
            CacheSpec::Device(_) => false,
        };
        found.then_some(node)
    })
}

/// Waits up to `wait` for the device `spec` names (its driver may still be probing).
pub fn find(spec: &CacheSpec, wait: Duration) -> Result<PathBuf, CacheDevError> {
    let start = Instant::now();
    loop {
        if let Some(device) = find_once(spec, Path::new("/sys/class/block"), Path::new("/dev")) {
            return Ok(device);
        }
        if start.elapsed() >= wait {
            return Err(CacheDevError::NotFound {
                spec: spec.to_string(),
                waited: wait,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn random_uuid() -> [u8; 16] {
    let mut uuid = [0u8; 16];
    if let Ok(mut random) = File::open("/dev/urandom") {
        let _ = random.read_exact(&mut uuid);
    }
    uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4
    uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
    uuid
}

/// Formats `device` (a block device or an image file) as ext3 labelled `label`: the
/// inode tables and the metadata past the first mebibyte first, then the first mebibyte
/// in one write. A format cut short leaves that mebibyte zero: the device still reads as
/// blank and the next boot formats it again. The device is opened exclusively, so a
/// mounted one is refused by the kernel.
pub fn format(device: &Path, label: &str) -> Result<u64, CacheDevError> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_EXCL)
        .open(device)
        .map_err(io(device, "opening it to format"))?;
    let size = file
        .seek(SeekFrom::End(0))
        .map_err(io(device, "reading its size"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let layout =
        extfs::layout(size, label, random_uuid(), now).map_err(|why| CacheDevError::TooSmall {
            device: device.display().to_string(),
            why,
        })?;
    let write = io(device, "formatting it");
    let zeros = vec![0u8; 1 << 20];
    let result = (|| {
        for &(offset, length) in &layout.zero {
            let (mut at, end) = (offset.max(extfs::HEAD), offset + length);
            while at < end {
                let n = (end - at).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
        }
        let mut head = vec![0u8; extfs::HEAD.min(size) as usize];
        for (&block, data) in &layout.metadata {
            let at = block * extfs::BLOCK;
            if at < extfs::HEAD {
                head[at as usize..at as usize + data.len()].copy_from_slice(data);
            } else {
                file.write_all_at(data, at)?;
            }
        }
        file.sync_all()?;
        file.write_all_at(&head, 0)?;
        file.sync_all()
    })();
    result.map_err(write)?;
    Ok(layout.blocks * extfs::BLOCK)
}

/// Finds, checks, formats when blank, and mounts the cache device; the directory the
/// block caches go in is created. `mount_point` is [`crate::rundir::CACHE_DISK`] in stage 1.
pub fn prepare(
    spec: &CacheSpec,
    wait: Duration,
    mount_point: &Path,
) -> Result<Prepared, CacheDevError> {
    let device = find(spec, wait)?;
    let name = device.display().to_string();
    let mut formatted = false;
    let (fstype, kind, label) = match probe::probe(&read_head(&device)?) {
        Content::Filesystem {
            fstype,
            kind,
            label,
        } => (fstype, kind, label),
        Content::Blank => {
            let bytes = format(&device, LABEL)?;
            log::info!(
                "{name}: blank, formatted as ext3 ({} MiB) for the block cache",
                bytes >> 20
            );
            formatted = true;
            ("ext4", "ext3", LABEL.to_string())
        }
        Content::Other(holds) => {
            return Err(CacheDevError::Refused {
                device: name,
                holds,
            })
        }
    };
    let target = mount_point.display().to_string();
    let already = crate::sys::mount::mounted_at(mount_point).is_some();
    if !already {
        use rustix::mount::MountFlags;
        let flags =
            MountFlags::NOATIME | MountFlags::NODEV | MountFlags::NOSUID | MountFlags::NOEXEC;
        // ext2/3/4 through the ext4 driver: blocks are allocated when written, so every
        // journal commit (each 5 s) carries the entries written before it; with delayed
        // allocation an entry could wait 30 s for its blocks and be lost to a power cut.
        let data = if fstype == "ext4" { "nodelalloc" } else { "" };
        crate::sys::mount::mount(&name, &target, fstype, flags, data)
            .map_err(io(&device, "mounting it"))?;
    }
    let dir = mount_point.join(DIR);
    std::fs::create_dir_all(&dir).map_err(io(&dir, "creating the cache directory"))?;
    Ok(Prepared {
        device: name,
        kind: kind.to_string(),
        label,
        formatted,
        mount_point: target,
        dir: dir.display().to_string(),
    })
}

/// The block caches' directory on the cache device, when the `cache` step prepared one
/// this boot and it is still mounted (its directory is there).
fn recorded_dir(record: &Path) -> Option<PathBuf> {
    let prepared: Prepared = serde_json::from_slice(&std::fs::read(record).ok()?).ok()?;
    Path::new(&prepared.dir)
        .is_dir()
        .then(|| PathBuf::from(prepared.dir))
}

/// The directory the flists' block caches go in: the cache device's (see
/// [`recorded_dir`]), else `fallback` (in `/run`).
pub fn caches_dir(record: &Path, fallback: &Path) -> PathBuf {
    recorded_dir(record).unwrap_or_else(|| fallback.to_path_buf())
}

/// Writes what the cache device holds in memory to the disk (`syncfs`), when the `cache`
/// step prepared one: stage 1 does it before the handoff, so the blocks of this boot are
/// there for the next one even if the node loses power right after. How long it took.
pub fn flush(record: &Path) -> Option<Duration> {
    let dir = recorded_dir(record)?;
    let started = Instant::now();
    let handle = File::open(&dir).ok()?;
    if let Err(e) = rustix::fs::syncfs(&handle) {
        log::warn!("{}: cannot flush the block cache: {e}", dir.display());
    }
    Some(started.elapsed())
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
