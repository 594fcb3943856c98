//! The boot report: one JSON document, `/run/initagent/report.json`, that says what every
//! step did, when, how long it took and what it counted (bytes fetched, modules loaded…).
//!
//! It is rewritten atomically (temporary file + rename) after every step, so a reader
//! never sees half a report. Steps run as separate processes (zinit oneshots, operator
//! commands) merge into the same file under an exclusive `flock`.

pub mod fleet;
mod render;
pub mod svg;
pub mod upload;
pub mod verdict;

pub use render::{critical_path, render_text};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Where stage 1 and every step write the report.
pub const DEFAULT_REPORT_PATH: &str = crate::rundir::REPORT;
/// Version of the document's layout.
pub const SCHEMA: u32 = 1;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Still running (seen only while the step runs, or if its process died).
    Running,
    /// Did everything it should.
    Ok,
    /// Did part of it; the boot goes on with less.
    Degraded,
    /// Did not do it.
    Failed,
    /// Not attempted (by configuration or because it was not needed).
    Skipped,
}

impl Outcome {
    /// Lower-case name as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Ok => "ok",
            Outcome::Degraded => "degraded",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One step of the boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Step name (`pseudofs`, `config`, `handoff`, …).
    pub name: String,
    /// Start, microseconds of monotonic time since boot.
    pub start_us: u64,
    /// End, same clock; `None` while running.
    pub end_us: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// One line for a person.
    pub detail: String,
    /// Counters: bytes fetched, modules loaded, mounts made…
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// Steps that had to finish before this one could start.
    #[serde(default)]
    pub after: Vec<String>,
    /// Process that ran it.
    pub pid: u32,
    /// For a step run after stage 1 in its own process (a zinit service, an operator):
    /// the step unit it ran (`modules`), its name being the service's. `None` for
    /// stage 1's own steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl Step {
    /// Duration in microseconds (0 while running).
    pub fn duration_us(&self) -> u64 {
        self.end_us
            .map_or(0, |end| end.saturating_sub(self.start_us))
    }
}

/// The whole boot report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Layout version ([`SCHEMA`]).
    pub schema: u32,
    /// Agent version that wrote it.
    pub agent_version: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// Raw `/proc/cmdline`.
    pub cmdline: String,
    /// zos keys read from the command line.
    pub zos: serde_json::Value,
    /// Effective configuration, with the layer each key came from.
    pub config: serde_json::Value,
    /// Everything ignored or replaced by a default while configuring.
    pub warnings: Vec<String>,
    /// Steps in the order they started.
    pub steps: Vec<Step>,
    /// How stage 1 ended: handed off, or failed and what the failure policy did.
    pub result: Option<StageResult>,
    /// What the previous boot left in pstore (its summary line), when the kernel kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_boot: Option<PreviousBoot>,
}

/// The previous boot as the kernel kept it across the reboot (pstore).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousBoot {
    /// Where it was found (`pstore dmesg-ramoops-0`).
    pub source: String,
    /// Its result (`handed-off`, `failed`).
    pub result: String,
    /// Why it failed, when it did.
    #[serde(default)]
    pub detail: String,
    /// Its whole summary line.
    pub summary: serde_json::Value,
}

/// The end of stage 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageResult {
    /// `handed-off` or `failed`.
    pub status: String,
    /// What happened (the next init's command line, or the failure and the policy).
    pub detail: String,
    /// When, on the same clock as the steps.
    pub at_us: u64,
}

impl Report {
    /// Adds `step`, replacing an earlier step of the same name (a re-run).
    pub fn upsert_step(&mut self, step: Step) {
        match self.steps.iter_mut().find(|s| s.name == step.name) {
            Some(existing) => *existing = step,
            None => self.steps.push(step),
        }
    }

    /// The step called `name`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Stage 1's own steps, in the order they started.
    pub fn stage1_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.unit.is_none())
    }

    /// The steps run later in their own processes (zinit services), in the order they
    /// started.
    pub fn late_steps(&self) -> Vec<&Step> {
        let mut late: Vec<&Step> = self.steps.iter().filter(|s| s.unit.is_some()).collect();
        late.sort_by_key(|s| s.start_us);
        late
    }
}

/// Errors reading or writing the report; each names the file.
#[derive(Debug)]
pub enum ReportError {
    /// The file could not be read.
    Read(PathBuf, io::Error),
    /// The file is not a report.
    Parse(PathBuf, serde_json::Error),
    /// The file could not be written.
    Write(PathBuf, io::Error),
}

impl std::fmt::Display for ReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportError::Read(path, e) if e.kind() == io::ErrorKind::NotFound => write!(
                f,
                "{}: no boot report (stage 1 did not run on this boot, or wrote elsewhere; try --report FILE)",
                path.display()
            ),
            ReportError::Read(path, e) => write!(f, "{}: cannot read the boot report: {e}", path.display()),
            ReportError::Parse(path, e) => write!(
                f,
                "{}: not a boot report ({e}); it may be from another version or damaged",
                path.display()
            ),
            ReportError::Write(path, e) => {
                write!(f, "{}: cannot write the boot report: {e}", path.display())
            }
        }
    }
}

impl std::error::Error for ReportError {}

/// Reads a report file.
pub fn load(path: &Path) -> Result<Report, ReportError> {
    let bytes = std::fs::read(path).map_err(|e| ReportError::Read(path.into(), e))?;
    serde_json::from_slice(&bytes).map_err(|e| ReportError::Parse(path.into(), e))
}

/// Writes `report` to `path` atomically: a temporary file in the same directory, synced,
/// then renamed over the old one. The directory is created when missing.
pub fn store(path: &Path, report: &Report) -> Result<(), ReportError> {
    let fail = |e: io::Error| ReportError::Write(path.into(), e);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut text = serde_json::to_vec_pretty(report).map_err(|e| fail(io::Error::other(e)))?;
    text.push(b'\n');
    crate::rundir::RunDir::at(dir)
        .write_report(path, &text)
        .map_err(fail)
}

/// Takes the report's exclusive lock (`<path>.lock`); held until the file is dropped.
fn lock(path: &Path) -> Result<std::fs::File, ReportError> {
    lock_within(path, LOCK_WAIT)
}

fn lock_within(path: &Path, wait: std::time::Duration) -> Result<std::fs::File, ReportError> {
    let fail = |e: io::Error| ReportError::Write(path.into(), e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    // Bounded: a writer stuck while holding the lock (a stopped process) must not hold
    // every step after it.
    crate::fsutil::lock_exclusive(Path::new(&lock_path), wait).map_err(fail)
}

/// How long a writer waits for the report's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// [`store`] under the report's lock, for the process that owns the whole report (stage
/// 1): no service's merge is lost half-way.
pub fn replace(path: &Path, report: &Report) -> Result<(), ReportError> {
    let _lock = lock(path)?;
    store(path, report)
}

/// Read-modify-write of the report under an exclusive lock (`<path>.lock`), for steps
/// that run in their own process. A missing or unreadable report starts afresh.
pub fn update(path: &Path, change: impl FnOnce(&mut Report)) -> Result<(), ReportError> {
    let _lock = lock(path)?;
    let mut report = load(path).unwrap_or_else(|_| Report {
        schema: SCHEMA,
        ..Report::default()
    });
    change(&mut report);
    store(path, &report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, start: u64, end: u64) -> Step {
        Step {
            name: name.into(),
            start_us: start,
            end_us: Some(end),
            outcome: Outcome::Ok,
            detail: String::new(),
            counters: BTreeMap::new(),
            after: Vec::new(),
            pid: 1,
            unit: None,
        }
    }

    #[test]
    fn store_load_round_trip_and_no_temporaries_left() {
        let dir = std::env::temp_dir().join(format!("initagent-report-{}", std::process::id()));
        let path = dir.join("sub/report.json");
        let mut report = Report {
            schema: SCHEMA,
            ..Report::default()
        };
        report.upsert_step(step("a", 1, 2));
        store(&path, &report).unwrap();
        assert_eq!(load(&path).unwrap(), report);
        update(&path, |r| {
            r.upsert_step(step("a", 5, 9));
            r.upsert_step(step("b", 9, 10));
        })
        .unwrap();
        let again = load(&path).unwrap();
        assert_eq!(again.steps.len(), 2);
        assert_eq!(again.step("a").unwrap().duration_us(), 4);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lock_held_too_long_is_an_error_not_a_hang() {
        let dir = std::env::temp_dir().join(format!("initagent-lock-{}", std::process::id()));
        let path = dir.join("report.json");
        let held = lock(&path).unwrap();
        // flock locks belong to the open file: a second open is a second holder.
        let err = lock_within(&path, std::time::Duration::from_millis(100)).unwrap_err();
        assert!(
            err.to_string().contains("held this lock for 100 ms"),
            "{err}"
        );
        drop(held);
        assert!(lock_within(&path, std::time::Duration::from_millis(100)).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_file() {
        let missing = Path::new("/nonexistent/report.json");
        let err = load(missing).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/report.json") && err.contains("--report"));
        let dir = std::env::temp_dir().join(format!("initagent-garbage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("report.json");
        std::fs::write(&garbage, b"{\"schema\": ").unwrap();
        assert!(load(&garbage)
            .unwrap_err()
            .to_string()
            .contains("not a boot report"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
