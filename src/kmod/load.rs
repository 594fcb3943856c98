//! Loads resolved modules in parallel, in dependency order, through a [`Kernel`]: a
//! module starts only after everything it depends on has finished; a pool of workers
//! (min(CPUs, 16)) runs what is ready; a module is never loaded twice; `EEXIST` is
//! success; one failure never stops the others (only the modules that needed it are
//! skipped, with the reason). Modules named in the sequential list never load at the
//! same time as each other.

use super::resolve::{Action, Resolution};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How a module reached the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// `finit_module` on the plain file.
    Finit,
    /// `finit_module` with `MODULE_INIT_COMPRESSED_FILE` (the kernel decompressed it).
    FinitCompressed,
    /// Decompressed in process, then `init_module`.
    InitModule,
    /// An `install` command from modprobe.d.
    InstallCommand,
}

/// Why a load failed: the errno (if the kernel gave one) and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadError {
    /// Raw errno, when the kernel returned one.
    pub errno: Option<i32>,
    /// What it means.
    pub message: String,
}

/// The state of a module in the running kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelState {
    /// Not loaded.
    Absent,
    /// Loaded and initialised.
    Live,
    /// Being loaded by someone else.
    Coming,
    /// Being unloaded.
    Going,
}

/// Why a [`Kernel`] did not load a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotLoaded {
    /// The load failed.
    Failed(LoadError),
    /// The load had not returned by its deadline: the module's init is still running.
    StillLoading,
}

impl From<LoadError> for NotLoaded {
    fn from(error: LoadError) -> Self {
        NotLoaded::Failed(error)
    }
}

/// The kernel as the loader sees it; faked in tests. Neither call may outlast `until`.
pub trait Kernel: Sync {
    /// The state of module `name`.
    fn state(&self, name: &str) -> KernelState;
    /// Loads the module file with options.
    fn load(
        &self,
        name: &str,
        path: &Path,
        options: &str,
        until: Instant,
    ) -> Result<Via, NotLoaded>;
    /// Runs an `install` command for `name`.
    fn install(
        &self,
        name: &str,
        command: &str,
        options: &str,
        until: Instant,
    ) -> Result<(), LoadError>;
}

/// What happened to one module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Outcome {
    /// Loaded now.
    Loaded {
        /// How.
        via: Via,
        /// Microseconds the load took.
        micros: u64,
    },
    /// Already in the kernel (or `EEXIST`).
    AlreadyLoaded,
    /// Built into the kernel.
    Builtin,
    /// The load failed.
    Failed {
        /// Why.
        error: LoadError,
    },
    /// Its init had not returned by the loader's deadline (it runs on in the kernel,
    /// which may still finish it).
    StillLoading {
        /// Microseconds waited for it.
        micros: u64,
    },
    /// Not attempted because a module it needs did not load.
    Skipped {
        /// Which one, and why.
        reason: String,
    },
}

impl Outcome {
    fn is_success(&self) -> bool {
        matches!(
            self,
            Outcome::Loaded { .. } | Outcome::AlreadyLoaded | Outcome::Builtin
        )
    }
}

/// One module of a load plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unit {
    /// Module name.
    pub name: String,
    /// What to do.
    pub action: Action,
    /// Options for the kernel.
    pub options: String,
    /// A requested module or a hard dependency of one.
    pub required: bool,
    /// Modules that must finish first (indexes into the plan).
    pub after: Vec<usize>,
    /// The requests that brought it in.
    pub wanted_by: Vec<String>,
}

/// Modules to load, deduplicated, with their ordering constraints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Units in first-seen order (a valid sequential order).
    pub units: Vec<Unit>,
    /// Requests that matched nothing, or only blacklisted modules.
    pub unresolved: Vec<(String, String)>,
}

impl Plan {
    /// Builds the plan from resolutions, keeping kmod's order and dropping repeats.
    pub fn from_resolutions(resolutions: &[Resolution], tree_dir: &Path) -> Plan {
        let mut plan = Plan::default();
        let mut position: HashMap<String, usize> = HashMap::new();
        let mut after_names: Vec<Vec<String>> = Vec::new();
        for resolution in resolutions {
            if resolution.probes.is_empty() {
                plan.unresolved.push((
                    resolution.input.clone(),
                    format!(
                        "no module, alias or built-in named {:?} in {}",
                        resolution.input,
                        tree_dir.display()
                    ),
                ));
                continue;
            }
            if resolution.probes.iter().all(|p| p.blacklisted) {
                plan.unresolved.push((
                    resolution.input.clone(),
                    "every match is blacklisted".into(),
                ));
            }
            for probe in resolution.probes.iter().filter(|p| !p.blacklisted) {
                for step in &probe.steps {
                    match position.get(&step.module.name) {
                        Some(&i) => {
                            let unit = &mut plan.units[i];
                            unit.required |= step.required;
                            if !unit.wanted_by.contains(&resolution.input) {
                                unit.wanted_by.push(resolution.input.clone());
                            }
                            for name in &step.after {
                                if !after_names[i].contains(name) {
                                    after_names[i].push(name.clone());
                                }
                            }
                        }
                        None => {
                            position.insert(step.module.name.clone(), plan.units.len());
                            after_names.push(step.after.clone());
                            plan.units.push(Unit {
                                name: step.module.name.clone(),
                                action: step.action.clone(),
                                options: step.options.clone(),
                                required: step.required,
                                after: Vec::new(),
                                wanted_by: vec![resolution.input.clone()],
                            });
                        }
                    }
                }
            }
        }
        for (unit, names) in plan.units.iter_mut().zip(after_names) {
            let mut after: Vec<usize> = names
                .iter()
                .filter_map(|n| position.get(n).copied())
                .collect();
            let own = position.get(&unit.name).copied();
            after.retain(|i| Some(*i) != own);
            after.sort_unstable();
            after.dedup();
            unit.after = after;
        }
        plan
    }
}

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Worker threads (1 = strictly sequential).
    pub workers: usize,
    /// Modules that must not load concurrently with each other.
    pub sequential: HashSet<String>,
    /// Give up waiting for a module another process is loading after this long.
    pub coming_timeout: Duration,
    /// When the loader stops waiting: loads still running are left to the kernel and
    /// reported as still loading, and what has not started by then is not started.
    pub deadline: Option<Instant>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        LoadOptions {
            workers: cpus.clamp(1, 16),
            sequential: HashSet::new(),
            coming_timeout: Duration::from_secs(30),
            deadline: None,
        }
    }
}

/// The result of a load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Per module, in plan order.
    pub modules: Vec<(String, Outcome)>,
    /// Requests that matched nothing.
    pub unresolved: Vec<(String, String)>,
    /// Wall time, microseconds.
    pub micros: u64,
}

impl Report {
    /// Counts by kind: loaded, already_loaded, builtin, failed, skipped, not_found.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let mut counters: BTreeMap<String, u64> = [
            "loaded",
            "already_loaded",
            "builtin",
            "failed",
            "still_loading",
            "skipped",
        ]
        .iter()
        .map(|k| (k.to_string(), 0))
        .collect();
        for (_, outcome) in &self.modules {
            let key = match outcome {
                Outcome::Loaded { .. } => "loaded",
                Outcome::AlreadyLoaded => "already_loaded",
                Outcome::Builtin => "builtin",
                Outcome::Failed { .. } => "failed",
                Outcome::StillLoading { .. } => "still_loading",
                Outcome::Skipped { .. } => "skipped",
            };
            *counters.entry(key.to_string()).or_default() += 1;
        }
        counters.insert("not_found".into(), self.unresolved.len() as u64);
        counters
    }

    /// Failures of modules that were required, plus unresolved requests.
    pub fn required_failures(&self, plan: &Plan) -> Vec<String> {
        let mut out: Vec<String> = self
            .unresolved
            .iter()
            .map(|(n, why)| format!("{n}: {why}"))
            .collect();
        for ((name, outcome), unit) in self.modules.iter().zip(&plan.units) {
            match outcome {
                Outcome::Failed { error } if unit.required => {
                    out.push(format!("{name}: {}", error.message))
                }
                Outcome::StillLoading { micros } if unit.required => {
                    out.push(format!("{name}: {}", still_loading(*micros)))
                }
                Outcome::Skipped { reason } if unit.required => {
                    out.push(format!("{name}: {reason}"))
                }
                _ => {}
            }
        }
        out
    }
}

/// What [`Outcome::StillLoading`] means, for a person.
pub fn still_loading(micros: u64) -> String {
    format!(
        "still loading after {:.1} s: its init has not returned (left to the kernel, which may \
         still finish it; dmesg may say what it waits for)",
        micros as f64 / 1e6
    )
}

const NOT_STARTED: &str = "not started: the loader's deadline passed";

/// A load running this long no longer counts as one of the pool's workers.
const SLOW_LOAD: Duration = Duration::from_secs(1);
/// Workers at most, however many loads are slow.
const MAX_WORKERS: usize = 32;

struct Shared {
    outcomes: Vec<Option<Outcome>>,
    /// When each unit's load started, while it runs.
    running: Vec<Option<Instant>>,
    /// Of the units ready at once, the one with the heaviest chain starts first.
    priority: Vec<u64>,
}

/// Each unit's weight and the heaviest chain of units that wait for it: a unit's weight
/// is its file's size (what its load fetches, verifies, relocates and hashes), so the long
/// chains (kvm then kvm_amd) start first instead of ending the step, with the short loads
/// filling the other workers beside them.
fn chain_weights(plan: &Plan) -> Vec<u64> {
    let own: Vec<u64> = plan
        .units
        .iter()
        .map(|unit| match &unit.action {
            Action::Insert { path } => std::fs::metadata(path).map_or(0, |m| m.len()),
            _ => 0,
        })
        .collect();
    // Plan order puts each unit after what it needs: from the last unit back, a unit's
    // heaviest waiting chain is known before the units it needs are reached.
    let mut heaviest_after = vec![0u64; plan.units.len()];
    let mut chain = vec![0u64; plan.units.len()];
    for i in (0..plan.units.len()).rev() {
        chain[i] = own[i] + heaviest_after[i];
        for &dep in &plan.units[i].after {
            if let Some(best) = heaviest_after.get_mut(dep) {
                *best = (*best).max(chain[i]);
            }
        }
    }
    chain
}

/// Runs `plan` against `kernel`.
pub fn load(plan: &Plan, kernel: &dyn Kernel, options: &LoadOptions) -> Report {
    let started = Instant::now();
    let count = plan.units.len();
    let shared = Mutex::new(Shared {
        outcomes: vec![None; count],
        running: vec![None; count],
        priority: chain_weights(plan),
    });
    let changed = Condvar::new();
    let sequential_lock = Mutex::new(());
    let workers = options.workers.clamp(1, 16).min(count.max(1));
    std::thread::scope(|scope| {
        let spawn = || {
            scope.spawn(|| worker(plan, kernel, options, &shared, &changed, &sequential_lock));
        };
        for _ in 0..workers {
            spawn();
        }
        // A load that takes long (an init waiting for hardware, or one that never
        // returns) keeps its worker; another joins, so that the modules that do not need
        // it still have `workers` to load them.
        let mut alive = workers;
        let mut state = lock(&shared);
        while alive < MAX_WORKERS && state.outcomes.iter().any(Option::is_none) {
            let slow = state
                .running
                .iter()
                .flatten()
                .filter(|started| started.elapsed() >= SLOW_LOAD)
                .count();
            let waiting = state
                .outcomes
                .iter()
                .zip(&state.running)
                .any(|(outcome, running)| outcome.is_none() && running.is_none());
            if waiting && alive - slow < workers {
                spawn();
                alive += 1;
            }
            state = changed
                .wait_timeout(state, SLOW_LOAD / 4)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    });
    let shared = shared.into_inner().unwrap_or_else(|p| p.into_inner());
    let modules = plan
        .units
        .iter()
        .zip(shared.outcomes)
        .map(|(unit, outcome)| {
            (
                unit.name.clone(),
                outcome.unwrap_or(Outcome::Skipped {
                    reason: "never became ready".into(),
                }),
            )
        })
        .collect();
    Report {
        modules,
        unresolved: plan.unresolved.clone(),
        micros: started.elapsed().as_micros() as u64,
    }
}

fn lock<'a>(shared: &'a Mutex<Shared>) -> std::sync::MutexGuard<'a, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes the ready unit (its prerequisites done) with the heaviest chain, the first in
/// plan order among equals; marks blocked ones skipped.
fn next_ready(plan: &Plan, state: &mut Shared) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, unit) in plan.units.iter().enumerate() {
        if state.outcomes[i].is_some() || state.running[i].is_some() {
            continue;
        }
        let mut ready = true;
        let mut blocked = None;
        for &dep in &unit.after {
            match &state.outcomes[dep] {
                None => ready = false,
                Some(outcome) if !outcome.is_success() && plan.units[dep].required => {
                    blocked = Some(plan.units[dep].name.clone())
                }
                Some(_) => {}
            }
        }
        if let Some(dep) = blocked {
            state.outcomes[i] = Some(Outcome::Skipped {
                reason: format!("{dep} did not load"),
            });
            continue;
        }
        if ready && best.map_or(true, |b| state.priority[i] > state.priority[b]) {
            best = Some(i);
        }
    }
    let i = best?;
    state.running[i] = Some(Instant::now());
    Some(i)
}

fn worker(
    plan: &Plan,
    kernel: &dyn Kernel,
    options: &LoadOptions,
    shared: &Mutex<Shared>,
    changed: &Condvar,
    sequential_lock: &Mutex<()>,
) {
    let mut state = lock(shared);
    loop {
        if options.deadline.is_some_and(|d| Instant::now() >= d) {
            // Past the deadline nothing new starts; the loads still running end by it.
            let Shared {
                outcomes, running, ..
            } = &mut *state;
            for (outcome, running) in outcomes.iter_mut().zip(running.iter()) {
                if outcome.is_none() && running.is_none() {
                    *outcome = Some(Outcome::Skipped {
                        reason: NOT_STARTED.into(),
                    });
                }
            }
        }
        if state.outcomes.iter().all(Option::is_some) {
            changed.notify_all();
            return;
        }
        let Some(i) = next_ready(plan, &mut state) else {
            if state.running.iter().all(Option::is_none)
                && state.outcomes.iter().any(Option::is_none)
            {
                // Nothing runs and nothing is ready: a cycle in hand-made maps.
                for (j, outcome) in state.outcomes.iter_mut().enumerate() {
                    if outcome.is_none() {
                        *outcome = Some(Outcome::Skipped {
                            reason: format!("{} is in a dependency cycle", plan.units[j].name),
                        });
                    }
                }
                changed.notify_all();
                return;
            }
            state = match options.deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let waited = changed.wait_timeout(state, left);
                    waited.unwrap_or_else(|p| p.into_inner()).0
                }
                None => changed.wait(state).unwrap_or_else(|p| p.into_inner()),
            };
            continue;
        };
        drop(state);
        let unit = &plan.units[i];
        let outcome = {
            let _serial = options
                .sequential
                .contains(&unit.name)
                .then(|| sequential_lock.lock().unwrap_or_else(|p| p.into_inner()));
            run_unit(unit, kernel, options)
        };
        state = lock(shared);
        state.running[i] = None;
        state.outcomes[i] = Some(outcome);
        changed.notify_all();
    }
}

fn run_unit(unit: &Unit, kernel: &dyn Kernel, options: &LoadOptions) -> Outcome {
    // No deadline: a year, which no boot reaches.
    let until = options
        .deadline
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 86_400));
    let path: &PathBuf = match &unit.action {
        Action::Builtin => return Outcome::Builtin,
        Action::Missing => {
            return Outcome::Failed {
                error: LoadError {
                    errno: None,
                    message: "not in modules.dep and not built in (an alias to a missing module?)"
                        .into(),
                },
            }
        }
        Action::Refused { why } => {
            return Outcome::Failed {
                error: LoadError {
                    errno: None,
                    message: format!("refused: {why}"),
                },
            }
        }
        // Behind a slow sequential module, or a worker that joined late.
        _ if options.deadline.is_some_and(|d| Instant::now() >= d) => {
            return Outcome::Skipped {
                reason: NOT_STARTED.into(),
            }
        }
        Action::Install { command } => {
            let started = Instant::now();
            return match kernel.install(&unit.name, command, &unit.options, until) {
                Ok(()) => Outcome::Loaded {
                    via: Via::InstallCommand,
                    micros: started.elapsed().as_micros() as u64,
                },
                Err(error) => Outcome::Failed { error },
            };
        }
        Action::Insert { path } => path,
    };
    let started = Instant::now();
    let waited = || started.elapsed().as_micros() as u64;
    let deadline = until.min(started + options.coming_timeout);
    loop {
        match kernel.state(&unit.name) {
            KernelState::Live => return Outcome::AlreadyLoaded,
            KernelState::Coming | KernelState::Going if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            // Another load's init that has not returned by the loader's deadline.
            KernelState::Coming if Instant::now() >= until => {
                return Outcome::StillLoading { micros: waited() }
            }
            _ => break,
        }
    }
    let started = Instant::now();
    match kernel.load(&unit.name, path, &unit.options, until) {
        Ok(via) => Outcome::Loaded {
            via,
            micros: started.elapsed().as_micros() as u64,
        },
        Err(NotLoaded::StillLoading) => Outcome::StillLoading { micros: waited() },
        Err(NotLoaded::Failed(error)) if error.errno == Some(nix::libc::EEXIST) => {
            Outcome::AlreadyLoaded
        }
        Err(NotLoaded::Failed(error))
            if error.errno == Some(nix::libc::EBUSY)
                && kernel.state(&unit.name) == KernelState::Live =>
        {
            Outcome::AlreadyLoaded
        }
        Err(NotLoaded::Failed(error)) => Outcome::Failed { error },
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
