//! Kernel modules without kmod: pure readers of depmod's indexes and text files and of a
//! module's `.modinfo`, modprobe.d configuration, a resolver that answers exactly what
//! `modprobe` would do, and a parallel `finit_module` loader.

pub mod compress;
pub mod config;
pub mod elf;
pub mod fnmatch;
pub mod gate;
pub mod index;
pub mod kernel;
pub mod live;
pub mod load;
pub mod name;
pub mod resolve;
pub mod text;
pub mod tree;

use crate::config::cmdline::Cmdline;
use load::{LoadOptions, Outcome, Plan};
use resolve::{BlacklistMode, Resolution};
use std::path::{Path, PathBuf};

/// Where a target's module list lives in the initramfs.
pub const DEFAULT_LIST: &str = "/etc/initagent/modules";
/// Where loads record per-module outcomes for `modules status`.
pub const OUTCOMES_PATH: &str = crate::rundir::MODULE_OUTCOMES;

/// Reads a module list: one name or alias per line, `#` comments.
pub fn read_list(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the module list: {e}", path.display()))?;
    Ok(parse_list(&text))
}

/// Parses a module list.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// One line per module outcome, for a person.
pub fn describe_outcome(name: &str, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Loaded { via, micros } => {
            format!("{name}: loaded ({via:?}, {} ms)", micros / 1000)
        }
        Outcome::AlreadyLoaded => format!("{name}: already loaded"),
        Outcome::Builtin => format!("{name}: built in"),
        Outcome::Failed { error } => format!("{name}: FAILED: {}", error.message),
        Outcome::StillLoading { micros } => format!("{name}: {}", load::still_loading(*micros)),
        Outcome::Skipped { reason } => format!("{name}: skipped: {reason}"),
    }
}

/// This boot's outcomes after a later load run: each module's latest outcome, except that
/// "already loaded" keeps the record of how it was loaded; a name a later run found is no
/// longer "not found". So `modules status` shows the whole boot, healed failures gone.
pub fn merge_outcomes(mut boot: load::Report, later: &load::Report) -> load::Report {
    for (name, outcome) in &later.modules {
        match boot.modules.iter_mut().find(|(known, _)| known == name) {
            Some((_, kept)) => {
                let how_it_loaded = matches!(kept, Outcome::Loaded { .. } | Outcome::Builtin);
                if !(how_it_loaded && matches!(outcome, Outcome::AlreadyLoaded)) {
                    *kept = outcome.clone();
                }
            }
            None => boot.modules.push((name.clone(), outcome.clone())),
        }
    }
    for (request, why) in &later.unresolved {
        if !boot.unresolved.iter().any(|(known, _)| known == request) {
            boot.unresolved.push((request.clone(), why.clone()));
        }
    }
    let resolved = |request: &str| {
        let request = name::modname(request);
        boot.modules.iter().any(|(module, outcome)| {
            *module == request
                && !matches!(outcome, Outcome::Failed { .. } | Outcome::Skipped { .. })
        })
    };
    let unresolved: Vec<(String, String)> = boot
        .unresolved
        .iter()
        .filter(|(request, _)| !resolved(request))
        .cloned()
        .collect();
    boot.unresolved = unresolved;
    boot.micros += later.micros;
    boot
}

/// This boot's module outcomes as recorded in `path` ([`OUTCOMES_PATH`]), if readable.
pub fn read_outcomes(path: &Path) -> Option<load::Report> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The modules that failed, are still loading or were not found, one line each.
pub fn failure_lines(report: &load::Report) -> Vec<String> {
    let troubled = report
        .modules
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed { .. } | Outcome::StillLoading { .. }))
        .map(|(name, outcome)| describe_outcome(name, outcome));
    let missing = report
        .unresolved
        .iter()
        .map(|(input, why)| format!("{input}: NOT FOUND: {why}"));
    troubled.chain(missing).collect()
}

/// Records a load run in [`OUTCOMES_PATH`], merged into the boot's earlier runs under a
/// lock (stage 1, then zinit's oneshots, may each load).
pub fn record_outcomes(report: &load::Report) -> std::io::Result<()> {
    let path = Path::new(OUTCOMES_PATH);
    if !path.parent().is_some_and(Path::is_dir) {
        return Ok(()); // not a booted initagent system (a build host)
    }
    let _lock = crate::fsutil::lock_exclusive(
        &path.with_extension("json.lock"),
        std::time::Duration::from_secs(10),
    )?;
    let merged = match read_outcomes(path) {
        Some(boot) => merge_outcomes(boot, report),
        None => report.clone(),
    };
    crate::fsutil::write_atomic(
        path,
        &serde_json::to_vec_pretty(&merged).unwrap_or_default(),
    )
}

/// A module tree with the modprobe configuration that applies to it.
pub struct Modules {
    /// Indexes of `<root>/lib/modules/<release>`.
    pub tree: tree::ModuleTree,
    /// modprobe.d, `modules.softdep` and the command line's module keys.
    pub config: config::ModprobeConfig,
}

impl Modules {
    /// Opens `<root>/lib/modules/<release>` and reads the configuration from
    /// `config_dirs` (kmod's defaults when empty) and `cmdline`. On the live system
    /// (root `/`), maps regenerated by `depmod ensure` take precedence, if they were made
    /// for the tree there now (not for one a flist was mounted over since).
    pub fn open(
        root: &Path,
        release: &str,
        config_dirs: &[PathBuf],
        cmdline: &Cmdline,
    ) -> Result<Modules, tree::TreeError> {
        let dir = root.join("lib/modules").join(release);
        let regenerated = (root == Path::new("/"))
            .then(|| {
                Path::new(crate::depmod::ensure::DEFAULT_OUTPUT)
                    .join("lib/modules")
                    .join(release)
            })
            .filter(|out| out.is_dir())
            .filter(|out| {
                let mine = crate::depmod::ensure::made_for(out, &dir);
                if !mine {
                    log::warn!(
                        "{}: made for another tree than {}; not used (`initagent depmod ensure` checks this one)",
                        out.display(),
                        dir.display()
                    );
                }
                mine
            });
        let tree = tree::ModuleTree::open(root, release, regenerated.as_deref())?;
        let dirs: Vec<PathBuf> = if config_dirs.is_empty() {
            config::DEFAULT_DIRS.iter().map(PathBuf::from).collect()
        } else {
            config_dirs.to_vec()
        };
        let config = config::load(&dirs, &tree.dir, cmdline);
        Ok(Modules { tree, config })
    }

    /// A resolver over this tree and configuration.
    pub fn resolver(&self) -> resolve::Resolver<'_> {
        resolve::Resolver::new(&self.tree, &self.config)
    }

    /// Resolves `inputs` and loads them into the running kernel; records the outcomes
    /// in [`OUTCOMES_PATH`] when `/run/initagent` exists.
    pub fn load(
        &self,
        inputs: &[String],
        options: &LoadOptions,
        mode: BlacklistMode,
    ) -> (Plan, load::Report) {
        self.load_with(&kernel::SysKernel::new(), inputs, options, mode)
    }

    /// [`Modules::load`] into `kernel` (a fake one in tests).
    pub fn load_with(
        &self,
        kernel: &dyn load::Kernel,
        inputs: &[String],
        options: &LoadOptions,
        mode: BlacklistMode,
    ) -> (Plan, load::Report) {
        let resolver = self.resolver();
        let resolutions: Vec<Resolution> =
            inputs.iter().map(|i| resolver.resolve(i, mode)).collect();
        let plan = Plan::from_resolutions(&resolutions, &self.tree.dir);
        let report = load::load(&plan, kernel, options);
        if let Err(e) = record_outcomes(&report) {
            log::warn!("{OUTCOMES_PATH}: {e}");
        }
        (plan, report)
    }
}

#[cfg(test)]
mod tests {
    use super::load::{Outcome, Report};
    use super::*;

    fn report(modules: &[(&str, Outcome)], unresolved: &[&str]) -> Report {
        Report {
            modules: modules
                .iter()
                .map(|(n, o)| (n.to_string(), o.clone()))
                .collect(),
            unresolved: unresolved
                .iter()
                .map(|n| (n.to_string(), "no such module".into()))
                .collect(),
            micros: 10,
        }
    }

    #[test]
    fn later_runs_merge_into_the_boots_record() {
        let loaded = Outcome::Loaded {
            via: load::Via::Finit,
            micros: 5,
        };
        let failed = Outcome::Failed {
            error: load::LoadError {
                errno: Some(2),
                message: "no such file".into(),
            },
        };
        let boot = report(
            &[("fuse", loaded.clone()), ("bridge", failed.clone())],
            &["8021q", "nonexistent"],
        );
        // Later (a healed node): bridge and 8021q load, fuse is already there.
        let later = report(
            &[
                ("fuse", Outcome::AlreadyLoaded),
                ("bridge", loaded.clone()),
                ("8021q", loaded.clone()),
            ],
            &["nonexistent"],
        );
        let merged = merge_outcomes(boot, &later);
        assert_eq!(
            merged.modules,
            [
                ("fuse".to_string(), loaded.clone()),
                ("bridge".to_string(), loaded.clone()),
                ("8021q".to_string(), loaded)
            ]
        );
        assert_eq!(merged.unresolved.len(), 1);
        assert_eq!(merged.unresolved[0].0, "nonexistent");
        assert_eq!(merged.micros, 20);
    }
}
