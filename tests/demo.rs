//! The README's main job: stamp Debian's module tree (`initagent depmod stamp`, as a node
//! image pipeline does), pack it and a firmware tree with `initagent flist pack` into a
//! local store, serve the store from the host inside the run's network namespace, build
//! the initramfs for the `vm-node` target (the agent, the bootstrap modules, the two
//! flist manifests), boot Debian's kernel in QEMU with the agent as /init, and print the
//! boot as the agent reports it: network from QEMU's DHCP, flists mounted lazily, maps
//! checked, boot-critical prefetch, baseline loaded, devices coldplugged, handoff. The
//! next stage is a stand-in for zinit (it runs as PID 1 after the exec and says so) that
//! prints `initagent status` and powers off.

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
        .repo_file("/sbin/zinit", "tests/vm/guest/node-check.sh", 0o755)
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
        println!("next stage running: {line} (the zinit stand-in, exec'd as PID 1)");
    }
    for line in boot.lines("flist-mount: ") {
        println!("flist mounted: {line}");
    }
    println!("--- initagent status, run inside the guest ---");
    for line in boot.lines("status: ") {
        println!("{line}");
    }
    boot.assert_clean();
    let handed_off = boot.report()["result"]["status"] == "handed-off";
    println!(
        "--- {} (files in {}) ---",
        if handed_off {
            "handed off to the next stage"
        } else {
            "DID NOT HAND OFF"
        },
        boot.out_dir.display()
    );
    if !handed_off {
        std::process::exit(1);
    }
}
