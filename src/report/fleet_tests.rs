use super::*;
use crate::report::upload::{MissingFirmware, Undriven};
use crate::report::{Outcome, Report, StageResult, Step};

fn step(name: &str, ms: u64, outcome: Outcome) -> Step {
    Step {
        name: name.into(),
        start_us: 0,
        end_us: Some(ms * 1000),
        outcome,
        detail: format!("{name} detail"),
        counters: Default::default(),
        after: vec![],
        pid: 1,
        unit: None,
    }
}

fn boot(node: &str, boot: &str, at: u64, net_ms: u64, result: &str) -> Envelope {
    let degraded = if result == "degraded" {
        Outcome::Degraded
    } else {
        Outcome::Ok
    };
    let report = Report {
        steps: vec![
            step("net", net_ms, Outcome::Ok),
            step("coldplug", 100, degraded),
        ],
        result: Some(StageResult {
            status: if result == "failed" {
                "failed".into()
            } else {
                "handed-off".into()
            },
            detail: "exec /sbin/zinit init".into(),
            at_us: (net_ms + 100) * 1000,
        }),
        ..Report::default()
    };
    Envelope {
        schema: 1,
        node: node.into(),
        boot: boot.into(),
        sent_at: at,
        summary: serde_json::Value::Null,
        undriven: vec![],
        missing_firmware: vec![],
        module_failures: vec![],
        report,
    }
}

#[test]
fn percentiles_by_nearest_rank() {
    let values: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&values, 50), 50);
    assert_eq!(percentile(&values, 95), 95);
    assert_eq!(percentile(&[7], 95), 7);
    assert_eq!(percentile(&[], 50), 0);
    assert_eq!(percentile(&[1, 2, 3], 50), 2);
}

#[test]
fn last_boots_troubles_and_hardware_groups() {
    let mut reports = vec![
        // n1 failed once, then booted clean: its last boot counts.
        boot("n1", "b1", 100, 1000, "failed"),
        boot("n1", "b2", 200, 2000, "ok"),
        boot("n2", "b1", 150, 3000, "degraded"),
        boot("n3", "b1", 160, 4000, "failed"),
    ];
    let nic = Undriven {
        devpath: "/devices/pci0000:00/0000:00:03.0".into(),
        modalias: "pci:v000010ECd00008168sv00001043sd00008554bc02sc00i00".into(),
        pci: Some("10ec:8168".into()),
    };
    reports[2].undriven.push(nic.clone());
    reports[3].undriven.push(nic);
    reports[3].missing_firmware.push(MissingFirmware {
        file: "rtl_nic/rtl8168h-2.fw".into(),
        device: "0000:00:03.0".into(),
        driver: "r8169".into(),
        pci: Some("10ec:8168".into()),
    });
    reports[3]
        .module_failures
        .push("e1000e: FAILED: Invalid argument".into());
    reports[3].report.previous_boot = Some(crate::report::PreviousBoot {
        source: "pstore dmesg-ramoops-0".into(),
        result: "failed".into(),
        detail: "handoff target /sbin/zinit does not exist".into(),
        summary: serde_json::Value::Null,
    });
    let fleet = aggregate(&reports);
    assert_eq!((fleet.reports, fleet.nodes), (4, 3));
    assert_eq!(fleet.last_boots["ok"], 1);
    assert_eq!(fleet.last_boots["degraded"], 1);
    assert_eq!(fleet.last_boots["failed"], 1);
    let troubled: Vec<(&str, &str)> = fleet
        .troubled
        .iter()
        .map(|t| (t.node.as_str(), t.result.as_str()))
        .collect();
    assert_eq!(troubled, [("n3", "failed"), ("n2", "degraded")]);
    assert!(
        fleet.troubled[1].why.contains("coldplug degraded"),
        "{:?}",
        fleet.troubled[1]
    );
    // The slowest step first; every boot counts for the times.
    assert_eq!(fleet.steps[0].step, "net");
    assert_eq!(
        (
            fleet.steps[0].boots,
            fleet.steps[0].p50_ms,
            fleet.steps[0].p95_ms
        ),
        (4, 2000, 4000)
    );
    assert_eq!(fleet.steps[1].not_ok, 1);
    assert_eq!(fleet.handoff.as_ref().map(|h| h.boots), Some(2));
    assert_eq!(fleet.missing_drivers[0].hardware, "10ec:8168");
    assert_eq!(fleet.missing_drivers[0].nodes, 2);
    assert_eq!(fleet.missing_firmware[0].what, "rtl_nic/rtl8168h-2.fw");
    assert_eq!(fleet.module_failures[0].hardware, "e1000e");
    let text = render_text(&fleet, "dir:///reports");
    assert!(text.contains("4 reports of 3 nodes"), "{text}");
    assert!(text.contains("FAILED stage 1 failed"), "{text}");
    assert_eq!(fleet.troubled_by_reason.len(), 2);
    assert!(
        text.contains("10ec:8168 network controller: 2 nodes (n2, n3)"),
        "{text}"
    );
    assert!(
        text.contains("10ec:8168 rtl_nic/rtl8168h-2.fw: 1 node (n3)"),
        "{text}"
    );
    assert!(
        text.contains("FAILED handoff target /sbin/zinit does not exist: 1 node (n3)"),
        "{text}"
    );
    let svg = render_svg(&fleet);
    assert!(svg.starts_with("<svg") && svg.contains("net") && svg.ends_with("</svg>\n"));
}

#[test]
fn groups_name_a_few_nodes_and_count_the_rest() {
    let reports: Vec<Envelope> = (0..12)
        .map(|i| {
            let mut e = boot(&format!("n{i:02}"), "b", 1, 10, "ok");
            e.undriven.push(Undriven {
                devpath: "/devices/platform/x".into(),
                modalias: "platform:weird".into(),
                pci: None,
            });
            e
        })
        .collect();
    let fleet = aggregate(&reports);
    let group = &fleet.missing_drivers[0];
    assert_eq!(
        (group.hardware.as_str(), group.nodes),
        ("platform:weird", 12)
    );
    assert!(render_text(&fleet, "x").contains("n00, n01, n02, n03, n04 and 7 more"));
    // A hostile step name cannot break the SVG.
    let mut hostile = boot("h", "b", 1, 10, "ok");
    hostile.report.steps[0].name = "<script>".into();
    assert!(!render_svg(&aggregate(&[hostile])).contains("<script>"));
}

#[test]
fn a_boot_is_clean_by_stage_one_alone() {
    use crate::report::verdict::stage1_clean;
    let mut clean = boot("n", "b", 1, 10, "ok");
    assert!(stage1_clean(&clean.report));
    // A service still running after the handoff does not make stage 1's boot unclean.
    let mut service = step("initagent-flists", 5, Outcome::Running);
    service.unit = Some("flists".into());
    clean.report.steps.push(service);
    assert!(stage1_clean(&clean.report));
    assert!(!stage1_clean(&boot("n", "b", 1, 10, "degraded").report));
    assert!(!stage1_clean(&boot("n", "b", 1, 10, "failed").report));
}
