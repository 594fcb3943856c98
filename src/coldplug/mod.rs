//! Coldplug without udevd (booster's way, kmod-and-coldplug.md §5.4): open the kernel's
//! uevent socket first, walk `/sys/devices/**/modalias`, resolve each distinct alias once
//! as udev's `kmod load $MODALIAS` would (blacklist always applies), load in parallel in
//! dependency order, then keep handling `add` events (devices that appear because a driver
//! loaded) until a quiet period passes or the deadline. Reports the devices seen, the
//! modules loaded and the devices no module in the tree drives.

pub mod select;
pub mod udev;
pub mod uevent;

use crate::kmod::load::{self, Kernel, LoadOptions, Outcome, Plan};
use crate::kmod::resolve::BlacklistMode;
use crate::kmod::Modules;
use crate::sys::uevent::UeventSocket;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Once events come, the gap after the last one at which the gathered burst is loaded.
const BURST_GAP: Duration = Duration::from_millis(20);

/// How coldplug runs.
#[derive(Debug, Clone)]
pub struct ColdplugOptions {
    /// The sysfs mount (`/sys`).
    pub sysfs: PathBuf,
    /// Coldplug ends by then, whatever is still arriving.
    pub deadline: Duration,
    /// Done when no new device has appeared for this long and nothing is loading.
    pub quiet: Duration,
    /// Workers and ordering for loads.
    pub load: LoadOptions,
    /// The devices to coldplug (default: all).
    pub selection: select::Selection,
    /// While set, coldplug does not call the devices quiet: other loads (stage 1's
    /// baseline beside it) are still adding devices.
    pub hold: Option<Arc<AtomicBool>>,
}

impl Default for ColdplugOptions {
    fn default() -> Self {
        ColdplugOptions {
            sysfs: PathBuf::from("/sys"),
            deadline: Duration::from_secs(30),
            quiet: Duration::from_millis(300),
            load: LoadOptions::default(),
            selection: select::Selection::default(),
            hold: None,
        }
    }
}

/// A device whose modalias no module in the tree matches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Undriven {
    /// The device, under `/sys`.
    pub devpath: String,
    /// Its modalias.
    pub modalias: String,
}

/// What coldplug did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ColdplugReport {
    /// Devices with a modalias (the scan plus `add` events).
    pub devices: usize,
    /// Distinct modaliases resolved.
    pub aliases: usize,
    /// `add` events with a modalias that were handled.
    pub events: usize,
    /// Rescans after the event queue overflowed.
    pub rescans: usize,
    /// Load outcomes, by module, in load order.
    pub modules: Vec<(String, Outcome)>,
    /// Devices no module in the tree drives (what an operator looks at when a NIC is
    /// missing).
    pub undriven: Vec<Undriven>,
    /// Problems that did not stop coldplug (no event socket, unreadable sysfs).
    pub problems: Vec<String>,
    /// The deadline passed before it was quiet.
    pub timed_out: bool,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
}

impl ColdplugReport {
    /// Counts of load outcomes by kind (loaded, already_loaded, builtin, failed, skipped).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let report = load::Report {
            modules: self.modules.clone(),
            ..load::Report::default()
        };
        let mut counters = report.counters();
        counters.remove("not_found");
        let declined = self.modules.iter().filter(|(_, o)| declined(o)).count() as u64;
        if let Some(failed) = counters.get_mut("failed") {
            *failed = failed.saturating_sub(declined);
        }
        counters.insert("declined".into(), declined);
        counters
    }
}

/// A driver that matched a device's alias but said at init that it drives no device here
/// (`ENODEV`: CPU-feature aliases such as `acpi_cpufreq` on a VM). udev ignores these
/// too; they are counted, not failures.
pub fn declined(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Failed { error } if error.errno == Some(nix::libc::ENODEV))
}

/// Every `modalias` under `<sysfs>/devices`, without following links: (devpath, alias).
pub fn scan(sysfs: &Path) -> (Vec<(String, String)>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let mut stack = vec![sysfs.join("devices")];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // gone meanwhile
            Err(e) => {
                problems.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() && entry.file_name() == "modalias" {
                if let Ok(text) = std::fs::read_to_string(entry.path()) {
                    let alias = text.trim_end();
                    if !alias.is_empty() {
                        let devpath = dir.strip_prefix(sysfs).unwrap_or(&dir);
                        found.push((format!("/{}", devpath.display()), alias.to_string()));
                    }
                }
            }
        }
    }
    found.sort();
    (found, problems)
}

/// Runs coldplug with the modules of `modules`, loading them through `kernel`.
pub fn run(modules: &Modules, kernel: &dyn Kernel, options: &ColdplugOptions) -> ColdplugReport {
    let started = Instant::now();
    let deadline = started + options.deadline;
    // The loads end by the coldplug deadline too (a driver whose init never returns is
    // reported as still loading).
    let mut options = options.clone();
    options.load.deadline = Some(options.load.deadline.map_or(deadline, |d| d.min(deadline)));
    let options = &options;
    let mut report = ColdplugReport::default();
    // The socket first: a device that appears during the scan is seen one way or the other.
    let socket = match UeventSocket::open() {
        Ok(socket) => Some(socket),
        Err(e) => {
            report
                .problems
                .push(format!("uevent socket: {e}; only the scan is used"));
            None
        }
    };
    let (mut pending, problems) = scan(&options.sysfs);
    report.problems.extend(problems);
    let selected = |devpath: &str| {
        let dir = options.sysfs.join(devpath.trim_start_matches('/'));
        options.selection.matches_dir(&options.sysfs, &dir)
    };
    pending.retain(|(devpath, _)| selected(devpath));
    let mut seen_devices: HashSet<String> = HashSet::new();
    let mut seen_aliases: HashSet<String> = HashSet::new();
    let mut buffer = vec![0u8; 8192];
    loop {
        load_new(
            modules,
            kernel,
            options,
            &mut pending,
            &mut seen_devices,
            &mut seen_aliases,
            &mut report,
        );
        let Some(socket) = &socket else { break };
        // Wait for devices that appear because a driver loaded: up to `quiet` for the
        // first event; once events come, gather the burst (most were queued while the
        // loads ran: probes add their devices synchronously) and load it at once.
        let mut quiet_until = Instant::now() + options.quiet;
        let held = || {
            options
                .hold
                .as_ref()
                .is_some_and(|h| h.load(Ordering::Acquire))
        };
        let mut was_held = held();
        loop {
            let now = Instant::now();
            if now >= deadline {
                report.timed_out = true;
                break;
            }
            let holding = held();
            if was_held && !holding {
                // The other loads just ended: their devices' events are queued by now.
                quiet_until = quiet_until.max(now + BURST_GAP);
            }
            was_held = holding;
            if holding && quiet_until <= now {
                quiet_until = now + BURST_GAP;
            }
            let wait = quiet_until.min(deadline).saturating_duration_since(now);
            if wait.is_zero() {
                break;
            }
            match socket.receive(&mut buffer, wait) {
                Ok(Some(n)) => {
                    let Some(event) = uevent::parse(buffer.get(..n).unwrap_or_default()) else {
                        continue;
                    };
                    let wanted = options
                        .selection
                        .matches(&event.devpath, event.var("SUBSYSTEM"));
                    if let (true, true, Some(alias)) =
                        (wanted, event.action == "add", event.modalias())
                    {
                        report.events += 1;
                        pending.push((event.devpath.clone(), alias.to_string()));
                        quiet_until = Instant::now() + BURST_GAP;
                        // A large burst is loaded without waiting for its end.
                        if pending.len() >= 64 {
                            break;
                        }
                    }
                }
                Ok(None) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                    report.rescans += 1;
                    let (found, _) = scan(&options.sysfs);
                    pending.extend(found.into_iter().filter(|(devpath, _)| selected(devpath)));
                    break;
                }
                Err(e) => {
                    report.problems.push(format!("uevent socket: {e}"));
                    break;
                }
            }
        }
        if pending.is_empty() || report.timed_out {
            break;
        }
    }
    report
        .undriven
        .retain(|device| needs_a_driver(&options.sysfs, &device.devpath));
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// Whether a device without a matching module is worth an operator's attention: no driver
/// is bound to it now (a built-in one may have taken it), and it is not a firmware or
/// virtual node (ACPI namespace objects, CPUs, DMI) that no driver is meant for.
fn needs_a_driver(sysfs: &Path, devpath: &str) -> bool {
    let dir = sysfs.join(devpath.trim_start_matches('/'));
    if dir.join("driver").exists() {
        return false;
    }
    if devpath.starts_with("/devices/system/") || devpath.starts_with("/devices/virtual/") {
        return false;
    }
    let subsystem = std::fs::read_link(dir.join("subsystem")).ok();
    !subsystem.is_some_and(|s| s.file_name().is_some_and(|n| n == "acpi"))
}

/// Resolves and loads the aliases in `pending` not handled before.
fn load_new(
    modules: &Modules,
    kernel: &dyn Kernel,
    options: &ColdplugOptions,
    pending: &mut Vec<(String, String)>,
    seen_devices: &mut HashSet<String>,
    seen_aliases: &mut HashSet<String>,
    report: &mut ColdplugReport,
) {
    let resolver = modules.resolver();
    let mut resolutions = Vec::new();
    for (devpath, alias) in pending.drain(..) {
        if !seen_devices.insert(devpath.clone()) {
            continue;
        }
        report.devices += 1;
        if !seen_aliases.insert(alias.clone()) {
            continue;
        }
        report.aliases += 1;
        let resolution = resolver.resolve(&alias, BlacklistMode::Always);
        if resolution.probes.is_empty() {
            report.undriven.push(Undriven {
                devpath,
                modalias: alias,
            });
        } else {
            resolutions.push(resolution);
        }
    }
    if resolutions.is_empty() {
        return;
    }
    let plan = Plan::from_resolutions(&resolutions, &modules.tree.dir);
    let outcome = load::load(&plan, kernel, &options.load);
    for (name, result) in outcome.modules {
        match report.modules.iter_mut().find(|(n, _)| *n == name) {
            // Loaded earlier in this run: keep what happened then.
            Some(_) if matches!(result, Outcome::AlreadyLoaded) => {}
            Some(existing) => existing.1 = result,
            None => report.modules.push((name, result)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_reads_modaliases_and_does_not_follow_links() {
        let root = std::env::temp_dir().join(format!("initagent-coldplug-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let nic = root.join("devices/pci0000:00/0000:00:03.0");
        std::fs::create_dir_all(nic.join("net/eth0")).unwrap();
        std::fs::write(nic.join("modalias"), "pci:v00008086d0000100Esv\n").unwrap();
        let empty = root.join("devices/platform/serial8250");
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::write(empty.join("modalias"), "\n").unwrap();
        // A link back up the tree (sysfs has many) must not loop.
        std::os::unix::fs::symlink(root.join("devices"), nic.join("subsystem")).unwrap();
        let (found, problems) = scan(&root);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            found,
            vec![(
                "/devices/pci0000:00/0000:00:03.0".to_string(),
                "pci:v00008086d0000100Esv".to_string()
            )]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
