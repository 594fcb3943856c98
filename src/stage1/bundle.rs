//! When stage 1 cannot hand off: everything an operator needs to see why, gathered in one
//! directory before the failure policy runs (`/run/initagent/failure/`): the boot report,
//! the tail of the kernel log, the mount table, the network and coldplug results, the
//! module outcomes. Best effort: a file that cannot be copied is named in `missing.txt`.
//! The directory is 0700 and every file 0600 with credentials masked (the kernel's own
//! log repeats the command line).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where the bundle goes.
pub const BUNDLE_DIR: &str = crate::rundir::FAILURE;

/// Kernel log records kept.
const KMSG_LINES: usize = 300;

/// What [`write`] wrote: the directory, and each file it could not copy with the reason.
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub missing: Vec<String>,
}

/// The list of what could not be copied; written first, so its room is taken before a
/// full filesystem can refuse it, and rewritten in place at the end.
pub const MISSING: &str = "missing.txt";

/// Writes the bundle into `dir` from `report_path` and the usual result files, the most
/// telling first (the report, the steps' outcomes, the modules, the mounts, the leases, the
/// kernel log). Every file is written whole or not at all; one that cannot be (a full
/// `/run`) is named in `missing.txt` and in the answer, and the rest still written.
pub fn write(dir: &Path, report_path: &Path) -> std::io::Result<Bundle> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let missing_path = dir.join(MISSING);
    let reserved =
        crate::fsutil::write_private(&missing_path, b"the bundle is being written\n").is_ok();
    let mut missing = Vec::new();
    let run = crate::rundir::RunDir::default();
    let mut copies: Vec<(PathBuf, String)> =
        vec![(report_path.to_path_buf(), "report.json".into())];
    for step in crate::step::StepName::ALL {
        let path = run.outcome_path(step.as_str());
        if path.exists() {
            copies.push((path, format!("step-{}.json", step.as_str())));
        }
    }
    copies.push((
        PathBuf::from(crate::kmod::OUTCOMES_PATH),
        "modules.json".into(),
    ));
    copies.push((
        PathBuf::from("/proc/self/mountinfo"),
        "mountinfo.txt".into(),
    ));
    for lease in crate::net::keep::lease_files(Path::new(crate::net::apply::RUN_DIR)) {
        if let Some(name) = lease.file_name() {
            let name = format!("lease-{}", name.to_string_lossy());
            copies.push((lease, name));
        }
    }
    for (from, name) in copies {
        if let Err(e) = std::fs::read(&from)
            .and_then(|data| crate::fsutil::write_private(&dir.join(&name), &data))
        {
            missing.push(format!("{name}: from {}: {e}", from.display()));
        }
    }
    if let Err(e) = kernel_log_tail(KMSG_LINES).and_then(|lines| {
        crate::fsutil::write_private(&dir.join("kmsg.txt"), lines.join("\n").as_bytes())
    }) {
        missing.push(format!("kmsg.txt: from /dev/kmsg: {e}"));
    }
    if missing.is_empty() {
        let _ = std::fs::remove_file(&missing_path);
    } else if let Err(e) = rewrite_in_place(&missing_path, &(missing.join("\n") + "\n"), reserved) {
        missing.push(format!("{MISSING}: {e}"));
    }
    Ok(Bundle {
        dir: dir.to_path_buf(),
        missing,
    })
}

/// Replaces the text of `path` without a second file: truncating frees the room the
/// placeholder held, which the new text then takes (it is a few hundred bytes).
fn rewrite_in_place(path: &Path, text: &str, reserved: bool) -> std::io::Result<()> {
    if !reserved {
        return crate::fsutil::write_private(path, text.as_bytes());
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    std::io::Write::write_all(&mut file, crate::redact::text(text).as_bytes())
}

/// The last `keep` records of the kernel log (`/dev/kmsg`, read without blocking), as
/// `[seconds] message`.
pub(crate) fn kernel_log_tail(keep: usize) -> std::io::Result<Vec<String>> {
    let mut kmsg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open("/dev/kmsg")?;
    let mut lines = std::collections::VecDeque::with_capacity(keep);
    let mut record = vec![0u8; 8192];
    loop {
        match kmsg.read(&mut record) {
            Ok(0) => break,
            Ok(n) => {
                if lines.len() == keep {
                    lines.pop_front();
                }
                lines.push_back(format_record(&record[..n]));
            }
            // EPIPE: a record was overwritten while reading; go on with the next one.
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(lines.into())
}

/// `pri,seq,usec,flags;message\n` → `[seconds] message`.
fn format_record(record: &[u8]) -> String {
    let text = String::from_utf8_lossy(record);
    let (header, message) = text.split_once(';').unwrap_or(("", &text));
    let micros: u64 = header
        .split(',')
        .nth(2)
        .and_then(|u| u.parse().ok())
        .unwrap_or(0);
    let message = message.lines().next().unwrap_or_default();
    format!(
        "[{:>5}.{:06}] {message}",
        micros / 1_000_000,
        micros % 1_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmsg_records_become_lines() {
        assert_eq!(
            format_record(b"6,1234,3679868,-;reboot: Power down\n SUBSYSTEM=x\n"),
            "[    3.679868] reboot: Power down"
        );
        assert_eq!(format_record(b"garbage"), "[    0.000000] garbage");
    }

    #[test]
    fn bundle_names_what_it_could_not_copy() {
        let dir = std::env::temp_dir().join(format!("initagent-bundle-{}", std::process::id()));
        let report = dir.join("no-such-report.json");
        let written = write(&dir.join("failure"), &report).unwrap();
        let missing = std::fs::read_to_string(written.dir.join(MISSING)).unwrap();
        assert!(missing.contains("report.json: from "), "{missing}");
        assert!(missing.contains("no-such-report.json"), "{missing}");
        assert_eq!(missing, written.missing.join("\n") + "\n");
        assert!(written.dir.join("mountinfo.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
