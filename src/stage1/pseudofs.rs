//! The pseudo-filesystems every later step needs: `/proc`, `/sys`, `/dev` (devtmpfs),
//! `/dev/pts`, `/run` (tmpfs), each mounted only where missing; then fds 0–2 and the
//! usual `/dev` symlinks.

use super::runner::StepDone;
use crate::mountinfo;
use crate::sys::{console, mount};
use rustix::mount::MountFlags;

struct PseudoFs {
    target: &'static str,
    fstype: &'static str,
    flags: MountFlags,
    data: &'static str,
}

const NOSUID_NODEV_NOEXEC: MountFlags = MountFlags::NOSUID
    .union(MountFlags::NODEV)
    .union(MountFlags::NOEXEC);

const PSEUDO_FILESYSTEMS: &[PseudoFs] = &[
    PseudoFs {
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
    PseudoFs {
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
    PseudoFs {
        target: "/dev",
        fstype: "devtmpfs",
        flags: MountFlags::NOSUID,
        data: "mode=0755",
    },
    PseudoFs {
        target: "/dev/pts",
        fstype: "devpts",
        flags: MountFlags::NOSUID.union(MountFlags::NOEXEC),
        data: "gid=5,mode=0620,ptmxmode=0666",
    },
    PseudoFs {
        target: "/run",
        fstype: "tmpfs",
        flags: MountFlags::NOSUID.union(MountFlags::NODEV),
        data: "mode=0755",
    },
];

const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

fn is_mounted(target: &str) -> bool {
    if target == "/proc" {
        return mount::exists("/proc/self/mountinfo");
    }
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| mountinfo::mounted_at(&mountinfo::parse(&text), target).is_some())
        .unwrap_or(false)
}

/// Names a file that a mount on `target` would hide, if any. Device nodes do not count
/// (an initramfs ships `/dev/console` and `/dev/null` under the future devtmpfs).
fn would_hide(target: &str) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let entries = std::fs::read_dir(target).ok()?;
    entries.filter_map(Result::ok).find_map(|entry| {
        let kind = entry.file_type().ok()?;
        let device = kind.is_char_device() || kind.is_block_device();
        (!device).then(|| entry.path().display().to_string())
    })
}

/// Mounts what is missing; degraded (never fatal) when a mount fails. A directory that
/// is not a mount point but holds files is left alone (mounting would hide them: this is
/// `initagent stage1` run by hand on a booted system).
pub fn setup() -> Result<StepDone, crate::step::StepError> {
    let mut mounted = Vec::new();
    let mut present = 0u64;
    let mut failures = Vec::new();
    for fs in PSEUDO_FILESYSTEMS {
        if is_mounted(fs.target) {
            present += 1;
            continue;
        }
        if let Some(file) = would_hide(fs.target) {
            failures.push(format!(
                "left {} alone: not a mount point, and mounting would hide {file}",
                fs.target
            ));
            continue;
        }
        match mount::mount(fs.fstype, fs.target, fs.fstype, fs.flags, fs.data) {
            Ok(()) => mounted.push(fs.target),
            Err(e) => failures.push(e.to_string()),
        }
        if fs.target == "/dev" {
            match console::ensure_stdio() {
                Ok(repair) if !repair.reopened.is_empty() => log::warn!(
                    "fds {:?} were closed at start; now on {}",
                    repair.reopened,
                    repair.device.unwrap_or("?")
                ),
                Ok(_) => {}
                Err(e) => failures.push(format!("standard descriptors: {e}")),
            }
        }
    }
    for (link, target) in DEV_SYMLINKS {
        if !mount::exists(link) {
            if let Err(e) = std::os::unix::fs::symlink(target, link) {
                failures.push(format!("symlink {link}: {e}"));
            }
        }
    }
    let mut detail = if mounted.is_empty() {
        "all present".to_string()
    } else {
        format!("mounted {}", mounted.join(" "))
    };
    let done = if failures.is_empty() {
        StepDone::ok(detail)
    } else {
        detail.push_str("; ");
        detail.push_str(&failures.join("; "));
        StepDone::degraded(detail)
    };
    Ok(done
        .count("mounted", mounted.len() as u64)
        .count("already_mounted", present))
}
