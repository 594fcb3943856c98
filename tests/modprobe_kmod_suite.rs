//! kmod's own test-suite trees (`tests/data/kmod-testsuite`: kmod v30's
//! `testsuite/rootfs-pristine/test-modprobe` cases, module trees with their indexes, the
//! configuration, `/proc/cmdline`, `/sys/module` and the expected output) run through the
//! agent's `modprobe` and through the installed kmod. kmod's suite redirects paths with a
//! preloaded library; here each run gets a private mount namespace in which the case's
//! `lib/modules`, `/sys/module` and `/proc/cmdline` are bind-mounted over the real ones
//! (empty ones when the case has none), so both programs see the same machine. Both must
//! print the case's expected output (where it has one) and agree with each other on
//! stdout, stderr (but libkmod's own diagnostics, which name its C source lines) and exit
//! code. The cases that really load (`softdep-loop`,
//! `install-cmd-loop`) run as dry runs: what matters is that the loops end.
#![cfg(feature = "system-tests")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn suite() -> PathBuf {
    common::vm::repo_root().join("tests/data/kmod-testsuite")
}

#[derive(Debug, PartialEq, Eq)]
struct Run {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

/// A copy of the case's module directory with every file `modules.dep` names present:
/// kmod's suite builds those modules, the pristine trees only hold the indexes (libkmod
/// stats each path of a dependency line, and drops the line when one is missing).
fn dressed(name: &str, case: &Path) -> Option<PathBuf> {
    let modules = case.join("lib/modules");
    if !modules.exists() {
        return None;
    }
    let copy = common::scratch(&format!("kmod-suite-{name}")).join("modules");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&modules)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    let dir = copy.join("4.4.4");
    let dep = std::fs::read_to_string(dir.join("modules.dep")).unwrap_or_default();
    for path in dep.split_whitespace().map(|p| p.trim_end_matches(':')) {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"").unwrap();
    }
    Some(copy)
}

/// libkmod's own diagnostics, which name its C source lines: not reproduced.
fn without_libkmod_lines(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("libkmod: ") && !l.contains("../libkmod/"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs `program args` in a private mount namespace dressed as the case's root.
fn run_in(case: &Path, modules: Option<&Path>, program: &[&str], args: &[&str]) -> Run {
    let empty = common::scratch("kmod-suite-empty");
    let empty_file = empty.join("cmdline");
    std::fs::write(&empty_file, "").unwrap();
    let pick = |inside: &str, fallback: &Path| -> PathBuf {
        let path = case.join(inside);
        if path.exists() {
            path
        } else {
            fallback.to_path_buf()
        }
    };
    let modules = modules.unwrap_or(&empty);
    let sys_module = pick("sys/module", &empty);
    let cmdline = pick("proc/cmdline", &empty_file);
    let config = pick("etc/modprobe.d", &empty);
    let script = "mount --bind \"$1\" /lib/modules && mount --bind \"$2\" /sys/module && \
                  mount --bind \"$3\" /proc/cmdline || exit 99; shift 3; exec \"$@\"";
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(modules)
        .arg(&sys_module)
        .arg(&cmdline)
        .args(program)
        .args(["-S", "4.4.4", "-C"])
        .arg(&config)
        .args(args)
        .env_remove("MODPROBE_OPTIONS");
    let out = command.output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(99),
        "bind mounts failed for {case:?}"
    );
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: without_libkmod_lines(&String::from_utf8_lossy(&out.stderr)),
        code: out.status.code(),
    }
}

#[test]
fn kmods_own_modprobe_cases_give_kmods_answers() {
    let agent = common::vm::agent_binary();
    let agent = agent.to_str().unwrap();
    // (case, arguments, expected output file, expected exit code)
    let cases: &[(&str, &[&str], Option<&str>, i32)] = &[
        (
            "show-depends",
            &["--show-depends", "mod-loop-a"],
            Some("correct.txt"),
            0,
        ),
        (
            "show-depends",
            &["--show-depends", "mod-simple"],
            Some("correct-mod-simple.txt"),
            0,
        ),
        ("show-depends", &["-n", "-v", "mod-loop-a"], None, 0),
        (
            "alias-to-none",
            &[
                "--show-depends",
                "--ignore-install",
                "--quiet",
                "mod-simple",
            ],
            Some("correct.txt"),
            0,
        ),
        ("builtin", &["unix"], None, 0),
        ("builtin", &["-R", "unix"], Some("correct.txt"), 0),
        ("softdep-loop", &["-n", "-v", "mod-loop-b"], None, 0),
        ("install-cmd-loop", &["-n", "-v", "mod-loop-a"], None, 0),
        (
            "module-param-kcmdline",
            &["--show-depends", "mod-simple"],
            Some("correct.txt"),
            0,
        ),
        ("module-param-kcmdline2", &["-c"], Some("correct.txt"), 0),
        ("module-param-kcmdline3", &["-c"], Some("correct.txt"), 0),
        ("module-param-kcmdline4", &["-c"], Some("correct.txt"), 0),
        ("module-param-kcmdline5", &["-c"], Some("correct.txt"), 0),
        ("module-param-kcmdline6", &["-c"], Some("correct.txt"), 0),
        ("module-param-kcmdline7", &["-c"], Some("correct.txt"), 0),
        ("module-param-kcmdline8", &["-c"], Some("correct.txt"), 0),
    ];
    let mut failures = Vec::new();
    for (name, args, expected, code) in cases {
        let case = suite().join(name);
        let modules = dressed(name, &case);
        let kmod = run_in(&case, modules.as_deref(), &["modprobe"], args);
        let ours = run_in(&case, modules.as_deref(), &[agent, "modprobe"], args);
        let what = format!("{name}: modprobe {}", args.join(" "));
        if let Some(file) = expected {
            let expected = std::fs::read_to_string(case.join(file)).unwrap();
            if kmod.stdout != expected {
                failures.push(format!("{what}: kmod itself printed {:?}", kmod.stdout));
            }
            if ours.stdout != expected {
                failures.push(format!(
                    "{what}: expected {expected:?}, ours {:?}",
                    ours.stdout
                ));
            }
        }
        if ours.code != Some(*code) {
            failures.push(format!("{what}: exit {:?}, expected {code}", ours.code));
        }
        if ours != kmod {
            failures.push(format!("{what}: kmod {kmod:?}, ours {ours:?}"));
        }
    }
    println!(
        "{} cases of kmod's suite, {} differ",
        cases.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
