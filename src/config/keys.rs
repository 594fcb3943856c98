//! The table of `initagent.*` keys: name, meaning, how a raw value becomes a typed one.
//! The same names are used in the profile file (without the prefix) and documented in
//! `docs/cmdline.md` (a unit test keeps the two in step).

use super::cmdline::split_argv;
use super::{Config, FailurePolicy, LogLevel, NetLayout, RawValue};

/// One configuration key.
pub struct KeyDef {
    /// Name after `initagent.` (and the profile key).
    pub name: &'static str,
    /// One line for `initagent config --keys`.
    pub help: &'static str,
    /// Parses the raw value into the configuration, or says why it cannot.
    pub apply: fn(&mut Config, &RawValue) -> Result<(), String>,
    /// Renders the current value (used to say what was kept).
    pub show: fn(&Config) -> String,
}

/// A key whose value is whole seconds in a range, kept in a `u32` field of the config.
macro_rules! seconds_key {
    ($name:literal, $help:literal, $($field:ident).+, $low:literal..=$high:literal) => {
        KeyDef {
            name: $name,
            help: $help,
            apply: |config, raw| {
                config.$($field).+ = seconds(raw, $low, $high)?;
                Ok(())
            },
            show: |config| config.$($field).+.to_string(),
        }
    };
}

/// Every key the agent understands.
pub const KEYS: &[KeyDef] = &[
    KeyDef {
        name: "log",
        help: "log level: error, warn, info (default), debug, trace (as debug in release builds)",
        apply: |config, raw| {
            config.log_level = match text(raw)? {
                "error" => LogLevel::Error,
                "warn" | "warning" => LogLevel::Warn,
                "info" => LogLevel::Info,
                "debug" => LogLevel::Debug,
                "trace" => LogLevel::Trace,
                _ => return Err("not a log level (error, warn, info, debug, trace)".into()),
            };
            Ok(())
        },
        show: |config| format!("{:?}", config.log_level).to_lowercase(),
    },
    KeyDef {
        name: "on_failure",
        help: "when stage 1 cannot go on: shell (rescue shell, then reboot), reboot, halt",
        apply: |config, raw| {
            config.on_failure = match text(raw)? {
                "shell" => FailurePolicy::Shell,
                "reboot" => FailurePolicy::Reboot,
                "halt" => FailurePolicy::Halt,
                _ => return Err("not a failure policy (shell, reboot, halt)".into()),
            };
            Ok(())
        },
        show: |config| format!("{:?}", config.on_failure).to_lowercase(),
    },
    seconds_key!(
        "reboot_delay",
        "seconds of countdown before a failure reboot (0-86400, default 30)",
        reboot_delay_s,
        0..=86_400
    ),
    KeyDef {
        name: "handoff",
        help: "the next init and its arguments (default \"/sbin/zinit init\")",
        apply: |config, raw| {
            let argv = match raw {
                RawValue::List(items) => items.clone(),
                _ => {
                    let (words, anomalies) = split_argv(text(raw)?);
                    if let Some(anomaly) = anomalies.first() {
                        return Err(anomaly.to_string());
                    }
                    words
                }
            };
            match argv.first() {
                None => return Err("empty command".into()),
                Some(program) if !program.starts_with('/') => {
                    return Err("the program must be an absolute path".into())
                }
                Some(_) => {}
            }
            config.handoff = argv;
            Ok(())
        },
        show: |config| format!("{:?}", config.handoff.join(" ")),
    },
    KeyDef {
        name: "modules_parallel",
        help: "load modules concurrently (yes/no, default yes)",
        apply: |config, raw| {
            config.modules_parallel = boolean(raw)?;
            Ok(())
        },
        show: |config| config.modules_parallel.to_string(),
    },
    KeyDef {
        name: "modules_sequential",
        help: "comma-separated modules that never load at the same time as each other",
        apply: |config, raw| {
            config.modules_sequential = match raw {
                RawValue::List(items) => items.clone(),
                _ => text(raw)?.split(',').filter(|s| !s.is_empty()).map(|s| s.replace('-', "_")).collect(),
            };
            Ok(())
        },
        show: |config| format!("{:?}", config.modules_sequential.join(",")),
    },
    KeyDef {
        name: "modules_pre",
        help: "comma-separated modules loaded with the bootstrap set, before it (also rd.driver.pre=)",
        apply: |config, raw| {
            config.modules_pre = module_names(raw)?;
            Ok(())
        },
        show: |config| format!("{:?}", config.modules_pre.join(",")),
    },
    KeyDef {
        name: "modules_load",
        help: "comma-separated modules loaded with the baseline, after it (also modules_load=, rd.modules_load=)",
        apply: |config, raw| {
            config.modules_load = module_names(raw)?;
            Ok(())
        },
        show: |config| format!("{:?}", config.modules_load.join(",")),
    },
    seconds_key!(
        "modules_deadline",
        "seconds the modules step may take before the boot goes on without it (1-3600, default 60)",
        modules_deadline_s,
        1..=3600
    ),
    seconds_key!(
        "depmod_deadline",
        "seconds the dependency-map check and repair may take (1-3600, default 30)",
        depmod_deadline_s,
        1..=3600
    ),
    seconds_key!(
        "coldplug_deadline",
        "seconds coldplug may take loading the drivers of the devices found (1-600, default 30)",
        coldplug_deadline_s,
        1..=600
    ),
    KeyDef {
        name: "flist.store",
        help: "comma-separated store URLs that replace the routes of the flists stage 1 mounts (a mirror)",
        apply: |config, raw| {
            let stores = list(raw)?;
            if let Some(bad) = stores.iter().find(|s| !s.contains("://")) {
                return Err(format!("{bad:?} is not a store URL (dir://, http(s)://, s3://, zdb://)"));
            }
            config.flist_stores = stores;
            Ok(())
        },
        show: |config| format!("{:?}", config.flist_stores.join(",")),
    },
    KeyDef {
        name: "flist.ca_file",
        help: "PEM file in the image whose CAs HTTPS/S3 stores are verified against instead of the web roots",
        apply: |config, raw| {
            let path = text(raw)?;
            if !path.starts_with('/') {
                return Err("not an absolute path in the image".into());
            }
            config.flist_ca_file = Some(path.into());
            Ok(())
        },
        show: |config| match &config.flist_ca_file {
            Some(path) => format!("{:?}", path.display().to_string()),
            None => "none (the web roots)".into(),
        },
    },
    KeyDef {
        name: "flist.cache",
        help: "the persistent block cache's device: LABEL=…, PARTLABEL=… or /dev/…; blank: formatted (ext3), an ext2/3/4, btrfs or XFS filesystem: shared (one directory), anything else: left alone",
        apply: |config, raw| {
            let value = text(raw)?;
            config.flist_cache = Some(crate::cachedev::probe::CacheSpec::parse(value).ok_or(
                "not LABEL=…, PARTLABEL=… or a /dev/ path",
            )?);
            Ok(())
        },
        show: |config| match &config.flist_cache {
            Some(spec) => format!("{:?}", spec.to_string()),
            None => "none (the cache is in /run)".into(),
        },
    },
    seconds_key!(
        "flist.cache_timeout",
        "seconds stage 1 waits for the cache device to appear (1-120, default 10)",
        flist_cache_timeout_s,
        1..=120
    ),
    seconds_key!(
        "flist.store_timeout",
        "seconds one store request of a stage-1 flist may take (1-300, default 5)",
        flist_store_timeout_s,
        1..=300
    ),
    KeyDef {
        name: "report_url",
        help: "store the boot report goes to after every boot, as reports/<node-id>/<boot-id>.json (dir://, http(s):// by PUT, s3://, s3s://); credentials belong in the profile",
        apply: |config, raw| {
            let url = text(raw)?;
            let scheme = url.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("dir" | "http" | "https" | "s3" | "s3s")) {
                return Err(format!(
                    "{:?} is not a store the report can be written to (dir://, http(s)://, s3://, s3s://)",
                    crate::redact::url(url)
                ));
            }
            config.report_url = Some(url.to_string());
            Ok(())
        },
        show: |config| match &config.report_url {
            Some(url) => format!("{:?}", crate::redact::url(url)),
            None => "none (the report stays on the node)".into(),
        },
    },
    seconds_key!(
        "report_timeout",
        "seconds one request sending the boot report may take (1-60, default 5)",
        report_timeout_s,
        1..=60
    ),
    KeyDef {
        name: "node_id",
        help: "this node's name in the reports (default: the system UUID, else the lowest NIC MAC, else the hostname)",
        apply: |config, raw| {
            let id = text(raw)?;
            if id.is_empty()
                || id.len() > 64
                || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err("1-64 letters, digits, '-' or '_'".into());
            }
            config.node_id = Some(id.to_string());
            Ok(())
        },
        show: |config| format!("{:?}", config.node_id.as_deref().unwrap_or("from the hardware")),
    },
    seconds_key!(
        "flists_deadline",
        "seconds mounting the firmware and modules flists may take (1-600, default 30)",
        flists_deadline_s,
        1..=600
    ),
    seconds_key!(
        "prefetch_deadline",
        "seconds the boot-critical prefetch may take (1-600, default 20)",
        prefetch_deadline_s,
        1..=600
    ),
    KeyDef {
        name: "break",
        help: "stop before this stage-1 step with a shell on the console; the boot goes on when it exits (like rd.break)",
        apply: |config, raw| {
            let step = text(raw)?;
            if !BREAKABLE_STEPS.contains(&step) {
                return Err(format!("{step} is not a step to stop before ({})", BREAKABLE_STEPS.join(", ")));
            }
            config.break_before = Some(step.to_string());
            Ok(())
        },
        show: |config| format!("{:?}", config.break_before.clone().unwrap_or_default()),
    },
    KeyDef {
        name: "skip",
        help: "comma-separated stage-1 steps not to run (bootstrap, net, flists, depmod, prefetch, modules, coldplug); recorded as skipped",
        apply: |config, raw| {
            let names: Vec<String> = match raw {
                RawValue::List(items) => items.clone(),
                _ => text(raw)?.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            };
            if let Some(bad) = names.iter().find(|n| !SKIPPABLE_STEPS.contains(&n.as_str())) {
                return Err(format!("{bad} is not a step that can be skipped ({})", SKIPPABLE_STEPS.join(", ")));
            }
            config.skip = names;
            Ok(())
        },
        show: |config| format!("{:?}", config.skip.join(",")),
    },
    KeyDef {
        name: "net.links",
        help: "comma-separated links to try for the network, virtual ones allowed (default: every physical link)",
        apply: |config, raw| {
            let names = list(raw)?;
            if names.is_empty() {
                return Err("no link named".into());
            }
            config.net.links = Some(names);
            Ok(())
        },
        show: |config| format!("{:?}", config.net.links.as_ref().map(|l| l.join(",")).unwrap_or_default()),
    },
    KeyDef {
        name: "net.iface",
        help: "the link to use when it gets a lease: a name or a MAC (default: the zos rule)",
        apply: |config, raw| {
            config.net.iface = Some(text(raw)?.to_string());
            Ok(())
        },
        show: |config| format!("{:?}", config.net.iface.clone().unwrap_or_default()),
    },
    seconds_key!(
        "net.carrier_timeout",
        "seconds a link may take to show carrier (1-300, default 10)",
        net.carrier_timeout_s,
        1..=300
    ),
    seconds_key!(
        "net.dhcp_timeout",
        "seconds DHCP may take on a link after carrier (1-600, default 30)",
        net.dhcp_timeout_s,
        1..=600
    ),
    seconds_key!(
        "net.settle",
        "seconds the other links still get after the first lease with a gateway (0-60, default 1)",
        net.settle_s,
        0..=60
    ),
    seconds_key!(
        "net.ipv6_timeout",
        "seconds from the start of the step a SLAAC address is waited for, only to report it (0-60, default 0: never waited for)",
        net.ipv6_timeout_s,
        0..=60
    ),
    KeyDef {
        name: "net.layout",
        help: "plain (the address on the NIC, default) or zos (bridge zos with the NIC's MAC, NIC enslaved, address on the bridge)",
        apply: |config, raw| {
            config.net.layout = match text(raw)? {
                "plain" => NetLayout::Plain,
                "zos" => NetLayout::Zos,
                _ => return Err("not a layout (plain, zos)".into()),
            };
            Ok(())
        },
        show: |config| format!("{:?}", config.net.layout).to_lowercase(),
    },
    KeyDef {
        name: "net.check",
        help: "comma-separated store URLs, or flists whose stores, to reach over TCP once the network is up",
        apply: |config, raw| {
            config.net.check = list(raw)?;
            Ok(())
        },
        show: |config| format!("{:?}", config.net.check.join(",")),
    },
    seconds_key!(
        "net.check_timeout",
        "seconds the store reachability check may take (1-300, default 5)",
        net.check_timeout_s,
        1..=300
    ),
];

/// Stage-1 steps stage 1 can stop before (the ones after the configuration is read).
pub const BREAKABLE_STEPS: &[&str] = &[
    "bootstrap",
    "net",
    "flists",
    "depmod",
    "prefetch",
    "modules",
    "coldplug",
    "handoff",
];

/// Stage-1 steps an operator may skip (the others are what make a boot possible).
pub const SKIPPABLE_STEPS: &[&str] = &[
    "bootstrap",
    "net",
    "flists",
    "depmod",
    "prefetch",
    "modules",
    "coldplug",
];

/// A list of module names (`-` read as `_`), from a list or comma-separated text.
fn module_names(raw: &RawValue) -> Result<Vec<String>, String> {
    let names: Vec<String> = match raw {
        RawValue::List(items) => items.clone(),
        _ => text(raw)?.split(',').map(str::to_string).collect(),
    };
    Ok(names
        .iter()
        .map(|n| n.trim().replace('-', "_"))
        .filter(|n| !n.is_empty())
        .collect())
}

fn boolean(raw: &RawValue) -> Result<bool, String> {
    match raw {
        RawValue::Flag => Ok(true),
        _ => match text(raw)? {
            "1" | "yes" | "true" | "on" => Ok(true),
            "0" | "no" | "false" | "off" => Ok(false),
            _ => Err("not yes or no".into()),
        },
    }
}

fn seconds(raw: &RawValue, low: u32, high: u32) -> Result<u32, String> {
    let value: u32 = text(raw)?
        .parse()
        .map_err(|_| "not a whole number of seconds".to_string())?;
    if value < low || value > high {
        return Err(format!("outside {low}-{high} seconds"));
    }
    Ok(value)
}

/// A profile array, or comma-separated text.
fn list(raw: &RawValue) -> Result<Vec<String>, String> {
    Ok(match raw {
        RawValue::List(items) => items.clone(),
        _ => text(raw)?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

fn text(raw: &RawValue) -> Result<&str, String> {
    match raw {
        RawValue::Text(text) if !text.is_empty() => Ok(text),
        RawValue::Text(_) => Err("empty value".into()),
        RawValue::Flag => Err("needs a value".into()),
        RawValue::List(_) => Err("needs a single value, not a list".into()),
    }
}
