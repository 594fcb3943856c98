//! `initagent report send` (the boot report off the node, what the `initagent-report`
//! service runs) and `initagent fleet report` (the nodes' reports read back from a store).

use super::Options;
use crate::flist::store::objects::ObjectKey;
use crate::flist::store::{self, StoreOptions};
use crate::report::fleet;
use crate::report::upload::{self, Envelope, UploadError};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of `report send` and `fleet report`.
#[derive(Debug, Default)]
pub(crate) struct ReportOptions {
    pub retry_for: u64,
    pub always: bool,
    pub store: Option<String>,
    pub store_file: Option<PathBuf>,
}

/// `initagent report send`.
pub(crate) fn send(options: &Options) -> i32 {
    crate::logging::init(log::LevelFilter::Warn);
    let config = super::effective_config(options);
    let by = options
        .record_as
        .clone()
        .unwrap_or_else(|| "by-hand".into());
    let show = |value: serde_json::Value, text: &str| {
        if options.json {
            super::print_json(&value);
        } else {
            outln!("{text}");
        }
    };
    if config.report_url.is_none() {
        show(
            serde_json::json!({"sent": false, "why": "no report_url"}),
            "no report_url configured (initagent.report_url): the report stays on the node",
        );
        return 0;
    }
    let run = match options.paths.report.parent() {
        Some(dir) => crate::rundir::RunDir::at(dir),
        None => crate::rundir::RunDir::default(),
    };
    let deadline = Instant::now() + Duration::from_secs(options.report.retry_for);
    for attempt in 0u32.. {
        let report = match crate::report::load(&options.paths.report) {
            Ok(report) => report,
            Err(e) => {
                errln!("initagent: report send: {e}");
                return 1;
            }
        };
        if attempt == 0 && !options.report.always {
            // After a degraded or failed boot the report goes again (it now also holds
            // what the services did); a clean one that stage 1 sent is not sent twice.
            let clean = crate::report::verdict::stage1_clean(&report);
            if let Some(last) = upload::last_sent(&run).filter(|l| l.ok && clean) {
                show(
                    serde_json::json!({"sent": false, "why": "sent already", "last": last}),
                    &format!(
                        "sent already by {} as {} to {}; a clean boot: nothing to send again (--always sends anyway)",
                        last.by, last.key, last.store
                    ),
                );
                return 0;
            }
        }
        match upload::send_report(&config, &report, &run, &by) {
            Ok(sent) => {
                show(
                    serde_json::json!({"sent": true, "record": sent}),
                    &format!("sent to {} as {}", sent.store, sent.key),
                );
                return 0;
            }
            Err(UploadError::NotConfigured) => return 0,
            Err(e) => {
                let wait = crate::step::oneshot::backoff(attempt);
                if Instant::now() + wait >= deadline {
                    errln!("initagent: report send: not sent: {e}");
                    return 1;
                }
                errln!(
                    "initagent: report send: not sent: {e}; trying again in {} s",
                    wait.as_secs()
                );
                std::thread::sleep(wait);
            }
        }
    }
    1
}

/// The store `fleet report` reads: `--store` (a directory, or a URL without a
/// credential) or the URL in `--store-file`. Err: the exit code (2 for a wrong command
/// line) and why.
fn fleet_store(options: &Options) -> Result<String, (i32, String)> {
    let usage = |why: String| Err((2, format!("{why} (initagent fleet report --help)")));
    let given = match (&options.report.store, &options.report.store_file) {
        (Some(_), Some(_)) => return usage("give --store or --store-file, not both".into()),
        (None, None) => {
            return usage("name the store: --store URL|DIR or --store-file FILE".into())
        }
        (Some(url), None) => {
            if crate::redact::has_password(url) {
                return usage(format!(
                    "--store {}: a credential on the command line is visible to every user of this machine; put the URL in a file (mode 0600) and pass --store-file FILE",
                    crate::redact::url(url)
                ));
            }
            url.clone()
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| (1, format!("--store-file {}: {e}", path.display())))?
            .trim()
            .to_string(),
    };
    Ok(if given.contains("://") {
        given
    } else {
        let path = std::path::absolute(&given).map_err(|e| (1, format!("{given}: {e}")))?;
        format!("dir://{}", path.display())
    })
}

/// Reads every report under `reports/` (a few requests at a time): the envelopes, and
/// the keys that could not be read or were not reports, with why.
fn read_reports(
    store: &dyn store::BlockStore,
) -> Result<(Vec<Envelope>, Vec<String>), store::StoreError> {
    let prefix = ObjectKey::new(upload::PREFIX)?;
    let keys: Vec<ObjectKey> = store
        .list_objects(&prefix)?
        .into_iter()
        .filter(|k| k.as_str().ends_with(".json"))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..8.min(keys.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(key) = keys.get(i) else { break };
                let read = store
                    .get_object(key)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| {
                        serde_json::from_slice::<Envelope>(&bytes).map_err(|e| e.to_string())
                    });
                if let Ok(mut results) = results.lock() {
                    results.push((key.to_string(), read));
                }
            });
        }
    });
    let mut envelopes = Vec::new();
    let mut unreadable = Vec::new();
    for (key, read) in results.into_inner().unwrap_or_default() {
        match read {
            Ok(envelope) if envelope.schema == upload::SCHEMA => envelopes.push(envelope),
            Ok(envelope) => unreadable.push(format!(
                "{key}: schema {}, not {}",
                envelope.schema,
                upload::SCHEMA
            )),
            Err(e) => unreadable.push(format!("{key}: {e}")),
        }
    }
    unreadable.sort();
    Ok((envelopes, unreadable))
}

/// `initagent fleet report`.
pub(crate) fn fleet(options: &Options) -> i32 {
    crate::logging::init(log::LevelFilter::Warn);
    let fail = |e: String| {
        errln!("initagent: fleet report: {e}");
        1
    };
    let url = match fleet_store(options) {
        Ok(url) => url,
        Err((code, e)) => {
            errln!("initagent: fleet report: {e}");
            return code;
        }
    };
    let mut store_options = StoreOptions::default();
    if let Some(seconds) = options.flist.store_timeout {
        store_options.request_timeout = Duration::from_secs(seconds);
    }
    let store_options = match store_options.with_ca_file(options.flist.ca_file.as_deref()) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let shown = store::redact(&url);
    let store = match store::open(&url, &store_options) {
        Ok(store) => store,
        Err(e) => return fail(format!("{shown}: {e}")),
    };
    let (envelopes, unreadable) = match read_reports(store.as_ref()) {
        Ok(read) => read,
        Err(e) => return fail(format!("{shown}: {e}")),
    };
    for line in &unreadable {
        errln!("initagent: fleet report: skipped {line}");
    }
    let view = fleet::aggregate(&envelopes);
    if let Some(path) = &options.svg {
        if let Err(e) = crate::fsutil::write_atomic(path, fleet::render_svg(&view).as_bytes()) {
            return fail(format!("{}: {e}", path.display()));
        }
    }
    if options.json {
        super::print_json(
            &serde_json::json!({ "store": shown, "fleet": view, "skipped": unreadable }),
        );
    } else {
        out!("{}", fleet::render_text(&view, &shown));
        if let Some(path) = &options.svg {
            outln!("chart written to {}", path.display());
        }
    }
    if envelopes.is_empty() {
        return fail(format!("no reports under {shown}/{}/", upload::PREFIX));
    }
    0
}
