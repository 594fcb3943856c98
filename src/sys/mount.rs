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
