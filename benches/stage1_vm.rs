//! Benchmark (not a test): stage 1 of a node in the same QEMU VM (Debian's kernel, TCG,
//! 2 vCPUs, one virtio NIC on QEMU's DHCP), booted three ways, and one table:
//!
//! - initagent: the `vm-node` image (agent, bootstrap set, two flist manifests); the
//!   modules and firmware trees are flists served by the host inside the run's
//!   namespace; stage 1 mounts them, checks the maps, prefetches, loads the baseline,
//!   coldplugs.
//! - the shell flow the seeds describe (zos's /init): busybox /init copies the initramfs
//!   into a tmpfs root, rebuilds udev's hwdb, Debian's systemd-udevd coldplugs (trigger,
//!   settle), kmod's `modprobe -a` loads the same bootstrap set (its PCI and virtio
//!   drivers are udev's, for the devices present) and baseline, udhcpc
//!   configures the NIC, switch_root; the full module and firmware trees are inside the
//!   initramfs (`tests/vm/guest/shell-init.sh`).
//!
//! - the same shell flow without the copy, the hwdb and the switch_root (udev, modprobe,
//!   DHCP only), to show what is left when those are taken away.
//! - initagent with a warm persistent block cache (`vm-cache`: `initagent.flist.cache` on
//!   a virtio disk that an unmeasured boot filled): nothing is fetched.
//!
//! Rows: /init to handoff (goal ≤ 0.5×), kernel start to handoff, initramfs bytes (goal
//! ≤ 0.1×), bytes fetched during stage 1 against the bytes of the modules loaded (goal
//! ≤ 1.2), peak RSS of the agent, its FUSE daemons and udevd; then where each flow spent
//! its time. The order of the flows rotates each round; medians are shown. Run with
//! `make bench`. With `STAGE1_TIMELINE=1` it boots the agent once, cold, and prints when
//! each step ran (seconds from `/init`) and what each coldplug load took, instead of the
//! table (for finding the critical path); `STAGE1_TARGET` and `STAGE1_APPEND` change
//! that boot's image and kernel command line (see `timeline`).

#[path = "../tests/common/mod.rs"]
mod common;

use common::node::{self, NodeStore};
use common::vm::{agent_binary, Boot, Vm};

const ROUNDS: usize = 3;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Seconds since boot at which the zinit stand-in started.
fn handoff_uptime(boot: &Boot) -> f64 {
    boot.results
        .iter()
        .find_map(|l| l.split(" uptime=").nth(1))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no handoff line; {}", boot.explain()))
}

fn rss_kib(boot: &Boot, comm: &str) -> Vec<u64> {
    boot.lines("rss: ")
        .iter()
        .filter(|l| l.starts_with(&format!("{comm} ")))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect()
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The modules in the kernel after the handoff.
fn loaded(boot: &Boot) -> std::collections::BTreeSet<String> {
    boot.lines("module: ")
        .iter()
        .map(|m| m.to_string())
        .collect()
}

/// "name 1.23 s, …": the median of each named part over the rounds, in the first round's
/// order.
fn medians<'a>(rounds: impl Iterator<Item = &'a [(String, f64)]>) -> String {
    let rounds: Vec<&[(String, f64)]> = rounds.collect();
    rounds[0]
        .iter()
        .map(|(name, _)| {
            let seconds = median(
                rounds
                    .iter()
                    .filter_map(|r| r.iter().find(|p| &p.0 == name).map(|p| p.1))
                    .collect(),
            );
            format!("{name} {seconds:.2} s")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

struct AgentRound {
    modules: std::collections::BTreeSet<String>,
    /// Seconds of each stage-1 step, in the report's order.
    steps: Vec<(String, f64)>,
    prefetch_ms_per_mib: f64,
    init_to_handoff: f64,
    loading: f64,
    kernel_to_handoff: f64,
    fetched: u64,
    used: u64,
    agent_rss: u64,
    daemons_rss: Vec<u64>,
    initrd: u64,
}

/// Boots `vm` as the agent's VM (2 vCPUs, the node's flists, the store served).
fn boot_agent(vm: Vm, packed: &NodeStore) -> Boot {
    let boot = vm
        .cpus(2)
        .flist(&packed.modules)
        .flist(&packed.firmware)
        .serve_dir(&packed.store)
        .boot();
    boot.assert_clean();
    boot
}

/// One boot of the agent: the flists' blocks in `/run` (every block fetched), or with
/// `disk` its persistent block cache on that virtio disk.
fn agent_round(round: usize, packed: &NodeStore, disk: Option<&std::path::Path>) -> AgentRound {
    let vm = match disk {
        None => Vm::new(&format!("bench-stage1-agent-{round}"))
            .target("vm-node")
            .repo_file("/sbin/zinit", "tests/vm/guest/node-check.sh", 0o755),
        Some(disk) => Vm::new(&format!("bench-stage1-cached-{round}"))
            .target("vm-cache")
            .repo_file(
                "/sbin/cache-check.sh",
                "tests/vm/guest/node-check.sh",
                0o755,
            )
            .qemu(&[
                "-drive",
                &format!("file={},if=virtio,format=raw", disk.display()),
            ]),
    };
    let boot = boot_agent(vm, packed);
    let report = boot.report();
    assert_eq!(report["result"]["status"], "handed-off", "{report:#}");
    let start_us = common::step(&report, "pseudofs")["start_us"]
        .as_u64()
        .unwrap();
    let handoff = handoff_uptime(&boot);
    let counter = |step: &str, name: &str| {
        common::step(&report, step)["counters"][name]
            .as_u64()
            .unwrap_or(0)
    };
    let daemons: u64 = ["stats-modules", "stats-firmware"]
        .iter()
        .map(|name| boot.json(name)["bytes_fetched"].as_u64().unwrap_or(0))
        .sum();
    let used: u64 = boot
        .lines("used-module: ")
        .iter()
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    let seconds = |name: &str| {
        let step = common::step(&report, name);
        (step["end_us"].as_u64().unwrap_or(0) - step["start_us"].as_u64().unwrap_or(0)) as f64 / 1e6
    };
    let prefetched_mib = counter("prefetch", "bytes_fetched") as f64 / (1 << 20) as f64;
    let steps = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["pid"] == 1)
        .map(|s| {
            let name = s["name"].as_str().unwrap_or("?").to_string();
            (name, seconds(s["name"].as_str().unwrap_or("?")))
        })
        .collect();
    AgentRound {
        modules: loaded(&boot),
        steps,
        prefetch_ms_per_mib: counter("prefetch", "modules_ms") as f64 / prefetched_mib.max(0.01),
        init_to_handoff: handoff - start_us as f64 / 1e6,
        loading: seconds("bootstrap") + seconds("modules") + seconds("coldplug"),
        kernel_to_handoff: handoff,
        // Every step's own fetches (the flists probe, the prefetch, the loads' staging)
        // and the daemons'.
        fetched: report["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["pid"] == 1)
            .filter_map(|s| s["counters"]["bytes_fetched"].as_u64())
            .sum::<u64>()
            + daemons,
        used,
        agent_rss: counter("handoff", "peak_rss_kib"),
        daemons_rss: rss_kib(&boot, "initagent"),
        initrd: file_size(&boot.out_dir.join("initrd.cpio")),
    }
}

/// One cold boot of the agent, and when each stage-1 step ran and what it said. The
/// target is `vm-node` with a stand-in zinit, or `STAGE1_TARGET`'s image with the real
/// zinit (`generic-x86_64`, the fleet image: its bootstrap set has a dozen NIC drivers);
/// `STAGE1_APPEND` adds to the kernel command line (`loglevel=7` shows the kernel's own
/// part of the boot).
fn timeline(packed: &NodeStore) {
    let check = "tests/vm/guest/node-check.sh";
    let vm = match std::env::var("STAGE1_TARGET") {
        Ok(target) => Vm::new("bench-stage1-timeline")
            .target(&target)
            .zinit_with_report(check),
        Err(_) => Vm::new("bench-stage1-timeline")
            .target("vm-node")
            .repo_file("/sbin/zinit", check, 0o755),
    };
    let vm = vm.append(&std::env::var("STAGE1_APPEND").unwrap_or_default());
    let boot = boot_agent(vm, packed);
    let report = boot.report();
    let zero = common::step(&report, "pseudofs")["start_us"]
        .as_u64()
        .unwrap_or(0);
    for step in report["steps"].as_array().into_iter().flatten() {
        let at = |key: &str| step[key].as_u64().unwrap_or(0).saturating_sub(zero) as f64 / 1e6;
        println!(
            "{:>6.2} {:>6.2} {:<10} {} {}",
            at("start_us"),
            at("end_us"),
            step["name"].as_str().unwrap_or("?"),
            step["detail"].as_str().unwrap_or(""),
            step["counters"]
        );
    }
    println!("handoff at uptime {:.2} s", handoff_uptime(&boot));
    let coldplug = boot.json("coldplug");
    for entry in coldplug["result"]["modules"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let (name, outcome) = (&entry[0], &entry[1]);
        println!(
            "coldplug load {:<24} {:<16} {:>6} ms",
            name.as_str().unwrap_or("?"),
            outcome["result"].as_str().unwrap_or("?"),
            outcome["micros"].as_u64().unwrap_or(0) / 1000
        );
    }
}

struct ShellRound {
    modules: std::collections::BTreeSet<String>,
    init_to_handoff: f64,
    kernel_to_handoff: f64,
    udevd_rss: u64,
    initrd: u64,
    /// Seconds of each phase, in order.
    phases: Vec<(String, f64)>,
}

/// One boot of the shell flow: zos's /init as the seeds describe it, or with `minimal`
/// only udev, modprobe and DHCP (no copy to a tmpfs root, no hwdb, no switch_root).
/// The bootstrap set less the drivers the agent loads only for a device present: what
/// the shell flows have modprobe load beside udev (which loads those drivers, for the
/// devices present), decided on the host as the agent decides in the guest.
fn bootstrap_beside_udev(root: &std::path::Path, release: &str) -> String {
    let list = common::vm::repo_root().join("targets/vm-node/bootstrap");
    let names = initagent::kmod::read_list(&list).unwrap();
    let tree = initagent::kmod::tree::ModuleTree::open(root, release, None).unwrap();
    let gate = initagent::kmod::gate::Gate::new(&tree, &names);
    let rest: Vec<&str> = (names.iter())
        .filter(|n| !gate.gates(n))
        .map(String::as_str)
        .collect();
    rest.join("\n") + "\n"
}

fn shell_round(
    round: usize,
    modules_tree: &std::path::Path,
    release: &str,
    minimal: bool,
    beside_udev: &str,
) -> ShellRound {
    let name = if minimal { "minimal" } else { "zos" };
    let mut vm = Vm::new(&format!("bench-stage1-shell-{name}-{round}"))
        .target("vm-node")
        .cpus(2)
        .memory_mb(2048)
        .qemu(&[
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,netdev=n0",
        ])
        .repo_file("/init", "tests/vm/guest/shell-init.sh", 0o755)
        .repo_file("/etc/udhcpc.sh", "tests/vm/guest/udhcpc.sh", 0o755)
        .repo_file("/sbin/zinit", "tests/vm/guest/node-check.sh", 0o755)
        .file("/etc/shell-flow/bootstrap", beside_udev, 0o644)
        .tree(modules_tree, &format!("/lib/modules/{release}"))
        .tree(&node::firmware_tree(), "/lib/firmware")
        .tree(
            std::path::Path::new("/var/cache/initagent/udev/root/lib/udev/hwdb.d"),
            "/lib/udev/hwdb.d",
        )
        .with_debian_udevd()
        .symlink("/opt/kmod/bin/modprobe", "kmod");
    if minimal {
        vm = vm.append("shellflow=minimal");
    }
    for (dest, data) in
        common::with_libraries(std::path::Path::new("/usr/bin/kmod"), "/opt/kmod/bin/kmod")
    {
        vm = vm.file(&dest, data, 0o755);
    }
    let boot = vm.boot();
    boot.assert_clean();
    let start: f64 = boot
        .result("shell-init-start ")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("the shell flow did not finish; {}", boot.explain()));
    let handoff = handoff_uptime(&boot);
    let mut phases = Vec::new();
    let mut last = start;
    for line in boot.lines("shell-phase ") {
        let mut words = line.split_whitespace();
        if let (Some(phase), Some(Ok(at))) = (words.next(), words.next().map(str::parse::<f64>)) {
            phases.push((phase.to_string(), at - last));
            last = at;
        }
    }
    ShellRound {
        modules: loaded(&boot),
        init_to_handoff: handoff - start,
        kernel_to_handoff: handoff,
        udevd_rss: rss_kib(&boot, "systemd-udevd")
            .into_iter()
            .max()
            .unwrap_or(0),
        initrd: file_size(&boot.out_dir.join("initrd.cpio")),
        phases,
    }
}

fn main() {
    let (root, release) = common::kernel::debian_tree();
    let tree = root.join("lib/modules").join(&release);
    // Packed as a node image pipeline does: stamped, so stage 1 proves the maps.
    let stamped = node::stamped_copy("bench-stage1-tree", &tree, &release);
    let packed = node::pack("bench-stage1-store", &stamped, &release);
    if std::env::var_os("STAGE1_TIMELINE").is_some() {
        // For development: one cold boot of the agent and its steps' timeline, no table.
        timeline(&packed);
        return;
    }
    let beside_udev = bootstrap_beside_udev(&root, &release);
    // The persistent cache's disk, filled by one boot that is not measured.
    let disk = common::vm::blank_disk("bench-cache.img", 256 << 20);
    agent_round(99, &packed, Some(&disk));
    let (mut agent, mut zos, mut minimal, mut cached) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // The order rotates, so no flow always boots first.
        for turn in 0..4 {
            match (round + turn) % 4 {
                0 => agent.push(agent_round(round, &packed, None)),
                1 => zos.push(shell_round(round, &tree, &release, false, &beside_udev)),
                2 => minimal.push(shell_round(round, &tree, &release, true, &beside_udev)),
                _ => cached.push(agent_round(round, &packed, Some(&disk))),
            }
        }
    }
    let _ = std::fs::remove_file(&disk);
    let agent_size = file_size(&agent_binary());
    let a = |f: fn(&AgentRound) -> f64| median(agent.iter().map(f).collect());
    let c = |f: fn(&AgentRound) -> f64| median(cached.iter().map(f).collect());
    let mib = |b: f64| b / (1 << 20) as f64;
    println!(
        "stage 1 in QEMU/TCG (-cpu {}), Debian {release} kernel, 2 vCPUs, virtio NIC on QEMU's DHCP; median of {ROUNDS} boots each:",
        common::vm::vm_cpu()
    );
    println!(
        "{:<40} {:>10} {:>10} {:>7} {:>12} {:>7} {:>6}",
        "", "initagent", "zos /init", "ratio", "udev+modprobe", "ratio", "goal"
    );
    let row = |what: &str, ours: f64, zos: f64, minimal: f64, goal: &str| {
        println!(
            "{what:<40} {ours:>8.2} s {zos:>8.2} s {:>6.2}× {minimal:>10.2} s {:>6.2}×  {goal}",
            ours / zos,
            ours / minimal
        );
    };
    // Goals (issue 17): /init to handoff at most 0.35× zos's flow and 1.0× the full tree's;
    // kernel start to handoff at most 0.5× the full tree's.
    let init = |r: &AgentRound| r.init_to_handoff;
    let kernel = |r: &AgentRound| r.kernel_to_handoff;
    for (what, rounds, from_init, goal) in [
        ("/init to handoff", &agent, true, "≤ 0.35 | ≤ 1.0"),
        ("kernel start to handoff", &agent, false, "| ≤ 0.5"),
        ("/init to handoff, warm disk cache", &cached, true, ""),
        (
            "kernel start to handoff, warm disk cache",
            &cached,
            false,
            "",
        ),
    ] {
        let pick = if from_init { init } else { kernel };
        let shell = |r: &ShellRound| {
            if from_init {
                r.init_to_handoff
            } else {
                r.kernel_to_handoff
            }
        };
        row(
            what,
            median(rounds.iter().map(pick).collect()),
            median(zos.iter().map(shell).collect()),
            median(minimal.iter().map(shell).collect()),
            goal,
        );
    }
    // The full-tree image is built by the same builder, which also puts the agent in it:
    // its size is counted without the agent.
    let (a_initrd, s_initrd) = (agent[0].initrd as f64, (zos[0].initrd - agent_size) as f64);
    println!(
        "{:<40} {:>6.1} MiB {:>6.1} MiB {:>6.3}× {:>12} {:>7} {:>6}",
        "initramfs bytes",
        mib(a_initrd),
        mib(s_initrd),
        a_initrd / s_initrd,
        "(same)",
        "",
        "≤ 0.1"
    );
    let (fetched, used) = (a(|r| r.fetched as f64), a(|r| r.used as f64));
    println!(
        "{:<40} {:>6.1} MiB of {:.1} MiB of modules loaded: {:.2} (goal ≤ 1.2)",
        "bytes fetched in stage 1",
        mib(fetched),
        mib(used),
        fetched / used
    );
    println!(
        "{:<40} agent (PID 1) {} KiB, FUSE daemons {} KiB; udevd {} KiB",
        "peak RSS",
        agent[0].agent_rss,
        agent[0]
            .daemons_rss
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" + "),
        zos[0].udevd_rss
    );
    let phases = |rounds: &[ShellRound]| medians(rounds.iter().map(|r| &r.phases[..]));
    let steps = |rounds: &[AgentRound]| medians(rounds.iter().map(|r| &r.steps[..]));
    println!("{:<40} {}", "zos /init by phase", phases(&zos));
    println!("{:<40} {}", "udev+modprobe by phase", phases(&minimal));
    println!(
        "{:<40} loading modules (bootstrap, modules, coldplug) {:.2} s; prefetch {:.0} ms per MiB fetched, verified and decoded in the guest",
        "initagent by part",
        a(|r| r.loading),
        a(|r| r.prefetch_ms_per_mib)
    );
    println!("{:<40} {}", "initagent by step", steps(&agent));
    println!(
        "{:<40} {}",
        "initagent, warm disk cache, by step",
        steps(&cached)
    );
    println!(
        "{:<40} {:.1} MiB (the cold boots: {:.1} MiB)",
        "bytes fetched with a warm disk cache",
        mib(c(|r| r.fetched as f64)),
        mib(fetched)
    );
    let sets = [&agent[0].modules, &zos[0].modules, &minimal[0].modules];
    if sets.iter().all(|set| *set == sets[0]) {
        println!(
            "all three flows end with the same {} modules loaded",
            sets[0].len()
        );
    } else {
        println!(
            "modules loaded differ: initagent {:?}, zos /init {:?}, udev+modprobe {:?}",
            sets[0], sets[1], sets[2]
        );
    }
    println!(
        "(fetched bytes are as stored: compressed, encrypted blocks, the maps included; the module bytes are the plain .ko files loaded; the VM asks for no firmware. zos /init is the seeds' flow: copy to a tmpfs root, hwdb, udev, modprobe, DHCP, switch_root; udev+modprobe is that flow without the copy, the hwdb and the switch_root.)"
    );
}
