//! The real [`Kernel`]: `/sys/module` for state, `finit_module` (with the kernel's own
//! decompression when `/sys/module/compression` names the file's format), in-process
//! decompression plus `init_module` otherwise (each call in a process of its own, waited
//! for until the loader's deadline: `sys::module`), `install` rules through `/bin/sh`
//! (stopped at theirs), and an explanation of every errno a load can return.

use super::compress::{self, Compression};
use super::elf::Modinfo;
use super::load::{Kernel, KernelState, LoadError, NotLoaded, Via};
use crate::sys;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SHELL: &str = "/bin/sh";

/// The running kernel.
pub struct SysKernel {
    sys_module: PathBuf,
    compression: Option<Compression>,
    /// How long an `install` rule may run before it is stopped.
    pub install_deadline: Duration,
}

/// How long an `install` rule may run (a rule that never returns must not hold the loader);
/// the loader's deadline cuts it shorter.
const INSTALL_DEADLINE: Duration = Duration::from_secs(30);

impl Default for SysKernel {
    fn default() -> Self {
        SysKernel::new()
    }
}

impl SysKernel {
    /// Reads which compression the kernel can undo itself.
    pub fn new() -> Self {
        let compression = std::fs::read_to_string("/sys/module/compression")
            .ok()
            .and_then(|text| match text.trim() {
                "xz" => Some(Compression::Xz),
                "zstd" => Some(Compression::Zstd),
                "gzip" => Some(Compression::Gzip),
                _ => None,
            });
        SysKernel {
            sys_module: PathBuf::from("/sys/module"),
            compression,
            install_deadline: INSTALL_DEADLINE,
        }
    }
}

/// What a file that is not a regular file is, for a person.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device node"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

fn error(errno: Option<i32>, message: String) -> LoadError {
    LoadError { errno, message }
}

/// A message for a person for the errno of a failed load of `path`.
pub fn explain(errno: i32, path: &Path, options: &str) -> String {
    use nix::libc::*;
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match errno {
        ENOEXEC => {
            let running = sys::kernel_release();
            match read_modinfo(path).ok().and_then(|m| m.vermagic_release().map(str::to_string)) {
                Some(built) if built != running => {
                    format!("built for another kernel (vermagic {built}, running {running})")
                }
                _ => "not a valid module for this kernel (wrong architecture, corrupt ELF or duplicate symbol; see dmesg)".into(),
            }
        }
        ENOENT => "missing symbol: a dependency did not load (dmesg names the symbol)".into(),
        ENODEV | ENXIO => "no matching device".into(),
        EPERM => "not permitted (module_blacklist= on the kernel command line, modules disabled, lockdown, or no CAP_SYS_MODULE)".into(),
        EINVAL => format!("invalid options {options:?} or a symbol version mismatch (see dmesg)"),
        EKEYREJECTED | ENOKEY | EBADMSG => format!("signature rejected: {text}"),
        ENOSYS => "this kernel has no module support".into(),
        EBUSY => "another load of this module failed, or a dependency's init took over 30 s".into(),
        ETXTBSY => "the module file is open for writing".into(),
        _ => text,
    }
}

fn read_modinfo(path: &Path) -> Result<Modinfo, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    let plain = compress::decompress(&data).map_err(|e| e.to_string())?;
    Modinfo::from_elf(&plain).map_err(|e| e.to_string())
}

impl Kernel for SysKernel {
    fn state(&self, name: &str) -> KernelState {
        // Read as kmod reads it (`kmod::live`): a directory without `initstate` is a load
        // still setting up (built-ins never reach the loader: the plan marks them).
        let live = super::live::SysModule {
            dir: self.sys_module.clone(),
        };
        match super::live::Live::initstate(&live, name) {
            Some(super::live::InitState::Live) => KernelState::Live,
            Some(super::live::InitState::Coming) => KernelState::Coming,
            Some(super::live::InitState::Going) => KernelState::Going,
            Some(super::live::InitState::Builtin) | None => KernelState::Absent,
        }
    }

    fn load(
        &self,
        _name: &str,
        path: &Path,
        options: &str,
        until: Instant,
    ) -> Result<Via, NotLoaded> {
        // Looked at before it is opened: opening a device node can act (a watchdog starts
        // counting, a terminal becomes PID 1's), and a FIFO would hold open(2).
        let refuse = |meta: &std::fs::Metadata| {
            NotLoaded::from(error(
                None,
                format!(
                    "{}: not a regular file ({}); refused",
                    path.display(),
                    file_kind(meta)
                ),
            ))
        };
        match std::fs::metadata(path) {
            Ok(meta) if !meta.is_file() => return Err(refuse(&meta)),
            _ => {}
        }
        // Non-blocking and no controlling terminal, should the file be swapped for a
        // FIFO or a device node between the look and the open (checked again below).
        let file = std::fs::File::options()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(path)
            .map_err(|e| {
                error(
                    e.raw_os_error(),
                    format!("cannot open {}: {e}", path.display()),
                )
            })?;
        match file.metadata() {
            Ok(meta) if meta.is_file() => {}
            Ok(meta) => return Err(refuse(&meta)),
            Err(e) => {
                return Err(error(
                    e.raw_os_error(),
                    format!("cannot stat {}: {e}", path.display()),
                )
                .into())
            }
        }
        let mut head = [0u8; 6];
        let n = file.read_at(&mut head, 0).unwrap_or(0);
        let format = Compression::detect(&head[..n]);
        let answer = |answer: sys::module::Answer, via: Via| match answer {
            Ok(Ok(())) => Ok(via),
            Ok(Err(e)) => {
                let errno = e.raw_os_error().unwrap_or(0);
                Err(NotLoaded::Failed(error(
                    Some(errno),
                    explain(errno, path, options),
                )))
            }
            Err(sys::module::Unfinished) => Err(NotLoaded::StillLoading),
        };
        if format == Compression::None {
            return answer(
                sys::module::finit_module(&file, options, 0, until),
                Via::Finit,
            );
        }
        if self.compression == Some(format) {
            let flags = sys::module::MODULE_INIT_COMPRESSED_FILE;
            match sys::module::finit_module(&file, options, flags, until) {
                Ok(Err(e))
                    if matches!(
                        e.raw_os_error(),
                        Some(nix::libc::EOPNOTSUPP) | Some(nix::libc::EINVAL)
                    ) =>
                {
                    log::debug!(
                        "{}: the kernel could not decompress it ({e}); decompressing here",
                        path.display()
                    );
                }
                other => return answer(other, Via::FinitCompressed),
            }
        }
        let mut data = Vec::new();
        (&file).read_to_end(&mut data).map_err(|e| {
            error(
                e.raw_os_error(),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let image = compress::decompress(&data)
            .map_err(|e| error(None, format!("{}: {e}", path.display())))?;
        answer(
            sys::module::init_module(image.into_owned(), options, until),
            Via::InitModule,
        )
    }

    fn install(
        &self,
        name: &str,
        command: &str,
        options: &str,
        until: Instant,
    ) -> Result<(), LoadError> {
        if !sys::is_executable(Path::new(SHELL)) {
            // Hardening baselines use these to disable a module; no shell is needed to
            // know what they mean.
            return match command.trim() {
                "/bin/true" | "true" => Ok(()),
                "/bin/false" | "false" => Err(error(
                    None,
                    format!("disabled by `install {name} {command}`"),
                )),
                _ => Err(error(
                    None,
                    format!(
                        "`install {name} {command}` needs {SHELL}, which this system does not have"
                    ),
                )),
            };
        }
        let command = command.replace("$CMDLINE_OPTS", options);
        let argv = vec![SHELL.to_string(), "-c".to_string(), command.clone()];
        let env = vec![
            format!("MODPROBE_MODULE={name}"),
            "PATH=/sbin:/usr/sbin:/bin:/usr/bin".to_string(),
            "HOME=/".to_string(),
        ];
        // Its own process group: stopping the rule stops what it started too.
        let options = sys::process::SpawnOptions {
            own_group: true,
            ..Default::default()
        };
        let child = sys::process::spawn(&argv, &env, options)
            .map_err(|e| error(e.raw_os_error(), format!("install rule for {name}: {e}")))?;
        let started = Instant::now();
        let deadline = until.min(started + self.install_deadline);
        match sys::process::wait(&child, Some(deadline)) {
            Ok(Some(sys::process::Exit::Code(0))) => Ok(()),
            Ok(Some(exit)) => Err(error(
                None,
                format!("install rule for {name} ({command}) ended with {exit}"),
            )),
            Ok(None) => {
                let _ = sys::process::stop(&child, Duration::from_secs(1));
                Err(error(
                    None,
                    format!(
                        "install rule for {name} ({command}) did not finish within {:.1} s; stopped",
                        deadline.saturating_duration_since(started).as_secs_f32()
                    ),
                ))
            }
            Err(e) => Err(error(None, format!("install rule for {name}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmod::load::Kernel;

    #[test]
    fn a_fifo_or_directory_named_as_a_module_is_refused_without_waiting() {
        let until = Instant::now() + Duration::from_secs(60);
        let dir = std::env::temp_dir().join(format!("initagent-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("stuck.ko");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // No writer ever opens the FIFO: a blocking open would never return.
        let kernel = SysKernel::new();
        let Err(NotLoaded::Failed(err)) = kernel.load("stuck", &fifo, "", until) else {
            panic!("a FIFO loaded");
        };
        assert!(
            err.message.contains("not a regular file (a FIFO)"),
            "{}",
            err.message
        );
        let Err(NotLoaded::Failed(err)) = kernel.load("dir", &dir, "", until) else {
            panic!("a directory loaded");
        };
        assert!(err.message.contains("(a directory)"), "{}", err.message);
        // A device node is refused without being opened (the console here: opened, it
        // could become the test's controlling terminal).
        let Err(NotLoaded::Failed(err)) = kernel.load("tty", Path::new("/dev/tty"), "", until)
        else {
            panic!("a device node loaded");
        };
        assert!(
            err.message
                .contains("/dev/tty: not a regular file (a device node); refused"),
            "{}",
            err.message
        );
        // An install rule that never returns is stopped at its deadline.
        let kernel = SysKernel {
            install_deadline: Duration::from_millis(300),
            ..SysKernel::new()
        };
        // The shell forks the sleep (a command follows it): stopping the rule must stop
        // the sleep too, not orphan it.
        let err = kernel
            .install("stuck", "sleep 601; true", "", until)
            .unwrap_err();
        assert!(
            err.message.contains("did not finish within 0.3 s; stopped"),
            "{}",
            err.message
        );
        std::thread::sleep(Duration::from_millis(200));
        let orphans: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.trim() == "sleep 601")
            .collect();
        assert!(orphans.is_empty(), "{orphans:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
