//! Runs stage-1 steps and records each in the boot report: start and end on the
//! monotonic clock, outcome, a one-line detail and counters. A step that panics is
//! recorded as failed and the boot goes on.

use crate::report::{self, Outcome, Report, Step};
pub use crate::step::StepDone;
use crate::step::StepError;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;

/// Owns the report while stage 1 runs.
pub struct StepRunner {
    /// The report being built.
    pub report: Report,
    /// Steps to record as skipped instead of running (`initagent.skip`).
    pub skip: Vec<String>,
    /// The step to stop before with a shell (`initagent.break`).
    pub break_before: Option<String>,
    path: PathBuf,
    persist: bool,
    last_step: Option<String>,
}

impl StepRunner {
    /// A runner writing to `path` once [`StepRunner::start_persisting`] is called (the
    /// directory may not be mounted yet when the first step runs).
    pub fn new(path: PathBuf, report: Report) -> Self {
        StepRunner {
            report,
            skip: Vec::new(),
            break_before: None,
            path,
            persist: false,
            last_step: None,
        }
    }

    /// Where the report is written.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// From now on, write the report after every change.
    pub fn start_persisting(&mut self) {
        self.persist = true;
        self.save();
    }

    /// Writes the report now (errors are logged, never fatal).
    pub fn save(&self) {
        if !self.persist {
            return;
        }
        if let Err(e) = report::replace(&self.path, &self.report) {
            log::warn!("{e}");
        }
    }

    /// Starts a step that depends on the previous one, runs `body`, records the result.
    pub fn run(
        &mut self,
        name: &str,
        body: impl FnOnce() -> Result<StepDone, StepError>,
    ) -> Outcome {
        self.maybe_break(name);
        self.run_now(name, body)
    }

    fn run_now(
        &mut self,
        name: &str,
        body: impl FnOnce() -> Result<StepDone, StepError>,
    ) -> Outcome {
        let start = self.begin(name);
        if self.skip.iter().any(|s| s == name) {
            let detail = format!("skipped by {}.skip", crate::config::CMDLINE_PREFIX);
            self.finish(name, start, Outcome::Skipped, detail, BTreeMap::new());
            return Outcome::Skipped;
        }
        let result = catch_unwind(AssertUnwindSafe(body));
        let (outcome, detail, counters) = match result {
            Ok(Ok(done)) => (done.outcome, done.detail, done.counters),
            Ok(Err(why)) => (Outcome::Failed, why.to_string(), BTreeMap::new()),
            Err(panic) => (
                Outcome::Failed,
                StepError::Panicked(panic_message(&panic)).to_string(),
                BTreeMap::new(),
            ),
        };
        self.finish(name, start, outcome, detail, counters);
        outcome
    }

    /// With `initagent.break=<name>`: a shell on the console before the step, recorded as
    /// the step `break`; the boot goes on when the shell ends.
    pub fn maybe_break(&mut self, name: &str) {
        if self.break_before.as_deref() != Some(name) {
            return;
        }
        let start = self.begin("break");
        super::failure::shell(
            &format!("(initagent break before {name}) # "),
            &format!("stage 1 goes on with {name} when it ends"),
        );
        let detail = format!("shell before {name} (initagent.break={name})");
        self.finish("break", start, Outcome::Ok, detail, BTreeMap::new());
    }

    /// Like [`StepRunner::run`], but the boot waits at most `deadline`: past it the step
    /// is recorded as failed and left running on its own thread.
    pub fn run_bounded(
        &mut self,
        name: &str,
        deadline: std::time::Duration,
        body: impl FnOnce() -> Result<StepDone, StepError> + Send + 'static,
    ) -> Outcome {
        if self.skip.iter().any(|s| s == name) {
            return self.run(name, || Ok(StepDone::skipped("")));
        }
        self.maybe_break(name);
        let receiver = spawn_step(name, body);
        self.run_now(name, || wait_step(receiver, deadline, deadline))
    }

    /// Starts a step on its own thread and returns at once: the steps after it run
    /// meanwhile, and [`StepRunner::join_background`] records its end. It is not on the
    /// main line: the next step does not count as waiting for it.
    pub fn start_background(
        &mut self,
        name: &str,
        deadline: std::time::Duration,
        body: impl FnOnce() -> Result<StepDone, StepError> + Send + 'static,
    ) -> Option<Background> {
        if self.skip.iter().any(|s| s == name) {
            self.run(name, || Ok(StepDone::skipped("")));
            return None;
        }
        self.maybe_break(name);
        let start = self.begin(name);
        Some(Background {
            name: name.to_string(),
            start,
            deadline: std::time::Instant::now() + deadline,
            limit: deadline,
            receiver: spawn_step(name, body),
        })
    }

    /// Waits for a background step (until its deadline at most) and records its end.
    /// With `main_line`, the next step counts as waiting for it (it was the line's last
    /// part: coldplug beside the baseline); without, the line stays where it was.
    pub fn join_background(&mut self, step: Background, main_line: bool) {
        let left = step
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        let result = wait_step(step.receiver, left, step.limit);
        let (outcome, detail, counters) = match result {
            Ok(done) => (done.outcome, done.detail, done.counters),
            Err(why) => (Outcome::Failed, why.to_string(), BTreeMap::new()),
        };
        let line = self.last_step.clone();
        self.finish(&step.name, step.start, outcome, detail, counters);
        if !main_line {
            self.last_step = line;
        }
    }

    /// Records the start of `name` (outcome `running`) and returns its start time.
    pub fn begin(&mut self, name: &str) -> u64 {
        let start = crate::sys::monotonic_us();
        let after = self.last_step.iter().cloned().collect();
        self.report.upsert_step(Step {
            name: name.to_string(),
            start_us: start,
            end_us: None,
            outcome: Outcome::Running,
            detail: String::new(),
            counters: BTreeMap::new(),
            after,
            pid: crate::sys::pid(),
            unit: None,
        });
        self.save();
        start
    }

    /// Records the end of a step started with [`StepRunner::begin`].
    pub fn finish(
        &mut self,
        name: &str,
        start: u64,
        outcome: Outcome,
        detail: String,
        counters: BTreeMap<String, u64>,
    ) {
        let end = crate::sys::monotonic_us();
        match outcome {
            Outcome::Failed => log::error!("{name}: failed: {detail}"),
            Outcome::Degraded => log::warn!("{name}: degraded: {detail}"),
            _ => log::info!(
                "{name}: {} in {} ms: {detail}",
                outcome.as_str(),
                (end - start) / 1000
            ),
        }
        if let Some(step) = self.report.steps.iter_mut().find(|s| s.name == name) {
            step.end_us = Some(end);
            step.outcome = outcome;
            step.detail = detail;
            step.counters = counters;
        }
        self.last_step = Some(name.to_string());
        self.save();
    }
}

/// A step started with [`StepRunner::start_background`].
pub struct Background {
    name: String,
    start: u64,
    deadline: std::time::Instant,
    limit: std::time::Duration,
    receiver: Result<Receiver<Result<StepDone, StepError>>, StepError>,
}

/// Runs `body` on a thread named after the step; a panic becomes an error.
pub(crate) fn spawn_step(
    name: &str,
    body: impl FnOnce() -> Result<StepDone, StepError> + Send + 'static,
) -> Result<Receiver<Result<StepDone, StepError>>, StepError> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(body))
                .unwrap_or_else(|panic| Err(StepError::Panicked(panic_message(&panic))));
            let _ = sender.send(result);
        })
        .map_err(|e| StepError::System {
            what: "a thread for the step",
            why: e.to_string(),
        })?;
    Ok(receiver)
}

/// The step's result, or an error once `wait` passed (saying the step's `limit`).
pub(crate) fn wait_step(
    receiver: Result<Receiver<Result<StepDone, StepError>>, StepError>,
    wait: std::time::Duration,
    limit: std::time::Duration,
) -> Result<StepDone, StepError> {
    match receiver?.recv_timeout(wait) {
        Ok(result) => result,
        Err(_) => Err(StepError::Deadline(limit)),
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_outcomes_dependencies_and_panics() {
        let mut runner =
            StepRunner::new(PathBuf::from("/nonexistent/report.json"), Report::default());
        assert_eq!(
            runner.run("a", || Ok(StepDone::ok("fine").count("n", 3))),
            Outcome::Ok
        );
        assert_eq!(
            runner.run("b", || Err(StepError::System {
                what: "network",
                why: "no link".into()
            })),
            Outcome::Failed
        );
        assert_eq!(runner.run("c", || panic!("bug {}", 42)), Outcome::Failed);
        let steps = &runner.report.steps;
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[0].counters["n"], 3);
        assert!(steps[0].after.is_empty());
        assert_eq!(steps[1].after, ["a"]);
        assert_eq!(steps[1].detail, "network: no link");
        assert_eq!(steps[2].detail, "panicked: bug 42");
        assert!(steps.iter().all(|s| s.end_us >= Some(s.start_us)));
    }

    #[test]
    fn bounded_steps_cannot_hold_the_boot() {
        let mut runner =
            StepRunner::new(PathBuf::from("/nonexistent/report.json"), Report::default());
        let short = std::time::Duration::from_millis(50);
        let outcome = runner.run_bounded("hang", short, || {
            std::thread::sleep(std::time::Duration::from_secs(5));
            Ok(StepDone::ok("never seen"))
        });
        assert_eq!(outcome, Outcome::Failed);
        assert!(runner.report.steps[0]
            .detail
            .contains("did not finish within"));
        let outcome = runner.run_bounded("quick", short * 20, || {
            Ok(StepDone::skipped("nothing to do"))
        });
        assert_eq!(outcome, Outcome::Skipped);
        assert_eq!(
            runner.run_bounded("boom", short * 20, || panic!("bad")),
            Outcome::Failed
        );
    }

    #[test]
    fn background_steps_run_beside_the_main_line_and_are_bounded() {
        let mut runner =
            StepRunner::new(PathBuf::from("/nonexistent/report.json"), Report::default());
        runner.run("first", || Ok(StepDone::ok("")));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let beside = runner
            .start_background("beside", std::time::Duration::from_secs(30), move || {
                // Ends only once the main-line step below has run.
                wait.recv()
                    .map_err(|e| StepError::Panicked(e.to_string()))?;
                Ok(StepDone::ok("done").count("n", 1))
            })
            .unwrap();
        runner.run("main", move || {
            release
                .send(())
                .map_err(|e| StepError::Panicked(e.to_string()))?;
            Ok(StepDone::ok(""))
        });
        runner.join_background(beside, false);
        let hung = runner
            .start_background("hung", std::time::Duration::from_millis(50), || {
                std::thread::sleep(std::time::Duration::from_secs(5));
                Ok(StepDone::ok("never seen"))
            })
            .unwrap();
        runner.join_background(hung, false);
        runner.run("last", || Ok(StepDone::ok("")));
        let step = |name: &str| runner.report.steps.iter().find(|s| s.name == name).unwrap();
        assert_eq!(step("beside").outcome, Outcome::Ok);
        assert_eq!(step("beside").counters["n"], 1);
        assert_eq!(step("beside").after, ["first"]);
        // Off the main line: the steps after it do not wait for it.
        assert_eq!(step("main").after, ["first"]);
        assert_eq!(step("last").after, ["main"]);
        assert_eq!(step("hung").outcome, Outcome::Failed);
        assert!(step("hung").detail.starts_with("did not finish within 0 s"));
    }
}
