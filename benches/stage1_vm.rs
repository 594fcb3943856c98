//! Benchmark (not a test): stage 1 of a node in the same QEMU VM (Debian's kernel, TCG,
//! 2 vCPUs, one virtio NIC on QEMU's DHCP), booted two ways, and one table:
//!
//! - initagent: the `vm-node` image (agent, bootstrap set, two flist manifests); the
//!   modules and firmware trees are flists served by the host inside the run's
//!   namespace; stage 1 mounts them, checks the maps, prefetches, loads the baseline,
//!   coldplugs.
//! - the shell flow the seeds describe: busybox /init, Debian's systemd-udevd (trigger,
//!   settle), kmod's `modprobe -a` of the same bootstrap set and baseline, udhcpc, with
//!   the full module and firmware trees inside the initramfs.
//!
//! Rows: /init to handoff (goal ≤ 0.5×) and the part of it spent loading modules (kernel
//! work the shell flow does too, so a floor of the ratio), kernel start to handoff, initramfs bytes
//! (goal ≤ 0.1×), bytes fetched during stage 1 against the bytes of the modules loaded
//! (goal ≤ 1.2), peak RSS of the agent, its FUSE daemons and of udevd. Rounds alternate
//! the two flows; medians are shown. Run with `make bench`.

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

struct AgentRound {
    modules: std::collections::BTreeSet<String>,
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

fn agent_round(round: usize, packed: &NodeStore) -> AgentRound {
    let boot = Vm::new(&format!("bench-stage1-agent-{round}"))
        .target("vm-node")
        .cpus(2)
        .repo_file("/sbin/zinit", "tests/vm/guest/node-check.sh", 0o755)
        .flist(&packed.modules)
        .flist(&packed.firmware)
        .serve_dir(&packed.store)
        .boot();
    boot.assert_clean();
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
    AgentRound {
        modules: loaded(&boot),
        prefetch_ms_per_mib: counter("prefetch", "modules_ms") as f64 / prefetched_mib.max(0.01),
        init_to_handoff: handoff - start_us as f64 / 1e6,
        loading: seconds("bootstrap") + seconds("modules") + seconds("coldplug"),
        kernel_to_handoff: handoff,
        fetched: counter("flists", "bytes_fetched")
            + counter("prefetch", "bytes_fetched")
            + daemons,
        used,
        agent_rss: counter("handoff", "peak_rss_kib"),
        daemons_rss: rss_kib(&boot, "initagent"),
        initrd: file_size(&boot.out_dir.join("initrd.cpio")),
    }
}

struct ShellRound {
    modules: std::collections::BTreeSet<String>,
    init_to_handoff: f64,
    kernel_to_handoff: f64,
    udevd_rss: u64,
    initrd: u64,
}

fn shell_round(round: usize, modules_tree: &std::path::Path, release: &str) -> ShellRound {
    let mut vm = Vm::new(&format!("bench-stage1-shell-{round}"))
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
        .tree(modules_tree, &format!("/lib/modules/{release}"))
        .tree(&node::firmware_tree(), "/lib/firmware")
        .with_debian_udevd()
        .symlink("/opt/kmod/bin/modprobe", "kmod");
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
    ShellRound {
        modules: loaded(&boot),
        init_to_handoff: handoff - start,
        kernel_to_handoff: handoff,
        udevd_rss: rss_kib(&boot, "systemd-udevd")
            .into_iter()
            .max()
            .unwrap_or(0),
        initrd: file_size(&boot.out_dir.join("initrd.cpio")),
    }
}

fn main() {
    let (root, release) = common::kernel::debian_tree();
    let tree = root.join("lib/modules").join(&release);
    // Packed as a node image pipeline does: stamped, so stage 1 proves the maps.
    let stamped = node::stamped_copy("bench-stage1-tree", &tree, &release);
    let packed = node::pack("bench-stage1-store", &stamped, &release);
    let (mut agent, mut shell) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            agent.push(agent_round(round, &packed));
            shell.push(shell_round(round, &tree, &release));
        } else {
            shell.push(shell_round(round, &tree, &release));
            agent.push(agent_round(round, &packed));
        }
    }
    let agent_size = file_size(&agent_binary());
    let a = |f: fn(&AgentRound) -> f64| median(agent.iter().map(f).collect());
    let s = |f: fn(&ShellRound) -> f64| median(shell.iter().map(f).collect());
    let (a_init, s_init) = (a(|r| r.init_to_handoff), s(|r| r.init_to_handoff));
    let (a_kernel, s_kernel) = (a(|r| r.kernel_to_handoff), s(|r| r.kernel_to_handoff));
    let a_initrd = agent[0].initrd as f64;
    // The full-tree image is built by the same builder, which also puts the agent in it:
    // its size is counted without the agent.
    let s_initrd = (shell[0].initrd - agent_size) as f64;
    let fetched = a(|r| r.fetched as f64);
    let used = a(|r| r.used as f64);
    let mib = |b: f64| b / (1 << 20) as f64;
    println!(
        "stage 1 in QEMU/TCG, Debian {release} kernel, 2 vCPUs, virtio NIC on QEMU's DHCP; median of {ROUNDS} boots each:"
    );
    println!(
        "{:<44} {:>14} {:>14} {:>8} {:>6}",
        "", "initagent", "shell flow", "ratio", "goal"
    );
    println!(
        "{:<44} {:>12.2} s {:>12.2} s {:>7.2}× {:>6}",
        "/init to handoff",
        a_init,
        s_init,
        a_init / s_init,
        "≤ 0.5"
    );
    let loading = a(|r| r.loading);
    println!(
        "{:<44} {:>12.2} s {:>14} {:>7.2}×",
        "  of which loading modules (bootstrap, modules, coldplug)",
        loading,
        "",
        loading / s_init
    );
    println!(
        "{:<44} {:>12.2} s {:>12.2} s {:>7.2}×",
        "kernel start to handoff (incl. initramfs unpack)",
        a_kernel,
        s_kernel,
        a_kernel / s_kernel
    );
    println!(
        "{:<44} {:>10.1} MiB {:>10.1} MiB {:>7.3}× {:>6}",
        "initramfs bytes",
        mib(a_initrd),
        mib(s_initrd),
        a_initrd / s_initrd,
        "≤ 0.1"
    );
    println!(
        "{:<44} {:>10.1} MiB {:>14} {:>7.2}  {:>6}",
        "bytes fetched in stage 1 / bytes of modules loaded",
        mib(fetched),
        format!("{:.1} MiB used", mib(used)),
        fetched / used,
        "≤ 1.2"
    );
    let daemons: Vec<String> = agent[0]
        .daemons_rss
        .iter()
        .map(|k| format!("{k}"))
        .collect();
    println!(
        "{:<44} {:>10} KiB {:>10} KiB",
        "peak RSS: agent (PID 1) / udevd", agent[0].agent_rss, shell[0].udevd_rss
    );
    println!(
        "{:<44} {:>14}",
        "peak RSS of the FUSE daemons, KiB",
        daemons.join(" + ")
    );
    println!(
        "{:<44} {:>10.0} ms/MiB fetched, verified and decoded in the guest (8 at a time)",
        "prefetch of the modules' blocks",
        a(|r| r.prefetch_ms_per_mib)
    );
    let (ours, theirs) = (&agent[0].modules, &shell[0].modules);
    if ours == theirs {
        println!("both flows end with the same {} modules loaded", ours.len());
    } else {
        println!(
            "modules loaded differ: only initagent {:?}, only the shell flow {:?}",
            ours.difference(theirs).collect::<Vec<_>>(),
            theirs.difference(ours).collect::<Vec<_>>()
        );
    }
    println!(
        "(fetched bytes are as stored: compressed and encrypted blocks, the maps included; the module bytes are the plain .ko files loaded. The VM asks for no firmware.)"
    );
    println!(
        "(loading the same modules is kernel work both flows do — module init and probing under TCG; the agent's loading steps alone are the lower bound of its ratio, whatever delivers the trees.)"
    );
}
