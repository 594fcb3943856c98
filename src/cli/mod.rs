//! Subcommands. As PID 1 the arguments are ignored (the kernel passes unknown
//! command-line words there) and stage 1 runs. Exit codes: 0 success, 1 the command
//! failed, 2 the command line was wrong.

#[macro_use]
mod out;
mod boot;
mod coldplug;
mod depmod;
mod flist;
mod modprobe;
pub mod modprobe_args;
pub mod modprobe_config;
mod modules;
mod net;
mod report_cmd;
pub mod spec;

use crate::config::{self, cmdline::Cmdline, Config, KEYS};
use crate::report;
use crate::stage1::{self, runner::StepRunner, Paths};
use std::ffi::OsString;
use std::path::PathBuf;

/// Everything the command line said.
pub(crate) struct Options {
    pub command: Option<String>,
    pub positional: Vec<String>,
    pub paths: Paths,
    pub json: bool,
    pub keys: bool,
    pub dry_run: bool,
    pub cmdline_text: Option<String>,
    pub modules: modules::ModuleOptions,
    pub depmod_output: Option<PathBuf>,
    pub no_mount: bool,
    pub in_process: bool,
    pub deep: bool,
    pub flist: flist::FlistOptions,
    pub net: net::NetOptions,
    pub deadline: Option<u32>,
    pub degraded_ok: bool,
    pub retry: bool,
    pub watch: Option<u64>,
    pub record_as: Option<String>,
    pub svg: Option<PathBuf>,
    /// `status --check`: a monitoring verdict and its exit code.
    pub check: bool,
    pub selection: crate::coldplug::select::Selection,
    /// `report send` and `fleet report`.
    pub report: report_cmd::ReportOptions,
}

impl Options {
    fn new(command: &str, positional: Vec<String>) -> Options {
        Options {
            command: Some(command.to_string()),
            positional,
            paths: Paths::default(),
            json: false,
            keys: false,
            dry_run: false,
            cmdline_text: None,
            modules: modules::ModuleOptions::default(),
            depmod_output: None,
            no_mount: false,
            in_process: false,
            deep: false,
            flist: flist::FlistOptions::default(),
            net: net::NetOptions::default(),
            deadline: None,
            degraded_ok: false,
            retry: false,
            watch: None,
            record_as: None,
            svg: None,
            check: false,
            selection: Default::default(),
            report: Default::default(),
        }
    }

    /// Takes one option the grammar let through; a value that is not what the option
    /// takes (a number, say) is a usage error.
    fn take(&mut self, opt: &spec::Opt, value: Option<String>) -> Result<(), String> {
        let long = opt.long;
        fn number<T: std::str::FromStr>(long: &str, value: &str) -> Result<T, String> {
            value
                .trim()
                .parse()
                .map_err(|_| format!("--{long} takes a whole number, not {value:?}"))
        }
        let text = value.unwrap_or_default();
        let path = || PathBuf::from(&text);
        // Two options share a long name with another meaning; the grammar says which.
        if *opt == spec::STATUS_CHECK {
            self.check = true;
            return Ok(());
        }
        if *opt == spec::FLEET_STORE {
            self.report.store = Some(text);
            return Ok(());
        }
        match long {
            "report" => self.paths.report = path(),
            "profile" => self.paths.profile = path(),
            "cmdline-file" => self.paths.cmdline = path(),
            "cmdline" => self.cmdline_text = Some(text),
            "json" => self.json = true,
            "keys" => self.keys = true,
            "dry-run" => self.dry_run = true,
            "root" => self.modules.root = path(),
            "kernel" => self.modules.kernel = Some(text),
            "modprobe-d" => self.modules.config_dirs.push(path()),
            "list" => self.modules.list = Some(path()),
            "show-depends" => self.modules.show_depends = true,
            "lookup" => self.modules.lookup_only = true,
            "use-blacklist" => self.modules.use_blacklist = true,
            "sequential" => self.modules.sequential = true,
            "field" => self.modules.field = Some(text),
            "lsmod" => self.modules.lsmod = true,
            "output" => self.depmod_output = Some(path()),
            "no-mount" => self.no_mount = true,
            "in-process" => self.in_process = true,
            "deep" => self.deep = true,
            "meta" => self.flist.meta = Some(path()),
            "cache" => self.flist.cache = Some(path()),
            "cache-bytes" => self.flist.cache_bytes = Some(number(long, &text)?),
            "memory-bytes" => self.flist.memory_bytes = Some(number(long, &text)?),
            "store" => self.flist.stores.push(text),
            "store-rewrite" => self.flist.rewrites.push(text),
            "stores-stdin" => self.flist.stores_stdin = true,
            "foreground" => self.flist.foreground = true,
            "lazy" => self.flist.lazy = true,
            "no-strip-password" => self.flist.keep_passwords = true,
            "store-timeout" => self.flist.store_timeout = Some(number(long, &text)?),
            "ca-file" => self.flist.ca_file = Some(path()),
            "fs-subtype" => self.flist.fs_subtype = Some(text),
            "no-allow-other" => self.flist.no_allow_other = true,
            "stats" => self.flist.stats = Some(path()),
            "subsystem" => self.selection.subsystems.push(text),
            "device" => self.selection.add_device(&text),
            "links" => self.net.links = Some(text),
            "iface" => self.net.iface = Some(text),
            "carrier-timeout" => self.net.carrier_timeout = Some(number(long, &text)?),
            "dhcp-timeout" => self.net.dhcp_timeout = Some(number(long, &text)?),
            "settle" => self.net.settle = Some(number(long, &text)?),
            "ipv6-timeout" => self.net.ipv6_timeout = Some(number(long, &text)?),
            "run-dir" => self.net.run_dir = Some(path()),
            "resolv-conf" => self.net.resolv_conf = Some(path()),
            "once" => self.net.once = true,
            "deadline" => self.deadline = Some(number(long, &text)?),
            "degraded-ok" => self.degraded_ok = true,
            "retry" => self.retry = true,
            "watch" => self.watch = Some(number(long, &text)?),
            "as" => self.record_as = Some(text),
            "svg" => self.svg = Some(path()),
            "retry-for" => self.report.retry_for = number(long, &text)?,
            "always" => self.report.always = true,
            "store-file" => self.report.store_file = Some(path()),
            "check" => self.net.check.push(text),
            other => return Err(format!("--{other}: not handled (a bug)")),
        }
        Ok(())
    }
}

/// What to do: a command to run, or the help or version to print.
enum Action {
    Run(Box<Options>),
    Print(String),
}

/// Reads the command line through the grammar ([`spec`]); a wrong one is a usage error.
fn parse(args: Vec<OsString>) -> Result<Action, String> {
    let args = args
        .into_iter()
        .skip(1)
        .map(|a| a.into_string().map_err(|a| format!("{a:?} is not UTF-8")))
        .collect::<Result<Vec<String>, String>>()?;
    match spec::parse(&args).map_err(|e| format!("{e}\n{}", e.usage_line()))? {
        spec::Parsed::Version => Ok(Action::Print(version())),
        spec::Parsed::Help(key) => Ok(Action::Print(spec::help_text(&key))),
        spec::Parsed::Run {
            command,
            given,
            positional,
        } => {
            if command == "help" {
                return Ok(Action::Print(spec::help_text("")));
            }
            if command == "version" {
                return Ok(Action::Print(version()));
            }
            let (group, sub) = command.split_once(' ').unwrap_or((command, ""));
            let mut options = Options::new(group, positional);
            if !sub.is_empty() {
                options.positional.insert(0, sub.to_string());
            }
            for (opt, value) in given {
                options
                    .take(opt, value)
                    .map_err(|e| format!("{command}: {e} (initagent {command} --help)"))?;
            }
            Ok(Action::Run(Box::new(options)))
        }
    }
}

fn version() -> String {
    format!("initagent {}\n", env!("CARGO_PKG_VERSION"))
}

/// Runs the command in `args` (argv, program name first) and returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    install_panic_hook();
    if crate::sys::pid() == 1 {
        let result = std::panic::catch_unwind(|| stage1::run(&Paths::default(), true));
        let what = match result {
            Ok(_) => "stage 1 returned".to_string(),
            Err(panic) => format!(
                "stage 1 panicked: {}",
                stage1::runner::panic_message(&panic)
            ),
        };
        stage1::last_resort(&what);
    }
    // Invoked as `modprobe` (the kernel's request_module helper, /sbin/modprobe) or as
    // `initagent modprobe`: kmod's command line, read by its own parser.
    let as_modprobe = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "modprobe");
    let skip = if as_modprobe {
        Some(1)
    } else {
        (args.get(1).is_some_and(|a| a == "modprobe")).then_some(2)
    };
    if let Some(skip) = skip {
        let rest: Vec<String> = args
            .iter()
            .skip(skip)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return modprobe::main(&rest);
    }
    let options = match parse(args) {
        Ok(Action::Run(options)) => *options,
        Ok(Action::Print(text)) => {
            out!("{text}");
            return 0;
        }
        Err(e) => {
            errln!("initagent: {e}");
            return 2;
        }
    };
    match options.command.as_deref() {
        Some("stage1") => stage1::run(&options.paths, false),
        Some("handoff") => handoff(&options),
        Some("status") => status(&options),
        Some("config") => show_config(&options),
        Some("modules") => modules::run(&options),
        Some("depmod") => depmod::run(&options),
        Some("flist") => flist::run(&options),
        Some("net") => net::run(&options),
        Some("coldplug") => coldplug::run(&options),
        Some("step") => boot::step(&options),
        Some("flists") => boot::run_step(&options, "flists", true),
        Some("prefetch") => boot::run_step(&options, "prefetch", true),
        Some("report") => report_cmd::send(&options),
        Some("fleet") => report_cmd::fleet(&options),
        // The grammar names only the commands above.
        other => {
            errln!("initagent: command {other:?} has no handler (a bug)");
            1
        }
    }
}

/// What the node has now, beside the report: the leases handed over, the flists and their
/// daemons' counters, module outcomes, devices without a driver (from the files the steps leave in `/run/initagent`).
fn node_state() -> Vec<String> {
    let mut lines = Vec::new();
    let run_dir = std::path::Path::new(crate::net::apply::RUN_DIR);
    for path in crate::net::keep::lease_files(run_dir) {
        if let Ok(file) = crate::net::apply::read_lease(&path) {
            let lease = &file.lease;
            lines.push(format!(
                "lease {}: {}/{} from {} (client id {}, {})",
                file.link,
                lease.address,
                lease.prefix_len,
                lease.server,
                lease.client_id,
                lease
                    .lease_time_s
                    .map_or("infinite".into(), |s| format!("{s} s"))
            ));
        }
    }
    let stats_dir = std::path::Path::new(crate::flist::daemon::STATS_DIR);
    let flists = crate::flist::daemon::read_stats(stats_dir);
    // Looked at all at once: each look is bounded, and a stopped daemon costs its bound once.
    let states: Vec<String> = std::thread::scope(|scope| {
        let looks: Vec<_> = flists
            .iter()
            .map(|(_, stats)| scope.spawn(|| flist_state(std::path::Path::new(&stats.target))))
            .collect();
        looks
            .into_iter()
            .map(|look| look.join().unwrap_or_else(|_| "unknown".into()))
            .collect()
    });
    for ((name, stats), state) in flists.iter().zip(states) {
        lines.push(format!(
            "flist {name} on {}: {state}, daemon pid {} (peak RSS {} KiB): {} bytes fetched in {} blocks, cache hits {} memory + {} disk{}{}",
            stats.target,
            stats.pid,
            stats.peak_rss_kib,
            stats.bytes_fetched,
            stats.fetched,
            stats.memory_hits,
            stats.disk_hits,
            if stats.corrupt > 0 { format!(", {} corrupt blobs", stats.corrupt) } else { String::new() },
            if stats.not_kept > 0 {
                format!(", {} blocks not kept (cache full: /run full or too small)", stats.not_kept)
            } else {
                String::new()
            }
        ));
    }
    let read_json = |path: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    };
    if let Some(modules) = read_json(crate::kmod::OUTCOMES_PATH) {
        let outcomes: Vec<&str> = modules["modules"]
            .as_array()
            .map(|m| m.iter().filter_map(|e| e[1]["result"].as_str()).collect())
            .unwrap_or_default();
        let count = |kind: &str| outcomes.iter().filter(|r| **r == kind).count();
        lines.push(format!(
            "modules: {} loaded, {} failed (initagent modules status)",
            count("loaded"),
            count("failed")
        ));
    }
    let run = crate::rundir::RunDir::default();
    if let Some(sent) = crate::report::upload::last_sent(&run) {
        lines.push(match sent.ok {
            true => format!(
                "report sent to {} as {} (by {})",
                sent.store, sent.key, sent.by
            ),
            false => format!(
                "report NOT sent to {} (by {}): {} (`initagent report send` tries again)",
                sent.store, sent.by, sent.error
            ),
        });
    }
    if let Ok(coldplug) = run.read_outcome("coldplug") {
        if let Some(undriven) = coldplug.result["undriven"]
            .as_array()
            .filter(|u| !u.is_empty())
        {
            lines.push(format!(
                "devices without a driver: {} ({})",
                undriven.len(),
                run.outcome_path("coldplug").display()
            ));
        }
    }
    lines
}

/// Runs `attempt` until it exits 0 when `retry` (`--retry`, for zinit oneshots, whose
/// failure would block their dependents forever), with the steps' backoff.
pub(crate) fn with_retry(command: &str, retry: bool, mut attempt: impl FnMut() -> i32) -> i32 {
    for number in 0.. {
        let code = attempt();
        if code == 0 || !retry {
            return code;
        }
        let wait = crate::step::oneshot::backoff(number);
        errln!(
            "initagent: {command}: trying again in {} s (--retry)",
            wait.as_secs()
        );
        std::thread::sleep(wait);
    }
    1
}

/// A step run as a zinit oneshot that cannot do its work on this node (no tree, no list,
/// no room in /run): with `--degraded-ok` it says so and exits 0, since a oneshot that
/// fails holds everything `after:` it forever and zinit never retries; without, exit 1.
pub(crate) fn cannot_run(what: &str, why: impl std::fmt::Display, degraded_ok: bool) -> i32 {
    if degraded_ok {
        outln!("degraded: {what}: {why}; going on (--degraded-ok): nothing waits on this");
        0
    } else {
        errln!("initagent: {what}: {why}");
        1
    }
}

/// Prints a value as pretty JSON on stdout (`--json`).
pub(crate) fn print_json(value: &impl serde::Serialize) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        if crate::logging::is_installed() {
            log::error!("bug: panic at {location}: {message}");
        } else {
            errln!("initagent: bug: panic at {location}: {message}");
        }
    }));
}

/// How an flist's mount is, for `status`: within [`crate::flist::mount::ANSWER_WITHIN`].
fn flist_state(target: &std::path::Path) -> String {
    use crate::flist::mount::{self, MountState};
    match mount::state(target, mount::SUBTYPE) {
        MountState::Ours { .. } => "mounted".into(),
        MountState::Stale { .. } => {
            "STALE (its daemon is gone; `initagent flists` mounts it again)".into()
        }
        MountState::NotAnswering { .. } => {
            use crate::flist::daemon::Silence;
            let how = match crate::flist::daemon::silence(target) {
                Silence::Stopped { pid, state } => format!(
                    "its daemon (pid {pid}) is STOPPED (state {state}; `kill -CONT {pid}`, or `initagent flists` replaces it)"
                ),
                Silence::Busy { pid } => format!("its daemon (pid {pid}) is busy or stuck"),
                Silence::Gone => "no daemon serves it".into(),
            };
            format!(
                "NOT ANSWERING within {:.1} s: {how}",
                mount::ANSWER_WITHIN.as_secs_f32()
            )
        }
        _ => "not mounted".into(),
    }
}

fn status(options: &Options) -> i32 {
    if options.check {
        let verdict = match report::load(&options.paths.report) {
            Ok(report) => report::verdict::check(&report),
            Err(e) => report::verdict::unknown(&e.to_string()),
        };
        outln!("{}", verdict.line);
        return verdict.code;
    }
    match report::load(&options.paths.report) {
        Ok(report) if options.svg.is_some() => {
            let path = options.svg.clone().unwrap_or_default();
            match crate::fsutil::write_atomic(&path, report::svg::render(&report).as_bytes()) {
                Ok(()) => {
                    outln!("timeline written to {}", path.display());
                    0
                }
                Err(e) => {
                    errln!("initagent: {}: {e}", path.display());
                    1
                }
            }
        }
        Ok(report) => {
            if options.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => outln!("{text}"),
                    Err(e) => {
                        errln!("initagent: {e}");
                        return 1;
                    }
                }
            } else {
                out!(
                    "{}",
                    report::render_text(&report, &options.paths.report.display().to_string())
                );
                for line in node_state() {
                    outln!("{line}");
                }
            }
            0
        }
        Err(e) => {
            errln!("initagent: {e}");
            1
        }
    }
}

fn show_config(options: &Options) -> i32 {
    if options.keys && options.json {
        let keys: Vec<serde_json::Value> = KEYS
            .iter()
            .map(|k| serde_json::json!({"key": format!("{}.{}", config::CMDLINE_PREFIX, k.name), "help": k.help}))
            .collect();
        print_json(&keys);
        return 0;
    }
    if options.keys {
        for key in KEYS {
            outln!("{}.{:<14} {}", config::CMDLINE_PREFIX, key.name, key.help);
        }
        return 0;
    }
    let config = effective_config(options);
    if options.json {
        let value = serde_json::json!({ "config": config, "warnings": config.warnings });
        print_json(&value);
    } else {
        outln!("log          = {:?}", config.log_level);
        outln!("on_failure   = {:?}", config.on_failure);
        outln!("reboot_delay = {} s", config.reboot_delay_s);
        outln!("handoff      = {:?}", config.handoff.join(" "));
        outln!("zos          = {:?}", config.zos);
        for (key, layer) in &config.sources {
            match config.via.get(key) {
                Some(typed) => outln!("  {key} set by {layer:?} ({typed})"),
                None => outln!("  {key} set by {layer:?}"),
            }
        }
        for warning in &config.warnings {
            outln!("warning: {warning}");
        }
    }
    0
}

/// The configuration from the profile and the kernel command line, or from `--cmdline
/// TEXT` in place of the kernel's.
pub(crate) fn effective_config(options: &Options) -> Config {
    match &options.cmdline_text {
        Some(text) => {
            let profile = std::fs::read_to_string(&options.paths.profile).ok();
            let path = options.paths.profile.display().to_string();
            Config::build(
                &Cmdline::parse(text),
                profile.as_deref().map(|t| (path.as_str(), t)),
            )
        }
        None => stage1::load_config(&options.paths).config,
    }
}

fn handoff(options: &Options) -> i32 {
    crate::logging::init(log::LevelFilter::Info);
    let loaded = stage1::load_config(&options.paths);
    if options.dry_run {
        outln!("would exec: {}", loaded.config.handoff.join(" "));
        return 0;
    }
    let mut report = report::load(&options.paths.report).unwrap_or_default();
    if report.schema == 0 {
        stage1::describe(&mut report, &loaded);
    }
    let mut runner = StepRunner::new(options.paths.report.clone(), report);
    runner.start_persisting();
    let run = crate::rundir::RunDir::default();
    let mut send = |report: &report::Report| stage1::send_report(&loaded.config, report, &run);
    let why = stage1::handoff::handoff(&mut runner, &loaded.config.handoff, &mut send);
    errln!("initagent: {why}");
    1
}
