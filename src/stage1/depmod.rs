//! The `depmod` step: check the module tree's dependency maps against the tree and the
//! running kernel; repair them into tmpfs only when they are wrong.

use super::runner::StepDone;
use crate::depmod::ensure::{self, EnsureOptions};
use std::path::Path;

/// Runs `depmod ensure` on the live system.
pub fn ensure_maps() -> Result<StepDone, String> {
    let release = crate::sys::kernel_release();
    if !Path::new("/lib/modules").join(&release).is_dir() {
        return Ok(StepDone::skipped(format!(
            "no /lib/modules/{release} in this image"
        )));
    }
    let options = EnsureOptions {
        root: Path::new("/"),
        release: &release,
        running: Some(&release),
        output: Path::new(ensure::DEFAULT_OUTPUT),
        place: true,
        in_process: false,
    };
    let report = ensure::ensure(&options)?;
    let accounting = report.check.accounting;
    let failed: Vec<String> = report
        .check
        .failed()
        .iter()
        .map(|c| format!("{}: {}", c.id, c.reasons.join("; ")))
        .collect();
    let done = if report.action == "none" {
        let proven = report
            .check
            .checks
            .iter()
            .any(|c| c.id == "stamp" && c.status == crate::depmod::check::Status::Pass);
        StepDone::ok(if proven {
            "maps valid (proven by the content stamp)"
        } else {
            "maps valid"
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
    Ok(done
        .count("files_read", accounting.files_opened)
        .count("bytes_read", accounting.bytes_read)
        .count("module_bytes_read", accounting.module_bytes_read)
        .count("checks_failed", failed.len() as u64)
        .count("maps_placed", report.placed.len() as u64))
}
