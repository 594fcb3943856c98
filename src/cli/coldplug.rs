//! `initagent coldplug`: the coldplug step by hand — the drivers of the devices present
//! (with a udevd running: trigger and settle) — then each module's outcome and the devices
//! no module in the tree drives.

use super::Options;

pub(crate) fn run(options: &Options) -> i32 {
    super::boot::run_step(options, "coldplug", true)
}

/// The lines after the step's own: each module's outcome, each device without a driver.
pub(crate) fn details(result: &serde_json::Value) -> Vec<String> {
    let mut lines = Vec::new();
    let modules: Vec<(String, crate::kmod::load::Outcome)> =
        serde_json::from_value(result["modules"].clone()).unwrap_or_default();
    for (name, outcome) in &modules {
        lines.push(format!(
            "  {}",
            crate::kmod::describe_outcome(name, outcome)
        ));
    }
    for device in result["undriven"].as_array().into_iter().flatten() {
        lines.push(format!(
            "  no driver: {} ({})",
            device["devpath"].as_str().unwrap_or("?"),
            device["modalias"].as_str().unwrap_or("?")
        ));
    }
    lines
}
