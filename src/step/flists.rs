//! The `flists` step: mount the firmware flist on `/lib/firmware` and the modules flist
//! on `/lib/modules/<release>`, from manifests the initramfs carries
//! (`/etc/initagent/flists/firmware.fl`, `modules-<release>.fl`), each served by its own
//! detached daemon that outlives the handoff.
//!
//! The store is probed before anything is mounted: the first file an flist is needed for
//! (the modules' dependency maps; the firmware's smallest file) is fetched into the
//! shared disk cache. An flist whose store cannot serve it is not mounted, so the tree the
//! initramfs carries stays visible and the boot goes on with it, degraded, with the
//! reason in the report.

use super::{Ctx, StepDone, StepError};
use crate::config::Config;
use crate::flist::daemon::{self, DaemonRequest};
use crate::flist::fs::FlistFs;
use crate::flist::mount::{self, MountState, OpenOptions};
use crate::flist::prefetch;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the initramfs keeps the flist manifests.
pub const MANIFEST_DIR: &str = "/etc/initagent/flists";
/// The disk caches of the stage-1 flists (`<dir>/<name>`, tmpfs).
pub const CACHE_DIR: &str = crate::rundir::CACHES;

/// An flist stage 1 mounted, with the agent's own handle on it (same manifest, same disk
/// cache as the daemon) for the prefetch.
#[derive(Clone)]
pub struct Mounted {
    /// `firmware` or `modules`.
    pub name: &'static str,
    /// The mount point.
    pub target: PathBuf,
    /// The agent's handle.
    pub fs: Arc<FlistFs>,
}

/// The disk caches sharing `/run`: one for each flist [`wanted`] names.
const CACHES: u64 = 2;

/// What the flists step hands to the steps after it.
pub type Shared = Arc<Mutex<Vec<Mounted>>>;

/// The flists of this kernel release, firmware first: (name, manifest, mount point).
pub fn wanted(manifest_dir: &Path, release: &str) -> Vec<(&'static str, PathBuf, PathBuf)> {
    vec![
        (
            "firmware",
            manifest_dir.join("firmware.fl"),
            PathBuf::from("/lib/firmware"),
        ),
        (
            "modules",
            manifest_dir.join(format!("modules-{release}.fl")),
            Path::new("/lib/modules").join(release),
        ),
    ]
}

/// The files fetched before mounting, proving the store serves the flist: the modules'
/// maps stage 1 reads next (the binary indexes but the symbols', softdeps, the content
/// stamp unless the manifest's maps proof holds for `release`), or the smallest file of
/// any other flist.
fn probe_paths(name: &str, fs: &FlistFs, release: &str) -> Vec<String> {
    let manifest = &fs.manifest;
    if name == "modules" {
        let maps: Vec<&str> = manifest
            .children(1)
            .iter()
            .filter_map(|ino| manifest.inode(*ino))
            .filter(|inode| inode.is_file() && inode.name.starts_with("modules."))
            .map(|inode| inode.name.as_str())
            .collect();
        // What stage 1 reads next: the indexes its resolver opens, the softdeps and the
        // content stamp the maps check reads (not when the packed proof holds: the check
        // does not read it then). Not `modules.symbols.bin` (the largest: only `symbol:`
        // requests read it, when they come), nor the text maps and depmod's inputs
        // (`modules.order`, `modules.builtin.modinfo`: read only to regenerate).
        let proven = crate::depmod::proof::holds(manifest, release);
        let wanted: Vec<String> = maps
            .iter()
            .filter(|map| {
                (map.ends_with(".bin") && **map != "modules.symbols.bin")
                    || **map == "modules.softdep"
                    || (**map == crate::depmod::stamp::STAMP_FILE && !proven)
            })
            .map(|map| format!("/{map}"))
            .collect();
        if !wanted.is_empty() {
            return wanted;
        }
    }
    let smallest = manifest
        .inodes()
        .filter(|inode| inode.is_file() && inode.size > 0)
        .min_by_key(|inode| inode.size)
        .map(|inode| inode.ino);
    smallest
        .map(|ino| manifest.path_of(ino))
        .into_iter()
        .collect()
}

/// How stage 1 opens flist `name`: its own disk cache, the configured stores and timeout.
fn open_options(name: &str, config: &Config) -> OpenOptions {
    let mut open = OpenOptions::new();
    open.stores = config.flist_stores.clone();
    let caches =
        crate::cachedev::caches_dir(Path::new(crate::rundir::CACHE_RECORD), Path::new(CACHE_DIR));
    open.cache_dir = Some(caches.join(name));
    open.cache_bytes = if caches == Path::new(CACHE_DIR) {
        // /run is memory: the caches of the flists follow what the node has.
        crate::flist::cache::bound_here(Path::new(CACHE_DIR), open.cache_bytes, CACHES)
    } else {
        // The cache device: a share of the room its filesystem has (it may be shared).
        crate::flist::cache::bound_on_disk(&caches, open.cache_bytes, CACHES)
    };
    open.store_timeout = Some(Duration::from_secs(u64::from(config.flist_store_timeout_s)));
    open.ca_file = config.flist_ca_file.clone();
    // The agent's handle only fills the disk cache the daemon reads; PID 1's memory
    // stays small (its peak is part of the boot's budget: 24 MiB).
    open.memory_bytes = 4 << 20;
    open
}

/// Where one flist's mount spent its time, milliseconds: `<name>_open_ms` (its manifest),
/// `<name>_probe_ms` (the store's answer and the blocks of the files read first),
/// `<name>_daemon_ms` (from the probe's end until its daemon serves: it was started before
/// the probe and read its manifest meanwhile).
type Phases = Vec<(String, u64)>;

/// Opens, probes and mounts one flist.
fn mount_one(
    name: &'static str,
    (manifest, target): (&Path, &Path),
    release: &str,
    config: &Config,
    deadline: Instant,
) -> Result<(Mounted, prefetch::PrefetchReport, Phases), String> {
    let mut phases = Phases::new();
    let mut since = Instant::now();
    let mut phase = |part: &str| {
        phases.push((
            format!("{name}_{part}_ms"),
            since.elapsed().as_millis() as u64,
        ));
        since = Instant::now();
    };
    let open = open_options(name, config);
    let (cache, cache_bytes) = (open.cache_dir.clone(), open.cache_bytes);
    let fs = mount::open(manifest, &open)?;
    phase("open");
    let source = manifest.display().to_string();
    let mounted = |fs| Mounted {
        name,
        target: target.to_path_buf(),
        fs,
    };
    // Served already (a step run again): nothing to probe, nothing to fetch. A stale or
    // stopped daemon's mount is taken down here, before the probe.
    if mount::claim(target, &source, mount::SUBTYPE)? {
        return Ok((mounted(fs), prefetch::PrefetchReport::default(), phases));
    }
    std::fs::create_dir_all(target).map_err(|e| format!("{}: {e}", target.display()))?;
    // The daemon reads its manifest while the store is probed; it mounts only once the
    // probe passed (dropped before, it is killed with nothing mounted).
    let request = DaemonRequest {
        manifest: manifest.to_path_buf(),
        target: target.to_path_buf(),
        cache,
        cache_bytes: Some(cache_bytes),
        stores: config.flist_stores.clone(),
        store_timeout: Some(u64::from(config.flist_store_timeout_s)),
        ca_file: config.flist_ca_file.clone(),
        subtype: mount::SUBTYPE.to_string(),
        allow_other: true,
        stats: Some(Path::new(daemon::STATS_DIR).join(format!("{name}.json"))),
        ..DaemonRequest::default()
    };
    let starting = daemon::spawn(&request)?;
    let stores = mount::describe_routes(&mount::effective_routes(&fs.manifest, &open));
    let paths = probe_paths(name, &fs, release);
    let unreachable = |why: String| format!("store unreachable ({}): {why}", stores.join(", "));
    // One read first: its error says what the store answered.
    if let Some(first) = paths.first().and_then(|p| fs.manifest.resolve(p)) {
        fs.read(first.ino, 0, 1)
            .map_err(|e| unreachable(e.to_string()))?;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let probe = prefetch::prefetch_paths(&fs, &paths, left);
    if probe.failed > 0 || probe.timed_out {
        return Err(unreachable(format!(
            "{} of {} blocks of {} could not be fetched{}",
            probe.failed,
            probe.blocks,
            paths.join(" "),
            if probe.timed_out {
                " before the deadline"
            } else {
                ""
            }
        )));
    }
    phase("probe");
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(2));
    starting.serve(wait)?;
    phase("daemon");
    Ok((mounted(fs), probe, phases))
}

/// The manifests stage 1 mounts, being opened on a thread of their own ([`open_early`]).
type Early = std::thread::JoinHandle<Vec<Arc<crate::flist::meta::Manifest>>>;
static EARLY: Mutex<Option<Early>> = Mutex::new(None);

/// Starts reading the manifests of the flists this image mounts (they are in the
/// initramfs) on a thread of its own, from the start of the boot: every inode, and the
/// modules' block keys the maps check compares. That work then overlaps the bootstrap
/// loads and the wait for a lease instead of holding up this step and the check, which
/// share what was read ([`crate::flist::meta::Manifest::open_shared`]). A manifest that
/// cannot be read is left to this step, which says why.
pub fn open_early(release: &str) {
    let wanted = wanted(Path::new(MANIFEST_DIR), release);
    let started = std::thread::Builder::new()
        .name("manifests".into())
        .spawn(move || {
            let open = |(name, manifest, _): &(&str, PathBuf, PathBuf)| {
                let opened = crate::flist::meta::Manifest::open_shared(manifest).ok()?;
                if *name == "modules" {
                    // What the maps check reads: the digest a packed proof holds, or the
                    // block keys the stamp is compared with.
                    if opened.tags().contains_key(crate::depmod::proof::TAG) {
                        let _ = opened.content_digest();
                    } else {
                        let _ = opened.block_keys();
                    }
                }
                Some(opened)
            };
            wanted.iter().filter_map(open).collect()
        });
    if let Ok(handle) = started {
        *EARLY.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    }
}

/// Mounts every flist the image has a manifest for; degraded when one could not be.
pub fn mount_all(ctx: &Ctx, manifest_dir: &Path) -> Result<StepDone, StepError> {
    if !ctx.live {
        return Ok(StepDone::skipped(
            "not PID 1: a running system's trees are left alone (use `initagent flist mount`)",
        ));
    }
    // What the early reading has (held until the mounts below share it).
    let early = EARLY.lock().unwrap_or_else(|p| p.into_inner()).take();
    let _read_early = early.and_then(|thread| thread.join().ok());
    let (config, shared, release) = (&ctx.config, &ctx.mounted, &ctx.release);
    let deadline = Instant::now() + Duration::from_secs(u64::from(config.flists_deadline_s));
    let mut mounted = Vec::new();
    let mut problems = Vec::new();
    let (mut probe_bytes, mut probe_blocks) = (0u64, 0u64);
    let mut all_phases = Phases::new();
    let mut clock_offset = None;
    let wanted: Vec<_> = wanted(manifest_dir, release)
        .into_iter()
        .filter(|(_, manifest, _)| manifest.exists())
        .collect();
    // Each flist probed and mounted on a thread of its own (their stores may differ; the
    // firmware's probe and daemon need not wait for the modules' maps), recorded in order.
    let results: Vec<_> = std::thread::scope(|scope| {
        let running: Vec<_> = wanted
            .iter()
            .map(|(name, manifest, target)| {
                scope.spawn(move || mount_one(name, (manifest, target), release, config, deadline))
            })
            .collect();
        running
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|panic| Err(crate::stage1::runner::panic_message(&panic)))
            })
            .collect()
    });
    for ((name, manifest, target), result) in wanted.into_iter().zip(results) {
        match result {
            Ok((flist, probe, phases)) => {
                all_phases.extend(phases);
                probe_bytes += flist.fs.source.stats().bytes_fetched;
                clock_offset = clock_offset.or(flist.fs.source.router().clock_offset());
                probe_blocks += probe.blocks;
                mounted.push(format!("{name} on {}", target.display()));
                shared.lock().unwrap_or_else(|p| p.into_inner()).push(flist);
            }
            Err(why) => {
                let fallback = if name == "modules" {
                    "the initramfs's own modules are used"
                } else {
                    "firmware comes from the initramfs only"
                };
                problems.push(format!(
                    "{name} ({}): {why}; not mounted, {fallback}",
                    manifest.display()
                ));
            }
        }
    }
    if mounted.is_empty() && problems.is_empty() {
        return Ok(StepDone::skipped(format!(
            "no flist manifests in {} for {release}",
            manifest_dir.display()
        )));
    }
    let mut detail = if mounted.is_empty() {
        "nothing mounted".to_string()
    } else {
        format!("mounted {}", mounted.join(", "))
    };
    if let Some(offset) = clock_offset {
        detail.push_str(&format!(
            "; the node's clock is off the store's by {} (requests signed with the store's time)",
            signed_duration(offset)
        ));
    }
    let done = if problems.is_empty() {
        StepDone::ok(detail)
    } else {
        detail = format!("{}; {detail}", problems.join("; "));
        StepDone::degraded(detail)
    };
    let mut done = match clock_offset {
        Some(offset) => done.count("clock_off_by_s", offset.unsigned_abs()),
        None => done,
    };
    for (part, ms) in &all_phases {
        done = done.count(part, *ms);
    }
    Ok(done
        .count("mounted", mounted.len() as u64)
        .count("failed", problems.len() as u64)
        .count("probe_blocks", probe_blocks)
        .count("bytes_fetched", probe_bytes))
}

/// `+3h02m05s`, `-45s`: how far off a clock is.
fn signed_duration(seconds: i64) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sign}{sec}s"),
        (0, min, sec) => format!("{sign}{min}m{sec:02}s"),
        (h, min, sec) => format!("{sign}{h}h{min:02}m{sec:02}s"),
    }
}

/// What is wrong with this node's flist mounts, one line each: stale (daemon gone),
/// daemon stopped, not answering for three looks in a row (counted in `stuck`, then its
/// daemon is taken down), or missing. Mounts that are not ours are left alone.
pub fn broken(ctx: &Ctx, stuck: &mut std::collections::BTreeMap<PathBuf, u32>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, manifest, target) in wanted(Path::new(MANIFEST_DIR), &ctx.release) {
        if !manifest.exists() {
            continue;
        }
        let problem = match mount::state(&target, mount::SUBTYPE) {
            MountState::Ours { .. } | MountState::Other { .. } => None,
            MountState::Absent => Some("not mounted".to_string()),
            MountState::Stale { .. } => Some("stale: its daemon is gone".to_string()),
            MountState::NotAnswering { connection, .. } => {
                let running = !crate::flist::daemon::silence(&target).is_dead();
                let looks = stuck.get(&target).copied().unwrap_or(0) + 1;
                if running && looks < 3 {
                    // Maybe only busy: look again before taking it down.
                    stuck.insert(target, looks);
                    continue;
                }
                let why = if running {
                    "its daemon has not answered for three looks"
                } else {
                    "its daemon is stopped or gone"
                };
                match mount::release(&target, connection) {
                    Ok(done) => Some(format!("{why}: {done}")),
                    Err(e) => Some(format!("{why}: {e}")),
                }
            }
        };
        stuck.remove(&target);
        if let Some(problem) = problem {
            problems.push(format!("{name} on {}: {problem}", target.display()));
        }
    }
    problems
}

/// The agent's handles on the stage-1 flists that are mounted now (for `initagent
/// prefetch` on a live node): same manifests, same caches as their daemons.
pub fn open_mounted(config: &Config, manifest_dir: &Path) -> Shared {
    let shared = Shared::default();
    let release = crate::sys::kernel_release();
    for (name, manifest, target) in wanted(manifest_dir, &release) {
        let ours = matches!(
            mount::state(&target, mount::SUBTYPE),
            MountState::Ours { source } if Path::new(&source) == manifest
        );
        if !ours {
            continue;
        }
        match mount::open(&manifest, &open_options(name, config)) {
            Ok(fs) => shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Mounted { name, target, fs }),
            Err(e) => log::warn!("{}: {e}", manifest.display()),
        }
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_comes_first_and_the_modules_flist_is_named_by_release() {
        let wanted = wanted(Path::new("/m"), "6.1.0-9-amd64");
        let names: Vec<&str> = wanted.iter().map(|w| w.0).collect();
        assert_eq!(names, ["firmware", "modules"]);
        assert_eq!(wanted[1].1, Path::new("/m/modules-6.1.0-9-amd64.fl"));
        assert_eq!(wanted[1].2, Path::new("/lib/modules/6.1.0-9-amd64"));
        assert_eq!(wanted[0].2, Path::new("/lib/firmware"));
    }

    #[test]
    fn clock_offsets_read_as_durations() {
        assert_eq!(signed_duration(10_925), "+3h02m05s");
        assert_eq!(signed_duration(-45), "-45s");
        assert_eq!(signed_duration(-600), "-10m00s");
    }
}
