//! A step in its own process: `initagent step NAME`, what the zinit services run. The same
//! unit as stage 1 ([`super::run`]), recorded in the boot report under the report's lock
//! when it starts and when it ends, so `initagent status` shows what the services did
//! after the handoff and when.
//!
//! zinit never runs a oneshot again once it exited non-zero, and everything `after:` it
//! then waits forever. So a service exits 0 exactly when its dependents may go on
//! ([`may_go_on`]): for the network and the flists, once their work is done (with
//! `--retry`, tried again with backoff until then); for every other step, as soon as it
//! ended, degraded or not, with the reason in its output and in the report. Each attempt
//! is bounded by the step's deadline, as in stage 1.

use super::{Ctx, StepDone, StepError, StepName};
use crate::report::{self, Outcome, Step};
use crate::stage1::runner::{spawn_step, wait_step};
use std::time::Duration;

/// Whether what comes after `step` may start now that it ended with `outcome`.
pub fn may_go_on(step: StepName, outcome: Outcome) -> bool {
    !step.gates() || matches!(outcome, Outcome::Ok | Outcome::Skipped)
}

/// The waits between attempts: 5 s, doubling, at most 60 s.
pub fn backoff(attempt: u32) -> Duration {
    let seconds = 5u64.saturating_mul(1 << attempt.min(4));
    Duration::from_secs(seconds.min(60))
}

/// One attempt as it ended.
pub struct Attempt {
    /// 1 for the first.
    pub number: u32,
    /// The step's result.
    pub result: Result<StepDone, StepError>,
    /// Whether the dependents may go on.
    pub go_on: bool,
}

impl Attempt {
    /// The outcome as recorded.
    pub fn outcome(&self) -> Outcome {
        self.result.as_ref().map_or(Outcome::Failed, |d| d.outcome)
    }

    /// The line recorded and printed.
    pub fn detail(&self) -> String {
        match &self.result {
            Ok(done) => done.detail.clone(),
            Err(e) => e.to_string(),
        }
    }
}

/// Runs `step` as `record_as` in the report, once, or with `retry` until its dependents
/// may go on, sleeping with `sleep` between attempts; `seen` is told of every attempt.
/// Returns the last attempt.
pub fn run(
    step: StepName,
    ctx: &Ctx,
    record_as: &str,
    retry: bool,
    sleep: &mut dyn FnMut(Duration),
    seen: &mut dyn FnMut(&Attempt, Option<Duration>),
) -> Attempt {
    let mut number = 0;
    loop {
        number += 1;
        let attempt = run_once(step, ctx, record_as, number);
        let again = (retry && !attempt.go_on).then(|| backoff(number - 1));
        seen(&attempt, again);
        match again {
            Some(wait) => sleep(wait),
            None => return attempt,
        }
    }
}

fn run_once(step: StepName, ctx: &Ctx, record_as: &str, number: u32) -> Attempt {
    let start_us = crate::sys::monotonic_us();
    let mut record = Step {
        name: record_as.to_string(),
        start_us,
        end_us: None,
        outcome: Outcome::Running,
        detail: if number > 1 {
            format!("attempt {number}")
        } else {
            String::new()
        },
        counters: Default::default(),
        after: Vec::new(),
        pid: crate::sys::pid(),
        unit: Some(step.as_str().to_string()),
    };
    save(ctx, &record);
    // `initagent.skip` names the step for this boot, not only for stage 1.
    let result = if ctx.config.skip.iter().any(|s| s == step.as_str()) {
        Ok(StepDone::skipped(format!(
            "skipped by {}.skip",
            crate::config::CMDLINE_PREFIX
        )))
    } else {
        // Bounded like stage 1's run of it: past the deadline the attempt ends as failed
        // (a gate tries again; the process exits and takes the stuck thread with it).
        let limit = step.deadline(&ctx.config);
        let (ctx, name) = (ctx.clone(), record_as.to_string());
        let running = spawn_step(step.as_str(), move || super::run_as(step, &ctx, &name));
        wait_step(running, limit, limit)
    };
    let outcome = result.as_ref().map_or(Outcome::Failed, |d| d.outcome);
    let attempt = Attempt {
        number,
        go_on: may_go_on(step, outcome),
        result,
    };
    record.end_us = Some(crate::sys::monotonic_us());
    record.outcome = attempt.outcome();
    record.detail = attempt.detail();
    if let Ok(done) = &attempt.result {
        record.counters = done.counters.clone();
    }
    if number > 1 {
        record.counters.insert("attempts".into(), u64::from(number));
    }
    save(ctx, &record);
    attempt
}

/// Merges the step into the report (a node without one, e.g. a build host, gets none).
/// Stage 1's own record of a step is never replaced: a run named like it is recorded as
/// `<name>-late`.
fn save(ctx: &Ctx, step: &Step) {
    if !ctx.run.root().is_dir() {
        return;
    }
    let path = ctx.run.report();
    let result = report::update(&path, |r| {
        let mut step = step.clone();
        if r.step(&step.name).is_some_and(|s| s.unit.is_none()) {
            step.name.push_str("-late");
        }
        r.upsert_step(step)
    });
    if let Err(e) = result {
        log::warn!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gates_hold_their_dependents() {
        for step in StepName::ALL {
            assert!(may_go_on(step, Outcome::Ok));
            assert!(may_go_on(step, Outcome::Skipped));
            assert_eq!(may_go_on(step, Outcome::Degraded), !step.gates());
            assert_eq!(may_go_on(step, Outcome::Failed), !step.gates());
        }
    }

    #[test]
    fn a_node_without_list_or_tree_goes_on_and_the_report_says_why() {
        let dir = std::env::temp_dir().join(format!("initagent-oneshot-{}", std::process::id()));
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        let mut ctx = Ctx::system(Default::default(), Default::default(), true);
        ctx.root = dir.join("root");
        ctx.run = crate::rundir::RunDir::at(&run);
        let mut slept = Vec::new();
        let mut seen = Vec::new();
        for (step, service) in [
            (StepName::Depmod, "initagent-depmod"),
            (StepName::Modules, "initagent-modules"),
            (StepName::Bootstrap, "bootstrap"),
        ] {
            let last = super::run(
                step,
                &ctx,
                service,
                true,
                &mut |wait| slept.push(wait),
                &mut |attempt, again| seen.push((attempt.outcome(), again)),
            );
            assert!(last.go_on, "{service}: {}", last.detail());
        }
        assert!(slept.is_empty(), "nothing retried: {slept:?}");
        assert!(seen
            .iter()
            .all(|(o, again)| *o == Outcome::Degraded && again.is_none()));
        let report = crate::report::load(&ctx.run.report()).unwrap();
        let depmod = report.step("initagent-depmod").unwrap();
        assert_eq!(depmod.unit.as_deref(), Some("depmod"));
        assert_eq!(depmod.outcome, Outcome::Degraded);
        assert!(
            depmod.detail.starts_with("no module tree at "),
            "{}",
            depmod.detail
        );
        let modules = report.step("initagent-modules").unwrap();
        assert!(
            modules.detail.starts_with("no module list at "),
            "{}",
            modules.detail
        );
        assert!(modules.end_us >= Some(modules.start_us) && modules.pid == crate::sys::pid());
        // Each step's outcome file, by its step name.
        let record = ctx.run.read_outcome("initagent-modules").unwrap();
        assert_eq!(
            (record.unit.as_str(), record.outcome),
            ("modules", Outcome::Degraded)
        );
        // Named like a stage-1 step, a run never replaces it.
        let stage1 = crate::report::Step {
            unit: None,
            pid: 1,
            ..report.step("bootstrap").unwrap().clone()
        };
        crate::report::update(&ctx.run.report(), |r| r.upsert_step(stage1.clone())).unwrap();
        super::run(
            StepName::Bootstrap,
            &ctx,
            "bootstrap",
            false,
            &mut |_| {},
            &mut |_, _| {},
        );
        let report = crate::report::load(&ctx.run.report()).unwrap();
        assert_eq!(report.step("bootstrap"), Some(&stage1));
        assert_eq!(
            report.step("bootstrap-late").unwrap().unit.as_deref(),
            Some("bootstrap")
        );
        assert_eq!(report.late_steps().len(), 3, "{report:#?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (0..7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60, 60]);
    }
}
