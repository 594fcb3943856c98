//! `initagent step NAME` — a boot step on a live node, the same unit stage 1 runs, recorded
//! in the boot report — and its short forms `initagent flists` and `initagent prefetch`.
//! What the zinit services run.

use super::Options;
use crate::report::Outcome;
use crate::step::oneshot::{self, Attempt};
use crate::step::{Ctx, StepName};
use std::time::Duration;

/// The context of a step run by hand or by a service: the effective configuration, the
/// live system, and the devices `--subsystem`/`--device` select.
pub(crate) fn context(options: &Options) -> Ctx {
    let loaded = crate::stage1::load_config(&options.paths);
    let config = match &options.cmdline_text {
        Some(_) => super::effective_config(options),
        None => loaded.config,
    };
    let mut ctx = Ctx::system(config, loaded.cmdline, true);
    ctx.selection = options.selection.clone();
    if !options.modules.root.as_os_str().is_empty() {
        ctx.root = options.modules.root.clone();
    }
    if let Some(release) = &options.modules.kernel {
        ctx.release = release.clone();
    }
    if let Some(seconds) = options.deadline {
        ctx.config.coldplug_deadline_s = seconds;
    }
    if options.modules.sequential {
        ctx.config.modules_parallel = false;
    }
    ctx
}

fn show(step: StepName, record_as: &str, attempt: &Attempt, again: Option<Duration>, json: bool) {
    let outcome = attempt.outcome().as_str();
    if json {
        let (counters, result) = match &attempt.result {
            Ok(done) => (
                serde_json::to_value(&done.counters).unwrap_or_default(),
                done.result.clone(),
            ),
            Err(_) => (serde_json::Value::Null, serde_json::Value::Null),
        };
        let value = serde_json::json!({
            "step": record_as, "attempt": attempt.number, "outcome": outcome,
            "detail": attempt.detail(), "counters": counters, "result": result,
            "go_on": attempt.go_on,
        });
        super::print_json(&value);
        return;
    }
    outln!("{record_as}: {outcome}: {}", attempt.detail());
    if let Ok(done) = &attempt.result {
        if step == StepName::Coldplug {
            for line in super::coldplug::details(&done.result) {
                outln!("{line}");
            }
        }
    }
    match again {
        Some(wait) => errln!(
            "initagent: {record_as}: trying again in {} s (--retry): what waits on it needs it done",
            wait.as_secs()
        ),
        None if attempt.go_on && attempt.outcome() != Outcome::Ok => outln!(
            "{record_as}: going on: what comes after it does not need more"
        ),
        None => {}
    }
}

/// Runs step `name`, recorded in the report as `--as NAME` (default: the step's name).
/// As a service (`by_hand` false): exit 0 exactly when what waits on it may go on. By
/// hand: exit 0 when it did all its work (or, with `--degraded-ok`, some of it).
pub(crate) fn run_step(options: &Options, name: &str, by_hand: bool) -> i32 {
    crate::logging::init(log::LevelFilter::Warn);
    let Some(step) = StepName::parse(name) else {
        let names: Vec<&str> = StepName::ALL.iter().map(|s| s.as_str()).collect();
        errln!(
            "initagent: step: unknown step {name:?} (one of: {})",
            names.join(", ")
        );
        return 2;
    };
    let mut ctx = context(options);
    if by_hand {
        // A person asked for this step: `initagent.skip` is for the boot's own runs.
        ctx.config.skip.clear();
    }
    // In the report, a run without `--as` is `<step>-by-hand`: stage 1's own record of
    // the step stays as it was.
    let shown = options.record_as.as_deref().unwrap_or(step.as_str());
    let record_as = options
        .record_as
        .clone()
        .unwrap_or_else(|| format!("{}-by-hand", step.as_str()));
    let mut seen = |attempt: &Attempt, again| show(step, shown, attempt, again, options.json);
    if let Some(period) = options.watch {
        if step != StepName::Flists {
            errln!("initagent: step: --watch is for flists only");
            return 2;
        }
        let period = Duration::from_secs(period.max(1));
        return guard(&ctx, &record_as, period, &mut seen);
    }
    let last = oneshot::run(
        step,
        &ctx,
        &record_as,
        options.retry,
        &mut std::thread::sleep,
        &mut seen,
    );
    if !by_hand {
        return i32::from(!last.go_on);
    }
    match last.outcome() {
        Outcome::Ok | Outcome::Skipped => 0,
        Outcome::Degraded if options.degraded_ok => 0,
        _ => 1,
    }
}

/// `--watch`: the flists' supervisor after the handoff (a zinit service, restarted by
/// zinit if it dies). Every `period` it looks at the mounts (each look bounded); one that
/// is stale, whose daemon is stopped or gone, or that went missing is mounted again by
/// the step, recorded in the report as `record_as`. A daemon that stays busy and does not
/// answer for three looks in a row counts as stuck. Never returns.
fn guard(
    ctx: &Ctx,
    record_as: &str,
    period: Duration,
    seen: &mut dyn FnMut(&Attempt, Option<Duration>),
) -> i32 {
    let mut stuck = std::collections::BTreeMap::new();
    let mut failures = 0;
    loop {
        let wait = if failures == 0 {
            period
        } else {
            oneshot::backoff(failures - 1).max(period)
        };
        std::thread::sleep(wait);
        let broken = crate::step::flists::broken(ctx, &mut stuck);
        if broken.is_empty() {
            failures = 0;
            continue;
        }
        outln!("{record_as}: {}; mounting again", broken.join("; "));
        let attempt = oneshot::run(
            StepName::Flists,
            ctx,
            record_as,
            false,
            &mut std::thread::sleep,
            seen,
        );
        failures = if attempt.go_on { 0 } else { failures + 1 };
    }
}

/// `initagent step NAME`.
pub(crate) fn step(options: &Options) -> i32 {
    match options.positional.as_slice() {
        [name] => run_step(options, name, false),
        _ => {
            errln!("initagent: step: name one step (initagent step modules)");
            2
        }
    }
}
