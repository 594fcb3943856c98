//! The `depmod` step: check the module tree's dependency maps against the tree and the
//! running kernel; repair them into tmpfs only when they are wrong.

use super::{Ctx, StepDone, StepError};
use crate::depmod::ensure::{self, EnsureOptions};

/// Runs `depmod ensure` on the node's tree. Degraded, never failed, when the maps cannot
/// be made usable (no tree, no room for repaired maps): the loads after it go on with
/// what there is, and say what is missing.
pub fn ensure_maps(ctx: &Ctx) -> Result<StepDone, StepError> {
    let release = &ctx.release;
    let tree = ctx.path("/lib/modules").join(release);
    if !tree.is_dir() {
        return Ok(StepDone::degraded(format!(
            "no module tree at {}: nothing to check (modules load from nowhere until the modules flist is mounted)",
            tree.display()
        )));
    }
    let live = ctx.root == std::path::Path::new("/");
    let output = ctx.run.root().join("depmod");
    let options = EnsureOptions {
        root: &ctx.root,
        release,
        running: live.then_some(release.as_str()),
        output: &output,
        place: live,
        in_process: false,
    };
    let report = match ensure::ensure(&options) {
        Ok(report) => report,
        Err(why) => {
            return Ok(StepDone::degraded(format!(
                "maps could not be checked or repaired: {why}; loads use the maps as they are"
            ))
            .count("checks_failed", 1))
        }
    };
    let accounting = report.check.accounting;
    let failed: Vec<String> = report
        .check
        .failed()
        .iter()
        .map(|c| format!("{}: {}", c.id, c.reasons.join("; ")))
        .collect();
    let done = if report.action == "none" {
        let stamp = report
            .check
            .checks
            .iter()
            .find(|c| c.id == "stamp" && c.status == crate::depmod::check::Status::Pass);
        let packed = stamp.is_some_and(|c| {
            c.reasons
                .iter()
                .any(|r| r.contains(crate::depmod::proof::TAG))
        });
        StepDone::ok(match (stamp, packed) {
            (Some(_), true) => "maps valid (proven when the flist was packed)",
            (Some(_), false) => "maps valid (proven by the content stamp)",
            (None, _) => "maps valid",
        })
    } else {
        for line in &report.not_placed {
            log::warn!("depmod: {line}");
        }
        StepDone::degraded(format!(
            "maps regenerated ({}) because {}",
            report.action,
            failed.join(" | ")
        ))
    };
    // Where the check's time went, per part (milliseconds).
    let mut done = done;
    for (part, micros) in &report.check.parts {
        done = done.count(&format!("{part}_ms"), micros / 1000);
    }
    Ok(done
        .with_result(&report)
        .count("files_read", accounting.files_opened)
        .count("bytes_read", accounting.bytes_read)
        .count("module_bytes_read", accounting.module_bytes_read)
        .count("checks_failed", failed.len() as u64)
        .count("maps_placed", report.placed.len() as u64))
}
