//! The boot report leaves the node: after every boot (`initagent.report_url=`), stage 1
//! puts one JSON document into a store — the same kinds as the flists' (`dir://`,
//! `http(s)://` by PUT, `s3://`/`s3s://`) — under `reports/<node-id>/<boot-id>.json`,
//! bounded in time. The `initagent-report` zinit service sends it again after a degraded
//! or failed boot, or when stage 1's send did not get through. The document carries what
//! a fleet view needs beside the report: the node's identity, the devices without a
//! driver and the firmware the kernel could not load, by PCI vendor:device. The store's
//! URL never appears in it, and every text in it passes the redaction rule.

use super::Report;
use crate::flist::store::objects::ObjectKey;
use crate::flist::store::{self, StoreError, StoreOptions};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// The document's schema (the fleet view reads 1).
pub const SCHEMA: u32 = 1;
/// Where the reports go in the store.
pub const PREFIX: &str = "reports";

/// Who sent a report: the node and this boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub node: String,
    pub boot: String,
}

/// A device no module drives, as the fleet groups it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undriven {
    pub devpath: String,
    pub modalias: String,
    /// `vendor:device` for a PCI device (from its modalias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<String>,
}

/// A firmware file the kernel asked for and did not get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingFirmware {
    pub file: String,
    /// The device that asked (`0000:00:03.0`), and its driver.
    pub device: String,
    pub driver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<String>,
}

/// The document in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub schema: u32,
    pub node: String,
    pub boot: String,
    /// Wall-clock seconds when it was sent (a node without a set clock sends 1970).
    pub sent_at: u64,
    /// The one-line summary (result, steps' outcomes and times, bytes fetched).
    pub summary: serde_json::Value,
    #[serde(default)]
    pub undriven: Vec<Undriven>,
    #[serde(default)]
    pub missing_firmware: Vec<MissingFirmware>,
    /// Modules that failed or were not found (`name: why`).
    #[serde(default)]
    pub module_failures: Vec<String>,
    pub report: Report,
}

/// Why a report did not get there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadError {
    /// No `initagent.report_url` is configured.
    NotConfigured,
    /// The store could not be opened or refused the write.
    Store { store: String, error: StoreError },
    /// The document could not be made.
    Encode(String),
    /// The CA file the store is to be verified against cannot be read.
    Trust(String),
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadError::NotConfigured => write!(
                f,
                "no report_url configured (initagent.report_url= in the profile or on the command line)"
            ),
            UploadError::Store { store, error } => write!(f, "{store}: {error}"),
            UploadError::Encode(why) => write!(f, "the report could not be encoded: {why}"),
            UploadError::Trust(why) => write!(f, "flist.ca_file: {why}"),
        }
    }
}

/// The record of the last send, for the service and `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The store, redacted.
    pub store: String,
    pub key: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Who sent it: `stage1`, or the service's name.
    pub by: String,
    /// The report's result when it was sent (`handed-off`, `failed`).
    pub result: String,
}

/// A node id from what the node has, best first: the configured one, the firmware's
/// system UUID (unless blank), the lowest permanent MAC of a physical NIC, the hostname.
/// Only key characters survive (pure).
pub fn node_id(
    configured: Option<&str>,
    product_uuid: Option<&str>,
    macs: &[String],
    hostname: &str,
) -> String {
    let blank = |u: &str| u.chars().all(|c| matches!(c, '0' | 'f' | 'F' | '-'));
    let uuid = product_uuid
        .map(str::trim)
        .filter(|u| !u.is_empty() && !blank(u));
    let mut macs: Vec<String> = macs
        .iter()
        .map(|m| m.to_ascii_lowercase().replace(':', ""))
        .filter(|m| m.len() == 12 && m != "000000000000")
        .collect();
    macs.sort();
    let raw = configured
        .map(str::to_string)
        .or_else(|| uuid.map(|u| u.to_ascii_lowercase()))
        .or_else(|| macs.first().map(|m| format!("mac-{m}")))
        .unwrap_or_else(|| hostname.to_string());
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let clean = clean.trim_matches('-').to_string();
    if clean.is_empty() {
        "unknown-node".into()
    } else {
        clean
    }
}

/// This node's identity, read from `/sys` and `/proc`.
pub fn identity(configured: Option<&str>) -> Identity {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|t| t.trim().to_string())
    };
    let mut macs = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for entry in entries.flatten() {
            let dir = entry.path();
            // Physical NICs only: they have a device behind them.
            if dir.join("device").exists() {
                if let Some(mac) = read(&dir.join("address").to_string_lossy()) {
                    macs.push(mac);
                }
            }
        }
    }
    let hostname = read("/proc/sys/kernel/hostname").unwrap_or_default();
    let boot = read("/proc/sys/kernel/random/boot_id").unwrap_or_else(|| "unknown-boot".into());
    Identity {
        node: node_id(
            configured,
            read("/sys/class/dmi/id/product_uuid").as_deref(),
            &macs,
            &hostname,
        ),
        boot: boot
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect(),
    }
}

/// `reports/<node>/<boot>.json`.
pub fn key(identity: &Identity) -> Result<ObjectKey, StoreError> {
    ObjectKey::new(&format!(
        "{PREFIX}/{}/{}.json",
        identity.node, identity.boot
    ))
}

/// `vendor:device` of a PCI modalias (`pci:v00008086d0000100Esv…`), lower-case (pure).
pub fn pci_id(modalias: &str) -> Option<String> {
    let rest = modalias.strip_prefix("pci:v")?;
    let vendor = rest.get(4..8)?;
    let device = rest.get(8..)?.strip_prefix('d')?.get(4..8)?;
    Some(format!("{vendor}:{device}").to_ascii_lowercase())
}

/// The firmware requests that failed, from kernel log messages (pure): the kernel says
/// `<driver> <device>: Direct firmware load for <file> failed with error -2`.
pub fn missing_firmware(lines: &[String]) -> Vec<MissingFirmware> {
    let mut found: Vec<MissingFirmware> = Vec::new();
    for line in lines {
        let Some(at) = line.find("Direct firmware load for ") else {
            continue;
        };
        let Some(file) = line[at + 25..].split_whitespace().next() else {
            continue;
        };
        // `[   1.234] driver device: …` or `driver device: …`.
        let head = line[..at]
            .rsplit(']')
            .next()
            .unwrap_or("")
            .trim()
            .trim_end_matches(':');
        let mut words = head.split_whitespace();
        let driver = words.next().unwrap_or("").to_string();
        let device = words.next().unwrap_or("").to_string();
        if found.iter().any(|f| f.file == file && f.device == device) {
            continue;
        }
        found.push(MissingFirmware {
            file: file.to_string(),
            device,
            driver,
            pci: None,
        });
    }
    found
}

/// The envelope for `report` (pure but for what it is given).
pub fn envelope(
    report: &Report,
    identity: &Identity,
    sent_at: u64,
    undriven: Vec<Undriven>,
    missing_firmware: Vec<MissingFirmware>,
    module_failures: Vec<String>,
) -> Envelope {
    Envelope {
        schema: SCHEMA,
        node: identity.node.clone(),
        boot: identity.boot.clone(),
        sent_at,
        summary: serde_json::from_str(&super::verdict::summary(report)).unwrap_or_default(),
        undriven,
        missing_firmware,
        module_failures,
        report: report.clone(),
    }
}

/// What the node left in `/run/initagent` and the kernel log, for the envelope.
pub fn gather(run: &crate::rundir::RunDir) -> (Vec<Undriven>, Vec<MissingFirmware>, Vec<String>) {
    let mut undriven = Vec::new();
    if let Ok(coldplug) = run.read_outcome("coldplug") {
        for device in coldplug.result["undriven"].as_array().into_iter().flatten() {
            let modalias = device["modalias"].as_str().unwrap_or_default().to_string();
            undriven.push(Undriven {
                devpath: device["devpath"].as_str().unwrap_or_default().to_string(),
                pci: pci_id(&modalias),
                modalias,
            });
        }
    }
    let lines = crate::stage1::bundle::kernel_log_tail(4096).unwrap_or_default();
    let mut firmware = missing_firmware(&lines);
    for miss in &mut firmware {
        let dir = Path::new("/sys/bus/pci/devices").join(&miss.device);
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .ok()
                .map(|t| t.trim().trim_start_matches("0x").to_string())
        };
        if let (Some(vendor), Some(device)) = (read("vendor"), read("device")) {
            miss.pci = Some(format!("{vendor}:{device}"));
        }
    }
    let failures = crate::kmod::read_outcomes(Path::new(crate::kmod::OUTCOMES_PATH))
        .map(|outcomes| crate::kmod::failure_lines(&outcomes))
        .unwrap_or_default();
    (undriven, firmware, failures)
}

/// Puts `envelope` into the store at `url`, each request within `timeout`.
pub fn send(
    url: &str,
    options: &StoreOptions,
    envelope: &Envelope,
) -> Result<ObjectKey, UploadError> {
    let identity = Identity {
        node: envelope.node.clone(),
        boot: envelope.boot.clone(),
    };
    let shown = store::redact(url);
    let failed = |error| UploadError::Store {
        store: shown.clone(),
        error,
    };
    let key = key(&identity).map_err(failed)?;
    let body = serde_json::to_vec(envelope).map_err(|e| UploadError::Encode(e.to_string()))?;
    // The redaction rule over the whole document: a URL with a password in a warning or
    // a detail leaves the node masked.
    let body = crate::redact::text(&String::from_utf8_lossy(&body)).into_owned();
    let store = store::open(url, options).map_err(failed)?;
    store.put_object(&key, body.as_bytes()).map_err(failed)?;
    Ok(key)
}

/// Sends this node's report to the configured store and records the outcome in the run
/// directory's `upload.json` (this module is its only writer); `by` is who sends it.
/// Returns the record.
pub fn send_report(
    config: &crate::config::Config,
    report: &Report,
    run: &crate::rundir::RunDir,
    by: &str,
) -> Result<Sent, UploadError> {
    let url = config
        .report_url
        .as_deref()
        .ok_or(UploadError::NotConfigured)?;
    let mut options = StoreOptions {
        request_timeout: Duration::from_secs(config.report_timeout_s.into()),
        connect_timeout: Duration::from_secs(config.report_timeout_s.clamp(1, 3).into()),
        ..StoreOptions::default()
    };
    if let Some(ca) = &config.flist_ca_file {
        options = options
            .with_ca_file(Some(ca))
            .map_err(|e| UploadError::Trust(format!("{}: {e}", ca.display())))?;
    }
    let identity = identity(config.node_id.as_deref());
    let (undriven, firmware, failures) = gather(run);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let envelope = envelope(report, &identity, now, undriven, firmware, failures);
    let result = send(url, &options, &envelope);
    let sent = Sent {
        store: store::redact(url),
        key: key(&identity).map(|k| k.to_string()).unwrap_or_default(),
        ok: result.is_ok(),
        error: result
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
        by: by.to_string(),
        result: report
            .result
            .as_ref()
            .map_or("unfinished".into(), |r| r.status.clone()),
    };
    if let Ok(bytes) = serde_json::to_vec_pretty(&sent) {
        let _ = crate::fsutil::write_private(&run.upload_record(), &bytes);
    }
    result.map(|_| sent)
}

/// The last send's record, if any.
pub fn last_sent(run: &crate::rundir::RunDir) -> Option<Sent> {
    serde_json::from_slice(&std::fs::read(run.upload_record()).ok()?).ok()
}

#[cfg(test)]
#[path = "upload_tests.rs"]
mod tests;
