//! Thin, named wrappers over the kernel calls the agent makes. This is the only module
//! allowed `unsafe`; each block carries a `// SAFETY:` line. Everything above calls these
//! wrappers, which return errors that name what they acted on.
#![allow(unsafe_code)]

pub mod console;
pub mod module;
pub mod mount;
pub mod packet;
pub mod power;
pub mod process;
pub mod rtnl;
pub mod uevent;

/// Monotonic time since boot, in microseconds (the clock kmsg timestamps use), so the
/// timelines of several processes line up with each other and with `dmesg`.
pub fn monotonic_us() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec / 1_000).unwrap_or(0);
    seconds.saturating_mul(1_000_000).saturating_add(micros)
}

/// This process's id.
pub fn pid() -> u32 {
    rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs()
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// Whether `relative` stays beneath `dir` as the kernel resolves it now (`openat2` with
/// `RESOLVE_BENEATH`: no `..`, absolute path or symlink on the way leads out), in two
/// path walks instead of a `readlink` per component of each. `false` when the kernel
/// cannot say so (it refused, a symlink is absolute, no `openat2`): the caller looks
/// closer. A path not there (yet) cannot lead anywhere: beneath.
pub fn stays_beneath(dir: &std::path::Path, relative: &str) -> bool {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let flags = OFlags::PATH | OFlags::CLOEXEC;
    let Ok(dir) = rustix::fs::open(dir, flags | OFlags::DIRECTORY, Mode::empty()) else {
        return false;
    };
    match rustix::fs::openat2(&dir, relative, flags, Mode::empty(), ResolveFlags::BENEATH) {
        Ok(_) => true,
        Err(e) => e == rustix::io::Errno::NOENT,
    }
}

/// Whether `path` names a regular file this process may execute.
pub fn is_executable(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
        && rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
}

/// Peak resident memory of process `pid` (`self` for this one) in KiB, from `VmHWM` in
/// `/proc/<pid>/status`.
pub fn peak_rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}
