//! Kernel modules without kmod: pure readers of depmod's indexes and text files and of a
//! module's `.modinfo`, modprobe.d configuration, a resolver that answers exactly what
//! `modprobe` would do, and a parallel `finit_module` loader.

pub mod compress;
pub mod config;
pub mod elf;
pub mod fnmatch;
pub mod index;
pub mod kernel;
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
pub const OUTCOMES_PATH: &str = "/run/initagent/modules.json";

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
        Outcome::Skipped { reason } => format!("{name}: skipped: {reason}"),
    }
}

fn save_outcomes(report: &load::Report) -> std::io::Result<()> {
    let path = Path::new(OUTCOMES_PATH);
    if !path.parent().is_some_and(Path::is_dir) {
        return Ok(()); // not a booted initagent system (a build host)
    }
    let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
    std::fs::write(
        &temporary,
        serde_json::to_vec_pretty(report).unwrap_or_default(),
    )?;
    std::fs::rename(&temporary, path)
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
    /// `config_dirs` (kmod's defaults when empty) and `cmdline`.
    pub fn open(
        root: &Path,
        release: &str,
        config_dirs: &[PathBuf],
        cmdline: &Cmdline,
    ) -> Result<Modules, tree::TreeError> {
        let tree = tree::ModuleTree::open(root, release)?;
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
        let resolver = self.resolver();
        let resolutions: Vec<Resolution> =
            inputs.iter().map(|i| resolver.resolve(i, mode)).collect();
        let plan = Plan::from_resolutions(&resolutions, &self.tree.dir);
        let report = load::load(&plan, &kernel::SysKernel::new(), options);
        if let Err(e) = save_outcomes(&report) {
            log::warn!("{OUTCOMES_PATH}: {e}");
        }
        (plan, report)
    }
}
