//! `initagent depmod check|stamp|ensure`: the dependency maps of a module tree.

use super::Options;
use crate::depmod::check::{self, CheckReport, Status};
use crate::depmod::ensure::{self, EnsureOptions};
use crate::depmod::{stamp, view::TreeView};
use std::path::{Path, PathBuf};

/// The tree the options name: (root, release, running release when it is the live system).
fn target(options: &Options) -> (PathBuf, String, Option<String>) {
    let root = if options.modules.root.as_os_str().is_empty() {
        PathBuf::from("/")
    } else {
        options.modules.root.clone()
    };
    let running = crate::sys::kernel_release();
    let release = options
        .modules
        .kernel
        .clone()
        .unwrap_or_else(|| running.clone());
    let live = (root == Path::new("/")).then_some(running);
    (root, release, live)
}

fn print_check(report: &CheckReport) {
    outln!("{} ({})", report.dir, report.release);
    for c in &report.checks {
        let status = match c.status {
            Status::Pass => "ok",
            Status::Fail => "MISMATCH",
            Status::Skip => "skipped",
        };
        outln!("  {:<15} {status}", c.id);
        for reason in &c.reasons {
            outln!("      {reason}");
        }
    }
    let a = &report.accounting;
    outln!(
        "read {} files, {} bytes ({} module files, {} module bytes); {} entries looked at; {} ms",
        a.files_opened,
        a.bytes_read,
        a.module_files_opened,
        a.module_bytes_read,
        a.entries_stat,
        report.micros / 1000
    );
    match report.exit_code() {
        0 => outln!("valid"),
        1 => outln!(
            "MISMATCH: the maps do not fit this tree (`initagent depmod ensure` repairs them)"
        ),
        _ => outln!(
            "could not check: {}",
            report.error.as_deref().unwrap_or("?")
        ),
    }
}

/// `initagent depmod SUBCOMMAND`.
pub(crate) fn run(options: &Options) -> i32 {
    crate::logging::init(log::LevelFilter::Warn);
    let (root, release, live) = target(options);
    match options.positional.first().map(String::as_str) {
        Some("check") => {
            let report = check::check(&root, &release, live.as_deref(), options.deep);
            if options.json {
                super::print_json(&report);
            } else {
                print_check(&report);
            }
            // Wrong maps and maps that could not be checked both fail (the text and
            // the JSON's `error` tell them apart); 2 is for a wrong command line only.
            report.exit_code().min(1)
        }
        Some("stamp") => {
            // A stamp vouches for the maps: check them fully first.
            let report = check::check(&root, &release, None, true);
            let failed: Vec<String> = report
                .failed()
                .iter()
                .filter(|c| check::REPAIRABLE.contains(&c.id))
                .flat_map(|c| c.reasons.iter().map(move |r| format!("{}: {r}", c.id)))
                .collect();
            if report.exit_code() == 2 || !failed.is_empty() {
                errln!("initagent: depmod stamp: refusing to stamp a tree whose maps are wrong:");
                for line in failed.iter().chain(report.error.iter()) {
                    errln!("  {line}");
                }
                return 1;
            }
            let view = TreeView::new(root.join("lib/modules").join(&release));
            match stamp::create(&view, &release).and_then(|s| {
                stamp::write(&view, &s)
                    .map_err(|e| format!("{}: {e}", view.dir.join(stamp::STAMP_FILE).display()))?;
                Ok(s)
            }) {
                Ok(s) => {
                    outln!(
                        "stamped {} modules in {}",
                        s.modules.len(),
                        view.dir.join(stamp::STAMP_FILE).display()
                    );
                    0
                }
                Err(e) => {
                    errln!("initagent: depmod stamp: {e}");
                    1
                }
            }
        }
        Some("ensure") => {
            let output = options
                .depmod_output
                .clone()
                .unwrap_or_else(|| PathBuf::from(ensure::DEFAULT_OUTPUT));
            let ensure_options = EnsureOptions {
                root: &root,
                release: &release,
                running: live.as_deref(),
                output: &output,
                place: !options.no_mount,
                in_process: options.in_process,
            };
            match ensure::ensure(&ensure_options) {
                Ok(report) => {
                    if options.json {
                        super::print_json(&report);
                    } else {
                        print_check(&report.check);
                        outln!("action: {}", report.action);
                        if let Some(out) = &report.output {
                            outln!(
                                "regenerated into {out}; mounted over the tree: {}",
                                report.placed.join(" ")
                            );
                        }
                        for line in report.not_placed.iter().chain(&report.warnings) {
                            outln!("  note: {line}");
                        }
                    }
                    0
                }
                Err(e) => super::cannot_run("depmod ensure", e, options.degraded_ok),
            }
        }
        _ => {
            errln!("initagent: depmod: say check, stamp or ensure");
            2
        }
    }
}
