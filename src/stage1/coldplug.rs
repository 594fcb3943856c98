//! The `coldplug` step: the drivers of the devices present. With a udevd in the image (or
//! one running), udevd loads them: trigger and settle, within the deadline. Without one,
//! the agent's own coldplug. The full result is kept in `/run/initagent/coldplug.json`.

use super::runner::StepDone;
use crate::coldplug::{self, ColdplugOptions, ColdplugReport};
use crate::config::{cmdline::Cmdline, Config};
use crate::kmod::Modules;
use std::path::Path;
use std::time::Duration;

/// Where the step's full result goes.
pub const RESULT_PATH: &str = "/run/initagent/coldplug.json";

/// Coldplug with the running kernel's tree.
pub fn run(config: &Config, cmdline: &Cmdline) -> Result<StepDone, String> {
    let deadline = Duration::from_secs(config.coldplug_deadline_s.into());
    let udevd = crate::coldplug::udev::udevd_binary();
    if udevd.is_some() || Path::new(crate::coldplug::udev::CONTROL).exists() {
        let report = crate::coldplug::udev::run(
            Path::new("/sys"),
            udevd.as_deref(),
            deadline,
            &Default::default(),
        );
        save(&report);
        return Ok(udev_step_done(&report));
    }
    let release = crate::sys::kernel_release();
    let modules =
        Modules::open(Path::new("/"), &release, &[], cmdline).map_err(|e| e.to_string())?;
    let mut options = ColdplugOptions {
        deadline,
        ..ColdplugOptions::default()
    };
    options.load.sequential = config.modules_sequential.iter().cloned().collect();
    let report = coldplug::run(&modules, &options);
    save(&report);
    Ok(step_done(&report))
}

fn save(report: &impl serde::Serialize) {
    if let Ok(text) = serde_json::to_vec_pretty(report) {
        if let Err(e) = crate::fsutil::write_atomic(Path::new(RESULT_PATH), &text) {
            log::warn!("{RESULT_PATH}: {e}");
        }
    }
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
