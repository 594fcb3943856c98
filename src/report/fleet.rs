//! The fleet view (pure): what the nodes' uploaded reports ([`super::upload::Envelope`])
//! come to — each stage-1 step's p50/p95 over every boot, each node's last boot and, when
//! it was degraded or failed, why; devices without a driver and firmware the kernel could
//! not load, grouped by PCI vendor:device across the nodes' last boots.

use super::upload::Envelope;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// How many node ids a group names before it says "and N more".
const NAMED: usize = 5;

/// One step's times over the boots that ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepTimes {
    pub step: String,
    pub boots: usize,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub max_ms: u64,
    /// Boots in which it was degraded or failed.
    pub not_ok: usize,
}

/// A node whose last boot was not clean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Troubled {
    pub node: String,
    pub boot: String,
    pub sent_at: u64,
    /// `failed` or `degraded`.
    pub result: String,
    pub why: String,
}

/// Nodes that share one missing piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// `8086:100e`, or the modalias when it is not a PCI device.
    pub hardware: String,
    /// The firmware file, or an example modalias for a driver.
    pub what: String,
    pub nodes: usize,
    pub some_nodes: Vec<String>,
}

/// The whole view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fleet {
    pub reports: usize,
    pub nodes: usize,
    /// Last boots by result: `ok`, `degraded`, `failed`.
    pub last_boots: BTreeMap<String, usize>,
    /// Stage 1's steps, slowest p95 first, then the handoff time.
    pub steps: Vec<StepTimes>,
    pub handoff: Option<StepTimes>,
    pub troubled: Vec<Troubled>,
    /// The same nodes grouped by result (`FAILED`, `DEGRADED`) and reason.
    pub troubled_by_reason: Vec<Group>,
    pub missing_drivers: Vec<Group>,
    pub missing_firmware: Vec<Group>,
    /// Module failures by module, over the last boots.
    pub module_failures: Vec<Group>,
    /// Last boots that found in pstore that the boot before them failed, by why.
    pub previous_failures: Vec<Group>,
}

/// The nearest-rank percentile of sorted `values` (`q` in 0..=100).
pub fn percentile(sorted: &[u64], q: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as u64).div_ceil(100).max(1) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn times(step: &str, mut values: Vec<u64>, not_ok: usize) -> StepTimes {
    values.sort_unstable();
    StepTimes {
        step: step.to_string(),
        boots: values.len(),
        p50_ms: percentile(&values, 50),
        p95_ms: percentile(&values, 95),
        max_ms: values.last().copied().unwrap_or(0),
        not_ok,
    }
}

/// PCI base classes, by their number (the `bc` of a modalias).
const PCI_CLASSES: [&str; 19] = [
    "unclassified device",
    "storage controller",
    "network controller",
    "display controller",
    "multimedia controller",
    "memory controller",
    "bridge",
    "communication controller",
    "system peripheral",
    "input device controller",
    "docking station",
    "processor",
    "serial bus controller",
    "wireless controller",
    "intelligent controller",
    "satellite controller",
    "encryption controller",
    "signal processing controller",
    "processing accelerator",
];

/// How a device without a driver is grouped: (hardware, what it is). PCI by
/// vendor:device and its class, USB by vendor:product, input devices by their id,
/// anything else by its modalias (cut to 64 bytes).
pub fn hardware_of(modalias: &str, pci: Option<&str>) -> (String, String) {
    if let Some(pci) = pci {
        let class = modalias
            .find("bc")
            .and_then(|at| modalias.get(at + 2..at + 4))
            .and_then(|hex| usize::from_str_radix(hex, 16).ok());
        let what = match class.and_then(|c| PCI_CLASSES.get(c)) {
            Some(name) => name.to_string(),
            None => "PCI device".into(),
        };
        return (pci.to_string(), what);
    }
    if let Some(rest) = modalias.strip_prefix("usb:v") {
        if let (Some(vendor), Some(product)) = (rest.get(..4), rest.get(5..9)) {
            return (
                format!("usb {vendor}:{product}").to_ascii_lowercase(),
                "USB device".into(),
            );
        }
    }
    if modalias.starts_with("input:") {
        let id = modalias.split("-e").next().unwrap_or(modalias);
        return (id.to_string(), "input device".into());
    }
    (modalias.chars().take(64).collect(), String::new())
}

/// Adds `node` to the group keyed by (hardware, what).
fn add(
    groups: &mut BTreeMap<(String, String), BTreeSet<String>>,
    hardware: &str,
    what: &str,
    node: &str,
) {
    groups
        .entry((hardware.to_string(), what.to_string()))
        .or_default()
        .insert(node.to_string());
}

fn groups(map: BTreeMap<(String, String), BTreeSet<String>>) -> Vec<Group> {
    let mut list: Vec<Group> = map
        .into_iter()
        .map(|((hardware, what), nodes)| Group {
            hardware,
            what,
            nodes: nodes.len(),
            some_nodes: nodes.into_iter().take(NAMED).collect(),
        })
        .collect();
    list.sort_by(|a, b| {
        b.nodes
            .cmp(&a.nodes)
            .then_with(|| a.hardware.cmp(&b.hardware))
    });
    list
}

/// Aggregates the reports (any order; a node's last boot is its latest `sent_at`, then
/// the greatest boot id).
pub fn aggregate(reports: &[Envelope]) -> Fleet {
    let mut last: BTreeMap<&str, &Envelope> = BTreeMap::new();
    for envelope in reports {
        let newer =
            |known: &&Envelope| (envelope.sent_at, &envelope.boot) > (known.sent_at, &known.boot);
        match last.get(envelope.node.as_str()) {
            Some(known) if !newer(known) => {}
            _ => {
                last.insert(&envelope.node, envelope);
            }
        }
    }
    let mut per_step: BTreeMap<String, (Vec<u64>, usize)> = BTreeMap::new();
    let mut handoff = Vec::new();
    for envelope in reports {
        for step in envelope.report.steps.iter().filter(|s| s.unit.is_none()) {
            let entry = per_step.entry(step.name.clone()).or_default();
            entry.0.push(step.duration_us() / 1000);
            if matches!(
                step.outcome,
                super::Outcome::Degraded | super::Outcome::Failed
            ) {
                entry.1 += 1;
            }
        }
        if let Some(result) = envelope
            .report
            .result
            .as_ref()
            .filter(|r| r.status == "handed-off")
        {
            handoff.push(result.at_us / 1000);
        }
    }
    let mut steps: Vec<StepTimes> = per_step
        .into_iter()
        .filter(|(name, _)| name != "handoff")
        .map(|(name, (values, not_ok))| times(&name, values, not_ok))
        .collect();
    steps.sort_by(|a, b| b.p95_ms.cmp(&a.p95_ms).then_with(|| a.step.cmp(&b.step)));
    let mut last_boots: BTreeMap<String, usize> = BTreeMap::new();
    let mut troubled = Vec::new();
    let (mut drivers, mut firmware, mut modules, mut reasons, mut previous) = Default::default();
    for (node, envelope) in &last {
        let verdict = super::verdict::check(&envelope.report);
        let result = match verdict.code {
            0 => "ok",
            1 => "degraded",
            _ => "failed",
        };
        *last_boots.entry(result.to_string()).or_default() += 1;
        if verdict.code != 0 {
            let why = verdict
                .line
                .split_once(": ")
                .map_or(verdict.line.as_str(), |(_, why)| why)
                .to_string();
            add(&mut reasons, &result.to_uppercase(), &why, node);
            troubled.push(Troubled {
                node: node.to_string(),
                boot: envelope.boot.clone(),
                sent_at: envelope.sent_at,
                result: result.into(),
                why,
            });
        }
        for device in &envelope.undriven {
            let (hardware, what) = hardware_of(&device.modalias, device.pci.as_deref());
            add(&mut drivers, &hardware, &what, node);
        }
        for miss in &envelope.missing_firmware {
            let hardware = miss
                .pci
                .clone()
                .unwrap_or_else(|| format!("{} {}", miss.driver, miss.device));
            add(&mut firmware, &hardware, &miss.file, node);
        }
        if let Some(before) = envelope
            .report
            .previous_boot
            .as_ref()
            .filter(|p| p.result == "failed")
        {
            add(&mut previous, "FAILED", &before.detail, node);
        }
        for line in &envelope.module_failures {
            let (module, why) = line.split_once(": ").unwrap_or((line, ""));
            add(&mut modules, module, why, node);
        }
    }
    // Failed before degraded, then by node.
    troubled.sort_by(|a, b| {
        a.result
            .cmp(&b.result)
            .reverse()
            .then_with(|| a.node.cmp(&b.node))
    });
    Fleet {
        reports: reports.len(),
        nodes: last.len(),
        last_boots,
        steps,
        handoff: (!handoff.is_empty()).then(|| times("handed off at", handoff, 0)),
        troubled,
        troubled_by_reason: {
            // Failed before degraded, the most common reason first.
            let mut by_reason = groups(reasons);
            by_reason.sort_by(|a, b| b.hardware.cmp(&a.hardware).then(b.nodes.cmp(&a.nodes)));
            by_reason
        },
        missing_drivers: groups(drivers),
        missing_firmware: groups(firmware),
        module_failures: groups(modules),
        previous_failures: groups(previous),
    }
}

fn named(group: &Group) -> String {
    let more = group.nodes.saturating_sub(group.some_nodes.len());
    let mut text = group.some_nodes.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

/// The view as text for a person.
pub fn render_text(fleet: &Fleet, source: &str) -> String {
    let mut out = format!(
        "{} reports of {} nodes in {source}\n",
        fleet.reports, fleet.nodes
    );
    let results: Vec<String> = fleet
        .last_boots
        .iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    out.push_str(&format!("last boots: {}\n", results.join(", ")));
    out.push_str("\nstage 1 steps over all boots (ms)      p50      p95      max  boots  not ok\n");
    for step in fleet.steps.iter().chain(&fleet.handoff) {
        out.push_str(&format!(
            "  {:<34} {:>8} {:>8} {:>8} {:>6} {:>7}\n",
            step.step, step.p50_ms, step.p95_ms, step.max_ms, step.boots, step.not_ok
        ));
    }
    let sections = [
        (
            "nodes whose last boot was not clean, by reason (each node: --json)",
            &fleet.troubled_by_reason,
        ),
        (
            "devices without a driver, by hardware",
            &fleet.missing_drivers,
        ),
        ("firmware not found, by hardware", &fleet.missing_firmware),
        ("modules that failed", &fleet.module_failures),
        (
            "nodes whose boot before the last failed (kept in pstore)",
            &fleet.previous_failures,
        ),
    ];
    for (title, list) in sections {
        if list.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{title}:\n"));
        for group in list {
            let what = match group.what.as_str() {
                "" => String::new(),
                what => format!(" {what}"),
            };
            out.push_str(&format!(
                "  {}{what}: {} node{} ({})\n",
                group.hardware,
                group.nodes,
                if group.nodes == 1 { "" } else { "s" },
                named(group)
            ));
        }
    }
    out
}

/// The steps' p50 and p95 as bars, and the last boots' results, as SVG.
pub fn render_svg(fleet: &Fleet) -> String {
    let rows: Vec<&StepTimes> = fleet.steps.iter().chain(&fleet.handoff).collect();
    let widest = rows
        .iter()
        .map(|s| s.p95_ms.max(s.max_ms))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (left, width, row) = (190.0, 560.0, 26.0);
    let height = 70.0 + row * rows.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n",
        left + width + 120.0
    );
    let results: Vec<String> = fleet
        .last_boots
        .iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    svg.push_str(&format!(
        "<text x=\"10\" y=\"20\" font-size=\"14\">{} nodes, {} reports; last boots: {}; bars: p50 (dark) and p95 of each stage-1 step</text>\n",
        fleet.nodes,
        fleet.reports,
        super::svg::escape(&results.join(", "))
    ));
    for (i, step) in rows.iter().enumerate() {
        let y = 40.0 + row * i as f64;
        let p95 = width * step.p95_ms as f64 / widest;
        let p50 = width * step.p50_ms as f64 / widest;
        svg.push_str(&format!(
            "<text x=\"10\" y=\"{}\">{}</text>\n<rect x=\"{left}\" y=\"{y}\" width=\"{p95:.1}\" height=\"18\" fill=\"#9ecae1\"/>\n<rect x=\"{left}\" y=\"{y}\" width=\"{p50:.1}\" height=\"18\" fill=\"#3182bd\"/>\n<text x=\"{:.1}\" y=\"{}\">{} / {} ms</text>\n",
            y + 13.0,
            super::svg::escape(&step.step),
            left + p95 + 6.0,
            y + 13.0,
            step.p50_ms,
            step.p95_ms
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
