//! The README's main job: build the initramfs for the VM target, boot Debian's kernel in
//! QEMU with the agent as /init, and print the agent's own `initagent status` from inside
//! the guest, with the network from QEMU's DHCP. For now the next stage is a stand-in for
//! zinit that prints the report and powers off; later issues add the flists to this boot.

mod common;

use common::vm::Vm;

fn main() {
    // A virtio NIC on QEMU's user network (inside the run's own network namespace): the
    // `net` step gets its lease from QEMU's DHCP server.
    let boot = Vm::new("demo")
        .repo_file("/sbin/zinit", "tests/vm/guest/next-stage.sh", 0o755)
        .qemu(&["-nic", "user,model=virtio-net-pci"])
        .boot();
    println!("--- console (agent lines) ---");
    for line in boot.console.lines().filter(|l| l.contains("initagent:")) {
        println!("{line}");
    }
    println!("--- initagent status, run inside the guest after the handoff ---");
    for line in boot
        .results
        .iter()
        .filter_map(|l| l.strip_prefix("status: "))
    {
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
