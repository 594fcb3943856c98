//! The `net` step: `net up` as configured (profile, `initagent.net.*`, `ip=`, `BOOTIF=`).
//! No lease is `degraded` with what each link tried, and the boot goes on; the full
//! result is the step's outcome file (`/run/initagent/steps/net.json`), not in the lease
//! directory, which holds only leases (`net renew` keeps every file there).

use super::{Ctx, StepDone, StepError};
use crate::net::up::{up, UpOptions};

/// Brings the network up.
pub fn bring_up(ctx: &Ctx) -> Result<StepDone, StepError> {
    if !ctx.live {
        return Ok(StepDone::skipped(
            "not PID 1: the network of a running system is left alone (use `initagent net up`)",
        ));
    }
    let mut options = UpOptions::from_config(&ctx.config.net);
    options.run_dir = ctx.run.leases();
    let report = up(&options).map_err(|why| StepError::System {
        what: "network",
        why,
    })?;
    let leases = report.links.iter().filter(|l| l.lease.is_some()).count() as u64;
    let done = if report.outcome == "ok" {
        StepDone::ok(report.summary())
    } else {
        StepDone::degraded(report.summary())
    };
    Ok(done
        .with_result(&report)
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
        let run = crate::rundir::RunDir::default();
        assert!(!run.outcome_path("net").starts_with(run.leases()));
    }
}
