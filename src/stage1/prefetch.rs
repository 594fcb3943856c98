//! The `prefetch` step: fetch the blocks of exactly what this node is about to load — the
//! bootstrap and baseline lists and the drivers of the devices in its own `/sys`, with
//! their dependencies (the agent's resolver, as modprobe would), then the firmware those
//! modules name in `.modinfo` — 8 blocks at a time, into the disk caches the mount
//! daemons read. It runs in the background beside the dependency-map check and is joined
//! before the baseline loads, which then read local blocks instead of the network.

use super::flists::{Mounted, Shared};
use super::runner::StepDone;
use crate::config::{cmdline::Cmdline, Config};
use crate::flist::fs::FlistFs;
use crate::flist::prefetch::{prefetch_paths, PrefetchReport};
use crate::kmod::elf::Modinfo;
use crate::kmod::resolve::{Action, BlacklistMode};
use crate::kmod::{self, Modules};
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// What this node will load: module names or aliases from the lists and `/sys`.
fn wanted_inputs(lists: &[&Path], sysfs: &Path) -> Vec<String> {
    let mut inputs = Vec::new();
    for list in lists {
        if let Ok(names) = kmod::read_list(list) {
            inputs.extend(names);
        }
    }
    let (aliases, _) = crate::coldplug::scan(sysfs);
    inputs.extend(aliases.into_iter().map(|(_, alias)| alias));
    inputs
}

/// The `.ko` files the inputs resolve to, as paths inside the modules flist mounted at
/// `module_dir`, in load order (dependencies first).
fn module_paths(modules: &Modules, inputs: &[String], module_dir: &Path) -> Vec<String> {
    let resolver = modules.resolver();
    let mut seen = HashSet::new();
    let mut paths = Vec::new();
    for input in inputs {
        for probe in resolver.resolve(input, BlacklistMode::AliasOnly).probes {
            if probe.blacklisted {
                continue;
            }
            for step in probe.steps {
                if let Action::Insert { path } = step.action {
                    if let Ok(inside) = path.strip_prefix(module_dir) {
                        let inside = format!("/{}", inside.display());
                        if seen.insert(inside.clone()) {
                            paths.push(inside);
                        }
                    }
                }
            }
        }
    }
    paths
}

/// File `path` of `fs`, whole (from the caches once prefetched).
fn read_whole(fs: &FlistFs, path: &str) -> Option<Vec<u8>> {
    let inode = fs.manifest.resolve(path)?;
    let mut data = Vec::with_capacity(usize::try_from(inode.size).unwrap_or(0));
    while (data.len() as u64) < inode.size {
        let chunk = fs.read(inode.ino, data.len() as u64, 4 << 20).ok()?;
        if chunk.is_empty() {
            break;
        }
        data.extend_from_slice(&chunk);
    }
    Some(data)
}

/// The firmware files the modules name in `.modinfo`, as paths inside the firmware
/// flist (with the `.xz`/`.zst` forms the kernel also looks for).
fn firmware_paths(modules: &FlistFs, module_paths: &[String], firmware: &FlistFs) -> Vec<String> {
    let mut paths = BTreeSet::new();
    for module in module_paths {
        let Some(data) = read_whole(modules, module) else {
            continue;
        };
        let Ok(plain) = crate::kmod::compress::decompress(&data) else {
            continue;
        };
        let Ok(info) = Modinfo::from_elf(&plain) else {
            continue;
        };
        for name in info.all("firmware") {
            for candidate in [
                format!("/{name}"),
                format!("/{name}.xz"),
                format!("/{name}.zst"),
            ] {
                if firmware
                    .manifest
                    .resolve(&candidate)
                    .is_some_and(|i| i.is_file())
                {
                    paths.insert(candidate);
                }
            }
        }
    }
    paths.into_iter().collect()
}

fn add(total: &mut PrefetchReport, part: &PrefetchReport) {
    total.files += part.files;
    total.blocks += part.blocks;
    total.fetched += part.fetched;
    total.cached += part.cached;
    total.failed += part.failed;
    total.timed_out |= part.timed_out;
}

/// Fetches the blocks of what this node is about to load into the flists' disk caches.
pub fn boot_critical(
    config: &Config,
    cmdline: &Cmdline,
    lists: &[&Path],
    shared: &Shared,
) -> Result<StepDone, String> {
    let mounted = shared.lock().unwrap_or_else(|p| p.into_inner());
    let by_name = |name: &str| mounted.iter().find(|m: &&Mounted| m.name == name);
    let Some(modules_flist) = by_name("modules") else {
        return Ok(StepDone::skipped("no modules flist mounted"));
    };
    let started = Instant::now();
    let deadline = Duration::from_secs(u64::from(config.prefetch_deadline_s));
    let release = crate::sys::kernel_release();
    let modules =
        Modules::open(Path::new("/"), &release, &[], cmdline).map_err(|e| e.to_string())?;
    let inputs = wanted_inputs(lists, Path::new("/sys"));
    let paths = module_paths(&modules, &inputs, &modules_flist.target);
    let bytes_before: u64 = mounted
        .iter()
        .map(|m| m.fs.source.stats().bytes_fetched)
        .sum();
    let mut total = prefetch_paths(&modules_flist.fs, &paths, deadline);
    let mut firmware_files = 0;
    if let Some(firmware_flist) = by_name("firmware") {
        let firmware = firmware_paths(&modules_flist.fs, &paths, &firmware_flist.fs);
        firmware_files = firmware.len() as u64;
        if !firmware.is_empty() {
            let left = deadline.saturating_sub(started.elapsed());
            add(
                &mut total,
                &prefetch_paths(&firmware_flist.fs, &firmware, left),
            );
        }
    }
    let bytes_after: u64 = mounted
        .iter()
        .map(|m| m.fs.source.stats().bytes_fetched)
        .sum();
    let detail = format!(
        "{} modules and {firmware_files} firmware files for {} inputs (the lists and this node's devices): {} blocks, {} fetched, {} cached, {} failed{}",
        paths.len(),
        inputs.len(),
        total.blocks,
        total.fetched,
        total.cached,
        total.failed,
        if total.timed_out { "; deadline reached, the rest is fetched on first read" } else { "" }
    );
    let done = if total.failed > 0 || total.timed_out {
        StepDone::degraded(detail)
    } else {
        StepDone::ok(detail)
    };
    Ok(done
        .count("modules", paths.len() as u64)
        .count("firmware", firmware_files)
        .count("blocks", total.blocks)
        .count("fetched", total.fetched)
        .count("cached", total.cached)
        .count("failed", total.failed)
        .count("bytes_fetched", bytes_after.saturating_sub(bytes_before)))
}
