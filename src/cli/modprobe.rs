//! `modprobe`, as kmod's (version 30, Debian 12's) does it: what the kernel's
//! `request_module` runs (`/run/initagent/bin/modprobe`), what the image installs as
//! `/sbin/modprobe` when it carries no kmod, and what `initagent modprobe` runs. The
//! decisions follow kmod's `modprobe.c` and `kmod_module_probe_insert_module`: the same
//! probe lists (the resolver, checked against kmod on Debian's whole tree), the same
//! "already in the kernel" rule from `/sys/module` and the tree's built-ins, the same lines
//! for `-v`/`-n`/`-D`/`-R`/`-c`, the same messages and exit codes. One deliberate
//! difference: `-f` and the `--force-*` options are refused (a node never forces a module
//! built for another kernel). Loads go through the agent's own loader, bounded by the
//! modules deadline.

use super::modprobe_args::{self, Invocation};
use crate::config::cmdline::Cmdline;
use crate::kmod::live::{InitState, Live, SysModule};
use crate::kmod::load::{Kernel, NotLoaded, Outcome};
use crate::kmod::resolve::{Action, BlacklistMode, Module, Probe, Resolution};
use crate::kmod::Modules;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// kmod's log priorities (syslog's numbers) and their words.
const CRIT: u8 = 2;
const ERR: u8 = 3;
const WARNING: u8 = 4;

/// A failure as kmod counts it (a negative errno): only whether there was one matters
/// for the exit code.
type Status = Result<(), i32>;

struct Modprobe<'a> {
    inv: &'a Invocation,
    modules: &'a Modules,
    live: &'a dyn Live,
    kernel: &'a dyn Kernel,
    until: Instant,
    /// What `LOG` prints at: kmod's `FATAL`, or `WARNING` with `-a`.
    log_priority: u8,
    /// `verbose` in kmod: messages at or below it are printed.
    verbose: u8,
    dry_run: bool,
    ignore_loaded: bool,
    show: bool,
    /// What the loads did, merged into `/run/initagent/modules.json` at the end (so
    /// `initagent modules status` sees the kernel's and scripts' requests too).
    outcomes: Mutex<Vec<(String, Outcome)>>,
}

/// Runs `modprobe` with `args` (the program name not included); the exit code.
pub(crate) fn main(args: &[String]) -> i32 {
    let env = std::env::var("MODPROBE_OPTIONS").ok();
    let inv = match modprobe_args::parse(args, env.as_deref()) {
        Ok(inv) => inv,
        Err(e) => {
            errln!("modprobe: {e}");
            return 1;
        }
    };
    crate::logging::init(if inv.quiet {
        log::LevelFilter::Off
    } else {
        log::LevelFilter::Warn
    });
    if inv.help {
        out!("{}", HELP);
        return 0;
    }
    if inv.version {
        outln!("kmod version 30 (initagent {})", env!("CARGO_PKG_VERSION"));
        outln!("+ZSTD +XZ -ZLIB -LIBCRYPTO -EXPERIMENTAL");
        return 0;
    }
    let verbose = if inv.quiet { 0 } else { WARNING }
        .saturating_add(u8::try_from(inv.verbose).unwrap_or(u8::MAX));
    let say = |priority: u8, message: &str| log_line(&inv, verbose, priority, message);
    if let Some(force) = &inv.force {
        say(
            ERR,
            &format!(
                "{force} is refused: this modprobe never forces a module past its version checks \
                 (load the module built for this kernel)"
            ),
        );
        return 1;
    }
    if let Some(dump) = &inv.dump {
        say(ERR, &format!("{dump} is not supported by this modprobe"));
        return 1;
    }
    if !inv.show_config && inv.args.is_empty() {
        say(ERR, "missing parameters. See -h.");
        return 1;
    }
    let release = inv
        .release
        .clone()
        .unwrap_or_else(crate::sys::kernel_release);
    let root = PathBuf::from(inv.root.clone().unwrap_or_else(|| "/".into()));
    let config: Vec<PathBuf> = inv.config.iter().map(PathBuf::from).collect();
    let cmdline = Cmdline::parse_bytes(&std::fs::read("/proc/cmdline").unwrap_or_default());
    let opened = Modules::open(&root, &release, &config, &cmdline);
    if inv.show_config {
        // The configuration needs no tree (kmod prints it, and no index, without one).
        return match &opened {
            Ok(modules) => super::modprobe_config::show(&modules.config, Some(&modules.tree)),
            Err(_) => {
                let dir = root.join("lib/modules").join(&release);
                let dirs = if config.is_empty() {
                    crate::kmod::config::DEFAULT_DIRS
                        .iter()
                        .map(PathBuf::from)
                        .collect()
                } else {
                    config
                };
                let parsed = crate::kmod::config::load(&dirs, &dir, &cmdline);
                super::modprobe_config::show(&parsed, None)
            }
        };
    }
    let modules = match opened {
        Ok(modules) => modules,
        Err(e) => {
            let dir = root.join("lib/modules").join(&release);
            let first = inv.args.first().map_or("", String::as_str);
            say(
                CRIT,
                &format!("Module {first} not found in directory {}", dir.display()),
            );
            say(ERR, &e.to_string());
            return 1;
        }
    };
    // The modules deadline as every other load reads it: the profile, then the command line.
    let config = crate::stage1::load_config(&crate::stage1::Paths::default()).config;
    let kernel = crate::kmod::kernel::SysKernel::new();
    let modprobe = Modprobe {
        inv: &inv,
        modules: &modules,
        live: &SysModule::default(),
        kernel: &kernel,
        until: config.modules_deadline(),
        log_priority: if inv.all { WARNING } else { CRIT },
        verbose,
        dry_run: inv.dry_run || inv.show_depends,
        ignore_loaded: inv.show_depends,
        show: inv.show_depends || verbose > WARNING,
        outcomes: Mutex::new(Vec::new()),
    };
    let started = Instant::now();
    let status = modprobe.run();
    let modules = modprobe.outcomes.into_inner().unwrap_or_default();
    if !modules.is_empty() {
        let report = crate::kmod::load::Report {
            modules,
            unresolved: Vec::new(),
            micros: started.elapsed().as_micros() as u64,
        };
        if let Err(e) = crate::kmod::record_outcomes(&report) {
            log::warn!("{}: {e}", crate::kmod::OUTCOMES_PATH);
        }
    }
    i32::from(status.is_err())
}

/// One of kmod's log lines (`modprobe: FATAL: …`), if `priority` is shown: to stderr, or
/// with `-s` to the kernel log. As kmod's, a FATAL line that is shown ends the program
/// with exit code 1 (so `-a` or `-q`, which lower or hide it, let the rest go on).
fn log_line(inv: &Invocation, verbose: u8, priority: u8, message: &str) {
    if priority > verbose {
        return;
    }
    let word = match priority {
        0..=2 => "FATAL",
        3 => "ERROR",
        4 => "WARNING",
        5 => "NOTICE",
        6 => "INFO",
        _ => "DEBUG",
    };
    if inv.syslog {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .and_then(|mut kmsg| {
                std::io::Write::write_all(
                    &mut kmsg,
                    crate::redact::text(&format!("modprobe: {word}: {message}\n")).as_bytes(),
                )
            });
    } else {
        errln!("modprobe: {word}: {message}");
    }
    if priority <= CRIT {
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::process::exit(1);
    }
}

impl Modprobe<'_> {
    /// Removes (`-r`), inserts every argument (`-a`), or inserts the first with the rest
    /// as its parameters.
    fn run(&self) -> Status {
        let args = &self.inv.args;
        if self.inv.remove {
            self.remove_all()
        } else if self.inv.all {
            self.insert_all()
        } else {
            let Some((first, params)) = args.split_first() else {
                return Err(nix::libc::EINVAL);
            };
            let extra = modprobe_args::options_from_args(params);
            self.insert(first, (!extra.is_empty()).then_some(extra.as_str()))
        }
    }

    fn log(&self, priority: u8, message: &str) {
        log_line(self.inv, self.verbose, priority, message);
    }

    /// Notes what a real load (or install command) did, for the boot's module record.
    fn record(&self, name: &str, outcome: Outcome) {
        if let Ok(mut outcomes) = self.outcomes.lock() {
            outcomes.push((name.to_string(), outcome));
        }
    }

    fn mode(&self) -> BlacklistMode {
        if self.inv.use_blacklist {
            BlacklistMode::Always
        } else {
            BlacklistMode::AliasOnly
        }
    }

    /// kmod's `module_is_inkernel`: live, or built in.
    fn in_kernel(&self, name: &str) -> bool {
        matches!(
            self.initstate(name),
            Some(InitState::Live | InitState::Builtin)
        )
    }

    /// kmod's `kmod_module_get_initstate`: built in by the tree's `modules.builtin`, else
    /// what `/sys/module` says.
    fn initstate(&self, name: &str) -> Option<InitState> {
        if self.modules.tree.is_builtin(name) {
            return Some(InitState::Builtin);
        }
        self.live.initstate(name)
    }

    fn insert_all(&self) -> Status {
        let mut status = Ok(());
        for input in &self.inv.args {
            if let Err(e) = self.insert(input, None) {
                status = Err(e);
            }
        }
        status
    }

    fn resolve(&self, input: &str) -> Resolution {
        let resolver = self.modules.resolver();
        if let Some(path) = by_path(input) {
            return resolver.resolve_path(&path, self.mode());
        }
        if self.inv.ignore_commands {
            resolver.resolve_ignoring_commands(input, self.mode())
        } else {
            resolver.resolve(input, self.mode())
        }
    }

    /// kmod's `insmod`: every module the input resolves to.
    fn insert(&self, input: &str, extra: Option<&str>) -> Status {
        let resolution = self.resolve(input);
        if resolution.probes.is_empty() {
            let message = match by_path(input) {
                Some(_) => format!("Module {input} not found."),
                None => format!(
                    "Module {input} not found in directory {}",
                    self.modules.tree.dir.display()
                ),
            };
            self.log(self.log_priority, &message);
            return Err(nix::libc::ENOENT);
        }
        let mut status = Ok(());
        for probe in &resolution.probes {
            status = if self.inv.resolve_alias {
                outln!("{}", probe.module.name);
                Ok(())
            } else {
                self.insert_probe(probe, extra)
            };
            if let Err(errno) = status {
                let name = &probe.module.name;
                let why = match errno {
                    nix::libc::EEXIST => "Module already in kernel".to_string(),
                    nix::libc::ENOENT => {
                        "Unknown symbol in module, or unknown parameter (see dmesg)".to_string()
                    }
                    errno => std::io::Error::from_raw_os_error(errno).to_string(),
                };
                self.log(ERR, &format!("could not insert '{name}': {why}"));
            }
        }
        status
    }

    /// `kmod_module_probe_insert_module` for one match.
    fn insert_probe(&self, probe: &Probe, extra: Option<&str>) -> Status {
        let target = &probe.module.name;
        if !self.ignore_loaded && self.in_kernel(target) {
            return if self.inv.first_time {
                Err(nix::libc::EEXIST)
            } else {
                Ok(())
            };
        }
        if probe.blacklisted {
            return Ok(());
        }
        let mut status: Status = Ok(());
        for step in &probe.steps {
            let is_target = step.module.name == *target && step.reason == "requested";
            let mut result = if !self.ignore_loaded && self.in_kernel(&step.module.name) {
                Err(nix::libc::EEXIST)
            } else {
                self.insert_step(step, if is_target { extra } else { None })
            };
            if result == Err(nix::libc::EEXIST) && is_target && self.inv.first_time {
                status = result;
                break;
            }
            if result == Err(nix::libc::EEXIST) || !step.required {
                result = Ok(());
            }
            status = result;
            if status.is_err() {
                break;
            }
        }
        status
    }

    fn insert_step(&self, step: &crate::kmod::resolve::Step, extra: Option<&str>) -> Status {
        // kmod's module_options_concat: the configured options, a space, the extra ones.
        let options = match (step.options.as_str(), extra) {
            ("", None) => String::new(),
            ("", Some(extra)) => extra.to_string(),
            (configured, None) => format!("{configured} "),
            (configured, Some(extra)) => format!("{configured} {extra}"),
        };
        let name = &step.module.name;
        match &step.action {
            Action::Install { command } => {
                if self.show {
                    outln!("install {command} {options}");
                }
                if self.dry_run {
                    return Ok(());
                }
                let started = Instant::now();
                match self
                    .kernel
                    .install(name, command, options.trim_end(), self.until)
                {
                    Ok(()) => {
                        let micros = started.elapsed().as_micros() as u64;
                        let via = crate::kmod::load::Via::InstallCommand;
                        self.record(name, Outcome::Loaded { via, micros });
                        Ok(())
                    }
                    Err(error) => {
                        self.log(ERR, &error.message);
                        self.record(name, Outcome::Failed { error });
                        Err(nix::libc::EINVAL)
                    }
                }
            }
            Action::Insert { path } => {
                if self.show {
                    outln!("insmod {} {options}", path.display());
                }
                if self.dry_run {
                    return Ok(());
                }
                let started = Instant::now();
                let answer = self.kernel.load(name, path, options.trim_end(), self.until);
                let micros = started.elapsed().as_micros() as u64;
                match answer {
                    Ok(via) => {
                        self.record(name, Outcome::Loaded { via, micros });
                        Ok(())
                    }
                    Err(NotLoaded::Failed(e)) if e.errno == Some(nix::libc::EEXIST) => {
                        self.record(name, Outcome::AlreadyLoaded);
                        Err(nix::libc::EEXIST)
                    }
                    Err(NotLoaded::Failed(error)) => {
                        if self.inv.verbose > 0 {
                            self.log(ERR, &format!("{name}: {}", error.message));
                        }
                        let errno = error.errno.unwrap_or(nix::libc::EINVAL);
                        self.record(name, Outcome::Failed { error });
                        Err(errno)
                    }
                    Err(NotLoaded::StillLoading) => {
                        let text = crate::kmod::load::still_loading(micros);
                        self.log(ERR, &format!("{name}: {text}"));
                        self.record(name, Outcome::StillLoading { micros });
                        Err(nix::libc::ETIMEDOUT)
                    }
                }
            }
            Action::Builtin => {
                if self.show && self.initstate(name) == Some(InitState::Builtin) {
                    outln!("builtin {name}");
                }
                Ok(())
            }
            Action::Missing => {
                if self.dry_run {
                    Ok(())
                } else {
                    Err(nix::libc::ENOENT)
                }
            }
            Action::Refused { why } => {
                self.log(ERR, why);
                Err(nix::libc::EPERM)
            }
        }
    }

    fn remove_all(&self) -> Status {
        let mut status = Ok(());
        for input in &self.inv.args {
            if let Err(e) = self.remove(input) {
                status = Err(e);
            }
        }
        status
    }

    /// kmod's `rmmod`: every module the input names.
    fn remove(&self, input: &str) -> Status {
        let found = self
            .modules
            .resolver()
            .lookup(input)
            .map(|(_, found)| found)
            .unwrap_or_default();
        if found.is_empty() {
            self.log(self.log_priority, &format!("Module {input} not found."));
            return Err(nix::libc::ENOENT);
        }
        for module in &found {
            self.remove_module(module, false)?;
        }
        Ok(())
    }

    /// kmod's `rmmod_do_module`; `ignore_builtin` for soft dependencies and holders.
    fn remove_module(&self, module: &Module, ignore_builtin: bool) -> Status {
        let name = &module.name;
        let resolver = self.modules.resolver();
        let (pre, post, command) = if self.inv.ignore_commands {
            (Vec::new(), Vec::new(), None)
        } else {
            let (pre, post) = resolver.softdeps(name);
            (pre, post, self.modules.config.remove_for(name))
        };
        if command.is_none() && !self.ignore_loaded {
            match self.initstate(name) {
                None if self.inv.first_time => {
                    self.log(
                        self.log_priority,
                        &format!("Module {name} is not in kernel."),
                    );
                    return Err(nix::libc::ENOENT);
                }
                None => return Ok(()),
                Some(InitState::Builtin) if ignore_builtin => return Ok(()),
                Some(InitState::Builtin) => {
                    self.log(self.log_priority, &format!("Module {name} is builtin."));
                    return Err(nix::libc::ENOENT);
                }
                Some(_) => {}
            }
        }
        // Soft dependencies in reverse order; their failures do not count (a FATAL
        // message still ends the program, as kmod's does).
        for soft in post.iter().rev() {
            let _ = self.remove_module(soft, true);
        }
        if self.inv.remove_holders {
            for holder in self.live.holders(name).iter().rev() {
                self.remove_module(&Module::named(holder.clone()), true)?;
            }
        }
        if command.is_none()
            && !self.ignore_loaded
            && self.inv.wait_msec.is_none()
            && self.live.refcnt(name).is_some_and(|n| n > 0)
        {
            self.log(self.log_priority, &format!("Module {name} is in use."));
            return Err(nix::libc::EBUSY);
        }
        match command {
            Some(command) => self.remove_command(name, command)?,
            None => {
                self.delete(name)?;
                for dep in resolver.dependency_names(name) {
                    if self.live.refcnt(&dep) == Some(0) {
                        let _ = self.delete(&dep);
                    }
                }
            }
        }
        for soft in pre.iter().rev() {
            let _ = self.remove_module(soft, true);
        }
        Ok(())
    }

    fn remove_command(&self, name: &str, command: &str) -> Status {
        let command = command.replace("$CMDLINE_OPTS", "");
        if self.show {
            outln!("remove {command}");
        }
        if self.dry_run {
            return Ok(());
        }
        self.kernel
            .install(name, &command, "", self.until)
            .map_err(|e| {
                self.log(
                    ERR,
                    &format!("Error running remove command for {name}: {}", e.message),
                );
                nix::libc::EINVAL
            })
    }

    /// kmod's `rmmod_do_remove_module`.
    fn delete(&self, name: &str) -> Status {
        if self.show {
            outln!("rmmod {name}");
        }
        if self.dry_run {
            return Ok(());
        }
        let waited_until = self
            .inv
            .wait_msec
            .map(|msec| Instant::now() + std::time::Duration::from_millis(msec));
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            let errno = match crate::sys::module::delete_module(name, self.until) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e.raw_os_error().unwrap_or(nix::libc::EINVAL),
                Err(_) => nix::libc::ETIMEDOUT,
            };
            match errno {
                nix::libc::ENOENT if !self.inv.first_time => return Ok(()),
                nix::libc::ENOENT => {
                    self.log(
                        self.log_priority,
                        &format!("Module {name} is not in kernel."),
                    );
                    return Err(errno);
                }
                nix::libc::EAGAIN if waited_until.is_some_and(|t| Instant::now() < t) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                errno => {
                    let why = std::io::Error::from_raw_os_error(errno);
                    self.log(ERR, &format!("could not remove '{name}': {why}"));
                    return Err(errno);
                }
            }
        }
    }
}

/// A module given by path (`/…` or `./…`, as kmod 31 takes them).
fn by_path(input: &str) -> Option<PathBuf> {
    (input.starts_with('/') || input.starts_with("./")).then(|| PathBuf::from(input))
}

const HELP: &str = "Usage:
\tmodprobe [options] [-i] [-b] modulename
\tmodprobe [options] -a [-i] [-b] modulename [modulename...]
\tmodprobe [options] -r [-i] modulename
\tmodprobe [options] -r -a [-i] modulename [modulename...]
\tmodprobe [options] -c
Management Options:
\t-a, --all                   Consider every non-argument to
\t                            be a module name to be inserted
\t                            or removed (-r)
\t-r, --remove                Remove modules instead of inserting
\t    --remove-holders        Also remove module holders (use together with -r)
\t-w, --wait <MSEC>           When removing a module, wait up to MSEC for
\t                            module's refcount to become 0 so it can be
\t                            removed (use together with -r)
\t    --first-time            Fail if module already inserted or removed
\t-i, --ignore-install        Ignore install commands
\t-i, --ignore-remove         Ignore remove commands
\t-b, --use-blacklist         Apply blacklist to resolved alias.
\t-f, --force                 Refused: a node never forces a module past its
\t                            version checks (also --force-modversion,
\t                            --force-vermagic)

Query Options:
\t-R, --resolve-alias         Only lookup and print alias and exit
\t-D, --show-depends          Only print module dependencies and exit
\t-c, --showconfig            Print out known configuration and exit
\t-c, --show-config           Same as --showconfig

General Options:
\t-n, --dry-run               Do not execute operations, just print out
\t-n, --show                  Same as --dry-run
\t-C, --config=FILE           Use FILE instead of default search paths
\t-d, --dirname=DIR           Use DIR as filesystem root for /lib/modules
\t-S, --set-version=VERSION   Use VERSION instead of `uname -r`
\t-s, --syslog                print to the kernel log, too
\t-q, --quiet                 disable messages
\t-v, --verbose               enables more messages
\t-V, --version               show version
\t-h, --help                  show this help

This is initagent's modprobe: loads go through its own loader (no libkmod),
bounded by initagent.modules_deadline.
";

#[cfg(test)]
#[path = "modprobe_tests.rs"]
mod tests;
