//! `initagent flists` and `initagent prefetch`: the stage-1 steps of the same names on a
//! live node (zinit services, operators): mount the firmware and modules flists the image
//! carries manifests for, and prefetch what this node will load from them.

use super::Options;
use crate::report::Outcome;
use crate::stage1::flists::{self, MANIFEST_DIR};
use crate::stage1::modules::BOOTSTRAP_LIST;
use crate::stage1::runner::StepDone;
use std::path::Path;

fn show(command: &str, done: &StepDone, json: bool) {
    if json {
        let value = serde_json::json!({
            "outcome": done.outcome.as_str(),
            "detail": done.detail,
            "counters": done.counters,
        });
        super::print_json(&value);
    } else {
        outln!("{command}: {}: {}", done.outcome.as_str(), done.detail);
    }
}

fn exit_code(done: &StepDone, degraded_ok: bool) -> i32 {
    match done.outcome {
        Outcome::Ok | Outcome::Skipped => 0,
        Outcome::Degraded if degraded_ok => 0,
        _ => 1,
    }
}

/// `initagent flists [--retry]`: mounts what is not mounted yet; already mounted flists
/// are left as they are.
pub(crate) fn flists(options: &Options) -> i32 {
    crate::logging::init(log::LevelFilter::Warn);
    let config = super::effective_config(options);
    super::with_retry("flists", options.retry, || {
        match flists::mount_all(&config, Path::new(MANIFEST_DIR), &Default::default()) {
            Ok(done) => {
                show("flists", &done, options.json);
                exit_code(&done, options.degraded_ok)
            }
            Err(e) => {
                errln!("initagent: flists: {e}");
                1
            }
        }
    })
}

/// `initagent prefetch`: the boot-critical prefetch over the flists mounted now.
pub(crate) fn prefetch(options: &Options) -> i32 {
    crate::logging::init(log::LevelFilter::Warn);
    let loaded = crate::stage1::load_config(&options.paths);
    let mounted = flists::open_mounted(&loaded.config, Path::new(MANIFEST_DIR));
    let lists = [
        Path::new(BOOTSTRAP_LIST),
        Path::new(crate::kmod::DEFAULT_LIST),
    ];
    match crate::stage1::prefetch::boot_critical(&loaded.config, &loaded.cmdline, &lists, &mounted)
    {
        Ok(done) => {
            show("prefetch", &done, options.json);
            exit_code(&done, options.degraded_ok)
        }
        Err(e) => {
            errln!("initagent: prefetch: {e}");
            1
        }
    }
}
