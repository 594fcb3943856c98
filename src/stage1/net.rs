//! The `net` step: `net up` as configured (profile, `initagent.net.*`, `ip=`, `BOOTIF=`).
//! No lease is `degraded` with what each link tried, and the boot goes on; the full
//! result is kept in `/run/initagent/net/up.json` for `initagent net status` and people.

use super::runner::StepDone;
use crate::config::Config;
use crate::net::up::{up, UpOptions};

/// Brings the network up.
pub fn bring_up(config: &Config) -> Result<StepDone, String> {
    let options = UpOptions::from_config(&config.net);
    let report = up(&options)?;
    let path = options.run_dir.join("up.json");
    if std::fs::create_dir_all(&options.run_dir).is_ok() {
        let text = serde_json::to_vec_pretty(&report).unwrap_or_default();
        if let Err(e) = crate::fsutil::write_atomic(&path, &text) {
            log::warn!("{}: {e}", path.display());
        }
    }
    let leases = report.links.iter().filter(|l| l.lease.is_some()).count() as u64;
    let done = if report.outcome == "ok" {
        StepDone::ok(report.summary())
    } else {
        StepDone::degraded(report.summary())
    };
    Ok(done
        .count("links", report.links.len() as u64)
        .count("leases", leases)
        .count(
            "dhcp_packets_sent",
            report
                .links
                .iter()
                .map(|l| u64::from(l.dhcp.discovers + l.dhcp.requests))
                .sum(),
        ))
}
