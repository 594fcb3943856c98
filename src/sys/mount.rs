//! mount(2) and friends for the pseudo-filesystems.

use rustix::mount::MountFlags;
use std::io;
use std::path::Path;

/// Mounts `fstype` from `source` on `target` (created when missing).
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> io::Result<()> {
    std::fs::create_dir_all(target)
        .map_err(|e| io::Error::new(e.kind(), format!("creating mount point {target}: {e}")))?;
    let data = std::ffi::CString::new(data).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "mount options contain a NUL byte",
        )
    })?;
    let data = if data.is_empty() {
        None
    } else {
        Some(data.as_c_str())
    };
    rustix::mount::mount(source, target, fstype, flags, data)
        .map_err(|e| io::Error::new(e.kind(), format!("mounting {fstype} on {target}: {e}")))
}

/// Whether `path` exists (without following a final symlink).
pub fn exists(path: &str) -> bool {
    Path::new(path).symlink_metadata().is_ok()
}

/// Bind-mounts the file or directory `source` over `target` (which must exist).
pub fn bind(source: &Path, target: &Path) -> io::Result<()> {
    rustix::mount::mount_bind(source, target).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "bind-mounting {} over {}: {e}",
                source.display(),
                target.display()
            ),
        )
    })
}

/// The topmost mount on `path` (absolute, as mountinfo spells it), read from
/// `/proc/self/mountinfo`; None when nothing is mounted there or the table cannot be read.
pub fn mounted_at(path: &Path) -> Option<crate::mountinfo::MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let entries = crate::mountinfo::parse(&text);
    crate::mountinfo::mounted_at(&entries, &path.to_string_lossy()).cloned()
}

/// Sets the kernel's readahead to `kib` KiB for the filesystem on `device` (`major:minor`,
/// as mountinfo names it), through its backing device in sysfs. For FUSE, call it after the
/// INIT handshake, which sets the readahead to what the kernel offered.
pub fn set_readahead(device: &str, kib: u32) -> io::Result<()> {
    let path = format!("/sys/class/bdi/{device}/read_ahead_kb");
    std::fs::write(&path, kib.to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// Opens `/dev/fuse` and mounts a FUSE filesystem on `target` with mount(2) (no
/// fusermount, no libfuse): read-only, nosuid, nodev, file modes enforced by the kernel.
/// Returns the channel to serve.
pub fn fuse_mount(
    source: &str,
    target: &Path,
    subtype: &str,
    allow_other: bool,
) -> io::Result<rustix::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(
        |e| {
            io::Error::new(
                e.kind(),
                format!("/dev/fuse: {e} (is the fuse module loaded?)"),
            )
        },
    )?;
    // default_permissions: the kernel checks every access against the files' own modes
    // and owners; with allow_other and without it, any user would read any file.
    let mut data = format!(
        "fd={},rootmode=40000,user_id=0,group_id=0,default_permissions",
        rustix::fd::AsRawFd::as_raw_fd(&fd)
    );
    if allow_other {
        data.push_str(",allow_other");
    }
    let data =
        std::ffi::CString::new(data).map_err(|_| io::Error::other("NUL in mount options"))?;
    let fstype = format!("fuse.{subtype}");
    rustix::mount::mount(
        source,
        target,
        fstype.as_str(),
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
        Some(data.as_c_str()),
    )
    .map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("mounting {fstype} on {}: {e}", target.display()),
        )
    })?;
    Ok(fd)
}

/// Unmounts `target`; `lazy` detaches it even if busy.
pub fn unmount(target: &Path, lazy: bool) -> io::Result<()> {
    let flags = if lazy {
        rustix::mount::UnmountFlags::DETACH
    } else {
        rustix::mount::UnmountFlags::empty()
    };
    rustix::mount::unmount(target, flags)
        .map_err(|e| io::Error::new(e.kind(), format!("unmounting {}: {e}", target.display())))
}
