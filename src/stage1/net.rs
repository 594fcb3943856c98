//! The `net` step: `net up` as configured (profile, `initagent.net.*`, `ip=`, `BOOTIF=`).
//! No lease is `degraded` with what each link tried, and the boot goes on; the full
//! result is kept in [`RESULT_PATH`] for people and the failure bundle (not in the lease
//! directory, which holds only leases: `net renew` keeps every file there).

use super::runner::StepDone;
use crate::config::Config;
use crate::net::up::{up, UpOptions};
use std::path::Path;

/// The step's whole result.
pub const RESULT_PATH: &str = "/run/initagent/net-up.json";

/// Brings the network up.
pub fn bring_up(config: &Config) -> Result<StepDone, String> {
    let options = UpOptions::from_config(&config.net);
    let report = up(&options)?;
    let text = serde_json::to_vec_pretty(&report).unwrap_or_default();
    if let Err(e) = crate::fsutil::write_atomic(Path::new(RESULT_PATH), &text) {
        log::warn!("{RESULT_PATH}: {e}");
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_result_is_not_in_the_lease_directory() {
        let result = std::path::Path::new(super::RESULT_PATH);
        assert!(!result.starts_with(crate::net::apply::RUN_DIR));
    }
}
