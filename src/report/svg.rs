//! The boot timeline as an SVG image (`initagent status --svg FILE`, like
//! `systemd-analyze plot`): one bar per step on the monotonic clock since boot, coloured by
//! outcome, with its name, duration and detail. Pure.

use super::{Outcome, Report};
use std::fmt::Write as _;

const ROW: u64 = 22;
const LEFT: u64 = 10;
const WIDTH: u64 = 1000;
const TOP: u64 = 50;

fn colour(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "#4caf50",
        Outcome::Degraded => "#ff9800",
        Outcome::Failed => "#f44336",
        Outcome::Skipped => "#bdbdbd",
        Outcome::Running => "#2196f3",
    }
}

/// Text safe inside SVG elements and attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Renders the report's steps as an SVG document.
pub fn render(report: &Report) -> String {
    let end_of = |s: &super::Step| s.end_us.unwrap_or(s.start_us);
    let last = report
        .steps
        .iter()
        .map(end_of)
        .chain(report.result.as_ref().map(|r| r.at_us))
        .max()
        .unwrap_or(0)
        .max(1);
    // Whole seconds on the axis, at least one.
    let span_s = last.div_ceil(1_000_000).max(1);
    let scale = |us: u64| LEFT + us.saturating_mul(WIDTH) / (span_s * 1_000_000);
    let height = TOP + ROW * report.steps.len() as u64 + 40;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="monospace" font-size="12">"#,
        WIDTH + 2 * LEFT + 300
    );
    let title = format!(
        "initagent {} on {}: {}",
        report.agent_version,
        report.kernel_release,
        report
            .result
            .as_ref()
            .map_or("stage 1 not finished".to_string(), |r| format!(
                "{} at {:.3} s",
                r.status,
                r.at_us as f64 / 1e6
            ))
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="18" font-weight="bold">{}</text>"#,
        escape(&title)
    );
    for second in 0..=span_s {
        let x = scale(second * 1_000_000);
        let _ = writeln!(
            svg,
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#e0e0e0"/><text x="{x}" y="{}" fill="#757575">{second}s</text>"##,
            TOP - 12,
            height - 30,
            TOP - 16
        );
    }
    for (row, step) in report.steps.iter().enumerate() {
        let y = TOP + ROW * row as u64;
        let x = scale(step.start_us);
        let width = scale(end_of(step)).saturating_sub(x).max(2);
        let label = format!(
            "{} {:.3}s {}: {}",
            step.name,
            step.duration_us() as f64 / 1e6,
            step.outcome.as_str(),
            step.detail
        );
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="{y}" width="{width}" height="{}" fill="{}"><title>{}</title></rect><text x="{}" y="{}">{}</text>"#,
            ROW - 6,
            colour(step.outcome),
            escape(&label),
            x + width + 4,
            y + ROW - 10,
            escape(&label.chars().take(120).collect::<String>())
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{StageResult, Step};

    fn step(name: &str, start: u64, end: Option<u64>, outcome: Outcome, detail: &str) -> Step {
        Step {
            name: name.into(),
            start_us: start,
            end_us: end,
            outcome,
            detail: detail.into(),
            counters: Default::default(),
            after: Vec::new(),
            pid: 1,
            unit: None,
        }
    }

    #[test]
    fn one_bar_per_step_coloured_by_outcome_and_escaped() {
        let report = Report {
            agent_version: "0.1.0".into(),
            kernel_release: "6.1.0".into(),
            steps: vec![
                step("config", 1_000_000, Some(1_010_000), Outcome::Ok, ""),
                step(
                    "net",
                    1_010_000,
                    Some(3_500_000),
                    Outcome::Degraded,
                    "no lease <eth0> & \"x\"",
                ),
                step("coldplug", 3_500_000, None, Outcome::Running, ""),
            ],
            result: Some(StageResult {
                status: "handed-off".into(),
                detail: String::new(),
                at_us: 3_600_000,
            }),
            ..Report::default()
        };
        let svg = render(&report);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("#ff9800") && svg.contains("#2196f3"));
        assert!(svg.contains("no lease &lt;eth0&gt; &amp; &quot;x&quot;"));
        assert!(!svg.contains("<eth0>"));
        assert!(svg.contains(">4s</text>"), "axis to the next whole second");
        // An empty report still draws.
        assert!(render(&Report::default()).contains("</svg>"));
    }
}
