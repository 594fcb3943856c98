//! Stage 1: the agent as PID 1 in the initramfs. It only sequences steps; each step lives
//! in its own module. Order: pseudo-filesystems → configuration → bootstrap modules (the
//! NIC drivers and `fuse` the initramfs carries) → network → firmware and modules flists →
//! dependency maps → baseline modules and coldplug at once, with the boot-critical
//! prefetch beside the maps and the loads (each load waits for its own blocks) → handoff.
//!
//! Failure rule: a step that fails or panics is recorded and the boot goes on with less;
//! only a failed handoff (nothing left to run) applies the failure policy.

pub mod bundle;
mod cachedisk;
mod failure;
pub mod handoff;
mod pseudofs;
mod pstore;
pub mod runner;

use crate::config::{self, cmdline::Cmdline, Config};
use crate::report::{Report, SCHEMA};
use crate::step::{self, Ctx, StepName};
use crate::sys;
use runner::{StepDone, StepRunner};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Files stage 1 reads and writes (overridable for tests and operators).
#[derive(Debug, Clone)]
pub struct Paths {
    /// The boot report.
    pub report: PathBuf,
    /// The target profile.
    pub profile: PathBuf,
    /// The kernel command line.
    pub cmdline: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            report: PathBuf::from(crate::report::DEFAULT_REPORT_PATH),
            profile: PathBuf::from(config::DEFAULT_PROFILE_PATH),
            cmdline: PathBuf::from(config::CMDLINE_PATH),
        }
    }
}

/// The command line and the configuration built from it and the profile.
pub struct Loaded {
    /// Raw command line text.
    pub cmdline_text: String,
    /// Parsed command line.
    pub cmdline: Cmdline,
    /// Effective configuration.
    pub config: Config,
}

/// Reads the command line and the profile and builds the configuration. Unreadable
/// inputs become warnings, never errors.
pub fn load_config(paths: &Paths) -> Loaded {
    let mut read_warnings = Vec::new();
    let raw = match std::fs::read(&paths.cmdline) {
        Ok(raw) => raw,
        Err(e) => {
            read_warnings.push(format!(
                "{}: cannot read the kernel command line: {e}",
                paths.cmdline.display()
            ));
            Vec::new()
        }
    };
    let cmdline = Cmdline::parse_bytes(&raw);
    let profile_text = match std::fs::read_to_string(&paths.profile) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            read_warnings.push(format!(
                "profile {}: cannot read: {e}; using defaults",
                paths.profile.display()
            ));
            None
        }
    };
    let profile_path = paths.profile.display().to_string();
    let mut config = Config::build(
        &cmdline,
        profile_text
            .as_deref()
            .map(|text| (profile_path.as_str(), text)),
    );
    read_warnings.append(&mut config.warnings);
    config.warnings = read_warnings;
    Loaded {
        cmdline_text: String::from_utf8_lossy(&raw).trim_end().to_string(),
        cmdline,
        config,
    }
}

/// Fills the report's header from the configuration.
pub fn describe(report: &mut Report, loaded: &Loaded) {
    report.schema = SCHEMA;
    report.agent_version = env!("CARGO_PKG_VERSION").to_string();
    report.kernel_release = sys::kernel_release();
    report.cmdline = loaded.cmdline_text.clone();
    report.zos = serde_json::to_value(&loaded.config.zos).unwrap_or_default();
    report.config = serde_json::to_value(&loaded.config).unwrap_or_default();
    report.warnings = loaded.config.warnings.clone();
}

/// Runs stage 1. As PID 1 this never returns: it ends in the next init or in the failure
/// policy. Otherwise it returns the exit code (1 when the handoff failed).
pub fn run(paths: &Paths, pid1: bool) -> i32 {
    crate::logging::init(log::LevelFilter::Info);
    if pid1 {
        if let Err(e) = sys::process::start_reaper() {
            log::error!("cannot start the child reaper: {e}");
        }
    }
    let mut runner = StepRunner::new(paths.report.clone(), Report::default());

    runner.run("pseudofs", pseudofs::setup);
    if let Err(e) = crate::logging::attach_kmsg(pid1) {
        log::warn!("/dev/kmsg: {e}; logging to the console only");
    }
    runner.start_persisting();

    let mut loaded = None;
    runner.run("config", || {
        let result = load_config(paths);
        let warnings = result.config.warnings.len() as u64;
        let detail = format!(
            "log={} on_failure={} handoff={:?}",
            format!("{:?}", result.config.log_level).to_lowercase(),
            format!("{:?}", result.config.on_failure).to_lowercase(),
            result.config.handoff.join(" ")
        );
        loaded = Some(result);
        Ok(if warnings == 0 {
            StepDone::ok(detail)
        } else {
            StepDone::degraded(format!("{warnings} warnings (see warnings); {detail}"))
        }
        .count("warnings", warnings))
    });
    // The config step cannot fail except by a bug; fall back to the defaults then.
    let loaded = loaded.unwrap_or_else(|| Loaded {
        cmdline_text: String::new(),
        cmdline: Cmdline::default(),
        config: Config::default(),
    });
    crate::logging::set_level(loaded.config.log_level.filter());
    for warning in &loaded.config.warnings {
        log::warn!("{warning}");
    }
    if pid1 && !loaded.cmdline.has("printk.devkmsg") {
        // The kernel allows userspace 10 kmsg lines per 5 s by default; the report and
        // the operator need all of ours. printk.devkmsg= on the cmdline keeps its say.
        let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");
    }
    describe(&mut runner.report, &loaded);
    runner.skip = loaded.config.skip.clone();
    runner.break_before = loaded.config.break_before.clone();
    runner.save();

    let config = &loaded.config;
    let mut ctx = Ctx::system(config.clone(), loaded.cmdline.clone(), pid1);
    // The run directory is the report's (`--report` moves both).
    if let Some(dir) = runner.path().parent() {
        ctx.run = crate::rundir::RunDir::at(dir);
    }
    let ctx = Arc::new(ctx);
    if let Err(e) = ctx.run.reserve() {
        log::warn!(
            "{}: cannot keep room for the report: {e}",
            ctx.run.root().display()
        );
    }
    let unit = |name: StepName| {
        let ctx = Arc::clone(&ctx);
        move || step::run(name, &ctx)
    };
    if pid1 {
        step::flists::open_early(&ctx.release);
    }
    // The bootstrap set: what must work before the lazy trees exist (NIC drivers, fuse).
    // Then the network and the flists, only as PID 1: `initagent stage1` on a running
    // system must not touch its links or mount over its trees.
    let bootstrap = StepName::Bootstrap;
    runner.run_bounded(
        bootstrap.as_str(),
        bootstrap.deadline(config),
        unit(bootstrap),
    );
    // The devices, read while the network and the flists come up (the bootstrap set's
    // drivers have added theirs): the prefetch and coldplug start from this scan.
    if pid1 {
        ctx.devices.start(ctx.sysfs.clone());
    }
    // After the bootstrap set (a pstore backend may be a module: rd.driver.pre=ramoops).
    if pid1 {
        let mut previous = None;
        runner.run("pstore", || pstore::step(ctx.run.root(), &mut previous));
        runner.report.previous_boot = previous;
        runner.save();
        // The persistent block cache, before the flists step puts blocks in it (its disk
        // driver and filesystem are in the bootstrap set).
        let (spec, timeout_s) = (config.flist_cache.clone(), config.flist_cache_timeout_s);
        runner.run_bounded("cache", cachedisk::deadline(timeout_s), move || {
            cachedisk::step(spec.as_ref(), timeout_s)
        });
    }
    for name in [StepName::Net, StepName::Flists] {
        runner.run_bounded(name.as_str(), name.deadline(config), unit(name));
    }
    // The prefetch in the background beside the maps check and the loads (it only
    // fetches; each load waits for its own module's blocks: step::staged). The baseline
    // and coldplug load at once, coldplug not ending before the baseline has (its loads
    // add devices too).
    let prefetch = StepName::Prefetch;
    let prefetching =
        runner.start_background(prefetch.as_str(), prefetch.deadline(config), unit(prefetch));
    let depmod = StepName::Depmod;
    runner.run_bounded(depmod.as_str(), depmod.deadline(config), unit(depmod));
    let (modules, coldplug) = (StepName::Modules, StepName::Coldplug);
    ctx.baseline_loading.store(true, Ordering::Release);
    let coldplugging =
        runner.start_background(coldplug.as_str(), coldplug.deadline(config), unit(coldplug));
    runner.run_bounded(modules.as_str(), modules.deadline(config), unit(modules));
    ctx.baseline_loading.store(false, Ordering::Release);
    if let Some(coldplugging) = coldplugging {
        runner.join_background(coldplugging, true);
    }
    if let Some(prefetching) = prefetching {
        runner.join_background(prefetching, false);
    }

    let mut send = |report: &crate::report::Report| send_report(config, report, &ctx.run);
    let why = handoff::handoff(&mut runner, &config.handoff, &mut send);
    let report_path = runner.path().display().to_string();
    if let Some(result) = runner.report.result.as_mut() {
        result.detail = if pid1 {
            let policy = format!("{:?}", config.on_failure).to_lowercase();
            format!("{why}; applying on_failure={policy}")
        } else {
            format!("{why}; not PID 1, so exit 1 instead of the failure policy")
        };
    }
    runner.save();
    crate::report::verdict::announce(&runner.report);
    send_report(config, &runner.report, &ctx.run);
    if pid1 {
        pstore::keep_for_reboot();
        match bundle::write(Path::new(bundle::BUNDLE_DIR), runner.path()) {
            Ok(written) if written.missing.is_empty() => log::error!(
                "failure bundle (report, kernel log, mounts, lease, modules): {}",
                written.dir.display()
            ),
            Ok(written) => log::error!(
                "failure bundle, partial: {} (not written: {})",
                written.dir.display(),
                written.missing.join("; ")
            ),
            Err(e) => log::error!("failure bundle: {e}"),
        }
        failure::apply(config.on_failure, config.reboot_delay_s, &why, &report_path);
    }
    log::error!("stage 1 failed: {why} (boot report: {report_path})");
    1
}

/// Sends the finished report to `report_url` when one is configured, within its deadline,
/// saying where it went or why not (the `initagent-report` service tries again).
pub fn send_report(config: &Config, report: &crate::report::Report, run: &crate::rundir::RunDir) {
    if config.report_url.is_none() {
        return;
    }
    match crate::report::upload::send_report(config, report, run, "stage1") {
        Ok(sent) => log::info!("boot report sent to {} as {}", sent.store, sent.key),
        Err(e) => {
            log::warn!("boot report not sent: {e} (the initagent-report service sends it again)")
        }
    }
}

/// For a panic that escaped everything in PID 1: apply the default policy.
pub fn last_resort(what: &str) -> ! {
    let report = Path::new(crate::report::DEFAULT_REPORT_PATH)
        .display()
        .to_string();
    let config = Config::default();
    failure::apply(config.on_failure, config.reboot_delay_s, what, &report)
}
