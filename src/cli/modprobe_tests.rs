//! modprobe's decisions against a fake kernel and a fake `/sys/module`: what is loaded and
//! in which order, `--first-time`, failures of dependencies and soft dependencies, `-i`,
//! and removal of modules in use or not loaded. (Output and messages are checked against
//! kmod itself in `tests/modprobe_oracle.rs`.)

use super::*;
use crate::kmod::config::ModprobeConfig;
use crate::kmod::index::tests::build;
use crate::kmod::load::{KernelState, LoadError, Via};
use crate::kmod::tree::ModuleTree;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

#[derive(Default)]
struct Fake {
    live: Mutex<HashSet<String>>,
    refcnt: HashMap<String, u64>,
    fail: HashMap<String, i32>,
    done: Mutex<Vec<String>>,
}

impl Live for Fake {
    fn initstate(&self, name: &str) -> Option<InitState> {
        self.live
            .lock()
            .unwrap()
            .contains(name)
            .then_some(InitState::Live)
    }
    fn refcnt(&self, name: &str) -> Option<u64> {
        self.initstate(name)
            .map(|_| self.refcnt.get(name).copied().unwrap_or(0))
    }
    fn holders(&self, _name: &str) -> Vec<String> {
        Vec::new()
    }
}

impl Kernel for Fake {
    fn state(&self, _name: &str) -> KernelState {
        KernelState::Absent
    }
    fn load(
        &self,
        name: &str,
        _path: &Path,
        options: &str,
        _until: Instant,
    ) -> Result<Via, NotLoaded> {
        if let Some(&errno) = self.fail.get(name) {
            return Err(NotLoaded::Failed(LoadError {
                errno: Some(errno),
                message: format!("errno {errno}"),
            }));
        }
        self.live.lock().unwrap().insert(name.to_string());
        self.done
            .lock()
            .unwrap()
            .push(format!("load {name} [{options}]"));
        Ok(Via::Finit)
    }
    fn install(
        &self,
        name: &str,
        command: &str,
        _options: &str,
        _until: Instant,
    ) -> Result<(), LoadError> {
        self.done
            .lock()
            .unwrap()
            .push(format!("run {name}: {command}"));
        Ok(())
    }
}

fn modules(config: &str) -> Modules {
    let dep = build(&[
        ("ext4", 0, "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko"),
        ("jbd2", 1, "kernel/fs/jbd2/jbd2.ko:"),
        ("mbcache", 2, "kernel/fs/mbcache.ko:"),
        ("crc16", 3, "kernel/lib/crc16.ko:"),
        ("crc32c_generic", 4, "kernel/crypto/crc32c_generic.ko:"),
    ]);
    let alias = build(&[("crypto_crc32c", 4, "crc32c_generic")]);
    let tree = ModuleTree::from_indexes(
        PathBuf::from("/m"),
        "test",
        [
            Some(dep),
            Some(alias),
            None,
            Some(build(&[("unix", 0, "")])),
            None,
        ],
    );
    let mut parsed = ModprobeConfig::default();
    parsed.parse(config, "test.conf");
    Modules {
        tree,
        config: parsed,
    }
}

/// Runs `args` against `fake` (with `-a`, so no FATAL line ends the test run).
fn run(modules: &Modules, fake: &Fake, args: &[&str]) -> Status {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let inv = modprobe_args::parse(&args, None).unwrap();
    let modprobe = Modprobe {
        inv: &inv,
        modules,
        live: fake,
        kernel: fake,
        until: Instant::now() + std::time::Duration::from_secs(5),
        log_priority: WARNING,
        verbose: 0,
        dry_run: inv.dry_run || inv.show_depends,
        ignore_loaded: inv.show_depends,
        show: false,
        outcomes: Mutex::new(Vec::new()),
    };
    let before = fake.done.lock().unwrap().len();
    let status = modprobe.run();
    // Every real load is noted for the boot's record, in the order it was made.
    let noted = modprobe.outcomes.into_inner().unwrap();
    let loads: Vec<&String> = noted
        .iter()
        .filter(|(_, o)| {
            matches!(
                o,
                Outcome::Loaded {
                    via: Via::Finit,
                    ..
                }
            )
        })
        .map(|(name, _)| name)
        .collect();
    let done: Vec<String> = fake.done.lock().unwrap().clone();
    let loaded: Vec<&str> = done[before..]
        .iter()
        .filter_map(|d| d.strip_prefix("load "))
        .collect();
    assert_eq!(loads.len(), loaded.len(), "{noted:?} {done:?}");
    status
}

#[test]
fn dependencies_load_first_with_their_options_and_loaded_ones_are_skipped() {
    let modules = modules("options jbd2 a=1\nsoftdep ext4 pre: crypto-crc32c\n");
    let fake = Fake::default();
    fake.live.lock().unwrap().insert("mbcache".into());
    assert_eq!(run(&modules, &fake, &["ext4", "x=1", "y=a b"]), Ok(()));
    assert_eq!(
        *fake.done.lock().unwrap(),
        vec![
            "load jbd2 [a=1]",
            "load crc16 []",
            "load crc32c_generic []",
            "load ext4 [x=1 y=\"a b\"]",
        ]
    );
    // Loaded now: a second run does nothing, --first-time says so.
    assert_eq!(run(&modules, &fake, &["ext4"]), Ok(()));
    assert_eq!(fake.done.lock().unwrap().len(), 4);
    assert_eq!(
        run(&modules, &fake, &["--first-time", "ext4"]),
        Err(nix::libc::EEXIST)
    );
    // Built in: nothing to do, and not an error.
    assert_eq!(run(&modules, &fake, &["unix"]), Ok(()));
    assert_eq!(
        run(&modules, &fake, &["-a", "nosuch"]),
        Err(nix::libc::ENOENT)
    );
}

#[test]
fn a_failed_dependency_stops_the_load_and_a_failed_softdep_does_not() {
    let modules = modules("softdep ext4 pre: crypto-crc32c\n");
    let fake = Fake {
        fail: [("crc32c_generic".to_string(), nix::libc::ENODEV)].into(),
        ..Fake::default()
    };
    assert_eq!(run(&modules, &fake, &["ext4"]), Ok(()));
    assert!(fake.live.lock().unwrap().contains("ext4"));
    let fake = Fake {
        fail: [("jbd2".to_string(), nix::libc::ENOEXEC)].into(),
        ..Fake::default()
    };
    assert_eq!(run(&modules, &fake, &["ext4"]), Err(nix::libc::ENOEXEC));
    assert!(!fake.live.lock().unwrap().contains("ext4"));
}

#[test]
fn ignore_install_skips_the_requested_modules_command_and_softdeps_only() {
    let modules = modules("install crc16 /bin/echo no\nsoftdep ext4 pre: crypto-crc32c\n");
    let fake = Fake::default();
    assert_eq!(run(&modules, &fake, &["crc16"]), Ok(()));
    assert_eq!(*fake.done.lock().unwrap(), vec!["run crc16: /bin/echo no"]);
    let fake = Fake::default();
    assert_eq!(run(&modules, &fake, &["-i", "crc16"]), Ok(()));
    assert_eq!(*fake.done.lock().unwrap(), vec!["load crc16 []"]);
    // -i ext4: its softdep is not loaded, but its dependency's install command still runs
    // (kmod ignores commands of the requested module only).
    let fake = Fake::default();
    assert_eq!(run(&modules, &fake, &["-i", "ext4"]), Ok(()));
    assert_eq!(
        *fake.done.lock().unwrap(),
        vec![
            "load jbd2 []",
            "load mbcache []",
            "run crc16: /bin/echo no",
            "load ext4 []"
        ]
    );
}

#[test]
fn removal_refuses_a_module_in_use_and_one_not_loaded_only_with_first_time() {
    let modules = modules("");
    let fake = Fake {
        refcnt: [("jbd2".to_string(), 1)].into(),
        ..Fake::default()
    };
    fake.live.lock().unwrap().insert("jbd2".into());
    assert_eq!(
        run(&modules, &fake, &["-r", "-n", "-a", "jbd2"]),
        Err(nix::libc::EBUSY)
    );
    assert_eq!(run(&modules, &fake, &["-r", "-n", "-a", "ext4"]), Ok(()));
    assert_eq!(
        run(&modules, &fake, &["-r", "-n", "-a", "--first-time", "ext4"]),
        Err(nix::libc::ENOENT)
    );
    assert_eq!(
        run(&modules, &fake, &["-r", "-n", "-a", "unix"]),
        Err(nix::libc::ENOENT),
        "a built-in module cannot be removed"
    );
}
