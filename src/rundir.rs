//! `/run/initagent`: what the agent leaves for the rest of the boot. Every path under it
//! is named here and nowhere else, and each file has one owner that writes it and one
//! typed reader:
//!
//! | path | owner (writer) | reader |
//! |------|----------------|--------|
//! | `report.json` (+ `.lock`) | [`crate::report`]: stage 1's runner, oneshots merging under the lock | `report::load` |
//! | `steps/<name>.json` | [`RunDir::write_outcome`]: each step's whole result, named like its entry in the report (stage 1's `coldplug`, the service's `udev-trigger`) | [`RunDir::read_outcome`] |
//! | `net/<link>.json` | `net::apply` (leases only: `net renew` keeps every file there) | `net::apply::read_lease` |
//! | `modules.json` (+ `.lock`) | `kmod`: every load run of the boot, merged under the lock | `kmod::read_outcomes` |
//! | `depmod/` | `depmod::ensure`: maps repaired into tmpfs | `kmod::Modules::open` |
//! | `cache/<flist>/` | the flist daemons' disk caches (without a cache device) | the daemons |
//! | `cachedisk/` | `stage1::cachedisk`: the mount point of the cache device (`initagent.flist.cache`); the daemons' caches are in its `initagent-cache/<flist>/` | the daemons |
//! | `cachedisk.json` | `stage1::cachedisk`: the device, its filesystem, formatted or not, the caches' directory | `cachedev::caches_dir` (the flists step, `cachedev::flush`) |
//! | `flists/<flist>.json` | each flist daemon's counters | `flist::daemon::read_stats` |
//! | `bin/modprobe` | the modules step (a link to the agent when the image has no modprobe) | the kernel |
//! | `upload.json` | [`crate::report::upload`]: the last send of the report to `report_url` (store redacted, key, ok or why not) | `report::upload::last_sent` |
//! | `pstore/` | `stage1::pstore`: the previous boot's pstore records, copied before they are erased from the backend | people |
//! | `failure/` | `stage1::bundle` (only when the handoff failed) | people |
//! | `reserve`, `reserve.2` | [`RunDir::reserve`]: room kept for the report when `/run` fills up; [`RunDir::write_report`] turns one into the report and the old report into a reserve | — |

use crate::report::Outcome;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

macro_rules! under_run {
    ($relative:literal) => {
        concat!("/run/initagent/", $relative)
    };
}

/// The directory itself.
pub const ROOT: &str = "/run/initagent";
/// The boot report.
pub const REPORT: &str = under_run!("report.json");
/// The leases `net up` hands to `net renew` (nothing else lives there).
pub const LEASES: &str = under_run!("net");
/// One outcome file per step.
pub const STEPS: &str = under_run!("steps");
/// Every module load run of this boot, merged.
pub const MODULE_OUTCOMES: &str = under_run!("modules.json");
/// Dependency maps repaired by `depmod ensure`.
pub const DEPMOD: &str = under_run!("depmod");
/// The flists' disk caches (`cache/<name>`).
pub const CACHES: &str = under_run!("cache");
/// Where stage 1 mounts the cache device named by `initagent.flist.cache`.
pub const CACHE_DISK: &str = under_run!("cachedisk");
/// What the `cache` step found, formatted and mounted (read by the flists step).
pub const CACHE_RECORD: &str = under_run!("cachedisk.json");
/// The flist daemons' counters (`flists/<name>.json`).
pub const FLIST_STATS: &str = under_run!("flists");
/// The `modprobe` name stage 1 gives the agent when the image has none.
pub const MODPROBE_LINK: &str = under_run!("bin/modprobe");
/// The last send of the report off the node.
pub const UPLOAD: &str = under_run!("upload.json");
/// The failure bundle.
pub const FAILURE: &str = under_run!("failure");
/// Room kept for the report when `/run` fills up ([`RunDir::write_report`]).
pub const RESERVE: &str = under_run!("reserve");
/// The reserve files (in the run directory), each this large.
const RESERVES: [&str; 2] = ["reserve", "reserve.2"];
const RESERVE_BYTES: u64 = 128 * 1024;

/// What a step left: its outcome as in the report, plus its whole result (the network's
/// per-link attempts, coldplug's devices without a driver…).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's name in the report (`coldplug`; `udev-trigger` for that service's run).
    pub step: String,
    /// The step unit that ran (`coldplug`).
    pub unit: String,
    /// How it ended.
    pub outcome: Outcome,
    /// One line for a person.
    pub detail: String,
    /// The report's counters.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// The process that ran it (1: stage 1).
    pub pid: u32,
    /// When it ended, microseconds of monotonic time since boot.
    pub at_us: u64,
    /// The step's whole result (`null` when it has none beyond the line).
    #[serde(default)]
    pub result: serde_json::Value,
}

/// Reading or writing a file of the run directory; each names the file.
#[derive(Debug)]
pub enum RunError {
    /// The file could not be read (missing: the step has not run on this boot).
    Read(PathBuf, io::Error),
    /// The file is not what its owner writes.
    Parse(PathBuf, serde_json::Error),
    /// The file could not be written.
    Write(PathBuf, io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Read(path, e) if e.kind() == io::ErrorKind::NotFound => write!(
                f,
                "{}: missing (the step has not run on this boot)",
                path.display()
            ),
            RunError::Read(path, e) => write!(f, "{}: cannot read: {e}", path.display()),
            RunError::Parse(path, e) => write!(
                f,
                "{}: damaged or from another version ({e}); run the step again to rewrite it",
                path.display()
            ),
            RunError::Write(path, e) => write!(f, "{}: cannot write: {e}", path.display()),
        }
    }
}

impl std::error::Error for RunError {}

/// The run directory (the system's, or another one for tests).
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl Default for RunDir {
    fn default() -> Self {
        RunDir::at(ROOT)
    }
}

impl RunDir {
    /// A run directory at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    /// Its path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The boot report.
    pub fn report(&self) -> PathBuf {
        self.root.join("report.json")
    }

    /// The record of the last send of the report ([`UPLOAD`] in the default directory).
    pub fn upload_record(&self) -> PathBuf {
        self.root.join("upload.json")
    }

    /// The lease directory.
    pub fn leases(&self) -> PathBuf {
        self.root.join("net")
    }

    /// The outcome file of `step`.
    pub fn outcome_path(&self, step: &str) -> PathBuf {
        self.root.join("steps").join(format!("{step}.json"))
    }

    /// Writes a step's outcome file (0600, credentials masked: results name stores).
    pub fn write_outcome(&self, record: &StepRecord) -> Result<(), RunError> {
        let path = self.outcome_path(&record.step);
        let fail = |e: io::Error| RunError::Write(path.clone(), e);
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(fail)?;
        let mut text = serde_json::to_vec_pretty(record).map_err(|e| fail(io::Error::other(e)))?;
        text.push(b'\n');
        crate::fsutil::write_private(&path, &text).map_err(fail)
    }

    /// Reads a step's outcome file.
    pub fn read_outcome(&self, step: &str) -> Result<StepRecord, RunError> {
        let path = self.outcome_path(step);
        let bytes = std::fs::read(&path).map_err(|e| RunError::Read(path.clone(), e))?;
        serde_json::from_slice(&bytes).map_err(|e| RunError::Parse(path, e))
    }

    /// Keeps room for the report in a `/run` that fills up: two files of
    /// [`RESERVE_BYTES`] (spaces), made by stage 1 and again whenever one is missing and
    /// there is room. See [`RunDir::write_report`].
    pub fn reserve(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        for name in RESERVES {
            let path = self.root.join(name);
            if std::fs::metadata(&path).map_or(true, |m| m.len() != RESERVE_BYTES) {
                crate::fsutil::write_private(&path, &[b' '; RESERVE_BYTES as usize])?;
            }
        }
        Ok(())
    }

    /// Writes the report (`bytes`, one JSON document) to `path` atomically. When `/run`
    /// has no room for the new copy, the copy goes into a reserve file instead, written
    /// in place (its pages are allocated already) and padded with spaces (still the same
    /// JSON), and renamed over the report; the report it replaces becomes the next
    /// reserve. Nothing is freed or allocated, so nobody else can take the room, and a
    /// reader still sees the old or the new report, never half of one.
    pub fn write_report(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        match crate::fsutil::write_private(path, bytes) {
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => {
                self.write_report_in_reserve(path, bytes).map_err(|why| {
                    io::Error::new(
                        e.kind(),
                        format!("{e}, and the room kept for the report did not help: {why}"),
                    )
                })
            }
            Err(e) => Err(e),
            Ok(()) => {
                let kept = RESERVES.map(|n| self.root.join(n).exists());
                if kept.contains(&true) && kept.contains(&false) {
                    // /run had filled and has room again: keep it for the next time.
                    let _ = self.reserve();
                }
                Ok(())
            }
        }
    }

    fn write_report_in_reserve(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let masked = crate::redact::text(&String::from_utf8_lossy(bytes))
            .into_owned()
            .into_bytes();
        if masked.len() as u64 > RESERVE_BYTES {
            return Err(io::Error::other("the report is larger than the room kept"));
        }
        let spare = RESERVES
            .iter()
            .map(|name| self.root.join(name))
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == RESERVE_BYTES))
            .ok_or_else(|| io::Error::other("no room kept (both reserves used)"))?;
        let mut padded = masked;
        padded.resize(RESERVE_BYTES as usize, b' ');
        let file = std::fs::OpenOptions::new().write(true).open(&spare)?;
        std::os::unix::fs::FileExt::write_all_at(&file, &padded, 0)?;
        file.sync_all()?;
        // A report already in a reserve-sized file is kept (under a second name) as the
        // reserve `spare` was.
        let recycled = std::fs::metadata(path).is_ok_and(|m| m.len() == RESERVE_BYTES);
        let next = self.root.join("reserve.next");
        if recycled {
            let _ = std::fs::remove_file(&next);
            std::fs::hard_link(path, &next)?;
        }
        std::fs::rename(&spare, path)?;
        if recycled {
            std::fs::rename(&next, &spare)?;
        }
        if !recycled {
            log::warn!(
                "{}: no room left in {}; written into the room kept for it from now on",
                path.display(),
                self.root.display()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_and_paths_agree() {
        let run = RunDir::default();
        assert_eq!(run.report(), Path::new(REPORT));
        assert_eq!(run.leases(), Path::new(LEASES));
        assert_eq!(
            run.outcome_path("net").parent(),
            Some(Path::new(STEPS)),
            "outcome files live in steps/"
        );
        for path in [
            MODULE_OUTCOMES,
            DEPMOD,
            CACHES,
            CACHE_DISK,
            CACHE_RECORD,
            FLIST_STATS,
            MODPROBE_LINK,
            FAILURE,
        ] {
            assert!(
                path.starts_with(ROOT) && !path.starts_with(LEASES),
                "{path}"
            );
        }
    }

    #[test]
    fn a_full_run_still_takes_the_report_without_freeing_or_taking_room() {
        let dir = std::env::temp_dir().join(format!("initagent-reserve-{}", std::process::id()));
        let run = RunDir::at(&dir);
        run.reserve().unwrap();
        let report = run.report();
        run.write_report(&report, b"{\"n\": 1}").unwrap();
        // As if /run were full: every version goes through the reserves, alternating.
        for n in 2..6 {
            let text = format!("{{\"n\": {n}, \"store\": \"s3://AK:SECRET@h/b\"}}");
            run.write_report_in_reserve(&report, text.as_bytes())
                .unwrap();
            let stored = std::fs::read(&report).unwrap();
            assert_eq!(stored.len() as u64, RESERVE_BYTES);
            let value: serde_json::Value = serde_json::from_slice(&stored).unwrap();
            assert_eq!(value["n"], n);
            assert_eq!(value["store"], "s3://AK:***@h/b");
            // One reserve left after the first time (the small report was freed), and it
            // stays one: the old report takes its place.
            let kept = RESERVES.iter().filter(|n| dir.join(n).exists()).count();
            assert_eq!(kept, 1, "after version {n}");
            assert!(!dir.join("reserve.next").exists());
        }
        let too_big = vec![b' '; RESERVE_BYTES as usize + 1];
        assert!(run.write_report_in_reserve(&report, &too_big).is_err());
        // Room again: the reserves come back with the next ordinary write.
        run.write_report(&report, b"{\"n\": 9}").unwrap();
        assert!(RESERVES.iter().all(|n| dir.join(n).exists()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn outcome_files_round_trip_and_name_themselves_when_wrong() {
        let dir = std::env::temp_dir().join(format!("initagent-rundir-{}", std::process::id()));
        let run = RunDir::at(&dir);
        let record = StepRecord {
            step: "coldplug".into(),
            unit: "coldplug".into(),
            outcome: Outcome::Degraded,
            detail: "2 devices without a driver".into(),
            counters: [("undriven".to_string(), 2)].into(),
            pid: 42,
            at_us: 7,
            result: serde_json::json!({"undriven": ["a", "b"]}),
        };
        let missing = run.read_outcome("coldplug").unwrap_err().to_string();
        assert!(
            missing.contains("steps/coldplug.json: missing"),
            "{missing}"
        );
        run.write_outcome(&record).unwrap();
        assert_eq!(run.read_outcome("coldplug").unwrap(), record);
        std::fs::write(run.outcome_path("net"), b"{").unwrap();
        let damaged = run.read_outcome("net").unwrap_err().to_string();
        assert!(damaged.contains("steps/net.json: damaged"), "{damaged}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
