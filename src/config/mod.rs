//! Typed configuration from three layers, later wins: built-in defaults < the target
//! profile (`/etc/initagent/config.toml`) < `initagent.*` keys on the kernel command line.
//!
//! Nothing here fails: a bad value becomes a [`Config::warnings`] entry naming the key, the
//! layer and the value kept. The zos keys the boot depends on (`runmode`, `version`,
//! `farmer_id`, `zos-debug`) are read from the command line alongside.

pub mod cmdline;
pub mod dracut;
mod keys;
pub mod profile;

use crate::net::ipconfig::IpParam;
use crate::net::select::Preferred;
use cmdline::Cmdline;
pub use keys::{KeyDef, KEYS};
use serde::Serialize;
use std::collections::BTreeMap;

/// Where the profile lives inside the initramfs.
pub const DEFAULT_PROFILE_PATH: &str = "/etc/initagent/config.toml";
/// Where the kernel command line is read from.
pub const CMDLINE_PATH: &str = "/proc/cmdline";
/// Prefix of the agent's own command-line keys.
pub const CMDLINE_PREFIX: &str = "initagent";

/// What stage 1 does when it cannot go on (`initagent.on_failure=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// A rescue shell on the console when `/bin/sh` exists; reboot after it exits.
    Shell,
    /// Count down `reboot_delay` seconds, then reboot.
    Reboot,
    /// Stop the machine and wait.
    Halt,
}

/// Log verbosity, as `log::LevelFilter` but serialisable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Progress lines (the default).
    Info,
    /// Details for debugging.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The matching `log` filter.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// zos run mode (`runmode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// Production (`prod`, `production`; the default).
    Prod,
    /// Development (`dev`, `development`).
    Dev,
    /// Test network (`test`, `testing`).
    Test,
    /// QA network (`qa`).
    Qa,
}

/// zos image flavour (`version=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ZosVersion {
    /// `v3` (the default).
    V3,
    /// `v3light`.
    V3light,
    /// `v4`.
    V4,
}

/// The zos keys the boot depends on, as read from the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZosParams {
    /// `runmode=`.
    pub runmode: RunMode,
    /// `version=`.
    pub version: ZosVersion,
    /// `farmer_id=`; `None` means the node is an orphan.
    pub farmer_id: Option<u32>,
    /// `zos-debug` flag.
    pub debug: bool,
}

impl Default for ZosParams {
    fn default() -> Self {
        ZosParams {
            runmode: RunMode::Prod,
            version: ZosVersion::V3,
            farmer_id: None,
            debug: false,
        }
    }
}

/// Network settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetConfig {
    /// `initagent.net.links`: candidate links by name.
    pub links: Option<Vec<String>>,
    /// `initagent.net.iface`: the preferred link (name or MAC).
    pub iface: Option<String>,
    /// `initagent.net.carrier_timeout`, seconds.
    pub carrier_timeout_s: u32,
    /// `initagent.net.dhcp_timeout`, seconds.
    pub dhcp_timeout_s: u32,
    /// `initagent.net.settle`, seconds.
    pub settle_s: u32,
    /// `initagent.net.ipv6_timeout`, seconds.
    pub ipv6_timeout_s: u32,
    /// `initagent.net.check`: stores (URLs or flists) to reach once configured.
    pub check: Vec<String>,
    /// `initagent.net.check_timeout`, seconds.
    pub check_timeout_s: u32,
    /// `initagent.net.layout`: where the address goes.
    pub layout: NetLayout,
    /// The kernel's `ip=` (the last one), when it could be read.
    pub ip: Option<IpParam>,
    /// The kernel's `BOOTIF=` (pxelinux), when it could be read.
    pub bootif: Option<Preferred>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            links: None,
            iface: None,
            carrier_timeout_s: 10,
            dhcp_timeout_s: 30,
            settle_s: 1,
            ipv6_timeout_s: 0,
            check: Vec::new(),
            check_timeout_s: 5,
            layout: NetLayout::Plain,
            ip: None,
            bootif: None,
        }
    }
}

/// Where the chosen configuration goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetLayout {
    /// On the chosen NIC itself.
    Plain,
    /// zos's: a bridge `zos` with the NIC's MAC, the NIC enslaved to it, the address on
    /// the bridge.
    Zos,
}

/// Which layer set a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Built into the binary.
    Default,
    /// The target profile file.
    Profile,
    /// The kernel command line.
    Cmdline,
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// `initagent.log`.
    pub log_level: LogLevel,
    /// `initagent.on_failure`.
    pub on_failure: FailurePolicy,
    /// `initagent.reboot_delay`, seconds.
    pub reboot_delay_s: u32,
    /// `initagent.handoff`: argv of the next init.
    pub handoff: Vec<String>,
    /// `initagent.modules_parallel`: load modules concurrently.
    pub modules_parallel: bool,
    /// `initagent.modules_sequential`: modules that never load at the same time as each other.
    pub modules_sequential: Vec<String>,
    /// `initagent.modules_deadline`: seconds the modules step may take.
    pub modules_deadline_s: u32,
    /// `initagent.depmod_deadline`: seconds the depmod step may take.
    pub depmod_deadline_s: u32,
    /// `initagent.coldplug_deadline`: seconds coldplug may take.
    pub coldplug_deadline_s: u32,
    /// `initagent.flist.store`: stores replacing the routes of the stage-1 flists.
    pub flist_stores: Vec<String>,
    /// `initagent.flist.store_timeout`: seconds one store request may take.
    pub flist_store_timeout_s: u32,
    /// `initagent.flist.ca_file`: CAs (PEM, a path in the image) that HTTPS/S3 stores of
    /// the stage-1 flists are verified against instead of the bundled web roots.
    pub flist_ca_file: Option<std::path::PathBuf>,
    /// `initagent.flist.cache`: the device of the persistent block cache.
    pub flist_cache: Option<crate::cachedev::probe::CacheSpec>,
    /// `initagent.flist.cache_timeout`: seconds to wait for that device to appear.
    pub flist_cache_timeout_s: u32,
    /// `initagent.flists_deadline`: seconds mounting the flists may take.
    pub flists_deadline_s: u32,
    /// `initagent.prefetch_deadline`: seconds the boot-critical prefetch may take.
    pub prefetch_deadline_s: u32,
    /// `initagent.skip`: steps not to run.
    pub skip: Vec<String>,
    /// `initagent.break`: the step to stop before with a shell.
    pub break_before: Option<String>,
    /// zos keys from the command line.
    pub zos: ZosParams,
    /// `initagent.net.*`, and the kernel's `ip=` and `BOOTIF=`.
    pub net: NetConfig,
    /// `initagent.modules_pre` (`rd.driver.pre=`): loaded with the bootstrap set, first.
    pub modules_pre: Vec<String>,
    /// `initagent.modules_load` (`modules_load=`): loaded with the baseline, after it.
    pub modules_load: Vec<String>,
    /// `initagent.report_url`: the store the boot report is sent to after every boot.
    pub report_url: Option<String>,
    /// Seconds one request sending the report may take.
    pub report_timeout_s: u32,
    /// `initagent.node_id`: this node's name in the reports (default: from the hardware).
    pub node_id: Option<String>,
    /// The layer that set each `initagent.*` key last.
    pub sources: BTreeMap<&'static str, Layer>,
    /// The key as the operator typed it, for values set through an alias (`rd.shell`).
    pub via: BTreeMap<&'static str, String>,
    /// Everything that was ignored or replaced by a default, one line each.
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: LogLevel::Info,
            on_failure: FailurePolicy::Reboot,
            reboot_delay_s: 30,
            handoff: vec!["/sbin/zinit".into(), "init".into()],
            modules_parallel: true,
            modules_sequential: Vec::new(),
            modules_deadline_s: 60,
            depmod_deadline_s: 30,
            coldplug_deadline_s: 30,
            flist_stores: Vec::new(),
            flist_store_timeout_s: 5,
            flist_ca_file: None,
            flist_cache: None,
            flist_cache_timeout_s: 10,
            flists_deadline_s: 30,
            prefetch_deadline_s: 20,
            skip: Vec::new(),
            break_before: None,
            zos: ZosParams::default(),
            net: NetConfig::default(),
            modules_pre: Vec::new(),
            modules_load: Vec::new(),
            report_url: None,
            report_timeout_s: 5,
            node_id: None,
            sources: BTreeMap::new(),
            via: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }
}

/// A value from one layer, before it is typed.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// A bare flag on the command line (no `=`).
    Flag,
    /// Text: every command-line value, and profile strings, numbers and booleans.
    Text(String),
    /// A profile array of strings.
    List(Vec<String>),
}

impl std::fmt::Display for RawValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawValue::Flag => write!(f, "(flag without value)"),
            RawValue::Text(text) => write!(f, "{text:?}"),
            RawValue::List(items) => write!(f, "{items:?}"),
        }
    }
}

impl Config {
    /// When a module load started now must have ended (`modules_deadline_s` from now):
    /// the loader leaves a load still running by then to the kernel.
    pub fn modules_deadline(&self) -> std::time::Instant {
        std::time::Instant::now() + std::time::Duration::from_secs(self.modules_deadline_s.into())
    }

    /// Builds the configuration from the layers. `profile` is the profile file's text and
    /// the path it came from, when one exists.
    pub fn build(cmdline: &Cmdline, profile: Option<(&str, &str)>) -> Config {
        let mut config = Config::default();
        for anomaly in cmdline.anomalies() {
            config.warnings.push(anomaly.to_string());
        }
        config.zos = read_zos_params(cmdline, &mut config.warnings);
        read_net_params(cmdline, &mut config.net, &mut config.warnings);
        if config.zos.debug {
            // A debug node has someone at the console; a production node reboots and retries.
            config.on_failure = FailurePolicy::Shell;
        }
        if let Some((path, text)) = profile {
            match profile::parse(text) {
                Ok(entries) => {
                    for (key, value) in entries {
                        config.apply(&key, &value, Layer::Profile, path);
                    }
                }
                Err(error) => config.warnings.push(format!(
                    "profile {path}: {error}; the whole file was ignored"
                )),
            }
        }
        // dracut's and systemd's keys first: an explicit initagent.* key wins over them.
        let (aliases, warnings) = dracut::aliases(cmdline);
        config.warnings.extend(warnings);
        for alias in aliases {
            let origin = format!("kernel command line ({})", alias.typed);
            if config.apply(alias.key, &alias.value, Layer::Cmdline, &origin) {
                config.via.insert(alias.key, alias.typed);
            }
        }
        for (key, value) in cmdline.with_prefix(CMDLINE_PREFIX) {
            let raw = match value {
                Some(text) => RawValue::Text(text.to_string()),
                None => RawValue::Flag,
            };
            if value.is_some_and(|text| text.split(',').any(crate::redact::has_password)) {
                config.warnings.push(format!(
                    "kernel command line: {CMDLINE_PREFIX}.{key} carries a credential: \
                     /proc/cmdline is readable by every user and the kernel logs it; put \
                     credentials in the image's profile or the flist's route instead"
                ));
            }
            if config.apply(key, &raw, Layer::Cmdline, "kernel command line") {
                config.via.retain(|set, _| *set != key);
            }
        }
        config
    }

    /// Applies one key; whether it took.
    fn apply(&mut self, key: &str, value: &RawValue, layer: Layer, origin: &str) -> bool {
        let Some(def) = KEYS.iter().find(|def| def.name == key) else {
            self.warnings.push(format!(
                "{origin}: unknown key {CMDLINE_PREFIX}.{key}; ignored (known keys: {})",
                KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
            ));
            return false;
        };
        match (def.apply)(self, value) {
            Ok(()) => {
                self.sources.insert(def.name, layer);
                true
            }
            Err(why) => {
                let kept = (def.show)(self);
                self.warnings.push(format!(
                    "{origin}: {CMDLINE_PREFIX}.{key}={value}: {why}; kept {kept}"
                ));
                false
            }
        }
    }
}

fn read_net_params(cmdline: &Cmdline, net: &mut NetConfig, warnings: &mut Vec<String>) {
    if let Some(value) = cmdline.last("ip") {
        match crate::net::ipconfig::parse(value.unwrap_or("")) {
            Ok(param) => net.ip = Some(param),
            Err(e) => warnings.push(format!("kernel command line: {e}; using DHCP")),
        }
    }
    if let Some(value) = cmdline.last("BOOTIF") {
        match Preferred::from_bootif(value.unwrap_or("")) {
            Some(preferred) => net.bootif = Some(preferred),
            None => warnings.push(format!(
                "kernel command line: BOOTIF={:?} is not 01-aa-bb-cc-dd-ee-ff; ignored",
                value.unwrap_or("")
            )),
        }
    }
}

fn read_zos_params(cmdline: &Cmdline, warnings: &mut Vec<String>) -> ZosParams {
    let mut zos = ZosParams::default();
    match cmdline.last("runmode") {
        None => {}
        Some(value) => match value.unwrap_or("") {
            "prod" | "production" => zos.runmode = RunMode::Prod,
            "dev" | "development" => zos.runmode = RunMode::Dev,
            "test" | "testing" => zos.runmode = RunMode::Test,
            "qa" => zos.runmode = RunMode::Qa,
            other => warnings.push(format!(
                "kernel command line: runmode={other:?} is not prod, dev, test or qa; using prod"
            )),
        },
    }
    match cmdline.last("version") {
        None => {}
        Some(value) => match value.unwrap_or("") {
            "v3" => zos.version = ZosVersion::V3,
            "v3light" => zos.version = ZosVersion::V3light,
            "v4" => zos.version = ZosVersion::V4,
            other => warnings.push(format!(
                "kernel command line: version={other:?} is not v3, v3light or v4; using v3"
            )),
        },
    }
    match cmdline.last("farmer_id") {
        None => {}
        Some(value) => match value.unwrap_or("").parse::<u32>() {
            Ok(id) => zos.farmer_id = Some(id),
            Err(_) => warnings.push(format!(
                "kernel command line: farmer_id={:?} is not a number; the node boots as an orphan",
                value.unwrap_or("")
            )),
        },
    }
    zos.debug = cmdline.has("zos-debug");
    zos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(cmdline: &str, profile: Option<&str>) -> Config {
        Config::build(
            &Cmdline::parse(cmdline),
            profile.map(|text| ("/etc/initagent/config.toml", text)),
        )
    }

    #[test]
    fn dracut_keys_set_values_and_an_explicit_initagent_key_wins() {
        let c = build(
            "rd.shell rd.break=pre-mount modules_load=dummy,veth rd.driver.pre=e1000e",
            None,
        );
        assert_eq!(c.on_failure, FailurePolicy::Shell);
        assert_eq!(c.break_before.as_deref(), Some("flists"));
        assert_eq!(c.modules_load, ["dummy", "veth"]);
        assert_eq!(c.modules_pre, ["e1000e"]);
        assert_eq!(c.via["on_failure"], "rd.shell");
        assert_eq!(c.via["break"], "rd.break=pre-mount");
        assert_eq!(c.sources["break"], Layer::Cmdline);
        let c = build(
            "rd.emergency=poweroff initagent.on_failure=reboot rd.break=soon",
            None,
        );
        assert_eq!(c.on_failure, FailurePolicy::Reboot);
        assert!(!c.via.contains_key("on_failure"), "{:?}", c.via);
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("rd.break=soon: not a breakpoint")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn defaults_without_layers() {
        let c = build("", None);
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.on_failure, FailurePolicy::Reboot);
        assert_eq!(c.handoff, ["/sbin/zinit", "init"]);
        assert!(c.warnings.is_empty());
        assert!(c.sources.is_empty());
    }

    #[test]
    fn cmdline_beats_profile_beats_default() {
        let profile = "log = \"debug\"\nreboot_delay = 5\non_failure = \"halt\"\n";
        let c = build("initagent.log=warn", Some(profile));
        assert_eq!(c.log_level, LogLevel::Warn);
        assert_eq!(c.reboot_delay_s, 5);
        assert_eq!(c.on_failure, FailurePolicy::Halt);
        assert_eq!(c.sources["log"], Layer::Cmdline);
        assert_eq!(c.sources["reboot_delay"], Layer::Profile);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn handoff_from_text_and_list() {
        let c = build(
            "initagent.handoff=\"/bin/sh -c 'echo hi'\"",
            Some("handoff = [\"/sbin/init\", \"--x\"]"),
        );
        assert_eq!(c.handoff, ["/bin/sh", "-c", "echo hi"]);
        let c = build("", Some("handoff = [\"/sbin/init\", \"--x\"]"));
        assert_eq!(c.handoff, ["/sbin/init", "--x"]);
    }

    #[test]
    fn a_credential_on_the_command_line_is_warned_about_and_a_ca_file_must_be_absolute() {
        let config = Config::build(
            &Cmdline::parse(
                "initagent.flist.store=dir:///x,s3s://AK:S/K@h/b initagent.flist.ca_file=ca.pem",
            ),
            Some(("profile", "flist.store = \"s3s://AK:OTHER@h/b\"\n")),
        );
        let credential: Vec<&String> = config
            .warnings
            .iter()
            .filter(|w| w.contains("carries a credential"))
            .collect();
        assert_eq!(credential.len(), 1, "{:?}", config.warnings);
        assert!(credential[0].contains("initagent.flist.store"));
        assert!(!credential[0].contains("S/K"));
        assert_eq!(config.flist_ca_file, None);
        assert!(config
            .warnings
            .iter()
            .any(|w| w.contains("flist.ca_file") && w.contains("absolute")));
        let config = Config::build(
            &Cmdline::parse("initagent.flist.ca_file=/etc/initagent/ca.pem"),
            None,
        );
        assert_eq!(
            config.flist_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/initagent/ca.pem"))
        );
    }

    #[test]
    fn garbage_values_warn_and_keep_the_lower_layer() {
        let c = build(
            "initagent.log=loud initagent.on_failure=explode initagent.reboot_delay=-5 \
             initagent.handoff= initagent.nosuchkey=1 initagent.log",
            Some("log = \"debug\""),
        );
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.on_failure, FailurePolicy::Reboot);
        assert_eq!(c.reboot_delay_s, 30);
        assert_eq!(c.handoff, ["/sbin/zinit", "init"]);
        assert_eq!(c.warnings.len(), 6, "{:#?}", c.warnings);
        assert!(c.warnings.iter().any(|w| w.contains("initagent.nosuchkey")));
        assert!(c.warnings[0].contains("initagent.log=\"loud\""));
        assert!(c.warnings[0].contains("kept debug"));
    }

    #[test]
    fn broken_profile_is_ignored_whole() {
        let c = build("", Some("log = \"debug\"\nthis is not toml"));
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].starts_with("profile /etc/initagent/config.toml"));
    }

    #[test]
    fn zos_keys() {
        let c = build("runmode=test version=v4 farmer_id=42 zos-debug", None);
        assert_eq!(c.zos.runmode, RunMode::Test);
        assert_eq!(c.zos.version, ZosVersion::V4);
        assert_eq!(c.zos.farmer_id, Some(42));
        assert!(c.zos.debug);
        assert_eq!(c.on_failure, FailurePolicy::Shell);
        let c = build("runmode version=v9 farmer_id=abc", None);
        assert_eq!(c.zos, ZosParams::default());
        assert_eq!(c.warnings.len(), 3);
        let c = build("runmode=dev runmode=production", None);
        assert_eq!(c.zos.runmode, RunMode::Prod);
    }

    #[test]
    fn cmdline_anomalies_become_warnings() {
        let c = build("=oops initagent.log=\"debug", None);
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.warnings.len(), 2);
    }

    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../../docs/cmdline.md");
        for key in KEYS {
            assert!(
                doc.contains(&format!("`{CMDLINE_PREFIX}.{}`", key.name)),
                "docs/cmdline.md does not document {CMDLINE_PREFIX}.{}",
                key.name
            );
        }
    }
}
