//! `initagent coldplug`: load the drivers of the devices present, as stage 1 does without
//! udevd, and list the devices no module in the tree drives.

use super::Options;
use crate::coldplug::{self, ColdplugOptions};
use std::time::Duration;

pub(crate) fn run(options: &Options) -> i32 {
    let deadline = Duration::from_secs(options.deadline.unwrap_or(30).into());
    if std::path::Path::new(crate::coldplug::udev::CONTROL).exists() {
        // A udevd runs: it loads the drivers; trigger and settle like udevadm.
        let report = crate::coldplug::udev::run(
            std::path::Path::new("/sys"),
            None,
            deadline,
            &options.selection,
        );
        if options.json {
            super::print_json(&report);
        } else {
            let done = crate::stage1::coldplug_udev_summary(&report);
            outln!("{}: {}", done.outcome.as_str(), done.detail);
        }
        return i32::from(!report.settled && !options.degraded_ok);
    }
    let modules = match super::modules::open(&options.modules, &options.paths.cmdline) {
        Ok(modules) => modules,
        Err(e) => return super::cannot_run("coldplug", e, options.degraded_ok),
    };
    let mut coldplug_options = ColdplugOptions {
        deadline,
        selection: options.selection.clone(),
        ..ColdplugOptions::default()
    };
    if options.modules.sequential {
        coldplug_options.load.workers = 1;
    }
    let report = coldplug::run(&modules, &coldplug_options);
    if options.json {
        super::print_json(&report);
    } else {
        let done = crate::stage1::coldplug_summary(&report);
        outln!("{}: {}", done.outcome.as_str(), done.detail);
        for (name, outcome) in &report.modules {
            outln!("  {}", crate::kmod::describe_outcome(name, outcome));
        }
        for device in &report.undriven {
            outln!("  no driver: {} ({})", device.devpath, device.modalias);
        }
    }
    let degraded = report.timed_out || !report.problems.is_empty();
    i32::from(degraded && !options.degraded_ok)
}
