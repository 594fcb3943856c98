//! What a boot report comes to, in two short forms (pure): the one-line JSON summary stage 1
//! writes to the kernel log before it hands off (serial, netconsole and pstore collectors
//! get it without reaching the node), and the verdict `initagent status --check` gives a
//! monitoring system, with the exit codes such systems read (0 ok, 1 warning, 2 critical,
//! 3 unknown).

use super::{Outcome, Report};
use serde_json::json;

/// The summary line's JSON: result, each stage-1 step's outcome and milliseconds, bytes
/// fetched, devices without a driver, modules that failed or were not found, warnings.
pub fn summary(report: &Report) -> String {
    let stage1: Vec<&super::Step> = report.steps.iter().filter(|s| s.unit.is_none()).collect();
    let mut steps = serde_json::Map::new();
    let mut fetched = 0u64;
    let mut failed_modules = 0u64;
    for step in &stage1 {
        let ms = step.duration_us() / 1000;
        steps.insert(step.name.clone(), json!([outcome_word(step.outcome), ms]));
        fetched += step.counters.get("bytes_fetched").copied().unwrap_or(0);
        if step.name == "bootstrap" || step.name == "modules" {
            failed_modules += ["failed", "not_found", "still_loading"]
                .iter()
                .map(|k| step.counters.get(*k).copied().unwrap_or(0))
                .sum::<u64>();
        }
    }
    let undriven = stage1
        .iter()
        .find(|s| s.name == "coldplug")
        .and_then(|s| s.counters.get("undriven").copied())
        .unwrap_or(0);
    let (result, at_ms) = match &report.result {
        Some(result) => (result.status.as_str(), result.at_us / 1000),
        None => ("unfinished", 0),
    };
    // Why, when it failed: the line is what pstore and the collectors keep.
    let detail: String = match &report.result {
        Some(r) if r.status != "handed-off" => r.detail.chars().take(200).collect(),
        _ => String::new(),
    };
    let mut line = json!({
        "agent": report.agent_version,
        "kernel": report.kernel_release,
        "result": result,
        "at_ms": at_ms,
        "steps": steps,
        "bytes_fetched": fetched,
        "undriven_devices": undriven,
        "module_failures": failed_modules,
        "warnings": report.warnings.len(),
    });
    if !detail.is_empty() {
        line["detail"] = detail.into();
    }
    if let Some(previous) = &report.previous_boot {
        line["previous"] = previous.result.clone().into();
    }
    line.to_string()
}

/// The last summary line in kernel log text (a pstore record, a collected log) (pure).
pub fn find_summary(text: &str) -> Option<serde_json::Value> {
    const MARK: &str = "initagent: summary {";
    let at = text.rfind(MARK)?;
    let json = text[at + MARK.len() - 1..].lines().next()?;
    serde_json::from_str(json.trim_end()).ok()
}

/// Writes [`summary`] to the kernel log as `initagent: summary {…}`, whatever the log
/// level: an error when stage 1 failed, a warning when a step was degraded (so a quiet
/// console and netconsole still carry it), information otherwise.
pub fn announce(report: &Report) {
    let level = match check(report).code {
        0 => log::Level::Info,
        1 => log::Level::Warn,
        _ => log::Level::Error,
    };
    crate::logging::always(level, format_args!("summary {}", summary(report)));
}

fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Running => "running",
        Outcome::Ok => "ok",
        Outcome::Degraded => "degraded",
        Outcome::Failed => "failed",
        Outcome::Skipped => "skipped",
    }
}

/// A monitoring verdict: its exit code and one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub code: i32,
    pub line: String,
}

/// `initagent status --check` for `report`: critical when stage 1 failed (or never
/// ended), warning when a step — stage 1's or a service's since — was degraded or failed
/// or a step still shows running, ok otherwise.
pub fn check(report: &Report) -> Verdict {
    match &report.result {
        Some(result) if result.status == "failed" => {
            return Verdict {
                code: 2,
                line: format!("CRITICAL: stage 1 failed: {}", result.detail),
            }
        }
        None => {
            return Verdict {
                code: 2,
                line: "CRITICAL: stage 1 has not handed off (no result in the report)".into(),
            }
        }
        Some(_) => {}
    }
    let troubled: Vec<&super::Step> = report
        .steps
        .iter()
        .filter(|s| {
            matches!(
                s.outcome,
                Outcome::Degraded | Outcome::Failed | Outcome::Running
            )
        })
        .collect();
    match troubled.first() {
        Some(first) => {
            let names: Vec<String> = troubled
                .iter()
                .map(|s| format!("{} {}", s.name, outcome_word(s.outcome)))
                .collect();
            let detail: String = first.detail.chars().take(160).collect();
            Verdict {
                code: 1,
                line: format!("WARNING: {} ({}: {detail})", names.join(", "), first.name),
            }
        }
        None => Verdict {
            code: 0,
            line: format!(
                "OK: handed off at {:.1} s, {} steps ok",
                report.result.as_ref().map_or(0, |r| r.at_us) as f64 / 1e6,
                report.steps.len()
            ),
        },
    }
}

/// Whether stage 1 itself booted clean: handed off, none of its own steps degraded or
/// failed (the services' steps after the handoff do not count: they may still run).
pub fn stage1_clean(report: &Report) -> bool {
    report
        .result
        .as_ref()
        .is_some_and(|r| r.status == "handed-off")
        && report
            .steps
            .iter()
            .filter(|s| s.unit.is_none())
            .all(|s| matches!(s.outcome, Outcome::Ok | Outcome::Skipped))
}

/// The verdict when there is no report to read.
pub fn unknown(why: &str) -> Verdict {
    Verdict {
        code: 3,
        line: format!("UNKNOWN: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{StageResult, Step};

    fn step(name: &str, outcome: Outcome, ms: u64, counters: &[(&str, u64)]) -> Step {
        Step {
            name: name.into(),
            start_us: 1_000_000,
            end_us: Some(1_000_000 + ms * 1000),
            outcome,
            detail: format!("{name} detail"),
            counters: counters.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            after: Vec::new(),
            pid: 1,
            unit: None,
        }
    }

    fn report(steps: Vec<Step>, result: Option<&str>) -> Report {
        Report {
            agent_version: "0.1.0".into(),
            kernel_release: "6.1.0-57-amd64".into(),
            steps,
            result: result.map(|status| StageResult {
                status: status.into(),
                detail: "why".into(),
                at_us: 2_500_000,
            }),
            ..Report::default()
        }
    }

    #[test]
    fn the_summary_counts_what_an_operator_looks_for_first() {
        let r = report(
            vec![
                step("flists", Outcome::Ok, 499, &[("bytes_fetched", 1000)]),
                step("prefetch", Outcome::Ok, 1748, &[("bytes_fetched", 5000)]),
                step(
                    "modules",
                    Outcome::Degraded,
                    754,
                    &[("failed", 1), ("not_found", 2)],
                ),
                step("coldplug", Outcome::Ok, 2170, &[("undriven", 3)]),
            ],
            Some("handed-off"),
        );
        let line: serde_json::Value = serde_json::from_str(&summary(&r)).unwrap();
        assert_eq!(line["result"], "handed-off");
        assert_eq!(line["at_ms"], 2500);
        assert_eq!(line["steps"]["modules"], json!(["degraded", 754]));
        assert_eq!(line["bytes_fetched"], 6000);
        assert_eq!(line["undriven_devices"], 3);
        assert_eq!(line["module_failures"], 3);
        assert!(summary(&r).len() < 900, "{}", summary(&r));
    }

    #[test]
    fn verdicts_follow_the_monitoring_convention() {
        let ok = report(vec![step("net", Outcome::Ok, 75, &[])], Some("handed-off"));
        assert_eq!(check(&ok).code, 0);
        assert!(
            check(&ok).line.starts_with("OK: handed off at 2.5 s"),
            "{:?}",
            check(&ok)
        );
        let degraded = report(
            vec![
                step("net", Outcome::Ok, 75, &[]),
                step("modules", Outcome::Degraded, 5, &[]),
            ],
            Some("handed-off"),
        );
        assert_eq!(check(&degraded).code, 1);
        assert_eq!(
            check(&degraded).line,
            "WARNING: modules degraded (modules: modules detail)"
        );
        assert_eq!(check(&report(Vec::new(), Some("failed"))).code, 2);
        assert_eq!(check(&report(Vec::new(), None)).code, 2);
        assert_eq!(unknown("no report").code, 3);
    }
}
