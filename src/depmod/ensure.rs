//! `depmod ensure`: check the tree; only on a mismatch regenerate the maps — with
//! `depmod -A` when the only fault is one `-A` can see, `-a` otherwise, or in process when
//! there is no depmod binary — into a writable directory (the tree itself is usually a
//! read-only flist), then bind-mount each regenerated map over the tree's own, so the
//! agent, kmod and udev all read the repaired maps.
//!
//! depmod here (kmod 30) has no output-directory option, so it runs on a shadow tree:
//! `<out>/lib/modules/<release>/` holds links to the real tree's module directories and
//! copies of its inputs (`modules.order`, `modules.builtin*`); depmod follows the links to
//! read modules and writes its maps next to them.

use super::check::{self, CheckReport};
use super::regen;
use super::view::TreeView;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where regenerated maps go by default (tmpfs).
pub const DEFAULT_OUTPUT: &str = crate::rundir::DEPMOD;
/// depmod binaries looked for, in order.
const DEPMOD_BINARIES: &[&str] = &[
    "/sbin/depmod",
    "/usr/sbin/depmod",
    "/bin/depmod",
    "/usr/bin/depmod",
];
/// Files depmod needs besides the modules.
const INPUTS: &[&str] = &[
    "modules.order",
    "modules.builtin",
    "modules.builtin.modinfo",
];
/// Files depmod (or the in-process regeneration) writes.
pub const OUTPUTS: &[&str] = &[
    "modules.dep",
    "modules.dep.bin",
    "modules.alias",
    "modules.alias.bin",
    "modules.softdep",
    "modules.symbols",
    "modules.symbols.bin",
    "modules.builtin.bin",
    "modules.builtin.alias.bin",
    "modules.devname",
];

/// What `ensure` did.
#[derive(Debug, Clone, Serialize)]
pub struct EnsureReport {
    /// The check that decided.
    pub check: CheckReport,
    /// `none`, `depmod -A`, `depmod -a` or `in-process`.
    pub action: String,
    /// Where the maps were regenerated.
    pub output: Option<String>,
    /// Map files bind-mounted over the tree's.
    pub placed: Vec<String>,
    /// Map files that could not be placed (and why); the agent still reads them from
    /// the output directory.
    pub not_placed: Vec<String>,
    /// Warnings of the in-process regeneration.
    pub warnings: Vec<String>,
    /// Total time, microseconds.
    pub micros: u64,
}

/// Options for [`ensure`].
pub struct EnsureOptions<'a> {
    /// Root holding `lib/modules/<release>`.
    pub root: &'a Path,
    /// Kernel release.
    pub release: &'a str,
    /// Running kernel's release, when checking the live system.
    pub running: Option<&'a str>,
    /// Where to write regenerated maps (`<output>/lib/modules/<release>`).
    pub output: &'a Path,
    /// Bind-mount the regenerated maps over the tree.
    pub place: bool,
    /// Never run a depmod binary (regenerate in process).
    pub in_process: bool,
}

/// The file in the output that says which tree its maps were made for.
pub const MADE_FOR: &str = "initagent-made-for";

/// Which tree a module directory is (its device and inode): a flist mounted over it later
/// is another tree, whose maps the ones made for the first must never stand in for.
pub fn tree_identity(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    Some(format!("dev {} ino {}", meta.dev(), meta.ino()))
}

/// Whether the maps in `out` were made for the tree at `tree`.
pub fn made_for(out: &Path, tree: &Path) -> bool {
    let marker = std::fs::read_to_string(out.join(MADE_FOR)).ok();
    marker.is_some() && marker == tree_identity(tree)
}

fn depmod_binary() -> Option<&'static str> {
    DEPMOD_BINARIES
        .iter()
        .copied()
        .find(|b| crate::sys::is_executable(Path::new(b)))
}

/// Checks and, on a mismatch, repairs.
pub fn ensure(options: &EnsureOptions<'_>) -> Result<EnsureReport, String> {
    let started = Instant::now();
    let report = check::check(options.root, options.release, options.running, false);
    let mut result = EnsureReport {
        check: report.clone(),
        action: "none".into(),
        output: None,
        placed: Vec::new(),
        not_placed: Vec::new(),
        warnings: Vec::new(),
        micros: 0,
    };
    let tree = options.root.join("lib/modules").join(options.release);
    let out = options.output.join("lib/modules").join(options.release);
    match report.exit_code() {
        0 => {
            // Maps made for a tree that is no longer there (a flist mounted over it since)
            // go: the tree in place has valid maps of its own.
            if out.exists() && !made_for(&out, &tree) {
                match std::fs::remove_dir_all(&out) {
                    Ok(()) => result
                        .warnings
                        .push(format!("removed {}: made for another tree", out.display())),
                    Err(e) => result.warnings.push(format!("{}: {e}", out.display())),
                }
            }
            result.micros = started.elapsed().as_micros() as u64;
            return Ok(result);
        }
        2 => {
            return Err(report
                .error
                .unwrap_or_else(|| "the tree could not be checked".into()))
        }
        _ => {}
    }
    let failed = report.failed();
    if failed.iter().any(|c| c.id == "release-dir")
        || !failed.iter().any(|c| check::REPAIRABLE.contains(&c.id))
    {
        return Err(format!(
            "regenerating the maps cannot fix this: {}",
            failed
                .iter()
                .flat_map(|c| c.reasons.iter().cloned())
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    // Half-written maps are never left behind (a full /run, a failed depmod): they would
    // take the room the report needs, and a later run starts from nothing anyway.
    let generated = (|| -> Result<(), String> {
        prepare_output(&tree, &out)?;
        let quick = report.quick_repair_suffices();
        match depmod_binary().filter(|_| !options.in_process) {
            Some(depmod) => {
                if quick {
                    // -A compares the modules with modules.dep's mtime: give it the old maps.
                    for file in OUTPUTS {
                        let source = tree.join(file);
                        if source.exists() {
                            copy_preserving_mtime(&source, &out.join(file))?;
                        }
                    }
                }
                let flag = if quick { "-A" } else { "-a" };
                let argv = vec![
                    depmod.to_string(),
                    "-b".to_string(),
                    options.output.display().to_string(),
                    flag.to_string(),
                    options.release.to_string(),
                ];
                run(&argv)?;
                result.action = format!("depmod {flag}");
            }
            None => {
                let regenerated = regen::regenerate(&TreeView::new(tree.clone()))?;
                for (name, data) in &regenerated.files {
                    std::fs::write(out.join(name), data)
                        .map_err(|e| format!("{}: {e}", out.join(name).display()))?;
                }
                result.warnings = regenerated.warnings;
                result.action = "in-process".into();
            }
        }
        let identity = tree_identity(&tree).unwrap_or_default();
        std::fs::write(out.join(MADE_FOR), identity)
            .map_err(|e| format!("{}: {e}", out.join(MADE_FOR).display()))
    })();
    if let Err(why) = generated {
        let _ = std::fs::remove_dir_all(&out);
        return Err(format!("{why} (nothing kept in {})", out.display()));
    }
    result.output = Some(out.display().to_string());
    if options.place {
        for file in OUTPUTS {
            let (source, target) = (out.join(file), tree.join(file));
            if !source.exists() {
                continue;
            }
            if !target.exists() {
                result
                    .not_placed
                    .push(format!("{file}: not in the tree, nothing to mount over"));
                continue;
            }
            match crate::sys::mount::bind(&source, &target) {
                Ok(()) => result.placed.push(file.to_string()),
                Err(e) => result.not_placed.push(format!("{file}: {e}")),
            }
        }
    }
    result.micros = started.elapsed().as_micros() as u64;
    Ok(result)
}

/// A fresh shadow tree at `out`: links to the tree's directories, copies of its inputs.
fn prepare_output(tree: &Path, out: &Path) -> Result<(), String> {
    let fail = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| fail(out, e))?;
    }
    std::fs::create_dir_all(out).map_err(|e| fail(out, e))?;
    for entry in std::fs::read_dir(tree).map_err(|e| fail(tree, e))? {
        let entry = entry.map_err(|e| fail(tree, e))?;
        let path = entry.path();
        if path.is_dir() {
            std::os::unix::fs::symlink(&path, out.join(entry.file_name()))
                .map_err(|e| fail(&path, e))?;
        }
    }
    for input in INPUTS {
        let source = tree.join(input);
        if source.exists() {
            copy_preserving_mtime(&source, &out.join(input))?;
        }
    }
    Ok(())
}

fn copy_preserving_mtime(source: &Path, target: &PathBuf) -> Result<(), String> {
    std::fs::copy(source, target)
        .map_err(|e| format!("copying {} to {}: {e}", source.display(), target.display()))?;
    let modified = std::fs::metadata(source)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{}: {e}", source.display()))?;
    let file = std::fs::File::options()
        .write(true)
        .open(target)
        .map_err(|e| format!("{}: {e}", target.display()))?;
    file.set_modified(modified)
        .map_err(|e| format!("{}: {e}", target.display()))
}

fn run(argv: &[String]) -> Result<(), String> {
    let child = crate::sys::process::spawn(
        argv,
        &["PATH=/sbin:/usr/sbin:/bin:/usr/bin".to_string()],
        Default::default(),
    )
    .map_err(|e| format!("{}: {e}", argv.join(" ")))?;
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    match crate::sys::process::wait(&child, Some(deadline)) {
        Ok(Some(crate::sys::process::Exit::Code(0))) => Ok(()),
        Ok(Some(exit)) => Err(format!("`{}` ended with {exit}", argv.join(" "))),
        Ok(None) => {
            let _ = crate::sys::process::stop(&child, std::time::Duration::from_secs(1));
            Err(format!(
                "`{}` did not finish within 120 s; stopped",
                argv.join(" ")
            ))
        }
        Err(e) => Err(format!("{}: {e}", argv.join(" "))),
    }
}
