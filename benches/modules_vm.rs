//! Benchmark (not a test): in one VM boot of Debian's kernel, load the VM target's module
//! list with kmod's `modprobe -a` (sequential) and with `initagent modules load`, six
//! rounds alternating the order, and print both medians and the ratio (goal ≤ 0.6×).
//! Run with `make bench`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::vm::Vm;

/// kmod's binary and the shared libraries it needs, at their host paths.
fn kmod_files() -> Vec<(String, Vec<u8>)> {
    common::with_libraries(std::path::Path::new("/usr/bin/kmod"), "/opt/kmod/bin/kmod")
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

fn main() {
    let mut vm = Vm::new("bench-modules")
        .repo_file("/sbin/zinit", "tests/vm/guest/bench-modules.sh", 0o755)
        .append("initagent.skip=modules")
        .cpus(2);
    for (dest, data) in kmod_files() {
        vm = vm.file(&dest, data, 0o755);
    }
    vm = vm.symlink("/opt/kmod/bin/modprobe", "kmod");
    let boot = vm.boot();
    boot.assert_clean();
    let times = |tool: &str| -> Vec<u64> {
        boot.results
            .iter()
            .filter(|l| l.starts_with(&format!("{tool} round=")))
            .map(|l| {
                assert!(l.contains(" rc=0 "), "{l}\n{}", boot.explain());
                l.split(" ns=")
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    };
    let (kmod, agent) = (times("kmod"), times("initagent"));
    assert!(kmod.len() == 6 && agent.len() == 6, "{}", boot.explain());
    for warning in boot.results.iter().filter(|l| l.starts_with("warning")) {
        println!("{warning}");
    }
    let modules = boot
        .results
        .iter()
        .find_map(|l| l.split(" modules=").nth(1))
        .unwrap_or("?");
    let (kmod_ms, agent_ms) = (median(kmod) as f64 / 1e6, median(agent) as f64 / 1e6);
    println!("module loading in QEMU/TCG, Debian {} kernel, {modules} modules (the vm-test list and its dependencies), 2 vCPUs, median of 6 rounds:", common::kernel::debian_tree().1);
    println!("  modprobe -a (kmod, sequential): {kmod_ms:8.1} ms");
    println!("  initagent modules load:         {agent_ms:8.1} ms");
    println!(
        "  ratio initagent/kmod:           {:8.2}  (goal <= 0.60)",
        agent_ms / kmod_ms
    );
}
