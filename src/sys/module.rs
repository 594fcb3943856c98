//! finit_module(2) and init_module(2). There is no libc wrapper for either.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;

/// `MODULE_INIT_COMPRESSED_FILE`: the fd holds a compressed module (Linux ≥ 5.17).
pub const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

fn params(options: &str) -> io::Result<CString> {
    CString::new(options).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "module options contain a NUL byte",
        )
    })
}

/// Loads the module in `file` with `options`. The error is the raw errno.
pub fn finit_module(file: &std::fs::File, options: &str, flags: u32) -> io::Result<()> {
    let options = params(options)?;
    // SAFETY: the fd is open for the duration of the call and the options pointer is a
    // NUL-terminated string that outlives it; the kernel only reads both.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_finit_module,
            file.as_raw_fd(),
            options.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Loads a module image from memory (after in-process decompression).
pub fn init_module(image: &[u8], options: &str) -> io::Result<()> {
    let options = params(options)?;
    // SAFETY: image points to `image.len()` readable bytes and options is NUL-terminated;
    // both outlive the call, and the kernel copies what it needs.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_init_module,
            image.as_ptr(),
            image.len() as nix::libc::c_ulong,
            options.as_ptr(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
