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

use crate::config::{self, cmdline::Cmdline, Config, KEYS};
use crate::report;
use crate::stage1::{self, runner::StepRunner, Paths};
use lexopt::prelude::*;
use std::ffi::OsString;
use std::path::PathBuf;

const USAGE: &str = "\
usage: initagent <command> [options]

commands:
  stage1                  run stage 1 (what PID 1 does): mount, configure, hand off
  handoff [--dry-run]     record the handoff in the report and exec the next init
  status [--json]         show the boot report: steps slowest first, critical path
                          [--check: one line and 0 ok, 1 warning, 2 critical, 3 unknown]
                          [--svg FILE: draw the timeline, like systemd-analyze plot]
  config [--json|--keys]  show the effective configuration and its warnings
  modules resolve NAME|ALIAS...   what modprobe would load, in order, and why
                          [--show-depends] like modprobe -D; [--lookup] like modprobe -R
  modules load [NAME|ALIAS...]    load with finit_module (default: the target's list)
  modules status          loaded, built-in and failed modules of this boot
                          [--lsmod: the loaded ones as lsmod prints them]
  modules info NAME|FILE  a module's .modinfo [-F FIELD: its values only, like modinfo -F]
  modprobe [OPTIONS] NAME...  kmod's modprobe (-a -r -n -v -q -b -i -D -R -c -C -d -S
                          --first-time; `initagent modprobe -h`); also as argv[0] modprobe
  flist mount -m FL DIR   mount an rfs flist over FUSE (daemon; returns when it serves)
                          [--cache DIR] [--cache-bytes N: its bound, default 1 GiB]
                          [--store URL]... [--store-rewrite FROM=TO]... [--foreground]
                          [--store-timeout SECS: deadline of one store request, default 15]
                          [--ca-file PEM: trust these CAs (not the web roots) for HTTPS/S3 stores]
                          [--fs-subtype NAME: shows as fuse.NAME, default initagent] [--no-allow-other]
                          [--stats FILE: keep the daemon's counters (bytes fetched, cache hits) there]
                          [--stores-stdin: more stores and rewrites as JSON on stdin, kept out of argv]
  flist umount DIR [--lazy]
  flist pack -m OUT.fl --store [xx-yy=]URL... DIR   pack a tree like rfs pack [--no-strip-password]
  flist prefetch -m FL --cache DIR PATH...  fetch files' blocks into the mount's cache
  flist route list|set -m FL [[xx-yy=]URL...]   show or replace the routes baked into an flist
  flist inspect|verify -m FL      routes, counts / fetch and check every block
  flist ls|cat -m FL PATH         list a directory / print a file, without mounting
  net up [--json]         bring the network up: every candidate link at once, DHCPv4 (or the
                          kernel's ip=), the zos choice, address/routes/DNS, lease file
                          [--links A,B: these links only, virtual ones allowed] [--iface NAME|MAC]
                          [--carrier-timeout S] [--dhcp-timeout S] [--settle S] [--ipv6-timeout S]
                          [--run-dir DIR: lease files, default /run/initagent/net]
                          [--resolv-conf FILE: default /etc/resolv.conf]
                          [--check URL|FL: reach this store (or an flist's stores) over TCP]...
                          [--retry: until it is ok, with backoff up to 60 s (zinit oneshot)]
  net status [--json]     links, addresses and the leases handed over
  net renew [--once]      keep the leases of `net up` (zinit service): REQUEST at T1 to the
                          granting server, at T2 to any, a fresh lease if one is lost; same
                          client id and address. --once: renew every lease now and exit
  step NAME [--as NAME] [--retry] [--json]
                          run one boot step (bootstrap, net, flists, depmod, prefetch,
                          modules, coldplug) as stage 1 does, recorded in the boot report
                          as --as NAME (the zinit service's name; default <step>-by-hand,
                          stage 1's own record is never replaced); exits 0 exactly when
                          what waits on it may go on: net and flists once done (--retry:
                          until then, backoff 5 s doubling to 60 s), the others always,
                          saying why they are degraded. What the zinit services run
                          [--watch S: flists only; then look at the mounts every S seconds
                          and mount again what is stale, stopped or gone (never exits)]
  flists [--json]         mount the firmware and modules flists of /etc/initagent/flists on
                          /lib/firmware and /lib/modules/<release>, as stage 1 does (what is
                          mounted stays) [--retry: until mounted, backoff up to 60 s]
  prefetch [--json]       fetch into the flists' caches what this node will load: the module
                          lists, its devices' drivers, their dependencies and firmware
  coldplug [--json]       load the drivers of the devices present (no udevd needed): scan
                          /sys/devices modaliases, then new devices' events until quiet;
                          lists devices without a driver [--deadline S, default 30]; with a
                          udevd running: trigger (subsystems, then devices) and settle
                          [--subsystem NAME]... [--device /sys/devices/PATH]...: only these
  depmod check [--json]   are the dependency maps right for the tree? (0 valid, 1 mismatch, 2 error)
                          [--deep: parse every map even when the stamp proves them]
  depmod stamp            record each module's size, mtime and content digests (image build)
  depmod ensure           check; only on a mismatch regenerate into --output (default
                          /run/initagent/depmod) and bind-mount over the tree [--no-mount]
                          [--in-process: without the depmod binary]
  version                 print the version

options:
  --report FILE           boot report (default /run/initagent/report.json)
  --profile FILE          target profile (default /etc/initagent/config.toml)
  --cmdline-file FILE     kernel command line (default /proc/cmdline)
  --cmdline TEXT          use TEXT as the kernel command line (config, net up)
  --root DIR              module tree under DIR/lib/modules (like modprobe -d)
  --kernel KVER           kernel release (like modprobe -S; default: uname -r)
  --modprobe-d DIR        modprobe.d directory instead of the defaults (repeatable)
  --list FILE             module list for `modules load` (default: the profile's)
  --degraded-ok           `modules load`, `coldplug`, `depmod ensure`, `flists`, `prefetch`: exit 0 when
                          the boot can go on though the step could not do its work (some modules failed,
                          no tree, no list, no room in /run), saying why; for zinit oneshots, whose
                          failure blocks their dependents forever
";

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
}

fn parse(args: Vec<OsString>) -> Result<Options, lexopt::Error> {
    let mut options = Options {
        command: None,
        positional: Vec::new(),
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
    };
    let mut parser = lexopt::Parser::from_args(args.into_iter().skip(1));
    while let Some(arg) = parser.next()? {
        match arg {
            Long("report") => options.paths.report = PathBuf::from(parser.value()?),
            Long("profile") => options.paths.profile = PathBuf::from(parser.value()?),
            Long("cmdline-file") => options.paths.cmdline = PathBuf::from(parser.value()?),
            Long("cmdline") => options.cmdline_text = Some(parser.value()?.string()?),
            Long("json") => options.json = true,
            Long("keys") => options.keys = true,
            Long("dry-run") => options.dry_run = true,
            Long("root") => options.modules.root = PathBuf::from(parser.value()?),
            Long("kernel") => options.modules.kernel = Some(parser.value()?.string()?),
            Long("modprobe-d") => options
                .modules
                .config_dirs
                .push(PathBuf::from(parser.value()?)),
            Long("list") => options.modules.list = Some(PathBuf::from(parser.value()?)),
            Long("show-depends") | Short('D') => options.modules.show_depends = true,
            Long("lookup") | Short('R') => options.modules.lookup_only = true,
            Short('q') | Long("quiet") => options.modules.quiet = true,
            Short('b') | Long("use-blacklist") => options.modules.use_blacklist = true,
            Long("sequential") => options.modules.sequential = true,
            Short('F') | Long("field") => options.modules.field = Some(parser.value()?.string()?),
            Long("lsmod") => options.modules.lsmod = true,
            Long("output") => options.depmod_output = Some(PathBuf::from(parser.value()?)),
            Long("no-mount") => options.no_mount = true,
            Long("in-process") => options.in_process = true,
            Long("deep") => options.deep = true,
            Short('m') | Long("meta") => options.flist.meta = Some(PathBuf::from(parser.value()?)),
            Long("cache") => options.flist.cache = Some(PathBuf::from(parser.value()?)),
            Long("cache-bytes") => options.flist.cache_bytes = Some(parser.value()?.parse()?),
            Long("store") => options.flist.stores.push(parser.value()?.string()?),
            Long("store-rewrite") => options.flist.rewrites.push(parser.value()?.string()?),
            Long("stores-stdin") => options.flist.stores_stdin = true,
            Long("foreground") => options.flist.foreground = true,
            Long("lazy") => options.flist.lazy = true,
            Long("no-strip-password") => options.flist.keep_passwords = true,
            Long("store-timeout") => options.flist.store_timeout = Some(parser.value()?.parse()?),
            Long("ca-file") => options.flist.ca_file = Some(PathBuf::from(parser.value()?)),
            Long("fs-subtype") => options.flist.fs_subtype = Some(parser.value()?.string()?),
            Long("no-allow-other") => options.flist.no_allow_other = true,
            Long("subsystem") => options.selection.subsystems.push(parser.value()?.string()?),
            Long("device") => options.selection.add_device(&parser.value()?.string()?),
            Long("stats") => options.flist.stats = Some(PathBuf::from(parser.value()?)),
            Long("links") => options.net.links = Some(parser.value()?.string()?),
            Long("iface") => options.net.iface = Some(parser.value()?.string()?),
            Long("carrier-timeout") => options.net.carrier_timeout = Some(parser.value()?.parse()?),
            Long("dhcp-timeout") => options.net.dhcp_timeout = Some(parser.value()?.parse()?),
            Long("settle") => options.net.settle = Some(parser.value()?.parse()?),
            Long("ipv6-timeout") => options.net.ipv6_timeout = Some(parser.value()?.parse()?),
            Long("run-dir") => options.net.run_dir = Some(PathBuf::from(parser.value()?)),
            Long("resolv-conf") => options.net.resolv_conf = Some(PathBuf::from(parser.value()?)),
            Long("once") => options.net.once = true,
            Long("deadline") => options.deadline = Some(parser.value()?.parse()?),
            Long("degraded-ok") => options.degraded_ok = true,
            Long("retry") => options.retry = true,
            Long("watch") => options.watch = Some(parser.value()?.parse()?),
            Long("as") => options.record_as = Some(parser.value()?.string()?),
            Long("svg") => options.svg = Some(PathBuf::from(parser.value()?)),
            // `status --check` is a flag; `net up --check URL` takes a store.
            Long("check") if options.command.as_deref() == Some("status") => options.check = true,
            Long("check") => options.net.check.push(parser.value()?.string()?),
            Short('h') | Long("help") => options.command = Some("help".into()),
            Long("version") => options.command = Some("version".into()),
            Value(value) if options.command.is_none() => options.command = Some(value.string()?),
            Value(value) => options.positional.push(value.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(options)
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
        Ok(options) => options,
        Err(e) => {
            errln!("initagent: {e}\n\n{USAGE}");
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
        Some("version") => {
            outln!("initagent {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("help") => {
            out!("{USAGE}");
            0
        }
        Some(other) => {
            errln!("initagent: unknown command {other:?}\n\n{USAGE}");
            2
        }
        None => {
            errln!("{USAGE}");
            2
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
    let why = stage1::handoff::handoff(&mut runner, &loaded.config.handoff);
    errln!("initagent: {why}");
    1
}
