//! Standard descriptors for PID 1: the kernel opens `/dev/console` as fds 0–2 only when the
//! node exists in the initramfs; otherwise they start closed, and the first file opened
//! would silently become "stdin".

use rustix::fd::BorrowedFd;
use rustix::fs::{Mode, OFlags};
use std::io;

/// Which descriptors had to be opened, and on what.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StdioRepair {
    /// Descriptors among 0–2 that were closed.
    pub reopened: Vec<i32>,
    /// The device they now point at (`/dev/console` or `/dev/null`).
    pub device: Option<&'static str>,
}

fn is_open(fd: i32) -> bool {
    // SAFETY: the borrowed descriptor is only passed to fcntl(F_GETFD), which checks
    // validity itself and never closes or retains it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(borrowed).is_ok()
}

/// Makes sure fds 0, 1 and 2 are open, on `/dev/console` if possible, else `/dev/null`.
pub fn ensure_stdio() -> io::Result<StdioRepair> {
    let closed: Vec<i32> = (0..3).filter(|fd| !is_open(*fd)).collect();
    if closed.is_empty() {
        return Ok(StdioRepair::default());
    }
    let (device, fd) =
        match rustix::fs::open("/dev/console", OFlags::RDWR | OFlags::NOCTTY, Mode::empty()) {
            Ok(fd) => ("/dev/console", fd),
            Err(_) => (
                "/dev/null",
                rustix::fs::open("/dev/null", OFlags::RDWR, Mode::empty()).map_err(|e| {
                    io::Error::new(e.kind(), format!("opening /dev/console and /dev/null: {e}"))
                })?,
            ),
        };
    for target in &closed {
        match target {
            0 => rustix::stdio::dup2_stdin(&fd)?,
            1 => rustix::stdio::dup2_stdout(&fd)?,
            _ => rustix::stdio::dup2_stderr(&fd)?,
        }
    }
    // If `open` itself returned 0, 1 or 2, dropping it would close the descriptor we
    // just filled; keep it open in that case.
    let raw = rustix::fd::AsRawFd::as_raw_fd(&fd);
    if closed.contains(&raw) {
        std::mem::forget(fd);
    }
    Ok(StdioRepair {
        reopened: closed,
        device: Some(device),
    })
}
