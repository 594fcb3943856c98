//! Boot evidence off the node and the fleet view, on real boots: Debian's kernel in QEMU,
//! the agent as `/init`, the real zinit after the handoff, and Debian's nginx taking the
//! reports by HTTP PUT (its WebDAV module) in the test's namespace (`10.0.2.2` to the
//! guest). Five boots with different virtual hardware (NIC models, PCI devices no module
//! of the image drives, firmware UUIDs or a configured node id, CPUs, memory) and faults
//! (a module list naming a module that does not exist, a handoff target that is missing)
//! each leave `reports/<node-id>/<boot-id>.json`: stage 1 sends before the handoff or the
//! failure policy, and zinit's `initagent-report` service sends again after the degraded
//! boot and stays quiet after the clean ones. Fifty more reports derived from those five
//! (other node ids, boot ids, times and outcomes) show the aggregation at fleet size:
//! `initagent fleet report` prints the steps' p50/p95, the nodes whose last boot was not
//! clean and why, and the devices without a driver by PCI vendor:device, as text, JSON
//! and SVG.
#![cfg(feature = "system-tests")]

mod common;

use common::netns::NetNs;
use common::vm::{Boot, Vm};
use std::collections::BTreeMap;
use std::path::Path;

const PORT: u16 = 8088;
const CHECK: &str = "tests/vm/guest/fleet-check.sh";

/// One boot sending its report to the namespace's nginx.
fn fleet_boot(ns: &NetNs, name: &str, shape: impl FnOnce(Vm) -> Vm) -> Boot {
    let vm = Vm::new(name).in_netns(ns).append(&format!(
        "initagent.report_url=http://10.0.2.2:{PORT}/fleet"
    ));
    shape(vm).boot()
}

/// The `upload` record the guest printed.
fn upload(boot: &Boot) -> serde_json::Value {
    let line = boot
        .result("upload ")
        .unwrap_or_else(|| panic!("no upload record:\n{}", boot.explain()));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn envelopes(dir: &Path) -> Vec<serde_json::Value> {
    let mut found = Vec::new();
    for node in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for report in std::fs::read_dir(node.path()).unwrap().flatten() {
            let text = std::fs::read_to_string(report.path()).unwrap();
            found.push(serde_json::from_str(&text).unwrap());
        }
    }
    found
}

/// Fifty reports made from the real ones: other node and boot ids, later times, step
/// times scaled, and every seventh a clean boot turned into a degraded one.
fn derive(real: &[serde_json::Value], into: &Path) -> Vec<serde_json::Value> {
    let mut derived = Vec::new();
    for i in 0..50usize {
        let mut envelope = real[i % real.len()].clone();
        let node = format!("derived-{i:02}");
        let boot = format!("00000000-0000-4000-8000-{i:012}");
        envelope["node"] = node.clone().into();
        envelope["boot"] = boot.clone().into();
        envelope["sent_at"] = (envelope["sent_at"].as_u64().unwrap() + 60 * i as u64).into();
        let scale = 1.0 + (i % 10) as f64 / 10.0;
        for step in envelope["report"]["steps"].as_array_mut().unwrap() {
            let start = step["start_us"].as_u64().unwrap();
            if let Some(end) = step["end_us"].as_u64() {
                step["end_us"] = (start + ((end - start) as f64 * scale) as u64).into();
            }
        }
        if i % 7 == 3 && envelope["report"]["result"]["status"] == "handed-off" {
            let steps = envelope["report"]["steps"].as_array_mut().unwrap();
            if let Some(coldplug) = steps.iter_mut().find(|s| s["name"] == "coldplug") {
                coldplug["outcome"] = "degraded".into();
                coldplug["detail"] =
                    "derived: deadline passed while devices were still appearing".into();
            }
        }
        let dir = into.join("reports").join(&node);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{boot}.json")), envelope.to_string()).unwrap();
        derived.push(envelope);
    }
    derived
}

/// What `initagent status --check` would say of a report: ok, degraded or failed.
fn verdict(envelope: &serde_json::Value) -> &'static str {
    let report = &envelope["report"];
    if report["result"]["status"] != "handed-off" {
        return "failed";
    }
    let troubled = report["steps"].as_array().unwrap().iter().any(|s| {
        matches!(
            s["outcome"].as_str(),
            Some("degraded" | "failed" | "running")
        )
    });
    if troubled {
        "degraded"
    } else {
        "ok"
    }
}

#[test]
fn five_real_boots_and_fifty_derived_make_a_fleet_report() {
    let dir = common::scratch("vm-fleet");
    let ns = NetNs::create();
    let _nginx = common::servers::nginx_dav(&dir.join("dav"), Some(&ns), PORT);
    let uuid = |n: u32| format!("6a1d0c7e-0000-4000-8000-0000000f{n:04}");

    // 1. virtio NIC, clean: stage 1 sends; the service finds nothing to send again.
    let clean = fleet_boot(&ns, "fleet-virtio", |vm| {
        vm.qemu(&["-uuid", &uuid(1)])
            .zinit_with_report_after(CHECK, &["initagent-report"])
    });
    // 2. Two CPUs, 768 MiB, and two PCI devices no module drives (QEMU's edu and
    //    pci-testdev), clean.
    let devices = fleet_boot(&ns, "fleet-devices", |vm| {
        vm.qemu(&[
            "-uuid",
            &uuid(2),
            "-device",
            "edu",
            "-device",
            "pci-testdev",
        ])
        .cpus(2)
        .memory_mb(768)
        .zinit_with_report_after(CHECK, &["initagent-report"])
    });
    // 3. A module list naming a module that does not exist, and a sound card: degraded;
    //    the service sends the report again once the late steps have run.
    let degraded = fleet_boot(&ns, "fleet-degraded", |vm| {
        vm.qemu(&["-uuid", &uuid(3), "-device", "ich9-intel-hda"])
            .file(
                "/etc/initagent/modules",
                "virtio_rng\nno_such_driver\n",
                0o644,
            )
            .zinit_with_report_after(CHECK, &["initagent-report"])
    });
    // 4. A second NIC of another model (rtl8139, not in the image) and a configured node
    //    id instead of the hardware's.
    let named = fleet_boot(&ns, "fleet-rtl8139", |vm| {
        vm.qemu(&["-nic", "user,model=rtl8139"])
            .append("initagent.node_id=rack9-n5")
            .zinit_with_report_after(CHECK, &["initagent-report"])
    });
    // 5. The handoff target is missing: stage 1 fails, sends, then reboots (QEMU exits).
    let failed = fleet_boot(&ns, "fleet-failed", |vm| {
        vm.qemu(&["-uuid", &uuid(5), "-device", "i82559er"])
            .append("initagent.handoff=/sbin/no-such-init")
    });

    for boot in [&clean, &devices, &named] {
        let record = upload(boot);
        assert_eq!(record["ok"], true, "{record:#}\n{}", boot.explain());
        assert_eq!(
            record["by"], "stage1",
            "a clean boot is sent once: {record:#}"
        );
        assert_eq!(
            boot.zinit_states().get("initagent-report"),
            Some(&"Success")
        );
    }
    let record = upload(&degraded);
    assert_eq!(
        (record["ok"].clone(), record["by"].clone()),
        (true.into(), "initagent-report".into()),
        "{record:#}"
    );
    assert!(
        failed
            .console
            .contains("boot report sent to http://10.0.2.2"),
        "{}",
        failed.explain()
    );

    let real = envelopes(&dir.join("dav/root/fleet/reports"));
    let nodes: BTreeMap<String, &serde_json::Value> = real
        .iter()
        .map(|e| (e["node"].as_str().unwrap().to_string(), e))
        .collect();
    let mut expected_sorted = vec![uuid(1), uuid(2), uuid(3), uuid(5), "rack9-n5".into()];
    expected_sorted.sort();
    assert_eq!(nodes.keys().cloned().collect::<Vec<_>>(), expected_sorted);
    assert_eq!(verdict(nodes[&uuid(1)]), "ok");
    assert_eq!(verdict(nodes[&uuid(3)]), "degraded");
    assert_eq!(verdict(nodes[&uuid(5)]), "failed");
    let pci = |node: &str| -> Vec<String> {
        nodes[node]["undriven"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["pci"].as_str().map(String::from))
            .collect()
    };
    assert!(
        pci(&uuid(2)).contains(&"1234:11e8".to_string()),
        "{:?}",
        pci(&uuid(2))
    );
    assert!(
        pci(&uuid(2)).contains(&"1b36:0005".to_string()),
        "{:?}",
        pci(&uuid(2))
    );
    assert!(
        pci(&uuid(3)).contains(&"8086:293e".to_string()),
        "{:?}",
        pci(&uuid(3))
    );
    assert!(
        pci("rack9-n5").contains(&"10ec:8139".to_string()),
        "{:?}",
        pci("rack9-n5")
    );
    assert!(
        nodes[&uuid(3)]["module_failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().starts_with("no_such_driver")),
        "{:#}",
        nodes[&uuid(3)]["module_failures"]
    );

    // The fleet: the five real reports and fifty derived ones in one directory store.
    let store = dir.join("fleet");
    for envelope in &real {
        let node_dir = store
            .join("reports")
            .join(envelope["node"].as_str().unwrap());
        std::fs::create_dir_all(&node_dir).unwrap();
        let name = format!("{}.json", envelope["boot"].as_str().unwrap());
        std::fs::write(node_dir.join(name), envelope.to_string()).unwrap();
    }
    let derived = derive(&real, &store);
    let all: Vec<&serde_json::Value> = real.iter().chain(&derived).collect();
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    for envelope in &all {
        *expected.entry(verdict(envelope)).or_default() += 1;
    }
    let svg = dir.join("fleet.svg");
    let out = common::agent(&[
        "fleet",
        "report",
        "--store",
        store.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(text.contains("55 reports of 55 nodes"), "{text}");
    assert!(
        text.contains("FAILED stage 1 failed: handoff target /sbin/no-such-init does not exist"),
        "{text}"
    );
    assert!(
        text.contains("1234:11e8 unclassified device: 11 nodes"),
        "{text}"
    );
    let json = common::agent(&[
        "fleet",
        "report",
        "--json",
        "--store",
        store.to_str().unwrap(),
    ]);
    let view: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let fleet = &view["fleet"];
    for (result, count) in &expected {
        assert_eq!(
            fleet["last_boots"][*result], *count,
            "{result}: {:#}",
            fleet["last_boots"]
        );
    }
    // The edu device: on the real node and on every node derived from it.
    let edu = fleet["missing_drivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["hardware"] == "1234:11e8")
        .unwrap_or_else(|| panic!("{:#}", fleet["missing_drivers"]));
    assert_eq!(edu["nodes"], 11, "{edu:#}");
    // Every stage-1 step the real boots ran, with 55 boots behind its times (the failed
    // boot ran them too), p50 ≤ p95.
    for step in fleet["steps"].as_array().unwrap() {
        assert!(
            step["p50_ms"].as_u64() <= step["p95_ms"].as_u64(),
            "{step:#}"
        );
    }
    let coldplug = fleet["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "coldplug")
        .unwrap();
    assert_eq!(coldplug["boots"], 55, "{coldplug:#}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(
        drawn.starts_with("<svg") && drawn.contains("coldplug"),
        "{drawn}"
    );
}

/// ramoops in 1 MiB of RAM the kernel leaves alone (`memmap=`), loaded with the bootstrap
/// set (`rd.driver.pre=ramoops`), dumping the kernel log on a reboot (`max_reason=4`).
const RAMOOPS: &str = "memmap=1M$0x1f000000 ramoops.mem_address=0x1f000000 \
ramoops.mem_size=0x100000 ramoops.record_size=0x40000 ramoops.max_reason=4 \
rd.driver.pre=ramoops";

#[test]
fn a_failure_is_kept_across_the_reboot_in_pstore() {
    let dir = common::scratch("vm-fleet-pstore");
    let ns = NetNs::create();
    let _nginx = common::servers::nginx_dav(&dir.join("dav"), Some(&ns), PORT);
    let (root, release) = common::kernel::debian_tree();
    let tree = root.join("lib/modules").join(&release);
    let module = |path: &str| std::fs::read(tree.join(path)).unwrap();
    // A node whose handoff target is missing fails every boot; the failure policy
    // reboots it (QEMU resets the machine, RAM kept) and the second boot is stopped once
    // it has sent its own report.
    let boot = Vm::new("fleet-pstore")
        .in_netns(&ns)
        .file(
            &format!("/lib/modules/{release}/kernel/fs/pstore/ramoops.ko"),
            module("kernel/fs/pstore/ramoops.ko"),
            0o644,
        )
        .file(
            &format!("/lib/modules/{release}/kernel/lib/reed_solomon/reed_solomon.ko"),
            module("kernel/lib/reed_solomon/reed_solomon.ko"),
            0o644,
        )
        .qemu(&["-uuid", "6a1d0c7e-0000-4000-8000-00000000beef"])
        .append(&format!(
            "{RAMOOPS} initagent.report_url=http://10.0.2.2:{PORT}/fleet \
             initagent.handoff=/sbin/no-such-init initagent.reboot_delay=1"
        ))
        .allow_reboot()
        .stop_on_count("boot report sent to", 2)
        .boot();
    let console = &boot.console;
    assert!(
        console.contains("the kernel log of this failure goes to pstore (ramoops)"),
        "{}",
        boot.explain()
    );
    assert!(
        console.contains("the previous boot failed: handoff target /sbin/no-such-init"),
        "{}",
        boot.explain()
    );
    let reports = envelopes(&dir.join("dav/root/fleet/reports"));
    assert_eq!(reports.len(), 2, "one report per boot: {reports:#?}");
    let second = reports
        .iter()
        .find(|e| !e["report"]["previous_boot"].is_null())
        .unwrap_or_else(|| panic!("no report names the previous boot: {reports:#?}"));
    let previous = &second["report"]["previous_boot"];
    assert_eq!(previous["result"], "failed", "{previous:#}");
    assert!(
        previous["source"]
            .as_str()
            .unwrap()
            .starts_with("pstore dmesg-ramoops-"),
        "{previous:#}"
    );
    assert!(
        previous["detail"]
            .as_str()
            .unwrap()
            .contains("/sbin/no-such-init"),
        "{previous:#}"
    );
    assert_eq!(second["summary"]["previous"], "failed");
    let pstore = common::step(&second["report"], "pstore");
    assert_eq!(
        pstore["counters"]["erased"], pstore["counters"]["records"],
        "{pstore:#}"
    );
}
