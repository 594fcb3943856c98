//! The `cache` step: the persistent block cache on the node's own disk
//! (`initagent.flist.cache=`), prepared before the network so the flists step and the
//! mount daemons it starts put their blocks there. Only as PID 1. It never fails the
//! boot: without the device the caches stay in `/run`, as without the key.

use crate::cachedev::{self, probe::CacheSpec};
use crate::rundir;
use crate::step::{StepDone, StepError};
use std::path::Path;
use std::time::Duration;

/// Formatting writes at most 32 MiB of inode tables; mounting replays a journal. A disk
/// that takes longer than this is left behind (the step is reported as past its deadline).
const WORK: Duration = Duration::from_secs(60);

/// How long stage 1 waits for the step: the wait for the device, then the work.
pub fn deadline(timeout_s: u32) -> Duration {
    Duration::from_secs(u64::from(timeout_s)) + WORK
}

/// Finds, formats when blank, and mounts the device; records it for the flists step.
pub fn step(spec: Option<&CacheSpec>, timeout_s: u32) -> Result<StepDone, StepError> {
    let Some(spec) = spec else {
        return Ok(StepDone::skipped(
            "no initagent.flist.cache: the block cache is in /run and is fetched again every boot",
        ));
    };
    let wait = Duration::from_secs(u64::from(timeout_s));
    let prepared = match cachedev::prepare(spec, wait, Path::new(rundir::CACHE_DISK)) {
        Ok(prepared) => prepared,
        Err(e) => {
            return Ok(StepDone::degraded(format!(
                "{e}; the block cache is in /run for this boot"
            )))
        }
    };
    let record = serde_json::to_vec_pretty(&prepared).unwrap_or_default();
    crate::fsutil::write_atomic(Path::new(rundir::CACHE_RECORD), &record).map_err(|e| {
        StepError::System {
            what: "recording the cache device",
            why: format!("{}: {e}", rundir::CACHE_RECORD),
        }
    })?;
    let room = rustix::fs::statvfs(prepared.dir.as_str())
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .unwrap_or(0);
    let how = if prepared.formatted {
        "blank, formatted as"
    } else {
        "an existing"
    };
    let detail = format!(
        "{} ({how} {} labelled {:?}) mounted on {}; the block caches are in {} ({} MiB free)",
        prepared.device,
        prepared.kind,
        prepared.label,
        prepared.mount_point,
        prepared.dir,
        room >> 20
    );
    let mut done = StepDone::ok(detail)
        .count("formatted", u64::from(prepared.formatted))
        .count("free_bytes", room);
    done.result = serde_json::to_value(&prepared).unwrap_or_default();
    Ok(done)
}
