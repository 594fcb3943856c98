//! The binary as an operator runs it: exit codes, messages naming their input, and the
//! status/config views, on files made here (no root, no VM).

use std::process::{Command, Output};

fn initagent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_initagent"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs in a private mount namespace: `stage1` mounts what is missing, and on a host
/// without a mounted /run that must not land in the host's namespace.
fn initagent_unshared(args: &[&str]) -> Output {
    Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            env!("CARGO_BIN_EXE_initagent"),
        ])
        .args(args)
        .output()
        .expect("unshare (util-linux)")
}

/// `initagent stage1` off PID 1 with `cmdline` as the kernel's command line and no
/// profile, its report in a scratch directory `name`: (output, report path).
fn stage1_with(name: &str, cmdline: &str) -> (Output, std::path::PathBuf) {
    let dir = scratch(name);
    let report = dir.join("report.json");
    let cmdline_file = dir.join("cmdline");
    std::fs::write(&cmdline_file, format!("{cmdline}\n")).unwrap();
    let out = initagent_unshared(&[
        "stage1",
        "--report",
        report.to_str().unwrap(),
        "--cmdline-file",
        cmdline_file.to_str().unwrap(),
        "--profile",
        "/nonexistent/profile.toml",
    ]);
    (out, report)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("initagent-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn wrong_command_lines_exit_2_with_usage() {
    for args in [&["frobnicate"][..], &["status", "--bogus"], &[]] {
        let out = initagent(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains("usage: initagent"), "{args:?}");
    }
    assert_eq!(initagent(&["--help"]).status.code(), Some(0));
    assert!(text(&initagent(&["version"]).stdout).starts_with("initagent "));
}

/// Every command of the grammar, through the binary: its own help (exit 0), a foreign
/// option refused (exit 2, naming the command's help), `--json` refused where it does not
/// report, and a value that is not a number refused as a usage error.
#[test]
fn every_command_has_its_help_and_refuses_what_is_not_its_own() {
    use initagent::cli::spec::COMMANDS;
    for command in COMMANDS.iter().filter(|c| c.name != "modprobe") {
        let words: Vec<&str> = command.name.split(' ').collect();
        let with = |extra: &[&str]| {
            let mut args = words.clone();
            args.extend_from_slice(extra);
            initagent(&args)
        };
        let help = with(&["--help"]);
        assert_eq!(help.status.code(), Some(0), "{}", command.name);
        let shown = text(&help.stdout);
        assert!(
            shown.starts_with(&format!("usage: initagent {}", command.name))
                && shown.contains("exit: "),
            "{}: {shown}",
            command.name
        );
        let foreign = with(&["--no-such-option"]);
        assert_eq!(foreign.status.code(), Some(2), "{}", command.name);
        assert!(
            text(&foreign.stderr).contains(&format!("initagent {} --help", command.name)),
            "{}: {}",
            command.name,
            text(&foreign.stderr)
        );
        if !command.reports_json() {
            let json = with(&["--json"]);
            assert_eq!(json.status.code(), Some(2), "{} --json", command.name);
        }
    }
    let out = initagent(&["flist", "mount", "--store-timeout", "soon", "/mnt"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--store-timeout takes a whole number, not \"soon\""));
    // A group names its commands.
    let out = initagent(&["flist", "--help"]);
    assert!(text(&out.stdout).contains("flist verify") && !text(&out.stdout).contains("net up"));
    // The option that needed a store now has one (it used to say "use -s", then refuse it).
    let out = initagent(&["flist", "pack", "-m", "/nonexistent/out.fl", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("-s/--store"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn status_without_a_report_names_the_file() {
    let out = initagent(&["status", "--report", "/nonexistent/r.json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("/nonexistent/r.json") && err.contains("no boot report"),
        "{err}"
    );
}

#[test]
fn status_of_a_damaged_report_says_so() {
    let dir = scratch("damaged");
    let path = dir.join("report.json");
    std::fs::write(&path, "{\"schema\": 1, \"steps\": [").unwrap();
    let out = initagent(&["status", "--report", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a boot report"));
}

#[test]
fn stage1_off_pid1_records_steps_and_fails_cleanly_without_a_next_init() {
    // Not PID 1: the pseudo-filesystems missing on this host are mounted in a private
    // namespace, and a missing handoff target ends in exit 1 instead of the failure policy.
    let (out, report) = stage1_with(
        "stage1",
        "quiet initagent.handoff=/nonexistent/zinit runmode=qa farmer_id=7",
    );
    let dir = report.parent().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("handoff target /nonexistent/zinit does not exist"));
    let status = initagent(&["status", "--report", report.to_str().unwrap()]);
    assert_eq!(status.status.code(), Some(0));
    let shown = text(&status.stdout);
    assert!(
        shown.contains("runmode qa") && shown.contains("farmer_id 7"),
        "{shown}"
    );
    assert!(shown.contains(" pseudofs "), "{shown}");
    assert!(shown.contains("result: failed"), "{shown}");
    let json = initagent(&["status", "--json", "--report", report.to_str().unwrap()]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let steps: Vec<(&str, &str)> = value["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(steps.len(), 10, "{steps:?}");
    let details: Vec<&str> = value["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["detail"].as_str().unwrap())
        .collect();
    assert!(
        details[2].starts_with("no module list at /etc/initagent/bootstrap"),
        "{details:?}"
    );
    // Each step's outcome file beside the report.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("steps/modules.json")).unwrap()).unwrap();
    assert_eq!(record["outcome"], "degraded", "{record:#}");
    // Off PID 1 the host's network, trees and devices are left alone (no DHCP on a live
    // machine's links, no mounts over its module tree, no driver loading); this sandbox
    // has no module lists and no tree: the steps that need them are degraded, saying so.
    // In the order they started (coldplug starts beside the baseline's loads).
    assert_eq!(
        &steps[2..],
        [
            ("bootstrap", "degraded"),
            ("net", "skipped"),
            ("flists", "skipped"),
            ("prefetch", "skipped"),
            ("depmod", "degraded"),
            ("coldplug", "skipped"),
            ("modules", "degraded"),
            ("handoff", "failed")
        ]
    );
    // The timeline as an image: one bar per step.
    let svg = dir.join("timeline.svg");
    let drawn = initagent(&[
        "status",
        "--report",
        report.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(drawn.status.code(), Some(0), "{}", text(&drawn.stderr));
    let image = std::fs::read_to_string(&svg).unwrap();
    assert!(
        image.starts_with("<svg") && image.contains("handoff"),
        "{image}"
    );
    assert_eq!(image.matches("<rect").count(), steps.len());
    // Host-dependent: everything present (ok), or a populated /run left alone (degraded).
    let pseudofs = &value["steps"][0];
    match pseudofs["outcome"].as_str().unwrap() {
        "ok" => {}
        "degraded" => assert!(
            pseudofs["detail"]
                .as_str()
                .unwrap()
                .contains("alone: not a mount point"),
            "{pseudofs}"
        ),
        other => panic!("pseudofs {other}: {pseudofs}"),
    }
}

#[test]
fn credentials_on_the_command_line_are_masked_everywhere_and_warned_about() {
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let store = format!("s3s://AK:{secret}@s3.example.com/b?region=garage");
    let masked = "s3s://AK:***@s3.example.com/b?region=garage";
    let shown = |out: &Output| format!("{}{}", text(&out.stdout), text(&out.stderr));
    for json in [true, false] {
        let mut args = vec!["config", "--cmdline"];
        let line = format!("initagent.flist.store={store}");
        args.push(&line);
        if json {
            args.push("--json");
        }
        let out = shown(&initagent(&args));
        assert!(
            !out.contains("wJalrX") && !out.contains("EXAMPLEKEY"),
            "{out}"
        );
        assert!(out.contains("carries a credential"), "{out}");
        if json {
            assert!(out.contains(masked), "{out}");
        }
    }
    // Stage 1 records the command line and the configuration: masked, and root's alone.
    let (out, report) = stage1_with(
        "stage1-secret",
        &format!("quiet initagent.handoff=/nonexistent/zinit initagent.flist.store={store}"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    assert!(!shown(&out).contains("wJalrX"), "{}", shown(&out));
    let written = std::fs::read_to_string(&report).unwrap();
    assert!(
        !written.contains("wJalrX") && written.contains(masked),
        "{written}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&report).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let path = report.to_str().unwrap();
    let out = shown(&initagent(&["status", "--report", path]));
    assert!(!out.contains("wJalrX"), "{out}");
    let out = shown(&initagent(&["status", "--json", "--report", path]));
    assert!(!out.contains("wJalrX") && out.contains(masked), "{out}");
}

#[test]
fn config_shows_layers_and_warnings() {
    let dir = scratch("config");
    let profile = dir.join("config.toml");
    std::fs::write(&profile, "log = \"debug\"\nreboot_delay = 3\n").unwrap();
    let out = initagent(&[
        "config",
        "--json",
        "--profile",
        profile.to_str().unwrap(),
        "--cmdline",
        "initagent.reboot_delay=9 initagent.on_failure=sideways",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["config"]["log_level"], "debug");
    assert_eq!(value["config"]["reboot_delay_s"], 9);
    assert_eq!(value["config"]["sources"]["log"], "profile");
    assert_eq!(value["config"]["sources"]["reboot_delay"], "cmdline");
    assert!(value["warnings"][0].as_str().unwrap().contains("sideways"));
    let keys = text(&initagent(&["config", "--keys"]).stdout);
    assert!(keys.contains("initagent.on_failure"));
}

#[test]
fn handoff_dry_run_names_the_next_init() {
    let dir = scratch("handoff");
    let cmdline = dir.join("cmdline");
    std::fs::write(&cmdline, "initagent.handoff=\"/sbin/init --x\"").unwrap();
    let out = initagent(&[
        "handoff",
        "--dry-run",
        "--cmdline-file",
        cmdline.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout).trim(), "would exec: /sbin/init --x");
}

#[test]
fn a_oneshot_that_cannot_do_its_work_says_so_and_lets_the_boot_go_on() {
    // No tree, no list: with --degraded-ok (as the zinit services run them) exit 0 and
    // say why; a person without it gets exit 1.
    let dir = scratch("degraded-ok");
    let root = dir.to_str().unwrap();
    let no_list = dir.join("no-list");
    let cases: [&[&str]; 3] = [
        &[
            "modules",
            "load",
            "--root",
            root,
            "--kernel",
            "6.1.0-0-none",
        ],
        &["coldplug", "--root", root, "--kernel", "6.1.0-0-none"],
        &[
            "depmod",
            "ensure",
            "--root",
            root,
            "--kernel",
            "6.1.0-0-none",
        ],
    ];
    // In a mount namespace with an empty /run: a udevd of this host is never asked to
    // trigger its devices, and nothing lands in the host's /run.
    let run = |args: &[&str]| {
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs none /run && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_initagent"))
            .args(args)
            .output()
            .unwrap()
    };
    for args in cases {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let mut tolerant = args.to_vec();
        tolerant.push("--degraded-ok");
        let out = run(&tolerant);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let said = text(&out.stdout);
        assert!(
            said.contains("degraded: ") && said.contains(root),
            "{args:?}: {said}"
        );
    }
    // The zinit services' form: the same steps, exit 0 because what waits on them may go
    // on, saying why they did nothing.
    for step in ["depmod", "modules", "coldplug"] {
        let out = run(&["step", step, "--root", root, "--kernel", "6.1.0-0-none"]);
        assert_eq!(out.status.code(), Some(0), "{step}: {}", text(&out.stderr));
        let said = text(&out.stdout);
        assert!(
            said.starts_with(&format!("{step}: degraded: "))
                && said.contains(root)
                && said.contains(&format!("{step}: going on")),
            "{step}: {said}"
        );
    }
    let out = run(&["step", "zinit"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown step \"zinit\""));
    // A tree but no module list.
    let kernel = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/modules-mini/tree");
    let out = initagent(&[
        "modules",
        "load",
        "--root",
        kernel.to_str().unwrap(),
        "--kernel",
        "6.1.0-56-amd64",
        "--list",
        no_list.to_str().unwrap(),
        "--degraded-ok",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no-list"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn module_files_out_of_the_tree_or_not_regular_are_refused_by_name() {
    // Maps made by the real depmod over a tree where one module is a symlink leading out
    // of it: resolve and load refuse it, naming the path and why; nothing is loaded.
    let dir = scratch("hostile-tree");
    let release = "6.1.0-0-hostile";
    let tree = dir.join("lib/modules").join(release);
    std::fs::create_dir_all(tree.join("kernel")).unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../shared/fixtures/modules-mini/tree/lib/modules/6.1.0-56-amd64/kernel/net/llc/llc.ko",
    );
    std::fs::copy(&fixture, dir.join("outside.ko")).unwrap();
    std::os::unix::fs::symlink(dir.join("outside.ko"), tree.join("kernel/llc.ko")).unwrap();
    let depmod = Command::new("depmod")
        .arg("-b")
        .arg(&dir)
        .arg(release)
        .status()
        .unwrap();
    assert!(depmod.success());
    let root = dir.to_str().unwrap();
    let out = initagent(&[
        "modules", "resolve", "llc", "--root", root, "--kernel", release,
    ]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("REFUSED: modules.dep path \"kernel/llc.ko\" leads out of")
            && shown.contains("through a symlink"),
        "{shown}"
    );
    let out = initagent(&[
        "modules", "load", "llc", "--root", root, "--kernel", release,
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stdout).contains("llc: FAILED: refused: modules.dep path"),
        "{}",
        text(&out.stdout)
    );
}
