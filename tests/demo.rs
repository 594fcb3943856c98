//! The README's main job: stamp Debian's module tree (`initagent depmod stamp`, as a node
//! image pipeline does), pack it and a firmware tree with `initagent flist pack` into a
//! local store, serve the store from the host inside the run's network namespace, build
//! the initramfs for the `vm-node` target (the agent, the bootstrap modules, the two
//! flist manifests), boot Debian's kernel in QEMU with the agent as /init, and print the
//! boot as the agent reports it: network from QEMU's DHCP, flists mounted lazily, maps
//! checked, boot-critical prefetch, baseline loaded, devices coldplugged, handoff to the
//! real zinit (Zero-OS's, v0.2.14) as PID 1, which runs the agent's services; a oneshot of
//! the demo then prints `initagent status` and `zinit list` from inside the guest and
//! powers off.

mod common;

use common::node;
use common::vm::Vm;

fn main() {
    let (root, release) = common::kernel::debian_tree();
    let tree = root.join("lib/modules").join(&release);
    println!(
        "--- stamping and packing {} and the firmware tree into a local store ---",
        tree.display()
    );
    let stamped = node::stamped_copy("demo-tree", &tree, &release);
    let packed = node::pack("demo-store", &stamped, &release);
    let boot = Vm::new("demo")
        .target("vm-node")
        .zinit_with_report("tests/vm/guest/node-check.sh")
        .flist(&packed.modules)
        .flist(&packed.firmware)
        .serve_dir(&packed.store)
        .boot();
    println!("--- console (agent lines) ---");
    for line in boot.console.lines().filter(|l| l.contains("initagent")) {
        println!("{line}");
    }
    println!("--- after the handoff, inside the guest ---");
    for line in boot.lines("handoff ") {
        println!("next stage running: {line}");
    }
    for line in boot.lines("flist-mount: ") {
        println!("flist mounted: {line}");
    }
    println!("--- initagent status, run inside the guest ---");
    for line in boot.lines("status: ") {
        println!("{line}");
    }
    println!("--- zinit list, run inside the guest ---");
    for line in boot.lines("zinit-list: ") {
        println!("{line}");
    }
    boot.assert_clean();
    let handed_off = boot.report()["result"]["status"] == "handed-off"
        && boot.results.iter().any(|l| l.contains(" pid1=zinit "));
    println!(
        "--- {} (files in {}) ---",
        if handed_off {
            "handed off to zinit"
        } else {
            "DID NOT HAND OFF"
        },
        boot.out_dir.display()
    );
    if !handed_off {
        std::process::exit(1);
    }
}
