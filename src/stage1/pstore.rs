//! The last failure across the reboot the failure policy does. Before rebooting, stage 1
//! asks the kernel to dump its log into pstore (ramoops, EFI variables, ERST: whatever
//! backend the kernel has) — the log holds stage 1's one-line summary. At the next boot
//! the `pstore` step mounts pstore, finds the newest summary in the records, puts it in
//! the report as `previous_boot` (so it is uploaded and shown), keeps the records in
//! `/run/initagent/pstore/` and frees the backend for the next failure. Without a
//! backend it says so: then the failure leaves the node only by `report_url` and the
//! kernel log (serial, netconsole).

use crate::report::PreviousBoot;
use crate::step::{StepDone, StepError};
use std::path::{Path, PathBuf};

/// Where the kernel's pstore filesystem is mounted.
pub const PSTORE: &str = "/sys/fs/pstore";
/// The registered backend (`ramoops`, `efi_pstore`, `erst`, or `(null)`).
const BACKEND: &str = "/sys/module/pstore/parameters/backend";
/// Lets a backend registered without its own bound take the shutdown dump.
const ALWAYS_DUMP: &str = "/sys/module/printk/parameters/always_kmsg_dump";
/// ramoops' bound: the reboot's dump (`KMSG_DUMP_SHUTDOWN`) needs 4 or more.
const RAMOOPS_MAX_REASON: &str = "/sys/module/ramoops/parameters/max_reason";
/// The largest record read.
const MAX_RECORD: u64 = 1 << 20;

/// The registered pstore backend, if any.
pub fn backend() -> Option<String> {
    let name = std::fs::read_to_string(BACKEND).ok()?;
    let name = name.trim();
    (!name.is_empty() && name != "(null)").then(|| name.to_string())
}

/// The newest summary in `records` (name, modification time, text), as `previous_boot`
/// (pure).
pub fn newest_summary(records: &[(String, u64, String)]) -> Option<PreviousBoot> {
    records
        .iter()
        .filter_map(|(name, time, text)| {
            let summary = crate::report::verdict::find_summary(text)?;
            Some((time, name, summary))
        })
        .max_by_key(|(time, name, _)| (**time, (*name).clone()))
        .map(|(_, name, summary)| PreviousBoot {
            source: format!("pstore {name}"),
            result: summary["result"].as_str().unwrap_or("unknown").to_string(),
            detail: summary["detail"].as_str().unwrap_or_default().to_string(),
            summary,
        })
}

fn mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| crate::mountinfo::mounted_at(&crate::mountinfo::parse(&text), PSTORE).is_some())
        .unwrap_or(false)
}

/// The `pstore` step: what the previous boot left, if the kernel kept anything.
pub fn step(
    run_root: &Path,
    report_previous: &mut Option<PreviousBoot>,
) -> Result<StepDone, StepError> {
    if !Path::new(PSTORE).is_dir() {
        return Ok(StepDone::skipped(
            "the kernel has no pstore: a failure is not kept across reboots (it leaves the node by report_url and the kernel log)",
        ));
    }
    if !mounted() {
        if let Err(e) = crate::sys::mount::mount(
            "pstore",
            PSTORE,
            "pstore",
            rustix::mount::MountFlags::NOSUID
                | rustix::mount::MountFlags::NODEV
                | rustix::mount::MountFlags::NOEXEC,
            "",
        ) {
            return Ok(StepDone::degraded(format!("{PSTORE}: {e}")));
        }
    }
    let mut records = Vec::new();
    for entry in std::fs::read_dir(PSTORE).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || meta.len() > MAX_RECORD {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let time = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        records.push((
            entry.file_name().to_string_lossy().into_owned(),
            time,
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    let backend = backend().unwrap_or_else(|| "none registered".into());
    if records.is_empty() {
        return Ok(StepDone::ok(format!("no records (backend: {backend})")).count("records", 0));
    }
    // Kept for people in /run, then erased from the backend: its room is small and the
    // next boot must not report the same failure again.
    let kept: PathBuf = run_root.join("pstore");
    let _ = std::fs::create_dir_all(&kept);
    let mut erased = 0u64;
    for (name, _, text) in &records {
        if crate::fsutil::write_private(&kept.join(name), text.as_bytes()).is_ok()
            && std::fs::remove_file(Path::new(PSTORE).join(name)).is_ok()
        {
            erased += 1;
        }
    }
    let previous = newest_summary(&records);
    let detail = match &previous {
        Some(previous) if previous.result == "failed" => {
            log::warn!(
                "the previous boot failed: {} ({})",
                previous.detail,
                previous.source
            );
            format!(
                "the previous boot FAILED: {} ({})",
                previous.detail, previous.source
            )
        }
        Some(previous) => format!(
            "the previous boot: {} ({})",
            previous.result, previous.source
        ),
        None => format!("{} records, no initagent summary in them", records.len()),
    };
    *report_previous = previous;
    Ok(StepDone::ok(format!(
        "{detail}; records kept in {} (backend: {backend})",
        kept.display()
    ))
    .count("records", records.len() as u64)
    .count("erased", erased))
}

/// Before the failure policy reboots: asks the kernel to dump its log (with the summary
/// line) into pstore on the way down, and says whether it will be kept.
pub fn keep_for_reboot() {
    let Some(backend) = backend() else {
        log::warn!(
            "no pstore backend: this failure is not kept across the reboot (it left by report_url if configured, and by the kernel log on serial or netconsole)"
        );
        return;
    };
    let _ = std::fs::write(ALWAYS_DUMP, "Y\n");
    let low = std::fs::read_to_string(RAMOOPS_MAX_REASON)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|reason| backend == "ramoops" && *reason < 4);
    match low {
        Some(reason) => log::warn!(
            "pstore ({backend}) keeps only oopses and panics (ramoops.max_reason={reason}); with ramoops.max_reason=4 on the command line this failure would be kept across the reboot"
        ),
        None => log::error!("the kernel log of this failure goes to pstore ({backend}) on the reboot; the next boot reports it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_summary_of_the_records_is_the_previous_boot() {
        let failed = "<3>[   12.3] initagent: summary {\"result\":\"failed\",\"detail\":\"handoff target /sbin/x does not exist\",\"steps\":{}}\n";
        let older = "<6>[    9.1] initagent: summary {\"result\":\"handed-off\",\"steps\":{}}\n";
        let records = vec![
            ("dmesg-ramoops-0".to_string(), 200, format!("Panic#1 Part1\n<6>[ 1.0] hello\n{failed}<6>[ 13.0] reboot: Restarting system\n")),
            ("dmesg-ramoops-1".to_string(), 100, older.to_string()),
            ("console-ramoops-0".to_string(), 300, "nothing of ours".to_string()),
        ];
        let previous = newest_summary(&records).unwrap();
        assert_eq!(previous.result, "failed");
        assert_eq!(previous.source, "pstore dmesg-ramoops-0");
        assert_eq!(previous.detail, "handoff target /sbin/x does not exist");
        assert!(newest_summary(&records[2..]).is_none());
        // A damaged line is no summary.
        let damaged = vec![(
            "d".to_string(),
            1,
            "initagent: summary {\"result\":".to_string(),
        )];
        assert!(newest_summary(&damaged).is_none());
    }
}
