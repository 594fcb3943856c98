//! `depmod check`: is a module tree's dependency data right for the tree and the kernel,
//! without reading module content? Each check names what it found wrong, so a repair
//! can pick `depmod -A` or `-a`, and an operator can see why.
//!
//! | id | checks | catches what `depmod -A` misses |
//! | --- | --- | --- |
//! | `release-dir` | `lib/modules/<release>` exists | wrong release directory |
//! | `module-support` | the running kernel has `/proc/modules` | — |
//! | `indexes` | every `.bin` parses and walks in bounds | missing or corrupt `.bin` |
//! | `text-vs-bin` | text maps and `.bin` say the same | hand edits, partial writes |
//! | `inputs` | `modules.order`/`builtin`/`builtin.modinfo` not newer than `modules.dep`; `.bin` written with the text | inputs changed after depmod |
//! | `mtime` | no module newer than `modules.dep` (µs; whole-second trees compare seconds) | — (this is `-A`'s rule) |
//! | `module-set` | modules on disk = keys of `modules.dep.bin`; every `modules.dep` path exists | deleted, renamed, old-mtime additions |
//! | `vermagic` | modules were built for this release (from the stamp, or one small module) | another build's tree |
//! | `stamp` | the content stamp matches the tree and the maps | content changed behind an old mtime |
//!
//! On a modules flist packed with the maps proof ([`super::proof`]) whose manifest still
//! holds the tree it was packed from, the maps checks pass on that proof: nothing is read.

use super::maps;
use super::stamp::{self, ParsedStamp, STAMP_FILE};
use super::view::{Accounting, TreeView};
use crate::kmod::index::Index;
use crate::kmod::tree::IndexFile;
use crate::kmod::{name, text};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::{Instant, SystemTime};

/// Checks about the maps themselves: regenerating the maps fixes these (and a stamp
/// may only be made when they pass). The others are about the tree or the kernel.
pub const REPAIRABLE: &[&str] = &[
    "indexes",
    "text-vs-bin",
    "inputs",
    "mtime",
    "module-set",
    "stamp",
];

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing wrong.
    Pass,
    /// The data is wrong for the tree or the kernel.
    Fail,
    /// Not applicable or not possible here.
    Skip,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short id (see the module documentation).
    pub id: &'static str,
    /// Result.
    pub status: Status,
    /// What is wrong (Fail) or why it was skipped (Skip).
    pub reasons: Vec<String>,
}

/// The result of `depmod check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The module directory checked.
    pub dir: String,
    /// Its kernel release.
    pub release: String,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// What the check read.
    pub accounting: Accounting,
    /// How long it took, microseconds.
    pub micros: u64,
    /// Where that time went, microseconds by part: `listing` (the modules from the
    /// flist's manifest, or the walk, beside reading the stamp), `stamp` (comparing it),
    /// `maps` (parsing the maps, when no stamp proves them), `inputs`, `vermagic`.
    pub parts: BTreeMap<&'static str, u64>,
    /// Set when the tree could not be checked at all (exit 2).
    pub error: Option<String>,
}

impl CheckReport {
    /// 0 valid, 1 mismatch, 2 could not check.
    pub fn exit_code(&self) -> i32 {
        if self.error.is_some() {
            2
        } else if self.checks.iter().any(|c| c.status == Status::Fail) {
            1
        } else {
            0
        }
    }

    /// The failed checks.
    pub fn failed(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .collect()
    }

    /// Whether `depmod -A` can see every failure (only modules newer than the maps).
    pub fn quick_repair_suffices(&self) -> bool {
        self.failed().iter().all(|c| c.id == "mtime")
    }
}

fn mtime(meta: &std::fs::Metadata) -> (i64, u32) {
    stamp::mtime_parts(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH))
}

/// `a` is strictly newer than `b` at the precision both have.
fn newer(a: (i64, u32), b: (i64, u32)) -> bool {
    if a.1 == 0 || b.1 == 0 {
        a.0 > b.0
    } else {
        (a.0, a.1 / 1000) > (b.0, b.1 / 1000)
    }
}

struct Checker<'a> {
    view: &'a TreeView,
    release: &'a str,
    checks: Vec<Check>,
    parts: BTreeMap<&'static str, u64>,
}

impl Checker<'_> {
    /// Adds the time since `since` to the part `name`, and starts the next part.
    fn part(&mut self, name: &'static str, since: &mut Instant) {
        *self.parts.entry(name).or_default() += since.elapsed().as_micros() as u64;
        *since = Instant::now();
    }

    fn record(&mut self, id: &'static str, reasons: Vec<String>) {
        let status = if reasons.is_empty() {
            Status::Pass
        } else {
            Status::Fail
        };
        self.checks.push(Check {
            id,
            status,
            reasons,
        });
    }

    fn skip(&mut self, id: &'static str, why: impl Into<String>) {
        self.checks.push(Check {
            id,
            status: Status::Skip,
            reasons: vec![why.into()],
        });
    }
}

/// An index file that parsed and walked cleanly: its bytes and its digest.
struct LoadedIndex {
    data: Vec<u8>,
    digest: maps::Multiset,
}

fn load_index(view: &TreeView, which: IndexFile) -> Result<LoadedIndex, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", which.file_name());
    let data = view.read(which.file_name()).map_err(|e| fail(&e))?;
    let index = Index::new(&data).map_err(|e| fail(&e))?;
    let digest = maps::index_digest(&index).map_err(|e| fail(&e))?;
    Ok(LoadedIndex { data, digest })
}

/// Checks `<root>/lib/modules/<release>`. `running` is the running kernel's release
/// when checking the live system (enables the module-support check). With a stamp that
/// matches the tree, the maps are proven by it (they were fully checked when it was made)
/// and not parsed again, unless `deep`.
pub fn check(root: &Path, release: &str, running: Option<&str>, deep: bool) -> CheckReport {
    check_dir(
        &root.join("lib/modules").join(release),
        release,
        running,
        deep,
    )
}

/// [`check`] of the module directory `dir` of `release` (wherever it is).
pub fn check_dir(dir: &Path, release: &str, running: Option<&str>, deep: bool) -> CheckReport {
    let started = Instant::now();
    let modules_dir = dir.parent().unwrap_or(Path::new("/"));
    let view = TreeView::new(dir.to_path_buf());
    let mut checker = Checker {
        view: &view,
        release,
        checks: Vec::new(),
        parts: BTreeMap::new(),
    };
    let error = run_checks(&mut checker, modules_dir, running, deep).err();
    CheckReport {
        dir: view.dir.display().to_string(),
        release: release.to_string(),
        checks: checker.checks,
        accounting: view.accounting(),
        micros: started.elapsed().as_micros() as u64,
        parts: checker.parts,
        error,
    }
}

fn run_checks(
    c: &mut Checker<'_>,
    modules_dir: &Path,
    running: Option<&str>,
    deep: bool,
) -> Result<(), String> {
    // release-dir
    if !c.view.dir.is_dir() {
        let others: Vec<String> = std::fs::read_dir(modules_dir)
            .map_err(|e| format!("{}: {e}", modules_dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        c.record(
            "release-dir",
            vec![format!(
                "no {} (the tree has: {})",
                c.view.dir.display(),
                others.join(", ")
            )],
        );
        return Ok(());
    }
    c.record("release-dir", Vec::new());

    // module-support
    match running {
        Some(_) if Path::new("/proc/modules").exists() => c.record("module-support", Vec::new()),
        Some(_) => c.record(
            "module-support",
            vec!["/proc/modules is missing: the running kernel has no module support".into()],
        ),
        None => c.skip("module-support", "not the running kernel"),
    }

    // On one of our flist mounts the manifest lists the modules (no FUSE round trip);
    // elsewhere the walk (stat only) runs beside reading the stamp.
    let mut since = Instant::now();
    let view = c.view;
    let backing = flist_backing(&view.dir);
    // A modules flist packed with a maps proof that still holds its tree: proven then.
    let packed_proof = backing.as_ref().is_some_and(|flist| {
        !deep && flist.inside.is_empty() && super::proof::holds(&flist.manifest, c.release)
    });
    if packed_proof {
        let note = vec![format!(
            "proven when the flist was packed: its manifest carries the deep check's proof ({}) and still holds that tree",
            super::proof::TAG
        )];
        // Every check of the maps themselves: the pack's deep check and stamp passed.
        for id in REPAIRABLE.iter().copied() {
            c.checks.push(Check {
                id,
                status: Status::Pass,
                reasons: note.clone(),
            });
        }
        // The pack's check found the modules built for this release.
        let expected = running.unwrap_or(c.release);
        c.record(
            "vermagic",
            if expected == c.release {
                Vec::new()
            } else {
                vec![format!(
                    "modules were built for {}, not {expected}",
                    c.release
                )]
            },
        );
        c.part("proof", &mut since);
        return Ok(());
    }
    let (walked, stamp_text) = std::thread::scope(|scope| {
        let walker = scope.spawn(|| match &backing {
            Some(flist) => Ok(modules_in_manifest(&flist.manifest, &flist.inside)),
            None => view.modules(),
        });
        let stamp_text = view.read(STAMP_FILE).ok();
        let walked = walker
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the tree walk panicked")));
        (walked, stamp_text)
    });
    let found = walked.map_err(|e| format!("{}: {e}", c.view.dir.display()))?;
    c.part("listing", &mut since);
    let stamp_result = stamp_text.as_deref().map(|data| {
        let text = std::str::from_utf8(data).map_err(|_| format!("{STAMP_FILE}: not text"))?;
        let stamp = ParsedStamp::parse(text).map_err(|e| format!("{STAMP_FILE}: {e}"))?;
        let problems = compare_stamp(c.view, &stamp, &found, c.release, backing.as_ref());
        Ok::<_, String>((stamp.vermagic.map(str::to_string), problems))
    });
    let proven = !deep && matches!(&stamp_result, Some(Ok((_, problems))) if problems.is_empty());
    c.part("stamp", &mut since);

    if proven {
        let note = vec![format!(
            "proven by {STAMP_FILE}: the maps are the ones checked when it was made"
        )];
        c.checks.push(Check {
            id: "indexes",
            status: Status::Pass,
            reasons: note.clone(),
        });
        c.checks.push(Check {
            id: "text-vs-bin",
            status: Status::Pass,
            reasons: note,
        });
    } else {
        deep_checks(c, &found)?;
        c.part("maps", &mut since);
    }
    inputs_and_mtime(c, &found);
    c.part("inputs", &mut since);
    if proven {
        c.checks.push(Check {
            id: "module-set",
            status: Status::Pass,
            reasons: vec![format!(
                "proven by {STAMP_FILE}: the same modules as when it was made"
            )],
        });
    }

    // stamp, then vermagic (which trusts a stamp that matched).
    let mut stamp_ok = None;
    match stamp_result {
        None => c.skip(
            "stamp",
            format!("no {STAMP_FILE} (written by `initagent depmod stamp` at image build)"),
        ),
        Some(Err(why)) => c.record("stamp", vec![why]),
        Some(Ok((vermagic, problems))) => {
            if problems.is_empty() {
                stamp_ok = Some(vermagic);
            }
            c.record("stamp", problems);
        }
    }
    let vermagic = match stamp_ok {
        Some(vermagic) => vermagic.ok_or_else(|| "the stamp records no vermagic".to_string()),
        None => smallest_module_vermagic(c.view, &found),
    };
    match vermagic {
        Ok(vermagic) => {
            let built_for = vermagic.split_whitespace().next().unwrap_or_default();
            let expected = running.unwrap_or(c.release);
            let mut problems = Vec::new();
            if built_for != expected {
                problems.push(format!(
                    "modules were built for {built_for}, not {expected}"
                ));
            }
            c.record("vermagic", problems);
        }
        Err(why) => c.skip("vermagic", why),
    }
    c.part("vermagic", &mut since);
    Ok(())
}

/// indexes, text-vs-bin and module-set, reading and parsing the maps.
fn deep_checks(c: &mut Checker<'_>, found: &[super::view::FoundModule]) -> Result<(), String> {
    let indexes: Vec<Result<LoadedIndex, String>> = IndexFile::ALL
        .iter()
        .map(|w| load_index(c.view, *w))
        .collect();
    c.record(
        "indexes",
        indexes
            .iter()
            .filter_map(|i| i.as_ref().err().cloned())
            .collect(),
    );
    let index = |which: IndexFile| indexes[which as usize].as_ref().ok();

    let mut problems = Vec::new();
    let dep_text = c.view.read("modules.dep").ok();
    if dep_text.is_none() {
        problems.push("modules.dep is missing".to_string());
    }
    for pairing in maps::Pairing::ALL {
        let text = if pairing == maps::Pairing::Dep {
            dep_text.clone()
        } else {
            c.view.read(pairing.text_file()).ok()
        };
        if let (Some(text), Some(loaded)) = (text, index(pairing.index())) {
            if maps::text_digest(pairing, &text) != loaded.digest {
                if let Ok(parsed) = Index::new(&loaded.data) {
                    problems.push(maps::describe_difference(pairing, &text, &parsed));
                }
            }
        }
    }
    c.record("text-vs-bin", problems);

    let dep_paths: HashSet<String> = dep_text
        .map(|d| text::parse_dep(&String::from_utf8_lossy(&d)).0)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|l| std::iter::once(l.path).chain(l.deps))
        .collect();
    match index(IndexFile::Dep).and_then(|loaded| Index::new(&loaded.data).ok()) {
        Some(bin) => {
            let on_disk: BTreeSet<String> = found
                .iter()
                .map(|m| name::modname_from_path(&m.relative))
                .collect();
            let mut in_map: BTreeSet<String> = BTreeSet::new();
            let _ = bin.for_each(|key, _| {
                in_map.insert(String::from_utf8_lossy(key).into_owned());
            });
            let mut problems = Vec::new();
            let missing: Vec<_> = in_map.difference(&on_disk).take(5).cloned().collect();
            let extra: Vec<_> = on_disk.difference(&in_map).take(5).cloned().collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "in modules.dep.bin but not on disk: {}",
                    missing.join(", ")
                ));
            }
            if !extra.is_empty() {
                problems.push(format!(
                    "on disk but not in modules.dep.bin: {}",
                    extra.join(", ")
                ));
            }
            let disk_paths: HashSet<&str> = found.iter().map(|m| m.relative.as_str()).collect();
            let absent: BTreeSet<&String> = dep_paths
                .iter()
                .filter(|p| !p.starts_with('/') && !disk_paths.contains(p.as_str()))
                .collect();
            if !absent.is_empty() {
                let shown: Vec<_> = absent.iter().take(5).map(|p| p.as_str()).collect();
                problems.push(format!(
                    "{} paths in modules.dep do not exist: {}",
                    absent.len(),
                    shown.join(", ")
                ));
            }
            c.record("module-set", problems);
        }
        None => c.skip("module-set", "modules.dep.bin is unusable"),
    }
    Ok(())
}

/// inputs and mtime: attributes only.
fn inputs_and_mtime(c: &mut Checker<'_>, found: &[super::view::FoundModule]) {
    let dep_mtime = c.view.metadata("modules.dep").ok().as_ref().map(mtime);
    let mut problems = Vec::new();
    if let Some(dep_time) = dep_mtime {
        for input in [
            "modules.order",
            "modules.builtin",
            "modules.builtin.modinfo",
        ] {
            if let Ok(meta) = c.view.metadata(input) {
                if newer(mtime(&meta), dep_time) {
                    problems.push(format!("{input} is newer than modules.dep"));
                }
            }
        }
        if let Ok(meta) = c.view.metadata("modules.dep.bin") {
            let bin_time = mtime(&meta);
            if newer(dep_time, bin_time) || bin_time.0 - dep_time.0 > 5 {
                problems.push(
                    "modules.dep.bin and modules.dep were not written by the same depmod run"
                        .into(),
                );
            }
        }
    }
    c.record("inputs", problems);
    match dep_mtime {
        Some(dep_time) => {
            let newer_modules: Vec<&str> = found
                .iter()
                .filter(|m| newer(stamp::mtime_parts(m.mtime), dep_time))
                .map(|m| m.relative.as_str())
                .collect();
            let mut problems = Vec::new();
            if !newer_modules.is_empty() {
                problems.push(format!(
                    "{} modules are newer than modules.dep: {}",
                    newer_modules.len(),
                    newer_modules
                        .iter()
                        .take(5)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            c.record("mtime", problems);
        }
        None => c.skip("mtime", "modules.dep is missing"),
    }
}

/// The flist a directory is served from, when it is under one of our FUSE mounts.
struct FlistBacking {
    manifest: std::sync::Arc<crate::flist::meta::Manifest>,
    /// The directory's path inside the flist.
    inside: String,
    /// Every file's block keys, by inode.
    keys: std::sync::Arc<crate::flist::meta::BlockKeys>,
}

fn flist_backing(dir: &Path) -> Option<FlistBacking> {
    let dir = dir.canonicalize().ok()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // The innermost mount holding `dir` (the last of equals is the one on top); an flist
    // mount of any subtype names its flist as the source.
    let entry = crate::mountinfo::parse(&text)
        .into_iter()
        .filter(|e| dir.starts_with(&e.mount_point))
        .max_by_key(|e| e.mount_point.len())?;
    if !entry.fstype.starts_with("fuse.") {
        return None;
    }
    let inside = dir
        .strip_prefix(&entry.mount_point)
        .ok()?
        .to_string_lossy()
        .into_owned();
    // The manifest this process mounted it from, when it did (stage 1): not read again.
    let manifest = crate::flist::meta::Manifest::open_shared(Path::new(&entry.source)).ok()?;
    let keys = manifest.block_keys().ok()?;
    Some(FlistBacking {
        manifest,
        inside,
        keys,
    })
}

/// Whether the content stamp of the module directory `dir` (if it has one) matches the
/// flist `manifest` packed from it, content and all (its block keys against the stamp's
/// chunk digests, the module set, the maps): what a node's check of that flist would say,
/// asked when it is packed ([`super::proof`]).
pub fn stamp_matches_flist(
    dir: &Path,
    release: &str,
    manifest: std::sync::Arc<crate::flist::meta::Manifest>,
) -> Result<(), String> {
    let view = TreeView::new(dir.to_path_buf());
    let Ok(data) = view.read(STAMP_FILE) else {
        return Ok(());
    };
    let text = std::str::from_utf8(&data).map_err(|_| format!("{STAMP_FILE}: not text"))?;
    let stamp = ParsedStamp::parse(text).map_err(|e| format!("{STAMP_FILE}: {e}"))?;
    let keys = manifest.block_keys().map_err(|e| e.to_string())?;
    let backing = FlistBacking {
        manifest,
        inside: String::new(),
        keys,
    };
    let found = modules_in_manifest(&backing.manifest, &backing.inside);
    let problems = compare_stamp(&view, &stamp, &found, release, Some(&backing));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The module files of an flist under `inside`, as the manifest lists them (the same
/// set depmod's walk would find: `build` and `source` skipped).
fn modules_in_manifest(
    manifest: &crate::flist::meta::Manifest,
    inside: &str,
) -> Vec<super::view::FoundModule> {
    let mut found = Vec::new();
    let Some(start) = manifest.resolve(inside) else {
        return found;
    };
    let mut pending = vec![(start.ino, String::new())];
    while let Some((ino, relative)) = pending.pop() {
        for child in manifest.children(ino) {
            let Some(inode) = manifest.inode(*child) else {
                continue;
            };
            let path = if relative.is_empty() {
                inode.name.clone()
            } else {
                format!("{relative}/{}", inode.name)
            };
            if inode.is_dir() && inode.name != "build" && inode.name != "source" {
                pending.push((inode.ino, path));
            } else if inode.is_file() && super::view::is_module_file(&inode.name) {
                let mtime = std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(inode.mtime.max(0) as u64);
                found.push(super::view::FoundModule {
                    relative: path,
                    size: inode.size,
                    mtime,
                    flist_ino: Some(inode.ino),
                });
            }
        }
    }
    found
}

/// How one stamped file differs, if it does: through the flist's block keys when the
/// tree is an flist (content proven, nothing fetched), else by size and mtime.
fn stamped_file_differs(
    file: &stamp::ParsedFile<'_>,
    on_disk: Option<(u64, (i64, u32))>,
    backing: Option<&FlistBacking>,
    ino: Option<u64>,
) -> Option<&'static str> {
    let Some((size, modified)) = on_disk else {
        return Some("gone");
    };
    match backing {
        Some(flist) => {
            // Listed from the manifest: its inode is known (no lookup by path).
            let inode = match ino {
                Some(ino) => flist.manifest.inode(ino),
                None => flist
                    .manifest
                    .resolve(&format!("{}/{}", flist.inside, file.path)),
            };
            let Some(inode) = inode else {
                return Some("gone");
            };
            let keys = flist.keys.get(&inode.ino).map_or(&[][..], Vec::as_slice);
            (inode.size != file.size || !file.chunks_are(keys))
                .then_some("content differs (flist block keys)")
        }
        None => (!file.matches(size, modified)).then_some("size or mtime differs"),
    }
}

fn compare_stamp(
    view: &TreeView,
    stamp: &ParsedStamp,
    found: &[super::view::FoundModule],
    release: &str,
    backing: Option<&FlistBacking>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if stamp.release != release {
        problems.push(format!(
            "the stamp is for {}, the tree is {release}",
            stamp.release
        ));
    }
    let mut changed_maps = Vec::new();
    for map in &stamp.maps {
        let on_disk = view.metadata(map.path).ok().map(|m| (m.len(), mtime(&m)));
        if let Some(why) = stamped_file_differs(map, on_disk, backing, None) {
            changed_maps.push(format!("{} ({why})", map.path));
        }
    }
    for name in stamp::MAP_FILES {
        if !stamp.maps.iter().any(|m| m.path == *name) && view.dir.join(name).exists() {
            changed_maps.push(format!("{name} (not in the stamp)"));
        }
    }
    if !changed_maps.is_empty() {
        problems.push(format!(
            "maps changed since the stamp: {}",
            changed_maps.join(", ")
        ));
    }
    let stamped: HashMap<&str, &stamp::ParsedFile<'_>> =
        stamp.modules.iter().map(|m| (m.path, m)).collect();
    let mut differing = Vec::new();
    for module in found {
        match stamped.get(module.relative.as_str()) {
            None => differing.push(format!("{} (not in the stamp)", module.relative)),
            Some(s) => {
                let on_disk = Some((module.size, stamp::mtime_parts(module.mtime)));
                if let Some(why) = stamped_file_differs(s, on_disk, backing, module.flist_ino) {
                    differing.push(format!("{} ({why})", module.relative));
                }
            }
        }
    }
    let on_disk: HashSet<&str> = found.iter().map(|m| m.relative.as_str()).collect();
    differing.extend(
        stamp
            .modules
            .iter()
            .filter(|m| !on_disk.contains(m.path))
            .map(|m| format!("{} (gone)", m.path)),
    );
    if !differing.is_empty() {
        let shown: Vec<String> = differing.iter().take(5).cloned().collect();
        problems.push(format!(
            "{} modules differ from the stamp: {}",
            differing.len(),
            shown.join(", ")
        ));
    }
    problems
}

fn smallest_module_vermagic(
    view: &TreeView,
    found: &[super::view::FoundModule],
) -> Result<String, String> {
    // The smallest modules first; a file that is no module (garbage the maps list, as
    // depmod lists it) is passed over, up to a few.
    let mut by_size: Vec<&super::view::FoundModule> = found.iter().collect();
    by_size.sort_by_key(|m| m.size);
    let mut last = String::from("no modules in the tree");
    for module in by_size.into_iter().take(4) {
        match vermagic_of(view, &module.relative) {
            Ok(vermagic) => return Ok(vermagic),
            Err(e) => last = format!("{}: {e}", module.relative),
        }
    }
    Err(last)
}

fn vermagic_of(view: &TreeView, relative: &str) -> Result<String, String> {
    let data = view.read(relative).map_err(|e| e.to_string())?;
    let plain = crate::kmod::compress::decompress(&data).map_err(|e| e.to_string())?;
    let info = crate::kmod::elf::Modinfo::from_elf(&plain).map_err(|e| e.to_string())?;
    info.get("vermagic")
        .map(str::to_string)
        .ok_or_else(|| "no vermagic".to_string())
}
