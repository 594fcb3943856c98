//! Coldplug through udevd, when the image has one: start it if nothing runs it yet, write
//! `add` to every subsystem object's `uevent` (modules, buses, drivers), then to every
//! device's (parents first), as `udevadm trigger` does — or to the selected devices only —,
//! and
//! wait until udevd has processed every event up to the last one triggered and its queue
//! is empty — `udevadm settle` without udevadm — within a deadline. A udevd started here is
//! stopped afterwards, so zinit's own udevd service can take over (as zos's `/init` does).

use super::kernel_seqnum;
use super::select::Selection;
use super::uevent::udev_processed_seqnum;
use crate::sys::process::{self, SpawnOptions};
use crate::sys::uevent::{UeventSocket, UDEV_GROUP};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where udevd's binary may be.
pub const UDEVD_PATHS: &[&str] = &[
    "/lib/systemd/systemd-udevd",
    "/usr/lib/systemd/systemd-udevd",
    "/sbin/udevd",
];
/// udevd's control socket: exists while it runs.
pub const CONTROL: &str = "/run/udev/control";
/// Exists while udevd has events queued.
pub const QUEUE: &str = "/run/udev/queue";

/// What the udev coldplug did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UdevReport {
    /// The udevd binary started here, if any (otherwise one was running).
    pub started: Option<String>,
    /// Devices sent an `add`.
    pub triggered: usize,
    /// Events udevd reported as processed while we waited.
    pub processed: usize,
    /// udevd processed everything up to the last triggered event and its queue emptied.
    pub settled: bool,
    /// Modules in `/proc/modules` now that were not there before.
    pub modules_loaded: usize,
    /// Problems that did not stop it.
    pub problems: Vec<String>,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
}

/// The udevd binary of this image, if any.
pub fn udevd_binary() -> Option<PathBuf> {
    UDEVD_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| crate::sys::is_executable(p))
}

fn loaded_modules() -> Vec<String> {
    std::fs::read_to_string("/proc/modules")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Device directories under `<sysfs>/devices` with a `uevent` file, parents first.
fn devices(sysfs: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![sysfs.join("devices")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        if dir.join("uevent").is_file() {
            found.push(dir.clone());
        }
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// The subsystem objects `udevadm trigger --type=subsystems` sends `add` to first:
/// modules, buses and their drivers.
fn subsystem_objects(sysfs: &Path) -> Vec<PathBuf> {
    let children = |dir: PathBuf| -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        found.sort();
        found
    };
    let mut objects = children(sysfs.join("module"));
    for bus in children(sysfs.join("bus")) {
        objects.extend(children(bus.join("drivers")));
        objects.push(bus);
    }
    objects.retain(|o| o.join("uevent").is_file());
    objects
}

/// Trigger and settle with udevd (started from `binary` when none runs), by `deadline`:
/// every subsystem object then every device, or only the selected devices.
pub fn run(
    sysfs: &Path,
    binary: Option<&Path>,
    deadline: Duration,
    selection: &Selection,
) -> UdevReport {
    let started = Instant::now();
    let until = started + deadline;
    let mut report = UdevReport::default();
    let before = loaded_modules();
    let mut ours = None;
    if !Path::new(CONTROL).exists() {
        match binary {
            Some(binary) => {
                let argv = vec![binary.display().to_string()];
                match process::spawn(&argv, &[], SpawnOptions::default()) {
                    Ok(child) => {
                        report.started = Some(argv[0].clone());
                        ours = Some(child);
                    }
                    Err(e) => report.problems.push(format!("starting {}: {e}", argv[0])),
                }
                while let Some(child) = &ours {
                    if Path::new(CONTROL).exists() || Instant::now() >= until {
                        break;
                    }
                    // A udevd that cannot run (a library missing) ends at once: say so
                    // instead of waiting out the deadline.
                    if let Ok(Some(exit)) = process::wait(child, Some(Instant::now())) {
                        report
                            .problems
                            .push(format!("{} ended at start ({exit})", argv[0]));
                        ours = None;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            None => report
                .problems
                .push("no udevd running and none in the image".into()),
        }
    }
    if Path::new(CONTROL).exists() {
        trigger_and_settle(sysfs, until, selection, &mut report);
    } else if ours.is_some() {
        report
            .problems
            .push(format!("udevd did not create {CONTROL} in time"));
    }
    if let Some(child) = &ours {
        match process::stop(child, Duration::from_secs(5)) {
            Ok(Some(_)) => {}
            Ok(None) => report
                .problems
                .push("udevd did not end even on SIGKILL within 10 s".into()),
            Err(e) => report.problems.push(format!("stopping udevd: {e}")),
        }
    }
    let after = loaded_modules();
    report.modules_loaded = after.iter().filter(|m| !before.contains(m)).count();
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

fn trigger_and_settle(
    sysfs: &Path,
    until: Instant,
    selection: &Selection,
    report: &mut UdevReport,
) {
    // Listen before triggering, so no processed event is missed.
    let socket = match UeventSocket::open_group(UDEV_GROUP) {
        Ok(socket) => Some(socket),
        Err(e) => {
            report
                .problems
                .push(format!("udev monitor: {e}; waiting for the queue only"));
            None
        }
    };
    let mut objects = if selection.is_all() {
        subsystem_objects(sysfs)
    } else {
        Vec::new()
    };
    objects.extend(
        devices(sysfs)
            .into_iter()
            .filter(|d| selection.matches_dir(sysfs, d)),
    );
    for device in objects {
        match std::fs::write(device.join("uevent"), "add") {
            Ok(()) => report.triggered += 1,
            // The device went away, or its driver refuses synthetic events: udevadm
            // ignores both too.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ENOENT | nix::libc::ENODEV)
                ) => {}
            Err(e) => report
                .problems
                .push(format!("{}/uevent: {e}", device.display())),
        }
    }
    let target = kernel_seqnum(sysfs).unwrap_or(0);
    let mut seen = 0;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let caught_up = socket.is_none() || seen >= target;
        if caught_up && !Path::new(QUEUE).exists() {
            report.settled = true;
            return;
        }
        let now = Instant::now();
        if now >= until {
            report.problems.push(format!(
                "not settled in time (processed up to event {seen} of {target})"
            ));
            return;
        }
        let wait = until
            .saturating_duration_since(now)
            .min(Duration::from_millis(50));
        match &socket {
            Some(socket) => {
                if let Ok(Some(n)) = socket.receive(&mut buffer, wait) {
                    if let Some(seqnum) = udev_processed_seqnum(buffer.get(..n).unwrap_or_default())
                    {
                        report.processed += 1;
                        seen = seen.max(seqnum);
                    }
                }
            }
            None => std::thread::sleep(wait),
        }
    }
}
