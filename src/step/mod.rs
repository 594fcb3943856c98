//! The boot steps as units: bootstrap, net, flists, depmod, prefetch, modules, coldplug.
//! Each is one function of a [`Ctx`] run by [`run`], the same code whether PID 1 runs it
//! in stage 1 or a zinit oneshot runs it later (`initagent step NAME`, see [`oneshot`]).
//! [`run`] leaves the step's outcome file in the run directory; the caller records the
//! step in the boot report (stage 1's runner, or [`oneshot`] under the report's lock).

pub mod coldplug;
pub mod depmod;
pub mod devices;
pub mod flists;
pub mod modules;
pub mod net;
pub mod oneshot;
pub mod prefetch;
pub mod staged;

use crate::config::{cmdline::Cmdline, Config};
use crate::kmod::load::Kernel;
use crate::report::Outcome;
use crate::rundir::{RunDir, StepRecord};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The steps, in stage 1's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepName {
    /// The initramfs's own module list (NIC drivers, `fuse`), before the network.
    Bootstrap,
    /// The network.
    Net,
    /// The firmware and modules flists.
    Flists,
    /// The dependency maps checked, repaired on a mismatch.
    Depmod,
    /// The blocks of what the node will load, fetched ahead.
    Prefetch,
    /// The target's baseline modules.
    Modules,
    /// The drivers of the devices present.
    Coldplug,
}

impl StepName {
    /// Every step, in stage 1's order.
    pub const ALL: [StepName; 7] = [
        StepName::Bootstrap,
        StepName::Net,
        StepName::Flists,
        StepName::Depmod,
        StepName::Prefetch,
        StepName::Modules,
        StepName::Coldplug,
    ];

    /// The name in the report, the outcome file and `initagent step NAME`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Bootstrap => "bootstrap",
            StepName::Net => "net",
            StepName::Flists => "flists",
            StepName::Depmod => "depmod",
            StepName::Prefetch => "prefetch",
            StepName::Modules => "modules",
            StepName::Coldplug => "coldplug",
        }
    }

    /// The step called `name`.
    pub fn parse(name: &str) -> Option<StepName> {
        StepName::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether what comes after the step needs its work done, not only the step ended:
    /// the network (zos's `bootstrap` downloads over it) and the flists (the late loads
    /// read them). The other steps let their dependents go on even degraded.
    pub fn gates(self) -> bool {
        matches!(self, StepName::Net | StepName::Flists)
    }

    /// How long stage 1 waits for the step.
    pub fn deadline(self, config: &Config) -> Duration {
        let seconds = |s: u32| Duration::from_secs(u64::from(s));
        match self {
            // The loader ends by the configured deadline itself (loads still running are
            // reported as such); the margin is for writing that down.
            StepName::Bootstrap | StepName::Modules => {
                seconds(config.modules_deadline_s) + Duration::from_secs(5)
            }
            StepName::Net => crate::net::up::UpOptions::from_config(&config.net).worst_case(),
            StepName::Flists => seconds(config.flists_deadline_s) + Duration::from_secs(5),
            StepName::Depmod => seconds(config.depmod_deadline_s),
            StepName::Prefetch => seconds(config.prefetch_deadline_s) + Duration::from_secs(5),
            StepName::Coldplug => seconds(config.coldplug_deadline_s) + Duration::from_secs(5),
        }
    }
}

/// What a finished step reports.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDone {
    /// `Ok`, `Degraded` or `Skipped`.
    pub outcome: Outcome,
    /// One line for a person.
    pub detail: String,
    /// Counters for the report.
    pub counters: BTreeMap<String, u64>,
    /// The whole result, kept in the step's outcome file.
    pub result: serde_json::Value,
}

impl StepDone {
    /// A step that did everything.
    pub fn ok(detail: impl Into<String>) -> Self {
        StepDone {
            outcome: Outcome::Ok,
            detail: detail.into(),
            counters: BTreeMap::new(),
            result: serde_json::Value::Null,
        }
    }

    /// A step that had nothing to do.
    pub fn skipped(detail: impl Into<String>) -> Self {
        StepDone {
            outcome: Outcome::Skipped,
            ..StepDone::ok(detail)
        }
    }

    /// A step that did part of its work, or none because it never can on this node (no
    /// tree, no list): the boot goes on with less.
    pub fn degraded(detail: impl Into<String>) -> Self {
        StepDone {
            outcome: Outcome::Degraded,
            ..StepDone::ok(detail)
        }
    }

    /// Adds a counter.
    pub fn count(mut self, name: &str, value: u64) -> Self {
        self.counters.insert(name.to_string(), value);
        self
    }

    /// Keeps the step's whole result for its outcome file.
    pub fn with_result(mut self, result: &impl serde::Serialize) -> Self {
        self.result = serde_json::to_value(result).unwrap_or_default();
        self
    }
}

/// Why a step did not end (it failed; the report and the outcome file say this).
#[derive(Debug, Clone, PartialEq)]
pub enum StepError {
    /// A file the step needs could not be used.
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The module tree could not be opened (the error names it).
    Tree(crate::kmod::tree::TreeError),
    /// The system refused what the step needs (netlink, mounts, threads).
    System {
        /// What was asked.
        what: &'static str,
        /// The answer.
        why: String,
    },
    /// Not finished within its deadline; left running on its own.
    Deadline(Duration),
    /// A bug: the step panicked.
    Panicked(String),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Input { path, why } => write!(f, "{}: {why}", path.display()),
            StepError::Tree(e) => write!(f, "{e}"),
            StepError::System { what, why } => write!(f, "{what}: {why}"),
            StepError::Deadline(limit) => write!(
                f,
                "did not finish within {} s; left running in the background",
                limit.as_secs()
            ),
            StepError::Panicked(message) => write!(f, "panicked: {message}"),
        }
    }
}

impl std::error::Error for StepError {}

/// Everything a step runs with.
#[derive(Clone)]
pub struct Ctx {
    /// The effective configuration.
    pub config: Config,
    /// The kernel command line (module parameters, blacklists).
    pub cmdline: Cmdline,
    /// Where the step's files go.
    pub run: RunDir,
    /// The filesystem the node runs from (`/`): module trees and lists under it.
    pub root: PathBuf,
    /// The kernel release whose modules are used.
    pub release: String,
    /// Where the devices are read (`/sys`): coldplug's scan, the prefetch's drivers.
    pub sysfs: PathBuf,
    /// Whether the step may change this system's links, mounts and devices (stage 1 as
    /// PID 1, the zinit services); `initagent stage1` on a running system may not.
    pub live: bool,
    /// What loads modules.
    pub kernel: Arc<dyn Kernel + Send>,
    /// The flists the flists step mounted in this process (for the prefetch and the
    /// loads' staging).
    pub mounted: flists::Shared,
    /// Coldplug only these devices (`--subsystem`, `--device`; default all).
    pub selection: crate::coldplug::select::Selection,
    /// Set while stage 1 loads the baseline beside coldplug: coldplug does not call the
    /// devices settled before it is cleared (the baseline's loads add devices too).
    pub baseline_loading: Arc<std::sync::atomic::AtomicBool>,
    /// The devices stage 1 scanned early, for the prefetch and coldplug.
    pub devices: Arc<devices::EarlyWatch>,
    /// The module tree [`Ctx::modules`] opened last, and which maps it read.
    opened: Arc<std::sync::Mutex<Option<Opened>>>,
}

impl Ctx {
    /// The running system's context: `/`, the running kernel, the real loader.
    pub fn system(config: Config, cmdline: Cmdline, live: bool) -> Ctx {
        Ctx {
            config,
            cmdline,
            run: RunDir::default(),
            root: PathBuf::from("/"),
            release: crate::sys::kernel_release(),
            sysfs: PathBuf::from("/sys"),
            live,
            kernel: Arc::new(crate::kmod::kernel::SysKernel::new()),
            mounted: flists::Shared::default(),
            selection: Default::default(),
            baseline_loading: Default::default(),
            devices: Default::default(),
            opened: Default::default(),
        }
    }

    /// The kernel for a step's loads: each module's blocks made local first when it comes
    /// from a flist this process mounted ([`staged`]), counted for the step.
    pub fn staged_kernel(&self) -> staged::Staged {
        staged::Staged::new(Arc::clone(&self.kernel), Arc::clone(&self.mounted))
    }

    /// A path of the node's filesystem (`/etc/initagent/modules` under [`Ctx::root`]).
    pub fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    /// The module tree, with the maps `depmod ensure` repaired when they exist. Opened
    /// once for the steps of this process while its maps stay the same files (the
    /// prefetch, the baseline and coldplug share one copy of the indexes, megabytes that
    /// each would read through the mount); opened again once the flists mount over the
    /// tree or the maps check places repaired maps.
    pub fn modules(&self) -> Result<Arc<crate::kmod::Modules>, StepError> {
        let identity = maps_identity(&self.root, &self.release);
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, modules)) = opened.as_ref() {
            if *seen == identity {
                return Ok(Arc::clone(modules));
            }
        }
        let modules = Arc::new(
            crate::kmod::Modules::open(&self.root, &self.release, &[], &self.cmdline)
                .map_err(StepError::Tree)?,
        );
        *opened = Some((identity, Arc::clone(&modules)));
        Ok(modules)
    }
}

/// Which files the maps of `<root>/lib/modules/<release>` are now: device, inode, size
/// and mtime of the directory, its two main indexes and the repaired maps' (a mount or a
/// repair changes one of them).
type MapsIdentity = Vec<Option<(u64, u64, u64, i64, i64)>>;

/// A module tree opened, and the maps it read.
type Opened = (MapsIdentity, Arc<crate::kmod::Modules>);

fn maps_identity(root: &Path, release: &str) -> MapsIdentity {
    use std::os::unix::fs::MetadataExt;
    let dir = root.join("lib/modules").join(release);
    let repaired = Path::new(crate::depmod::ensure::DEFAULT_OUTPUT)
        .join("lib/modules")
        .join(release);
    [
        dir.clone(),
        dir.join("modules.dep.bin"),
        dir.join("modules.alias.bin"),
        repaired.join("modules.dep.bin"),
    ]
    .iter()
    .map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
        ))
    })
    .collect()
}

/// Runs `step` and leaves its outcome file (also when it failed).
pub fn run(step: StepName, ctx: &Ctx) -> Result<StepDone, StepError> {
    run_as(step, ctx, step.as_str())
}

/// [`run`], the outcome file named `record_as` like the step's entry in the report (a
/// zinit service's run does not replace stage 1's result: `steps/udev-trigger.json`
/// beside `steps/coldplug.json`).
pub fn run_as(step: StepName, ctx: &Ctx, record_as: &str) -> Result<StepDone, StepError> {
    let result = match step {
        StepName::Bootstrap => modules::load(
            ctx,
            &ctx.path(modules::BOOTSTRAP_LIST),
            &ctx.config.modules_pre,
            &[],
            modules::Devices::Present,
        ),
        StepName::Net => net::bring_up(ctx),
        StepName::Flists => flists::mount_all(ctx, Path::new(flists::MANIFEST_DIR)),
        StepName::Depmod => depmod::ensure_maps(ctx),
        StepName::Prefetch => prefetch::boot_critical(ctx),
        StepName::Modules => modules::load(
            ctx,
            &ctx.path(crate::kmod::DEFAULT_LIST),
            &[],
            &ctx.config.modules_load,
            modules::Devices::All,
        ),
        StepName::Coldplug => coldplug::run(ctx),
    };
    let (outcome, detail, counters, whole) = match &result {
        Ok(done) => (
            done.outcome,
            done.detail.clone(),
            done.counters.clone(),
            done.result.clone(),
        ),
        Err(e) => (
            Outcome::Failed,
            e.to_string(),
            BTreeMap::new(),
            serde_json::Value::Null,
        ),
    };
    let record = StepRecord {
        step: record_as.to_string(),
        unit: step.as_str().to_string(),
        outcome,
        detail,
        counters,
        pid: crate::sys::pid(),
        at_us: crate::sys::monotonic_us(),
        result: whole,
    };
    if ctx.run.root().is_dir() {
        if let Err(e) = ctx.run.write_outcome(&record) {
            log::warn!("{record_as}: {e}");
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_only_the_network_and_flists_gate() {
        for step in StepName::ALL {
            assert_eq!(StepName::parse(step.as_str()), Some(step));
        }
        assert_eq!(StepName::parse("zinit"), None);
        let gates: Vec<_> = StepName::ALL.into_iter().filter(|s| s.gates()).collect();
        assert_eq!(gates, [StepName::Net, StepName::Flists]);
    }

    #[test]
    fn the_tree_is_opened_once_until_its_maps_are_other_files() {
        let root = std::env::temp_dir().join(format!("initagent-ctx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("lib/modules/9.9.9-test");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("modules.dep.bin"), b"first").unwrap();
        let mut ctx = Ctx::system(Config::default(), Cmdline::default(), false);
        ctx.root = root.clone();
        ctx.release = "9.9.9-test".into();
        let first = ctx.modules().unwrap();
        // A step on another thread (a clone of the context) shares the same copy.
        let again = std::thread::scope(|s| s.spawn(|| ctx.clone().modules().unwrap()).join());
        assert!(Arc::ptr_eq(&first, &again.unwrap()));
        // Repaired maps put in place (a new file): opened again.
        std::fs::remove_file(dir.join("modules.dep.bin")).unwrap();
        std::fs::write(dir.join("modules.dep.bin"), b"second, longer").unwrap();
        assert!(!Arc::ptr_eq(&first, &ctx.modules().unwrap()));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
