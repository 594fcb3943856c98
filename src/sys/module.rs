//! finit_module(2), init_module(2) and delete_module(2), each made in a process of its own so
//! that a module whose init (or exit) never returns cannot hold this one. There is no libc
//! wrapper for any of them.
//!
//! A module's init runs in the thread that asked for the load and may sleep there
//! uninterruptibly for as long as it likes. Made from one of PID 1's threads, such a call
//! would also hold PID 1's `execve` of the next init: exec waits for every other thread of
//! the process to end, and that one cannot (shown by `tests/vm_hang.rs` before this
//! change). So the call runs in a child that shares this process's memory (`CLONE_VM`, as
//! cheap as a thread) but is not one of its threads, and the caller waits for it until a
//! deadline. Past it the child is left to the kernel: it ends when the init returns, and
//! whoever is PID 1 by then reaps it.

use super::process::{self, Exit};
use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

/// `MODULE_INIT_COMPRESSED_FILE`: the fd holds a compressed module (Linux ≥ 5.17).
pub const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// A module call that had not returned by its deadline: the module's init is still
/// running in the kernel (its state is `coming`), in a process that ends when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unfinished;

/// What a module call came to: the kernel's answer, or [`Unfinished`] at the deadline.
pub type Answer = Result<io::Result<()>, Unfinished>;

fn params(options: &str) -> io::Result<CString> {
    CString::new(options).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "module options contain a NUL byte",
        )
    })
}

/// Loads the module in `file` with `options`, waiting until `until` at most.
pub fn finit_module(file: &std::fs::File, options: &str, flags: u32, until: Instant) -> Answer {
    let options = match params(options) {
        Ok(options) => options,
        Err(e) => return Ok(Err(e)),
    };
    let args = [
        file.as_raw_fd() as usize,
        options.as_ptr() as usize,
        flags as usize,
    ];
    // The fd is copied into the child's own table at clone time; the options string is
    // kept alive by the request until the child has ended.
    call(
        nix::libc::SYS_finit_module,
        args,
        Keep(options, Vec::new()),
        until,
    )
}

/// Loads a module image from memory (after in-process decompression), waiting until
/// `until` at most.
pub fn init_module(image: Vec<u8>, options: &str, until: Instant) -> Answer {
    let options = match params(options) {
        Ok(options) => options,
        Err(e) => return Ok(Err(e)),
    };
    let args = [
        image.as_ptr() as usize,
        image.len(),
        options.as_ptr() as usize,
    ];
    call(
        nix::libc::SYS_init_module,
        args,
        Keep(options, image),
        until,
    )
}

/// Removes module `name` (`delete_module(2)` with `O_NONBLOCK`, as kmod does: refused at
/// once while the module is in use), waiting until `until` at most for its exit function.
pub fn delete_module(name: &str, until: Instant) -> Answer {
    let name = match params(name) {
        Ok(name) => name,
        Err(e) => return Ok(Err(e)),
    };
    let args = [name.as_ptr() as usize, nix::libc::O_NONBLOCK as usize, 0];
    call(
        nix::libc::SYS_delete_module,
        args,
        Keep(name, Vec::new()),
        until,
    )
}

/// Memory the child reads: the options string and, for `init_module`, the image.
struct Keep(#[allow(dead_code)] CString, #[allow(dead_code)] Vec<u8>);

/// What the child does: one system call, its arguments pointing into [`Keep`].
#[repr(C)]
struct Request {
    number: nix::libc::c_long,
    args: [usize; 3],
}

/// The child's stack: it makes one system call, so a little is plenty.
const STACK_BYTES: usize = 16 * 1024;

fn call(number: nix::libc::c_long, args: [usize; 3], keep: Keep, until: Instant) -> Answer {
    let request = Box::new(Request { number, args });
    let mut stack = vec![0u128; STACK_BYTES / 16];
    let child = process::adopt("a module load", || clone_call(&request, &mut stack));
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            // No process for it (out of pids or memory): make the call here rather than
            // not at all, unbounded as a plain load would be.
            log::debug!("module load in this thread: cannot start a process for it: {e}");
            return Ok(call_here(&request));
        }
    };
    match process::wait(&child, Some(until)) {
        Ok(Some(Exit::Code(0))) => Ok(Ok(())),
        Ok(Some(Exit::Code(errno))) => Ok(Err(io::Error::from_raw_os_error(errno))),
        Ok(Some(Exit::Signal(signal))) => Ok(Err(io::Error::other(format!(
            "the process making the call was killed by signal {signal}"
        )))),
        Ok(None) => {
            // The child still reads the request, the options and the image, and runs on
            // the stack: they stay allocated for the life of this process.
            std::mem::forget((request, stack, keep));
            Err(Unfinished)
        }
        Err(e) => {
            std::mem::forget((request, stack, keep));
            Ok(Err(e))
        }
    }
}

/// Starts the child that makes `request`'s call; returns its pid.
fn clone_call(request: &Request, stack: &mut [u128]) -> io::Result<i32> {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
    // Signals stay blocked in the child: a handler of this process must never run on its
    // stack with this thread's thread-local state.
    let mut previous = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut previous),
    )
    .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    let top = stack.as_mut_ptr_range().end.cast::<nix::libc::c_void>();
    // SAFETY: `top` is the 16-byte aligned end of a stack that stays allocated until the
    // child has been reaped (or forever, see `call`); with CLONE_VM and no CLONE_THREAD the
    // child shares memory but is a process of its own, and `child_call` only reads the
    // request (alive as long as the stack) and makes raw system calls, touching neither
    // thread-local state nor the allocator.
    let pid = unsafe {
        nix::libc::clone(
            child_call,
            top,
            nix::libc::CLONE_VM | nix::libc::SIGCHLD,
            request as *const Request as *mut nix::libc::c_void,
        )
    };
    let clone_error = io::Error::last_os_error();
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    if pid < 0 {
        return Err(clone_error);
    }
    Ok(pid)
}

/// The child: makes the call and exits with its errno (0 when it loaded).
extern "C" fn child_call(arg: *mut nix::libc::c_void) -> nix::libc::c_int {
    // SAFETY: `arg` is the request `clone_call` passed, alive until this process ends.
    let request = unsafe { &*(arg as *const Request) };
    let result = raw_syscall(request.number, request.args);
    if result < 0 {
        (-result) as nix::libc::c_int
    } else {
        0
    }
}

/// The call made in this thread (no child could be started): errno through libc.
fn call_here(request: &Request) -> io::Result<()> {
    let [a, b, c] = request.args;
    // SAFETY: the arguments point at memory alive for the call (see `finit_module` and
    // `init_module`); the kernel only reads it.
    let rc = unsafe { nix::libc::syscall(request.number, a, b, c) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A system call without libc, whose wrapper would set `errno` in the thread-local state
/// the child shares with the thread that started it. Returns `-errno` on failure.
#[cfg(target_arch = "x86_64")]
fn raw_syscall(number: nix::libc::c_long, [a, b, c]: [usize; 3]) -> isize {
    let result: isize;
    // SAFETY: the `syscall` instruction with the kernel's x86-64 convention: number in rax,
    // arguments in rdi, rsi, rdx; it clobbers rcx and r11 and returns in rax. The
    // arguments point at memory that outlives the call.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") number as isize => result,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}

/// A system call without libc (see the x86-64 one).
#[cfg(target_arch = "aarch64")]
fn raw_syscall(number: nix::libc::c_long, [a, b, c]: [usize; 3]) -> isize {
    let result: isize;
    // SAFETY: `svc 0` with the kernel's arm64 convention: number in x8, arguments in
    // x0–x2, result in x0. The arguments point at memory that outlives the call.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") number,
            inlateout("x0") a as isize => result,
            in("x1") b,
            in("x2") c,
            options(nostack),
        );
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_kernels_answer_comes_back_from_the_child() {
        // Not root in a test run, or no such module: either way an errno, never a hang.
        let file = std::fs::File::open("/dev/null").unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        let answer = finit_module(&file, "", 0, until);
        let errno = answer.unwrap().unwrap_err().raw_os_error().unwrap();
        assert!(errno > 0, "{errno}");
        let answer = init_module(b"not an elf".to_vec(), "x=1", until);
        assert!(answer.unwrap().unwrap_err().raw_os_error().is_some());
        assert!(finit_module(&file, "a\0b", 0, until).unwrap().is_err());
    }
}
