//! Hands PID 1 over to the next init (zinit by default): record the step and the result
//! in the report, then `execve` in place, keeping the process id. Returns only when the
//! target is missing or the exec fails, with a message that says which.

use super::runner::StepRunner;
use crate::report::{Outcome, StageResult};
use crate::sys;
use std::path::Path;

/// Checks the target, writes the report and executes `argv`; `last` sees the finished
/// report just before the exec (it sends it off the node). Returns the failure.
pub fn handoff(
    runner: &mut StepRunner,
    argv: &[String],
    last: &mut dyn FnMut(&crate::report::Report),
) -> String {
    runner.maybe_break("handoff");
    let start = runner.begin("handoff");
    let problem = match argv.first() {
        None => Some("no handoff command configured".to_string()),
        Some(program) => {
            let path = Path::new(program);
            match path.metadata() {
                Err(_) => Some(format!("handoff target {program} does not exist")),
                Ok(m) if !m.is_file() => Some(format!("handoff target {program} is not a file")),
                Ok(_) if !sys::is_executable(path) => {
                    Some(format!("handoff target {program} is not executable"))
                }
                Ok(_) => None,
            }
        }
    };
    let command = argv.join(" ");
    let why = match problem {
        Some(why) => why,
        None => {
            // The agent's own peak memory: exec replaces it, so this is the last look.
            let mut counters: std::collections::BTreeMap<String, u64> = sys::peak_rss_kib("self")
                .map(|kib| [("peak_rss_kib".to_string(), kib)].into_iter().collect())
                .unwrap_or_default();
            // This boot's blocks on the cache device, before anything else runs.
            let record = Path::new(crate::rundir::CACHE_RECORD);
            if let Some(took) = crate::cachedev::flush(record) {
                counters.insert("cache_flush_ms".into(), took.as_millis() as u64);
            }
            runner.finish(
                "handoff",
                start,
                Outcome::Ok,
                format!("exec {command}"),
                counters,
            );
            runner.report.result = Some(StageResult {
                status: "handed-off".into(),
                detail: command.clone(),
                at_us: sys::monotonic_us(),
            });
            runner.save();
            crate::report::verdict::announce(&runner.report);
            last(&runner.report);
            log::logger().flush();
            let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            let error = sys::process::exec(argv, &env);
            format!("exec {command}: {error}")
        }
    };
    runner.finish(
        "handoff",
        start,
        Outcome::Failed,
        why.clone(),
        Default::default(),
    );
    runner.report.result = Some(StageResult {
        status: "failed".into(),
        detail: why.clone(),
        at_us: sys::monotonic_us(),
    });
    runner.save();
    why
}
