//! Child processes without losing any: spawn (fork + execve), wait with a deadline, reap
//! orphans as PID 1, and replace this process with the next init (execve).
//!
//! As PID 1 every orphan in the system becomes our child, so a reaper thread waits for
//! *any* child. Children this process spawned are registered under the reaper's lock
//! before it can look them up, so their exit status is never lost to the reaper; others
//! are reaped and counted. std's `Command` is not used for that reason: it waits for a
//! child itself when `exec` fails, and that wait would race the reaper.

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::ffi::{CString, NulError};
use std::io;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

#[derive(Default)]
struct Table {
    /// Our own children: `None` while running.
    watched: HashMap<i32, Option<Exit>>,
    orphans_reaped: u64,
}

struct Reaper {
    table: Mutex<Table>,
    changed: Condvar,
}

static REAPER: OnceLock<Arc<Reaper>> = OnceLock::new();

fn table(reaper: &Reaper) -> std::sync::MutexGuard<'_, Table> {
    reaper.table.lock().unwrap_or_else(|p| p.into_inner())
}

fn exit_of(status: WaitStatus) -> Option<(i32, Exit)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), Exit::Code(code))),
        WaitStatus::Signaled(pid, signal, _) => Some((pid.as_raw(), Exit::Signal(signal as i32))),
        _ => None,
    }
}

/// Starts the reaper thread (PID 1 only; once). From then on every child is waited for
/// by the reaper, and [`wait`] reads the status it recorded.
pub fn start_reaper() -> io::Result<()> {
    if REAPER.get().is_some() {
        return Ok(());
    }
    let reaper = Arc::new(Reaper {
        table: Mutex::new(Table::default()),
        changed: Condvar::new(),
    });
    let worker = Arc::clone(&reaper);
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || loop {
            match waitpid(None::<Pid>, None) {
                Ok(status) => {
                    let Some((pid, exit)) = exit_of(status) else {
                        continue;
                    };
                    let mut table = table(&worker);
                    match table.watched.get_mut(&pid) {
                        Some(slot) => *slot = Some(exit),
                        None => table.orphans_reaped += 1,
                    }
                    drop(table);
                    worker.changed.notify_all();
                }
                Err(_) => {
                    // No children right now: sleep until a spawn (or a second passes,
                    // for orphans re-parented to us meanwhile).
                    let table = table(&worker);
                    let _ = worker.changed.wait_timeout(table, Duration::from_secs(1));
                }
            }
        })?;
    let _ = REAPER.set(reaper);
    Ok(())
}

/// How many children that this process did not spawn were reaped (PID 1 only).
pub fn orphans_reaped() -> u64 {
    REAPER.get().map_or(0, |r| table(r).orphans_reaped)
}

/// Options for [`spawn`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SpawnOptions<'a> {
    /// New session with fd 0 (the console) as controlling terminal: for an interactive
    /// rescue shell, so that job control and Ctrl-C work.
    pub console_session: bool,
    /// New session without a terminal, fds 0–2 on /dev/null: for daemons that must
    /// outlive the caller and stay out of its process group.
    pub detach: bool,
    /// The child's fd 0 (a pipe the caller filled: how secrets reach a child without
    /// showing in its argv).
    pub stdin: Option<std::os::fd::BorrowedFd<'a>>,
    /// A process group of its own, so that [`stop`] ends what it started too (a shell's
    /// children outlive the shell otherwise).
    pub own_group: bool,
}

/// What a pipe's buffer holds without a reader.
const PIPE_FITS: usize = 60 * 1024;

/// A pipe for `len` bytes to be written later, both ends close-on-exec: (read end, for
/// [`SpawnOptions::stdin`]; write end). The bytes must fit the pipe's buffer, so that
/// writing them never waits for the reader; the child sees its input end only when the
/// write end is closed.
pub fn pipe_for(len: usize) -> io::Result<(std::os::fd::OwnedFd, std::fs::File)> {
    if len > PIPE_FITS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{len} bytes do not fit a pipe ({PIPE_FITS} at most)"),
        ));
    }
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((read, std::fs::File::from(write)))
}

/// A spawned child.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    program: String,
    /// It leads a process group of its own ([`SpawnOptions::own_group`]).
    group: bool,
}

impl Child {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

fn cstrings(items: &[String]) -> Result<Vec<CString>, NulError> {
    items.iter().map(|s| CString::new(s.as_bytes())).collect()
}

fn nul_error(what: &str) -> impl FnOnce(NulError) -> io::Error + '_ {
    move |_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    }
}

/// Sends `signal` to the child, and to its process group when it leads one.
fn signal(child: &Child, signal: nix::sys::signal::Signal) -> io::Result<()> {
    let pid = nix::unistd::Pid::from_raw(child.pid);
    let sent = if child.group {
        nix::sys::signal::killpg(pid, signal)
    } else {
        nix::sys::signal::kill(pid, signal)
    };
    sent.map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// Asks a child to end (SIGTERM); it is reaped by [`wait`] or the reaper.
pub fn terminate(child: &Child) -> io::Result<()> {
    signal(child, nix::sys::signal::Signal::SIGTERM)
}

/// Ends a child that outlived its time: SIGTERM, `grace` to end, then SIGKILL (which it
/// cannot ignore), waited for 5 s at most. `Ok(None)`: still there (stuck in the kernel).
pub fn stop(child: &Child, grace: Duration) -> io::Result<Option<Exit>> {
    let _ = terminate(child);
    if let Some(exit) = wait(child, Some(Instant::now() + grace))? {
        return Ok(Some(exit));
    }
    let _ = signal(child, nix::sys::signal::Signal::SIGKILL);
    wait(child, Some(Instant::now() + Duration::from_secs(5)))
}

/// Starts `argv[0]` with `argv` and `env`, inheriting fds 0–2.
pub fn spawn(argv: &[String], env: &[String], options: SpawnOptions) -> io::Result<Child> {
    let program = argv
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?
        .clone();
    if !super::is_executable(std::path::Path::new(&program)) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{program}: no such executable file"),
        ));
    }
    // Everything the child touches is built before fork: after fork in a threaded
    // process only async-signal-safe calls may run, so no allocation there.
    let path = CString::new(program.as_bytes()).map_err(nul_error(&program))?;
    let args = cstrings(argv).map_err(nul_error("an argument"))?;
    let envs = cstrings(env).map_err(nul_error("an environment entry"))?;
    let mut arg_ptrs: Vec<*const nix::libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const nix::libc::c_char> = envs.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let null = if options.detach {
        Some(rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR,
            rustix::fs::Mode::empty(),
        )?)
    } else {
        None
    };

    // SAFETY: the child runs only async-signal-safe code (setsid, dup2, ioctl, execve, _exit)
    // on memory prepared above, and never returns into Rust code.
    let child = adopt(&program, || match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            if let Some(null) = &null {
                let _ = rustix::process::setsid();
                let _ = rustix::stdio::dup2_stdin(null);
                let _ = rustix::stdio::dup2_stdout(null);
                let _ = rustix::stdio::dup2_stderr(null);
            }
            if options.own_group {
                let _ = rustix::process::setpgid(None, None);
            }
            if let Some(stdin) = options.stdin {
                // dup2 leaves the new fd 0 without close-on-exec.
                let _ = rustix::stdio::dup2_stdin(stdin);
            }
            if options.console_session {
                let _ = rustix::process::setsid();
                // SAFETY: fd 0 is open for the whole life of the process (ensure_stdio)
                // and is only borrowed for the ioctl.
                let stdin = unsafe { rustix::fd::BorrowedFd::borrow_raw(0) };
                let _ = rustix::process::ioctl_tiocsctty(stdin);
            }
            // SAFETY: path, argv and envp are NUL-terminated C strings in arrays that end
            // in a null pointer, all alive until execve replaces the image.
            unsafe {
                nix::libc::execve(path.as_ptr(), arg_ptrs.as_ptr(), env_ptrs.as_ptr());
                nix::libc::_exit(127)
            }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            if options.own_group {
                // Here too: the group exists before anyone can signal it, whichever of
                // the two runs first.
                let pid = rustix::process::Pid::from_raw(child.as_raw());
                let _ = rustix::process::setpgid(pid, pid);
            }
            Ok(child.as_raw())
        }
        Err(e) => Err(io::Error::other(format!("fork for {program}: {e}"))),
    })?;
    Ok(Child {
        group: options.own_group,
        ..child
    })
}

/// Starts a child with `start` (fork, clone: it returns the new pid) and watches it like
/// the children of [`spawn`]: registered under the reaper's lock, taken before the child
/// exists, so the reaper cannot reap it before it is in the table.
pub(crate) fn adopt(program: &str, start: impl FnOnce() -> io::Result<i32>) -> io::Result<Child> {
    let reaper = REAPER.get();
    let mut guard = reaper.map(|r| table(r));
    let pid = start()?;
    if let Some(table) = guard.as_mut() {
        table.watched.insert(pid, None);
    }
    drop(guard);
    if let Some(reaper) = reaper {
        reaper.changed.notify_all();
    }
    Ok(Child {
        pid,
        program: program.to_string(),
        group: false,
    })
}

/// Waits for `child` until `deadline` (forever with `None`). `Ok(None)` means the deadline
/// passed with the child still running.
pub fn wait(child: &Child, deadline: Option<Instant>) -> io::Result<Option<Exit>> {
    if let Some(reaper) = REAPER.get() {
        let mut table = table(reaper);
        loop {
            if let Some(Some(exit)) = table.watched.get(&child.pid) {
                let exit = *exit;
                table.watched.remove(&child.pid);
                return Ok(Some(exit));
            }
            let timeout = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return Ok(None),
                },
                None => Duration::from_secs(3600),
            };
            table = reaper
                .changed
                .wait_timeout(table, timeout)
                .map_err(|_| io::Error::other("reaper lock poisoned"))?
                .0;
        }
    }
    let pid = Pid::from_raw(child.pid);
    // Woken by the child's end rather than by polling, where the kernel has pidfds.
    let pidfd = deadline.and_then(|_| {
        rustix::process::Pid::from_raw(child.pid).and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        })
    });
    loop {
        let flags = if deadline.is_some() {
            Some(WaitPidFlag::WNOHANG)
        } else {
            None
        };
        match waitpid(pid, flags) {
            Ok(status) => {
                if let Some((_, exit)) = exit_of(status) {
                    return Ok(Some(exit));
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(io::Error::other(format!(
                    "waiting for {}: {e}",
                    child.program
                )))
            }
        }
        if let Some(deadline) = deadline {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ok(None);
            };
            match &pidfd {
                Some(fd) => {
                    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                    let timeout = rustix::time::Timespec::try_from(left).ok();
                    let _ = rustix::event::poll(&mut fds, timeout.as_ref());
                }
                None => std::thread::sleep(left.min(Duration::from_millis(10))),
            }
        }
    }
}

/// Replaces this process with `argv[0]` (same pid). Returns only on failure.
pub fn exec(argv: &[String], env: &[String]) -> io::Error {
    let Some(program) = argv.first() else {
        return io::Error::new(io::ErrorKind::InvalidInput, "empty command");
    };
    let prepared = (|| {
        let path = CString::new(program.as_bytes()).map_err(nul_error(program))?;
        let args = cstrings(argv).map_err(nul_error("an argument"))?;
        let envs = cstrings(env).map_err(nul_error("an environment entry"))?;
        Ok::<_, io::Error>((path, args, envs))
    })();
    match prepared {
        Ok((path, args, envs)) => match nix::unistd::execve(&path, &args, &envs) {
            Ok(never) => match never {},
            Err(e) => io::Error::from_raw_os_error(e as i32),
        },
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_and_wait_without_reaper() {
        let child = spawn(
            &["/bin/sh".into(), "-c".into(), "exit 7".into()],
            &[],
            SpawnOptions::default(),
        )
        .unwrap();
        assert_eq!(wait(&child, None).unwrap(), Some(Exit::Code(7)));
        let child = spawn(
            &["/bin/sh".into(), "-c".into(), "sleep 5".into()],
            &[],
            SpawnOptions::default(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(wait(&child, Some(deadline)).unwrap(), None);
        let _ = nix::sys::signal::kill(
            Pid::from_raw(child.pid()),
            nix::sys::signal::Signal::SIGKILL,
        );
        assert_eq!(wait(&child, None).unwrap(), Some(Exit::Signal(9)));
    }

    #[test]
    fn missing_program_is_a_clear_error() {
        let err = spawn(&["/nonexistent/x".into()], &[], SpawnOptions::default()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x"));
        let err = exec(&["/nonexistent/y".into()], &[]);
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
