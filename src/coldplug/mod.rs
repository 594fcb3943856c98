//! Coldplug without udevd (booster's way, kmod-and-coldplug.md §5.4): open the kernel's
//! uevent socket first, walk `/sys/devices/**/modalias`, resolve each distinct alias once
//! as udev's `kmod load $MODALIAS` would (blacklist always applies), load in parallel in
//! dependency order, then keep handling `add` events (devices that appear because a driver
//! loaded) until every event the kernel sent has been read and loaded for (udevadm
//! settle's rule, [`settle`]) or the deadline. Reports the devices seen, the
//! modules loaded and the devices no module in the tree drives.

pub mod select;
pub mod settle;
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
    /// After loads, the longest wait for the kernel's events to arrive; without the
    /// kernel's event counter, done when no new device has appeared for this long.
    pub quiet: Duration,
    /// Workers and ordering for loads.
    pub load: LoadOptions,
    /// The devices to coldplug (default: all).
    pub selection: select::Selection,
    /// While set, coldplug does not call the devices settled: other loads (stage 1's
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
    /// The deadline passed before the devices settled.
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

/// The number of the last uevent the kernel sent (`/sys/kernel/uevent_seqnum`).
pub(crate) fn kernel_seqnum(sysfs: &Path) -> Option<u64> {
    std::fs::read_to_string(sysfs.join("kernel/uevent_seqnum"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The devices present, read after the kernel's uevent socket was bound: a device that
/// appears later is in the socket's queue, so coldplug may start from a scan made earlier
/// (stage 1 makes it while the network comes up, and the prefetch reads it too).
pub struct Watch {
    socket: Option<UeventSocket>,
    seen: settle::Seen,
    /// `(devpath, modalias)` of every device with one, sorted.
    pub devices: Vec<(String, String)>,
    problems: Vec<String>,
}

impl Watch {
    /// Binds the socket, then scans `<sysfs>/devices`.
    pub fn start(sysfs: &Path) -> Watch {
        let mut problems = Vec::new();
        let mut seen = settle::Seen::default();
        let socket = match UeventSocket::open() {
            Ok(socket) => {
                seen = settle::Seen::new(kernel_seqnum(sysfs));
                Some(socket)
            }
            Err(e) => {
                problems.push(format!("uevent socket: {e}; only the scan is used"));
                None
            }
        };
        let (devices, scan_problems) = scan(sysfs);
        problems.extend(scan_problems);
        Watch {
            socket,
            seen,
            devices,
            problems,
        }
    }
}

/// Runs coldplug with the modules of `modules`, loading them through `kernel`, from
/// `watch` (made now when `None`).
pub fn run(
    modules: &Modules,
    kernel: &dyn Kernel,
    options: &ColdplugOptions,
    watch: Option<Watch>,
) -> ColdplugReport {
    let started = Instant::now();
    let deadline = started + options.deadline;
    // The loads end by the coldplug deadline too (a driver whose init never returns is
    // reported as still loading).
    let mut options = options.clone();
    options.load.deadline = Some(options.load.deadline.map_or(deadline, |d| d.min(deadline)));
    let options = &options;
    let mut report = ColdplugReport::default();
    let Watch {
        socket,
        mut seen,
        devices: mut pending,
        problems,
    } = watch.unwrap_or_else(|| Watch::start(&options.sysfs));
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
        // Wait for devices that appear because a driver loaded. Their events were mostly
        // queued while the loads ran (probes add their devices synchronously): read them
        // up to the kernel's last one and load that burst at once; done when nothing is
        // pending and every event the kernel sent has been read (udevadm settle's rule).
        // Without the kernel's counter: a burst after a 20 ms gap, done after `quiet`.
        let mut quiet_until = Instant::now() + options.quiet;
        let mut burst_until = None;
        let held = || {
            options
                .hold
                .as_ref()
                .is_some_and(|h| h.load(Ordering::Acquire))
        };
        let mut was_held = held();
        loop {
            let now = Instant::now();
            let holding = held();
            if was_held && !holding {
                // The other loads just ended: their devices' events are queued by now.
                quiet_until = quiet_until.max(now + BURST_GAP);
            }
            was_held = holding;
            let wait = settle::Wait {
                now,
                deadline,
                holding,
                pending: pending.len(),
                caught_up: seen.caught_up(kernel_seqnum(&options.sysfs)),
                burst_until,
                quiet_until,
            };
            let until = match settle::next(&wait, BURST_GAP) {
                settle::Next::TimedOut => {
                    report.timed_out = true;
                    break;
                }
                settle::Next::Load | settle::Next::Settled => break,
                settle::Next::Receive(until) => until,
            };
            match socket.receive(&mut buffer, until.saturating_duration_since(now)) {
                Ok(Some(n)) => {
                    let Some(event) = uevent::parse(buffer.get(..n).unwrap_or_default()) else {
                        continue;
                    };
                    seen.note(event.seqnum());
                    let wanted = options
                        .selection
                        .matches(&event.devpath, event.var("SUBSYSTEM"));
                    if let (true, true, Some(alias)) =
                        (wanted, event.action == "add", event.modalias())
                    {
                        report.events += 1;
                        pending.push((event.devpath.clone(), alias.to_string()));
                        burst_until = Some(Instant::now() + BURST_GAP);
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
