//! Unit tests of the parallel loader against a fake kernel: ordering, failures, already
//! loaded modules, sequential sets, cycles, and loads that never return.

use super::*;

/// A kernel that records loads; `fail` maps names to errnos; `slow` adds latency.
pub(crate) struct FakeKernel {
    pub loaded: Mutex<Vec<String>>,
    pub live: Mutex<HashSet<String>>,
    pub fail: HashMap<String, i32>,
    pub slow: Duration,
    pub concurrent: Mutex<(usize, usize)>,
    /// Loads whose init never returns: they hold the caller until its deadline.
    pub hang: HashSet<String>,
}

impl FakeKernel {
    fn new() -> Self {
        FakeKernel {
            loaded: Mutex::new(Vec::new()),
            live: Mutex::new(HashSet::new()),
            fail: HashMap::new(),
            slow: Duration::from_millis(5),
            concurrent: Mutex::new((0, 0)),
            hang: HashSet::new(),
        }
    }
}

impl Kernel for FakeKernel {
    fn state(&self, name: &str) -> KernelState {
        if self.live.lock().unwrap().contains(name) {
            KernelState::Live
        } else {
            KernelState::Absent
        }
    }
    fn load(
        &self,
        name: &str,
        _path: &Path,
        _options: &str,
        until: Instant,
    ) -> Result<Via, NotLoaded> {
        if self.hang.contains(name) {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            return Err(NotLoaded::StillLoading);
        }
        {
            let mut c = self.concurrent.lock().unwrap();
            c.0 += 1;
            c.1 = c.1.max(c.0);
        }
        std::thread::sleep(self.slow);
        self.concurrent.lock().unwrap().0 -= 1;
        if let Some(&errno) = self.fail.get(name) {
            return Err(NotLoaded::Failed(LoadError {
                errno: Some(errno),
                message: format!("errno {errno}"),
            }));
        }
        assert!(
            self.live.lock().unwrap().insert(name.to_string()),
            "{name} loaded twice"
        );
        self.loaded.lock().unwrap().push(name.to_string());
        Ok(Via::Finit)
    }
    fn install(
        &self,
        name: &str,
        _command: &str,
        _options: &str,
        _until: Instant,
    ) -> Result<(), LoadError> {
        self.loaded.lock().unwrap().push(format!("install:{name}"));
        Ok(())
    }
}

fn unit(name: &str, after: &[usize], required: bool) -> Unit {
    Unit {
        name: name.into(),
        action: Action::Insert {
            path: PathBuf::from(format!("/m/{name}.ko")),
        },
        options: String::new(),
        required,
        after: after.to_vec(),
        wanted_by: vec!["test".into()],
    }
}

fn diamond() -> Plan {
    // a ← b, a ← c, (b, c) ← d; e independent.
    Plan {
        units: vec![
            unit("a", &[], true),
            unit("b", &[0], true),
            unit("c", &[0], true),
            unit("d", &[1, 2], true),
            unit("e", &[], true),
        ],
        unresolved: Vec::new(),
    }
}

#[test]
fn dependencies_finish_first_and_work_runs_in_parallel() {
    let kernel = FakeKernel::new();
    let report = load(
        &diamond(),
        &kernel,
        &LoadOptions {
            workers: 4,
            ..Default::default()
        },
    );
    let order = kernel.loaded.lock().unwrap().clone();
    let at = |n: &str| order.iter().position(|x| x == n).unwrap();
    assert!(at("a") < at("b") && at("a") < at("c"));
    assert!(at("b") < at("d") && at("c") < at("d"));
    assert!(
        kernel.concurrent.lock().unwrap().1 >= 2,
        "nothing ran in parallel"
    );
    assert_eq!(report.counters()["loaded"], 5);
}

#[test]
fn failures_skip_only_dependents_and_eexist_is_success() {
    let mut kernel = FakeKernel::new();
    kernel.fail.insert("b".into(), nix::libc::ENOENT);
    kernel.fail.insert("e".into(), nix::libc::EEXIST);
    let plan = diamond();
    let report = load(&plan, &kernel, &LoadOptions::default());
    let outcome = |n: &str| {
        report
            .modules
            .iter()
            .find(|(m, _)| m == n)
            .unwrap()
            .1
            .clone()
    };
    assert!(matches!(outcome("a"), Outcome::Loaded { .. }));
    assert!(matches!(outcome("b"), Outcome::Failed { .. }));
    assert!(matches!(outcome("c"), Outcome::Loaded { .. }));
    assert_eq!(
        outcome("d"),
        Outcome::Skipped {
            reason: "b did not load".into()
        }
    );
    assert_eq!(outcome("e"), Outcome::AlreadyLoaded);
    assert_eq!(report.required_failures(&plan).len(), 2);
}

#[test]
fn already_live_modules_are_not_loaded_again_and_sequential_ones_never_overlap() {
    let kernel = FakeKernel::new();
    kernel.live.lock().unwrap().insert("a".into());
    let options = LoadOptions {
        workers: 4,
        sequential: ["b", "c", "d", "e"].iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let report = load(&diamond(), &kernel, &options);
    assert_eq!(report.modules[0].1, Outcome::AlreadyLoaded);
    assert_eq!(kernel.concurrent.lock().unwrap().1, 1);
    let again = load(&diamond(), &kernel, &options);
    assert_eq!(again.counters()["already_loaded"], 5);
}

#[test]
fn a_load_that_never_returns_ends_at_the_deadline_and_holds_only_its_dependents() {
    let mut kernel = FakeKernel::new();
    kernel.hang.insert("b".into());
    let plan = diamond();
    let options = LoadOptions {
        workers: 2,
        deadline: Some(Instant::now() + Duration::from_millis(300)),
        ..Default::default()
    };
    let report = load(&plan, &kernel, &options);
    let outcome = |n: &str| &report.modules.iter().find(|(m, _)| m == n).unwrap().1;
    assert!(matches!(outcome("b"), Outcome::StillLoading { micros } if *micros >= 250_000));
    assert!(matches!(outcome("c"), Outcome::Loaded { .. }));
    assert!(matches!(outcome("e"), Outcome::Loaded { .. }));
    // Skipped: b did not load, or the deadline passed before it could start.
    assert!(matches!(outcome("d"), Outcome::Skipped { .. }));
    assert_eq!(report.counters()["still_loading"], 1);
    let failures = report.required_failures(&plan);
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("b: still loading after 0.")),
        "{failures:?}"
    );
    // One worker, held by the load that never returns: another joins for the rest.
    let plan = Plan {
        units: vec![
            unit("b", &[], true),
            unit("x", &[], true),
            unit("y", &[1], true),
        ],
        unresolved: Vec::new(),
    };
    let one = LoadOptions {
        workers: 1,
        deadline: Some(Instant::now() + SLOW_LOAD * 3),
        ..Default::default()
    };
    let report = load(&plan, &kernel, &one);
    assert_eq!(report.counters()["loaded"], 2, "{report:?}");
    assert_eq!(report.counters()["still_loading"], 1, "{report:?}");
    // Past the deadline nothing starts.
    let late = LoadOptions {
        deadline: Some(Instant::now()),
        ..Default::default()
    };
    let report = load(&diamond(), &FakeKernel::new(), &late);
    assert_eq!(report.counters()["skipped"], 5, "{report:?}");
}

#[test]
fn cycles_do_not_hang() {
    let plan = Plan {
        units: vec![unit("x", &[1], true), unit("y", &[0], true)],
        unresolved: Vec::new(),
    };
    let report = load(&plan, &FakeKernel::new(), &LoadOptions::default());
    assert_eq!(report.counters()["skipped"], 2);
}

#[test]
fn the_heaviest_chain_starts_first_and_equals_keep_plan_order() {
    let dir = std::env::temp_dir().join(format!("initagent-load-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, bytes: usize| {
        let path = dir.join(format!("{name}.ko"));
        std::fs::write(&path, vec![0u8; bytes]).unwrap();
        path
    };
    let with_file = |mut unit: Unit, bytes: usize| {
        unit.action = Action::Insert {
            path: file(&unit.name, bytes),
        };
        unit
    };
    // small1 and small2 come first in plan order; irqbypass is small but kvm (the
    // heaviest) waits for it, then kvm_amd waits for kvm.
    let plan = Plan {
        units: vec![
            with_file(unit("small1", &[], true), 3_000),
            with_file(unit("small2", &[], true), 3_000),
            with_file(unit("irqbypass", &[], true), 1_000),
            with_file(unit("kvm", &[2], true), 50_000),
            with_file(unit("kvm_amd", &[3], true), 5_000),
            unit("no_file_a", &[], true),
            unit("no_file_b", &[], true),
        ],
        unresolved: Vec::new(),
    };
    let kernel = FakeKernel::new();
    load(
        &plan,
        &kernel,
        &LoadOptions {
            workers: 1,
            ..Default::default()
        },
    );
    let order = kernel.loaded.lock().unwrap().clone();
    assert_eq!(
        order,
        [
            "irqbypass",
            "kvm",
            "kvm_amd",
            "small1",
            "small2",
            "no_file_a",
            "no_file_b"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
