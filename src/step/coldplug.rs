//! The `coldplug` step: the drivers of the devices present. With a udevd in the image (or
//! one running), udevd loads them: trigger and settle, within the deadline. Without one,
//! the agent's own coldplug. The full result is the step's outcome file
//! (`/run/initagent/steps/coldplug.json`: devices, modules, devices without a driver).

use super::{Ctx, StepDone, StepError};
use crate::coldplug::{self, ColdplugOptions, ColdplugReport};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Coldplug with the running kernel's tree; degraded when the tree is missing (the
/// devices wait for a later run), the deadline passed or a driver failed to load.
pub fn run(ctx: &Ctx) -> Result<StepDone, StepError> {
    if !ctx.live {
        return Ok(StepDone::skipped(
            "not PID 1: a running system's devices are left alone (use `initagent coldplug`)",
        ));
    }
    let config = &ctx.config;
    let deadline = Duration::from_secs(config.coldplug_deadline_s.into());
    let udevd = crate::coldplug::udev::udevd_binary();
    if udevd.is_some() || Path::new(crate::coldplug::udev::CONTROL).exists() {
        let report =
            crate::coldplug::udev::run(&ctx.sysfs, udevd.as_deref(), deadline, &ctx.selection);
        return Ok(udev_step_done(&report).with_result(&report));
    }
    let modules = match ctx.modules() {
        Ok(modules) => modules,
        Err(e) => {
            return Ok(StepDone::degraded(format!(
                "{e}: no drivers loaded; the devices wait for a run with a tree"
            )))
        }
    };
    let mut options = ColdplugOptions {
        sysfs: ctx.sysfs.clone(),
        deadline,
        selection: ctx.selection.clone(),
        hold: Some(Arc::clone(&ctx.baseline_loading)),
        ..ColdplugOptions::default()
    };
    options.load.sequential = config.modules_sequential.iter().cloned().collect();
    if !config.modules_parallel {
        options.load.workers = 1;
    }
    let kernel = ctx.staged_kernel();
    let report = coldplug::run(&modules, &kernel, &options, ctx.devices.take());
    Ok(kernel.counted(step_done(&report)).with_result(&report))
}

/// The report line of a coldplug through udevd.
pub fn udev_step_done(report: &crate::coldplug::udev::UdevReport) -> StepDone {
    let mut detail = format!(
        "udevd{}: {} devices triggered, {} events processed, {} modules loaded, {}",
        report.started.as_ref().map_or(String::new(), |b| format!(
            " ({b}, started and stopped again)"
        )),
        report.triggered,
        report.processed,
        report.modules_loaded,
        if report.settled {
            "settled"
        } else {
            "NOT settled"
        }
    );
    for problem in &report.problems {
        detail.push_str("; ");
        detail.push_str(problem);
    }
    let done = if report.settled {
        StepDone::ok(detail)
    } else {
        StepDone::degraded(detail)
    };
    done.count("triggered", report.triggered as u64)
        .count("loaded", report.modules_loaded as u64)
        .count("events", report.processed as u64)
}

/// The report line: devices, modules, the devices without a driver, and why degraded.
pub fn step_done(report: &ColdplugReport) -> StepDone {
    let counters = report.counters();
    let failed: Vec<String> = report
        .modules
        .iter()
        .filter(|(_, outcome)| !crate::coldplug::declined(outcome))
        .filter_map(|(name, outcome)| match outcome {
            crate::kmod::load::Outcome::Failed { error } => {
                Some(format!("{name}: {}", error.message))
            }
            crate::kmod::load::Outcome::StillLoading { micros } => Some(format!(
                "{name}: {}",
                crate::kmod::load::still_loading(*micros)
            )),
            _ => None,
        })
        .collect();
    let mut detail = format!(
        "{} devices, {} aliases, {} loaded, {} declined (no device for them), {} without a driver in the tree",
        report.devices,
        report.aliases,
        counters.get("loaded").copied().unwrap_or(0),
        counters.get("declined").copied().unwrap_or(0),
        report.undriven.len()
    );
    if report.timed_out {
        detail.push_str("; deadline passed while devices were still appearing");
    }
    for problem in report.problems.iter().chain(&failed) {
        detail.push_str("; ");
        detail.push_str(problem);
    }
    let mut done = if report.timed_out || !failed.is_empty() {
        StepDone::degraded(detail)
    } else {
        StepDone::ok(detail)
    };
    for (key, value) in counters {
        done = done.count(&key, value);
    }
    done.count("devices", report.devices as u64)
        .count("undriven", report.undriven.len() as u64)
        .count("events", report.events as u64)
}
