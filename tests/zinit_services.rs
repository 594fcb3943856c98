//! The service files in `zinit/`: every step is a oneshot logging to stdout that runs a
//! real `initagent` command with real options, and `after:` orders the steps as zos's
//! stage 2 expects (modules before the coldplug that replaces `udev-trigger`, the coldplug
//! before `internet`, the lease renewal after it). That the real zinit (v0.2.14) loads and
//! runs them is shown in the VM (`vm_node`: every service `Success` in `zinit list`); here
//! their content is read with a strict reader of the few keys they use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The keys our service files use (zinit's own: `exec`, `oneshot`, `after`, `log`).
#[derive(Debug, Default)]
struct Service {
    exec: String,
    one_shot: bool,
    after: Vec<String>,
    log: String,
}

/// Reads one service file; anything but the four keys, or a malformed line, fails.
fn parse(name: &str, text: &str) -> Service {
    let mut service = Service::default();
    let mut in_after = false;
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(item) = line.strip_prefix("  - ") {
            assert!(in_after, "{name}: a list item outside after: {line:?}");
            service.after.push(item.trim().to_string());
            continue;
        }
        in_after = false;
        let (key, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("{name}: not `key: value`: {line:?}"));
        let value = value.trim();
        match key {
            "exec" => service.exec = value.to_string(),
            "oneshot" => service.one_shot = value == "true",
            "log" => service.log = value.to_string(),
            "after" if value.is_empty() => in_after = true,
            _ => panic!("{name}: unexpected line {line:?}"),
        }
    }
    assert!(!service.exec.is_empty(), "{name}: no exec");
    service
}

/// The services that run for as long as the node does; every other one is a oneshot.
const LONG_RUNNING: [&str; 2] = ["net-renew", "initagent-flists-guard"];

fn services() -> BTreeMap<String, Service> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zinit");
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let service = parse(&name, &std::fs::read_to_string(&path).unwrap());
            (name, service)
        })
        .collect()
}

#[test]
fn every_service_loads_and_runs_an_initagent_command() {
    use initagent::cli::spec::{parse, Parsed};
    for (name, service) in services() {
        let words: Vec<String> = service.exec.split_whitespace().map(String::from).collect();
        assert_eq!(
            words.first().map(String::as_str),
            Some("/sbin/initagent"),
            "{name}: {}",
            service.exec
        );
        // The command line is one the binary's grammar takes as it stands: a command
        // with its own options and the arguments it wants.
        let parsed = parse(&words[1..]);
        let Ok(Parsed::Run {
            command,
            given,
            positional,
        }) = parsed
        else {
            panic!("{name}: `{}` is refused: {parsed:?}", service.exec);
        };
        if command == "step" {
            // A boot step, recorded in the report under the service's own name.
            assert!(
                initagent::step::StepName::parse(&positional[0]).is_some(),
                "{name}: {} is not a step",
                positional[0]
            );
            let record_as = given.iter().find(|(o, _)| o.long == "as");
            assert_eq!(
                record_as.and_then(|(_, v)| v.as_deref()),
                Some(name.as_str()),
                "{name}: --as must name the service"
            );
        }
        assert_eq!(service.log, "stdout", "{name}: log must be stdout");
        if !LONG_RUNNING.contains(&name.as_str()) {
            assert!(service.one_shot, "{name} must be a oneshot");
        }
    }
}

#[test]
fn after_orders_the_steps_like_zos_stage_two() {
    let services = services();
    // What zos's own services provide, which ours may wait for.
    let external: BTreeSet<&str> = ["udevd", "redis", "local-modprobe"].into();
    for (name, service) in &services {
        for dependency in &service.after {
            assert!(
                services.contains_key(dependency) || external.contains(dependency.as_str()),
                "{name} waits for unknown {dependency}"
            );
        }
    }
    // Start order as zinit derives it: a service starts once everything in `after` has.
    let mut started: Vec<String> = Vec::new();
    while started.len() < services.len() {
        let ready: Vec<String> = services
            .iter()
            .filter(|(name, _)| !started.contains(name))
            .filter(|(_, s)| {
                s.after
                    .iter()
                    .all(|d| started.contains(d) || external.contains(d.as_str()))
            })
            .map(|(name, _)| name.clone())
            .collect();
        assert!(
            !ready.is_empty(),
            "a dependency cycle among {:?}",
            services.keys()
        );
        started.extend(ready);
    }
    let position = |name: &str| {
        started
            .iter()
            .position(|s| s == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let chain = [
        "initagent-depmod",
        "initagent-modules",
        "udev-trigger",
        "internet",
        "net-renew",
    ];
    for pair in chain.windows(2) {
        assert!(
            position(pair[0]) < position(pair[1]),
            "{} must start before {}: {started:?}",
            pair[0],
            pair[1]
        );
    }
    assert!(services["internet"]
        .after
        .contains(&"udev-trigger".to_string()));
    // A degraded boot heals once the network is usable: the flists, then what needs them.
    let late = [
        "internet",
        "initagent-flists",
        "initagent-late-depmod",
        "initagent-late-modules",
        "initagent-late-coldplug",
    ];
    for pair in late.windows(2) {
        assert!(
            services[pair[1]].after.contains(&pair[0].to_string()),
            "{} must wait for {}",
            pair[1],
            pair[0]
        );
    }
}
