//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod kernel;
pub mod netns;
pub mod node;
pub mod proxy;
pub mod s3tls;
pub mod servers;
pub mod vm;

/// A fresh scratch directory under target/ for one test.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = vm::repo_root().join("target/scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fixtures made by the real rfs (`../shared/fixtures`, or under INITAGENT_SHARED).
pub fn fixtures() -> std::path::PathBuf {
    let shared = std::env::var_os("INITAGENT_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| vm::repo_root().join("../shared"));
    let fixtures = shared.join("fixtures");
    fixtures.canonicalize().unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the suite needs the shared fixtures beside the checkout (`make setup` \
             says so too)",
            fixtures.display()
        )
    })
}

/// A writable copy of the `modules-mini` fixture's tree (a root holding
/// `lib/modules/<release>`) at `root`, every file dated the same second, as an image
/// pipeline or an flist presents it (a checkout keeps no mtimes).
pub fn dated_fixture_tree(root: &std::path::Path) {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("cp -a \"$0\" \"$1\" && chmod -R u+w \"$1\" && find \"$1\" -exec touch -h -d @1700000000 {} +")
        .arg(fixtures().join("modules-mini/tree"))
        .arg(root)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "copying the fixture's tree to {}",
        root.display()
    );
}

/// The step called `name` in a boot report (JSON).
pub fn step<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {name} in the report: {report:#}"))
}

/// Stage 1's main line, in order (the prefetch runs beside `depmod` and the loads,
/// coldplug beside `modules`: [`assert_stage1_order`]).
pub const MAIN_LINE: &[&str] = &[
    "pseudofs",
    "config",
    "bootstrap",
    "net",
    "flists",
    "depmod",
    "modules",
    "handoff",
];

/// The main line in order, and the steps beside it where they belong: the prefetch
/// between the flists and the handoff; coldplug after the maps check, ending no sooner
/// than the baseline beside it (whose drivers add devices) and before the handoff.
pub fn assert_stage1_order(report: &serde_json::Value) {
    assert_in_order(report, MAIN_LINE);
    assert_in_order(report, &["flists", "prefetch", "handoff"]);
    assert_in_order(report, &["depmod", "coldplug", "handoff"]);
    assert!(
        span(report, "coldplug").1 >= span(report, "modules").1,
        "coldplug ended before the baseline beside it: {report:#}"
    );
}

/// (start, end) of step `name`, in microseconds; it must have ended.
pub fn span(report: &serde_json::Value, name: &str) -> (u64, u64) {
    let s = step(report, name);
    let start = s["start_us"].as_u64().unwrap();
    let end = s["end_us"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} never ended: {report:#}"));
    assert!(end >= start, "{name} ends before it starts");
    (start, end)
}

/// Each of `names` started after the one before it ended.
pub fn assert_in_order(report: &serde_json::Value, names: &[&str]) {
    for pair in names.windows(2) {
        assert!(
            span(report, pair[0]).1 <= span(report, pair[1]).0,
            "{} started before {} ended: {report:#}",
            pair[1],
            pair[0]
        );
    }
}

/// A dynamically linked host program for a VM image: (`dest`, its bytes), then each
/// shared library `ldd` names, at its host path.
pub fn with_libraries(program: &std::path::Path, dest: &str) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(
        dest.to_string(),
        std::fs::read(program)
            .unwrap_or_else(|e| panic!("{}: {e} (make setup)", program.display())),
    )];
    let ldd = std::process::Command::new("ldd")
        .arg(program)
        .output()
        .expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split("=>")
            .last()
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("");
        if path.starts_with('/') {
            let real = std::fs::canonicalize(path).unwrap();
            files.push((path.to_string(), std::fs::read(real).unwrap()));
        }
    }
    files
}

/// `initagent flist pack -m FLIST --store STORE SOURCE`, which must succeed.
pub fn pack(flist: &std::path::Path, store: &str, source: &std::path::Path) {
    let out = agent(&[
        "flist",
        "pack",
        "-m",
        flist.to_str().unwrap(),
        "--store",
        store,
        source.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "flist pack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a shell script in a private mount namespace (its mounts vanish with it); it must
/// succeed.
pub fn sh_in_private_mount_namespace(script: &str) {
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the agent built for these tests and collects its output.
pub fn agent(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_initagent"))
        .args(args)
        .output()
        .unwrap()
}

/// A mounted flist, unmounted (lazily) on drop.
pub struct Mounted {
    pub target: std::path::PathBuf,
    /// The mount daemon's pid, as `flist mount` printed it.
    pub pid: Option<u32>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = agent(&["flist", "umount", "--lazy", self.target.to_str().unwrap()]);
    }
}

/// `initagent flist mount` of `flist` (with `extra` options) on a fresh scratch directory.
pub fn mount(name: &str, flist: &std::path::Path, extra: &[&str]) -> Mounted {
    let target = scratch(name).join("mnt");
    std::fs::create_dir_all(&target).unwrap();
    let mut args = vec!["flist", "mount", "-m", flist.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(target.to_str().unwrap());
    let out = agent(&args);
    assert!(
        out.status.success(),
        "mount {name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    let pid = shown
        .split("(daemon pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok());
    Mounted { target, pid }
}
