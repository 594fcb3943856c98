//! The service files in `zinit/`, read with zinit's own loader (`zinit::config::load_dir`,
//! the zinit crate 0.2): every file loads, every step is a oneshot logging to stdout that
//! runs a real `initagent` command, and `after:` orders the steps as zos's stage 2 expects
//! (modules before the coldplug that replaces `udev-trigger`, the coldplug before
//! `internet`, the lease renewal after it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use zinit::zinit::config::{load_dir, Log, Service};

fn services() -> BTreeMap<String, Service> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zinit");
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .count();
    let loaded: BTreeMap<String, Service> = load_dir(&dir).unwrap().into_iter().collect();
    // load_dir skips a file it cannot read (it only logs), so count them.
    assert_eq!(
        loaded.len(),
        files,
        "a service file did not load: {:?}",
        loaded.keys()
    );
    loaded
}

#[test]
fn every_service_loads_and_runs_an_initagent_command() {
    let usage = std::process::Command::new(env!("CARGO_BIN_EXE_initagent"))
        .arg("help")
        .output()
        .unwrap();
    let usage = String::from_utf8_lossy(&usage.stdout).into_owned();
    for (name, service) in services() {
        let words: Vec<&str> = service.exec.split_whitespace().collect();
        assert_eq!(
            words.first(),
            Some(&"/sbin/initagent"),
            "{name}: {}",
            service.exec
        );
        // The subcommand (one or two words) is one the binary documents.
        let command = words[1..]
            .iter()
            .take_while(|w| !w.starts_with('-'))
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            usage.contains(&format!("  {command}")),
            "{name}: `{command}` is not an initagent command"
        );
        for flag in words.iter().filter(|w| w.starts_with("--")) {
            assert!(
                usage.contains(flag),
                "{name}: {flag} is not an initagent option"
            );
        }
        assert!(
            matches!(service.log, Log::Stdout),
            "{name}: log must be stdout"
        );
        if name != "net-renew" {
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
