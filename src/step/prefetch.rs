//! The `prefetch` step: fetch the blocks of exactly what this node is about to load — the
//! baseline list and the drivers of the devices in its own `/sys`, with their
//! dependencies (the agent's resolver, as modprobe would), less what the kernel has
//! loaded already (the bootstrap set from the initramfs), then the firmware those
//! modules name in `.modinfo` — in load order, several blocks at a time, into the disk
//! caches the mount daemons read. In stage 1 it runs in the background beside the
//! dependency-map check and the loads: each load first waits for its own module's blocks
//! (`staged`), so modules load while the blocks of later ones are still coming.

use super::flists::Mounted;
use super::{Ctx, StepDone, StepError};
use crate::flist::fs::FlistFs;
use crate::flist::prefetch::prefetch_paths;
use crate::kmod::elf::Modinfo;
use crate::kmod::load::KernelState;
use crate::kmod::resolve::{Action, BlacklistMode};
use crate::kmod::{self, Modules};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What this node will load: module names or aliases from the lists and `/sys` (the
/// early scan's devices when stage 1 made one).
fn wanted_inputs(lists: &[&Path], sysfs: &Path, early: Option<Vec<String>>) -> Vec<String> {
    let mut inputs = Vec::new();
    for list in lists {
        if let Ok(names) = kmod::read_list(list) {
            inputs.extend(names);
        }
    }
    match early {
        Some(aliases) => inputs.extend(aliases),
        None => {
            let (devices, _) = crate::coldplug::scan(sysfs);
            inputs.extend(devices.into_iter().map(|(_, alias)| alias));
        }
    }
    inputs
}

/// The `.ko` files the inputs resolve to, as paths inside the modules flist mounted at
/// `module_dir`, heaviest chains first (as the loader starts them), but not those of
/// modules `live` says the kernel has already (the bootstrap set, loaded from the
/// initramfs). `size_of` gives a path's file size.
fn module_paths(
    modules: &Modules,
    inputs: &[String],
    module_dir: &Path,
    live: &dyn Fn(&str) -> bool,
    size_of: &dyn Fn(&str) -> u64,
) -> Vec<String> {
    let resolver = modules.resolver();
    let mut chains = Vec::new();
    for input in inputs {
        for probe in resolver.resolve(input, BlacklistMode::AliasOnly).probes {
            if probe.blacklisted {
                continue;
            }
            let chain: Vec<(String, u64)> = probe
                .steps
                .into_iter()
                .filter(|step| !live(&step.module.name))
                .filter_map(|step| match step.action {
                    Action::Insert { path } => path.strip_prefix(module_dir).ok().map(|inside| {
                        let inside = format!("/{}", inside.display());
                        let size = size_of(&inside);
                        (inside, size)
                    }),
                    _ => None,
                })
                .collect();
            chains.push(chain);
        }
    }
    fetch_order(&chains)
}

/// The order to fetch the files of `chains` (each a module's files in load order,
/// dependencies first, with their sizes) in: each file once, weighed by its own size plus
/// the files after it in its heaviest chain (what waits for it), heaviest first, ties in
/// the order first seen. The loader starts the module heading the heaviest chain first
/// (`kvm` before the small drivers), so its blocks are the ones to have first.
fn fetch_order(chains: &[Vec<(String, u64)>]) -> Vec<String> {
    let mut order: Vec<&str> = Vec::new();
    let mut weight: HashMap<&str, u64> = HashMap::new();
    for chain in chains {
        let mut after = 0u64;
        for (path, size) in chain.iter().rev() {
            after = after.saturating_add(*size);
            let w = weight.entry(path).or_default();
            *w = (*w).max(after);
        }
        for (path, _) in chain {
            if !order.contains(&path.as_str()) {
                order.push(path);
            }
        }
    }
    // Stable: equal weights keep the order first seen.
    order.sort_by_key(|path| std::cmp::Reverse(weight.get(path).copied().unwrap_or(0)));
    order.into_iter().map(str::to_string).collect()
}

/// The `.modinfo` section of the module file at `path`, read through the mounted modules
/// flist (its daemon serves and counts those reads, and the kernel's load of the file
/// finds the pages): a few small reads of an uncompressed module, the whole file
/// otherwise.
fn modinfo_of(path: &Path) -> Option<Modinfo> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    let read_at = |at: usize, len: usize| -> Option<Vec<u8>> {
        let end = at.checked_add(len)?;
        if end as u64 > size {
            return None;
        }
        let mut data = vec![0; len];
        file.read_exact_at(&mut data, at as u64).ok()?;
        Some(data)
    };
    let head = read_at(0, 6.min(usize::try_from(size).ok()?))?;
    if crate::kmod::compress::Compression::detect(&head) == crate::kmod::compress::Compression::None
    {
        let section = crate::kmod::elf::modinfo_section_by(read_at).ok()?;
        return Some(Modinfo::parse(&section));
    }
    let whole = read_at(0, usize::try_from(size).ok()?)?;
    let plain = crate::kmod::compress::decompress(&whole).ok()?;
    Modinfo::from_elf(&plain).ok()
}

/// The firmware files the modules name in `.modinfo`, as paths inside the firmware
/// flist (with the `.xz`/`.zst` forms the kernel also looks for).
fn firmware_paths(module_dir: &Path, module_paths: &[String], firmware: &FlistFs) -> Vec<String> {
    let mut paths = BTreeSet::new();
    for module in module_paths {
        let path = module_dir.join(module.trim_start_matches('/'));
        let Some(info) = modinfo_of(&path) else {
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

/// Fetches the blocks of what this node is about to load into the flists' disk caches.
/// In stage 1 over the flists the flists step mounted; in its own process (a zinit
/// service, an operator) over the stage-1 flists mounted now.
pub fn boot_critical(ctx: &Ctx) -> Result<StepDone, StepError> {
    let shared = if ctx.mounted.lock().map_or(true, |m| m.is_empty()) {
        super::flists::open_mounted(&ctx.config, Path::new(super::flists::MANIFEST_DIR))
    } else {
        ctx.mounted.clone()
    };
    // Not the bootstrap list: what of it this node loads is in the kernel already, from
    // the initramfs, and a driver it left out has no device here.
    let (config, lists) = (&ctx.config, [ctx.path(crate::kmod::DEFAULT_LIST)]);
    // Handles of their own, not the lock: the loads beside the prefetch look up the
    // mounts while it runs (`staged`).
    let mounted: Vec<Mounted> = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let by_name = |name: &str| mounted.iter().find(|m: &&Mounted| m.name == name);
    let Some(modules_flist) = by_name("modules") else {
        return Ok(StepDone::skipped("no modules flist mounted"));
    };
    let started = Instant::now();
    let deadline = Duration::from_secs(u64::from(config.prefetch_deadline_s));
    let modules = ctx.modules()?;
    let lists: Vec<&Path> = lists.iter().map(PathBuf::as_path).collect();
    let mut inputs = wanted_inputs(&lists, &ctx.sysfs, ctx.devices.aliases());
    // What the command line adds to the lists (rd.driver.pre=, modules_load=).
    inputs.extend(
        config
            .modules_pre
            .iter()
            .chain(&config.modules_load)
            .cloned(),
    );
    let live = |name: &str| ctx.kernel.state(name) == KernelState::Live;
    let size_of = |inside: &str| {
        let manifest = &modules_flist.fs.manifest;
        manifest.resolve(inside).map_or(0, |inode| inode.size)
    };
    let paths = module_paths(&modules, &inputs, &modules_flist.target, &live, &size_of);
    let resolved_ms = started.elapsed().as_millis() as u64;
    let mut total = prefetch_paths(&modules_flist.fs, &paths, deadline);
    let modules_ms = started.elapsed().as_millis() as u64 - resolved_ms;
    let mut firmware_files = 0;
    if let Some(firmware_flist) = by_name("firmware") {
        let firmware = firmware_paths(&modules_flist.target, &paths, &firmware_flist.fs);
        firmware_files = firmware.len() as u64;
        if !firmware.is_empty() {
            let left = deadline.saturating_sub(started.elapsed());
            total.add(&prefetch_paths(&firmware_flist.fs, &firmware, left));
        }
    }
    let firmware_ms = started.elapsed().as_millis() as u64 - resolved_ms - modules_ms;
    let detail = format!(
        "{} modules and {firmware_files} firmware files for {} inputs (the baseline, the command line's and this node's devices): {} blocks, {} fetched, {} cached, {} failed{}",
        paths.len(),
        inputs.len(),
        total.blocks,
        total.fetched,
        total.cached,
        total.failed,
        if total.timed_out { "; deadline reached, the rest is fetched on first read" } else { "" }
    );
    let detail = if total.not_kept > 0 {
        format!(
            "{detail}; {} fetched blocks not kept in {} (/run full or too small), so the loads fetch them again",
            total.not_kept,
            crate::rundir::CACHES
        )
    } else {
        detail
    };
    let done = if total.failed > 0 || total.timed_out || total.not_kept > 0 {
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
        .count("not_kept", total.not_kept)
        .count("bytes_fetched", total.bytes_fetched)
        .count("resolve_ms", resolved_ms)
        .count("modules_ms", modules_ms)
        .count("firmware_ms", firmware_ms))
}

#[cfg(test)]
mod tests {
    use super::fetch_order;

    fn chain(files: &[(&str, u64)]) -> Vec<(String, u64)> {
        files.iter().map(|(p, s)| (p.to_string(), *s)).collect()
    }

    #[test]
    fn the_heaviest_chain_is_fetched_first_each_file_once() {
        let chains = [
            chain(&[("/bridge.ko", 690), ("/llc.ko", 21)]),
            chain(&[
                ("/irqbypass.ko", 16),
                ("/kvm.ko", 2377),
                ("/kvm_amd.ko", 398),
            ]),
            chain(&[("/llc.ko", 21), ("/stp.ko", 10)]),
            chain(&[("/pcspkr.ko", 11)]),
            chain(&[("/button.ko", 11)]),
        ];
        assert_eq!(
            fetch_order(&chains),
            [
                "/irqbypass.ko",
                "/kvm.ko",
                "/bridge.ko",
                "/kvm_amd.ko",
                "/llc.ko",
                "/pcspkr.ko",
                "/button.ko",
                "/stp.ko",
            ]
        );
        assert!(fetch_order(&[]).is_empty());
    }
}
