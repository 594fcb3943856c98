//! The agent's `modprobe` against kmod's (Debian 12's kmod 30, installed by `make setup`)
//! as the oracle: both run with the same arguments on Debian's whole module tree
//! (`-d`/`-S`), the same configuration and the same running kernel (`/sys/module`,
//! `/proc/cmdline`), and must print the same stdout and stderr and exit with the same
//! code. Dry runs only (`-n`, `-D`, `-R`, `-c`): loads and removals need a kernel that runs
//! the tree's modules, which the VM tests provide.
#![cfg(feature = "system-tests")]

mod common;

use common::kernel::debian_tree;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What one run printed and its exit code.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

fn run(program: &Path, argv0: Option<&str>, args: &[String], env: Option<&str>) -> Run {
    let mut command = Command::new(program);
    if let Some(argv0) = argv0 {
        std::os::unix::process::CommandExt::arg0(&mut command, argv0);
    }
    command.args(args).env_remove("MODPROBE_OPTIONS");
    if let Some(env) = env {
        command.env("MODPROBE_OPTIONS", env);
    }
    let out = command.output().unwrap();
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

struct Pair {
    root: PathBuf,
    release: String,
    agent: PathBuf,
    /// A link named `modprobe` to the agent: the personality by program name.
    link: PathBuf,
}

impl Pair {
    fn new(name: &str) -> Pair {
        let (root, release) = debian_tree();
        let dir = common::scratch(name);
        let agent = common::vm::agent_binary();
        let link = dir.join("modprobe");
        std::os::unix::fs::symlink(&agent, &link).unwrap();
        Pair {
            root,
            release,
            agent,
            link,
        }
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            "-d".to_string(),
            self.root.display().to_string(),
            "-S".to_string(),
            self.release.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// kmod's answer and ours (as `initagent modprobe`, or by the link's name when
    /// `by_name`) for `args`; they must be equal.
    fn check(&self, args: &[String], env: Option<&str>, by_name: bool) -> Result<(), String> {
        let kmod = run(Path::new("modprobe"), None, args, env);
        let ours = if by_name {
            run(&self.link, None, args, env)
        } else {
            let mut with_command = vec!["modprobe".to_string()];
            with_command.extend(args.iter().cloned());
            run(&self.agent, None, &with_command, env)
        };
        if kmod == ours {
            return Ok(());
        }
        let diff = |a: &str, b: &str| -> String {
            let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
            match a.iter().zip(&b).position(|(x, y)| x != y) {
                Some(i) => format!("line {}: kmod {:?}, ours {:?}", i + 1, a[i], b[i]),
                None => format!("kmod has {} lines, ours {}", a.len(), b.len()),
            }
        };
        Err(format!(
            "modprobe {} (env {env:?}): stdout {}; stderr {}; codes {:?} / {:?}",
            args.join(" "),
            if kmod.stdout == ours.stdout {
                "same".into()
            } else {
                diff(&kmod.stdout, &ours.stdout)
            },
            if kmod.stderr == ours.stderr {
                "same".into()
            } else {
                diff(&kmod.stderr, &ours.stderr)
            },
            kmod.code,
            ours.code
        ))
    }
}

fn all_module_names(pair: &Pair) -> Vec<String> {
    let dep = std::fs::read_to_string(
        pair.root
            .join("lib/modules")
            .join(&pair.release)
            .join("modules.dep"),
    )
    .unwrap();
    let mut names: Vec<String> = dep
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(|p| {
            let file = p.rsplit('/').next().unwrap();
            file.split(".ko").next().unwrap().replace('-', "_")
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn assert_none(what: &str, cases: usize, failures: &[String]) {
    println!("{what}: {cases} runs, {} differ", failures.len());
    assert!(
        failures.is_empty(),
        "{what}: {} of {cases} differ:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn every_module_of_debians_tree_probes_resolves_and_removes_like_kmod() {
    let pair = Pair::new("modprobe-oracle-all");
    let names = all_module_names(&pair);
    assert!(names.len() > 3000, "{} modules", names.len());
    let mut failures = Vec::new();
    let mut runs = 0;
    // With -a every name is its own request (a missing one is a warning, not the end).
    for flags in [
        &["-n", "-v", "-a"][..],
        &["-D", "-a"],
        &["-R", "-a"],
        &["-r", "-n", "-v", "-a"],
        &["-n", "-v", "-b", "-a"],
    ] {
        for batch in names.chunks(250) {
            let mut args = pair.args(flags);
            args.extend(batch.iter().cloned());
            runs += 1;
            if let Err(e) = pair.check(&args, None, false) {
                failures.push(e);
            }
        }
    }
    assert_none("every module, five ways", runs, &failures);
}

#[test]
fn flags_configuration_and_errors_answer_like_kmod() {
    let pair = Pair::new("modprobe-oracle-cases");
    let dir = common::scratch("modprobe-oracle-conf");
    let conf = dir.join("test.conf");
    std::fs::write(
        &conf,
        "blacklist ifb\nalias my-net dummy\nalias net-pf-99 ifb\noptions dummy numdummies=3\n\
         options 8021q \"x=a b\"\ninstall bonding /bin/true $CMDLINE_OPTS\nremove bonding /bin/echo bye\n\
         softdep vfat pre: nls_cp437 post: nls_utf8\nsoftdep ext4 pre: crc16 post: ipv6 mbcache\n",
    )
    .unwrap();
    let conf = conf.display().to_string();
    let c = |extra: &[&str]| {
        let mut all = vec!["-C", conf.as_str()];
        all.extend_from_slice(extra);
        pair.args(&all)
    };
    let cases: Vec<(Vec<String>, Option<&str>)> = vec![
        (pair.args(&["-n", "-v", "ext4"]), None),
        (
            pair.args(&["-n", "-v", "ext4", "foo=1", "bar=x y", "baz"]),
            None,
        ),
        (pair.args(&["-nv", "--", "ext4"]), None),
        (pair.args(&["ext4", "-n", "--verbose"]), None),
        (pair.args(&["-n", "-v", "unix"]), None),
        (pair.args(&["-D", "unix"]), None),
        (pair.args(&["-n", "-v", "--first-time", "unix"]), None),
        (pair.args(&["-q", "--first-time", "unix"]), None),
        (pair.args(&["-n", "-v", "nosuch"]), None),
        (pair.args(&["-q", "-n", "nosuch"]), None),
        (pair.args(&["-n", "-v", "-a", "nosuch", "ext4"]), None),
        (pair.args(&["-n", "-v", "nosuch", "ext4"]), None),
        (
            pair.args(&["-R", "pci:v00008086d0000100Esv*sd*bc*sc*i*"]),
            None,
        ),
        (pair.args(&["-R", "nosuch"]), None),
        (pair.args(&["-D", "nosuch"]), None),
        (pair.args(&["-r", "-n", "-v", "ext4"]), None),
        (pair.args(&["-r", "-n", "-v", "unix"]), None),
        (pair.args(&["-r", "nosuch"]), None),
        (pair.args(&["-r", "-q", "nosuch"]), None),
        (pair.args(&["-r", "--first-time", "-n", "-v", "ext4"]), None),
        (
            pair.args(&["-r", "--first-time", "-n", "-v", "-a", "jbd2", "ext4"]),
            None,
        ),
        (pair.args(&["-n", "-v", "-i", "ext4"]), None),
        (pair.args(&["-n", "-v", "snd-pcsp"]), None),
        (pair.args(&[]), None),
        (pair.args(&["-x", "ext4"]), None),
        (pair.args(&["--bogus", "ext4"]), None),
        (pair.args(&["-c"]), None),
        (pair.args(&["ext4"]), Some("-n -v")),
        (pair.args(&["ext4"]), Some("-q -n 'v'")),
        (c(&["-n", "-v", "my-net"]), None),
        (c(&["-n", "-v", "-b", "dummy"]), None),
        (c(&["-n", "-v", "net-pf-99"]), None),
        (c(&["-n", "-v", "-b", "net-pf-99"]), None),
        (c(&["-n", "-v", "ifb"]), None),
        (c(&["-n", "-v", "-b", "ifb"]), None),
        (c(&["-n", "-v", "8021q", "y=1"]), None),
        (c(&["-n", "-v", "bonding", "max_bonds=2"]), None),
        (c(&["-n", "-v", "-i", "bonding"]), None),
        (c(&["-r", "-n", "-v", "bonding"]), None),
        (c(&["-r", "-n", "-v", "-i", "bonding"]), None),
        (c(&["-n", "-v", "vfat"]), None),
        (c(&["-n", "-v", "-i", "vfat"]), None),
        (c(&["-D", "ext4"]), None),
        (c(&["-n", "-v", "-i", "ext4"]), None),
        (c(&["-r", "-n", "-v", "vfat"]), None),
        (c(&["-c"]), None),
    ];
    let mut failures = Vec::new();
    for (args, env) in &cases {
        for by_name in [false, true] {
            if let Err(e) = pair.check(args, *env, by_name) {
                failures.push(e);
            }
        }
    }
    assert_none(
        "flags, configuration and errors",
        cases.len() * 2,
        &failures,
    );
}

#[test]
fn force_is_refused_and_a_module_file_by_path_resolves_its_dependencies() {
    let pair = Pair::new("modprobe-force-path");
    let run_ours = |extra: &[&str]| {
        let mut args = vec!["modprobe".to_string()];
        args.extend(pair.args(extra));
        run(&pair.agent, None, &args, None)
    };
    for force in ["-f", "--force", "--force-vermagic", "--force-modversion"] {
        let out = run_ours(&[force, "ext4"]);
        assert_eq!(out.code, Some(1), "{force}: {out:?}");
        assert!(
            out.stderr
                .contains(&format!("modprobe: ERROR: {force} is refused")),
            "{force}: {out:?}"
        );
    }
    // By path (kmod 31 and later; Debian 12's kmod 30 looks it up as a name): the file's
    // dependencies come from the tree by its name, the file itself is loaded.
    let tree = pair.root.join("lib/modules").join(&pair.release);
    let copy = common::scratch("modprobe-by-path").join("vfat.ko");
    std::fs::copy(tree.join("kernel/fs/fat/vfat.ko"), &copy).unwrap();
    let out = run_ours(&["-n", "-v", copy.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        format!(
            "insmod {} \ninsmod {} \n",
            tree.join("kernel/fs/fat/fat.ko").display(),
            copy.display()
        )
    );
    let out = run_ours(&["-n", "-v", "/no/such/file.ko"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stderr,
        "modprobe: FATAL: Module /no/such/file.ko not found.\n"
    );
}

#[test]
fn modinfo_fields_read_like_kmods_modinfo() {
    let pair = Pair::new("modinfo-oracle");
    let names = all_module_names(&pair);
    let root = pair.root.display().to_string();
    let mut failures = Vec::new();
    let mut runs = 0;
    // Every 16th module of the tree, the fields a script asks for.
    for name in names.iter().step_by(16) {
        for field in [
            "filename", "depends", "alias", "firmware", "parm", "vermagic", "license",
        ] {
            runs += 1;
            let kmod = run(
                Path::new("modinfo"),
                None,
                &["-b", &root, "-k", &pair.release, "-F", field, name].map(str::to_string),
                None,
            );
            let ours = run(
                &pair.agent,
                None,
                &[
                    "modules",
                    "info",
                    "--root",
                    &root,
                    "--kernel",
                    &pair.release,
                    "-F",
                    field,
                    name,
                ]
                .map(str::to_string),
                None,
            );
            if kmod.stdout != ours.stdout || kmod.code != ours.code {
                failures.push(format!("{name} -F {field}: kmod {kmod:?}, ours {ours:?}"));
            }
        }
    }
    assert_none("modinfo -F", runs, &failures);
}
