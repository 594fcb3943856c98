//! Pure rendering of a report for a person: the steps slowest first (like
//! `systemd-analyze blame`), then the critical path (like `critical-chain`).

use super::{Report, Step};
use std::fmt::Write as _;

fn seconds(us: u64) -> String {
    format!("{}.{:03}s", us / 1_000_000, (us % 1_000_000) / 1_000)
}

/// The chain of steps that decided when the last step finished: starting from the step
/// that ended last, follow at each link the dependency that ended last. First to last.
///
/// Only stage 1's steps count: the services after the handoff did not hold it.
pub fn critical_path(report: &Report) -> Vec<&Step> {
    let by_end = |s: &&Step| s.end_us.unwrap_or(s.start_us);
    let mut chain = Vec::new();
    let mut current = report.stage1_steps().max_by_key(by_end);
    while let Some(step) = current {
        if chain.iter().any(|s: &&Step| s.name == step.name) || chain.len() > report.steps.len() {
            break; // a dependency cycle in a hand-edited report
        }
        chain.push(step);
        current = step
            .after
            .iter()
            .filter_map(|name| report.step(name))
            .max_by_key(by_end);
    }
    chain.reverse();
    chain
}

/// The step's line with its counters: `detail  [k=v …]`.
fn with_counters(step: &Step) -> String {
    let mut detail = step.detail.clone();
    if !step.counters.is_empty() {
        let counters: Vec<String> = step
            .counters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !detail.is_empty() {
            detail.push_str("  ");
        }
        detail.push('[');
        detail.push_str(&counters.join(" "));
        detail.push(']');
    }
    detail
}

/// Renders the report as text; `source` names the file it came from.
pub fn render_text(report: &Report, source: &str) -> String {
    let mut out = String::new();
    let text = |v: &serde_json::Value, key: &str| -> String {
        match v.get(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => "-".into(),
            Some(other) => other.to_string(),
        }
    };
    let _ = writeln!(out, "boot report {source}");
    let _ = writeln!(
        out,
        "kernel {}  agent {}  runmode {}  version {}  farmer_id {}",
        report.kernel_release,
        report.agent_version,
        text(&report.zos, "runmode"),
        text(&report.zos, "version"),
        text(&report.zos, "farmer_id"),
    );
    match &report.result {
        Some(result) => {
            let _ = writeln!(
                out,
                "result: {} at {}: {}",
                result.status,
                seconds(result.at_us),
                result.detail
            );
        }
        None => {
            let _ = writeln!(
                out,
                "result: stage 1 has not finished (or its process died)"
            );
        }
    }
    let mut steps: Vec<&Step> = report.stage1_steps().collect();
    steps.sort_by(|a, b| {
        b.duration_us()
            .cmp(&a.duration_us())
            .then(a.start_us.cmp(&b.start_us))
    });
    let name_width = steps.iter().map(|s| s.name.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "\n{:>9}  {:<name_width$}  {:<8}  detail",
        "time", "step", "outcome"
    );
    for step in &steps {
        let detail = with_counters(step);
        let _ = writeln!(
            out,
            "{:>9}  {:<name_width$}  {:<8}  {}",
            seconds(step.duration_us()),
            step.name,
            step.outcome.as_str(),
            detail
        );
    }
    let late = report.late_steps();
    if !late.is_empty() {
        let _ = writeln!(
            out,
            "\nafter the handoff (zinit services, in the order they started):"
        );
        for step in late {
            let ended = step.end_us.map_or("still running".to_string(), |end| {
                format!("+{}", seconds(end.saturating_sub(step.start_us)))
            });
            let _ = writeln!(
                out,
                "  {} ({}) @{} {}  {:<8}  {}",
                step.name,
                step.unit.as_deref().unwrap_or("?"),
                seconds(step.start_us),
                ended,
                step.outcome.as_str(),
                with_counters(step)
            );
        }
    }
    let path = critical_path(report);
    if !path.is_empty() {
        let _ = writeln!(out, "\ncritical path:");
        for step in path {
            let _ = writeln!(
                out,
                "  {} @{} +{}",
                step.name,
                seconds(step.start_us),
                seconds(step.duration_us())
            );
        }
    }
    if let Some(previous) = &report.previous_boot {
        let why = match previous.detail.as_str() {
            "" => String::new(),
            detail => format!(": {detail}"),
        };
        let _ = writeln!(
            out,
            "\nprevious boot ({}): {}{why}",
            previous.source,
            previous.result.to_uppercase()
        );
    }
    if !report.warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings ({}):", report.warnings.len());
        for warning in &report.warnings {
            let _ = writeln!(out, "  - {warning}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Outcome, StageResult};
    use super::*;

    fn step(name: &str, start: u64, end: u64, after: &[&str]) -> Step {
        Step {
            name: name.into(),
            start_us: start,
            end_us: Some(end),
            outcome: Outcome::Ok,
            detail: format!("did {name}"),
            counters: Default::default(),
            after: after.iter().map(|s| s.to_string()).collect(),
            pid: 1,
            unit: None,
        }
    }

    fn sample() -> Report {
        Report {
            steps: vec![
                step("pseudofs", 1_000_000, 1_004_000, &[]),
                step("network", 1_004_000, 3_000_000, &["pseudofs"]),
                step("flists", 1_004_000, 1_500_000, &["pseudofs"]),
                step("handoff", 3_000_000, 3_000_100, &["network", "flists"]),
            ],
            result: Some(StageResult {
                status: "handed-off".into(),
                detail: "/sbin/zinit init".into(),
                at_us: 3_000_100,
            }),
            ..Report::default()
        }
    }

    #[test]
    fn critical_path_follows_the_latest_dependency() {
        let report = sample();
        let names: Vec<_> = critical_path(&report)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["pseudofs", "network", "handoff"]);
    }

    #[test]
    fn cycles_end_the_walk() {
        let mut report = sample();
        report.steps[0].after = vec!["handoff".into()];
        assert!(critical_path(&report).len() <= report.steps.len());
    }

    #[test]
    fn text_lists_slowest_first() {
        let text = render_text(&sample(), "r.json");
        let network = text.find("  network ").unwrap();
        let flists = text.find("  flists ").unwrap();
        assert!(network < flists, "{text}");
        assert!(text.contains("result: handed-off at 3.000s"));
        assert!(text.contains("network @1.004s +1.996s"));
        assert!(!text.contains("after the handoff"));
    }

    #[test]
    fn late_steps_are_listed_apart_and_off_the_critical_path() {
        let mut report = sample();
        let mut late = step("initagent-late-modules", 60_000_000, 62_500_000, &[]);
        late.unit = Some("modules".into());
        late.pid = 812;
        report.steps.push(late);
        let names: Vec<_> = critical_path(&report)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["pseudofs", "network", "handoff"]);
        let text = render_text(&report, "r.json");
        let (stage1, after) = text.split_once("after the handoff").unwrap();
        assert!(!stage1.contains("initagent-late-modules"), "{text}");
        assert!(
            after.contains("initagent-late-modules (modules) @60.000s +2.500s  ok"),
            "{text}"
        );
    }
}
