//! The image builder: same inputs give the same bytes (modules and regenerated maps
//! included), and GNU cpio (the oracle) reads back what was asked for. The reproducibility
//! test needs the release agent and Debian's kernel tree (`make setup`); the refusals
//! need neither.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[cfg(feature = "system-tests")]
mod common;

#[cfg(feature = "system-tests")]
fn build(out: &Path, epoch: &str, extra: &Path) -> Vec<u8> {
    let (kernel_root, release) = common::kernel::debian_tree();
    let status = Command::new("python3")
        .arg(root().join("initramfs/mkinitramfs.py"))
        .args(["--target", "vm-test", "--agent"])
        .arg(common::vm::agent_binary())
        .arg("--kernel-root")
        .arg(kernel_root)
        .args(["--kernel-release", &release])
        .arg("--add")
        .arg(format!("{}:/sbin/zinit:755", extra.display()))
        .arg("-o")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", epoch)
        .status()
        .expect("python3");
    assert!(status.success());
    std::fs::read(out).unwrap()
}

#[cfg(feature = "system-tests")]
#[test]
fn reproducible_and_readable_by_cpio() {
    let dir = std::env::temp_dir().join(format!("initagent-initramfs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let extra = dir.join("zinit");
    std::fs::write(&extra, "#!/bin/sh\necho hi\n").unwrap();
    let first = build(&dir.join("a.cpio"), "0", &extra);
    let second = build(&dir.join("b.cpio"), "0", &extra);
    assert_eq!(first, second, "two builds from the same inputs differ");
    let later = build(&dir.join("c.cpio"), "1700000000", &extra);
    assert_ne!(first, later, "SOURCE_DATE_EPOCH is not used");

    let listing = Command::new("cpio")
        .args(["-itv", "--quiet", "-F"])
        .arg(dir.join("a.cpio"))
        .output()
        .expect("cpio");
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout);
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| {
                (l.ends_with(&format!(" {name}")) && !l.contains(" -> "))
                    || l.contains(&format!(" {name} -> "))
            })
            .unwrap_or_else(|| panic!("{name} not in the image:\n{listing}"))
            .to_string()
    };
    assert!(line("init").starts_with('l') && line("init").ends_with("-> sbin/initagent"));
    assert!(line("dev/console").starts_with("crw-------"));
    assert!(line("sbin/initagent").starts_with("-rwxr-xr-x"));
    assert!(line("sbin/zinit").starts_with("-rwxr-xr-x"));
    assert!(line("etc/initagent/config.toml").starts_with("-rw-------"));
    assert!(line("bin/sh").contains("-> /bin/busybox"));
    assert!(line("etc/initagent/modules").starts_with("-rw-r--r--"));
    assert!(line("etc/zinit/internet.yaml").starts_with("-rw-r--r--"));
    assert!(line("etc/zinit/net-renew.yaml").starts_with("-rw-r--r--"));
    let (_, release) = common::kernel::debian_tree();
    assert!(line(&format!("lib/modules/{release}/modules.dep.bin")).starts_with("-rw-r--r--"));
    assert!(
        line(&format!("lib/modules/{release}/kernel/fs/fuse/fuse.ko")).starts_with("-rw-r--r--")
    );
    // /sbin/modprobe is the agent's (not busybox's applet): a link to it.
    assert!(
        line("sbin/modprobe").starts_with('l') && line("sbin/modprobe").ends_with("-> initagent"),
        "{}",
        line("sbin/modprobe")
    );
    assert!(!listing.contains("modprobe -> /bin/busybox"), "{listing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "system-tests")]
#[test]
fn a_node_image_carries_the_bootstrap_set_its_firmware_and_the_flists_not_the_baseline() {
    let (kernel_root, release) = common::kernel::debian_tree();
    let dir = common::scratch("initramfs-node");
    // A real manifest of this kernel's tree (a part of it, packed by the agent), named as
    // stage 1 looks for it.
    let manifest = dir.join(format!("modules-{release}.fl"));
    common::pack(
        &manifest,
        &format!("dir://{}", dir.join("store").display()),
        &kernel_root
            .join("lib/modules")
            .join(&release)
            .join("kernel/fs/fuse"),
    );
    // A firmware tree holding what one bootstrap driver names (tg3's tigon firmware) and
    // a file nothing names.
    let firmware = dir.join("firmware");
    std::fs::create_dir_all(firmware.join("tigon")).unwrap();
    std::fs::write(firmware.join("tigon/tg3_tso5.bin"), b"tso5").unwrap();
    std::fs::write(firmware.join("unrelated.bin"), b"x").unwrap();
    let out = dir.join("node.cpio");
    let result = Command::new("python3")
        .arg(root().join("initramfs/mkinitramfs.py"))
        .args(["--target", "generic-x86_64", "--agent"])
        .arg(common::vm::agent_binary())
        .arg("--kernel-root")
        .arg(&kernel_root)
        .args(["--kernel-release", &release])
        .arg("--firmware-root")
        .arg(&firmware)
        .arg("--flist")
        .arg(&manifest)
        .arg("--zinit")
        .arg(common::vm::zinit_binary())
        .arg("-o")
        .arg(&out)
        .output()
        .expect("python3");
    let breakdown = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{breakdown}");
    for part in [
        "initagent",
        "busybox",
        "modules and maps",
        "firmware",
        "flist manifests",
    ] {
        assert!(
            breakdown.contains(&format!("  {part}\n")),
            "no {part:?} in:\n{breakdown}"
        );
    }
    let listing = Command::new("cpio")
        .args(["-it", "--quiet", "-F"])
        .arg(&out)
        .output()
        .expect("cpio");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let has = |suffix: &str| listing.lines().any(|l| l.ends_with(suffix));
    assert!(has(&format!("etc/initagent/flists/modules-{release}.fl")));
    assert!(has("etc/initagent/bootstrap") && has("etc/initagent/modules"));
    assert!(has("sbin/zinit") && has("etc/zinit/net-renew.yaml"));
    assert!(has("lib/firmware/tigon/tg3_tso5.bin"), "{listing}");
    assert!(!has("lib/firmware/unrelated.bin"));
    // The bootstrap set is in the image, the baseline is left to the modules flist.
    for module in ["tg3.ko", "e1000e.ko", "fuse.ko"] {
        assert!(has(module), "{module} missing");
    }
    for module in ["bridge.ko", "vxlan.ko", "nvme.ko"] {
        assert!(!has(module), "{module} is baseline, not bootstrap");
    }
}

/// Runs the builder with `args`, which it must refuse without writing anything; its stderr.
fn refused(args: &[&str]) -> String {
    let _ = std::fs::remove_file("/tmp/never.cpio");
    let out = Command::new("python3")
        .arg(root().join("initramfs/mkinitramfs.py"))
        .args(args)
        .args(["-o", "/tmp/never.cpio"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} was accepted");
    assert!(!Path::new("/tmp/never.cpio").exists());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_target_and_dynamic_binary_are_refused() {
    let stderr = refused(&["--target", "nope", "--agent", "/bin/busybox"]);
    assert!(stderr.contains("no target 'nope'"), "{stderr}");
    let stderr = refused(&["--target", "vm-test", "--agent", "/bin/ls"]);
    assert!(stderr.contains("not statically linked"), "{stderr}");
    // A manifest that is not one, is missing, or that stage 1 would never look for.
    let not_an_flist =
        std::env::temp_dir().join(format!("initagent-{}/firmware.fl", std::process::id()));
    std::fs::create_dir_all(not_an_flist.parent().unwrap()).unwrap();
    std::fs::write(&not_an_flist, "firmware\n").unwrap();
    for (flist, says) in [
        (not_an_flist.to_str().unwrap(), "not an flist"),
        ("/nonexistent/firmware.fl", "No such file"),
        ("/etc/hostname", "name the manifest so"),
    ] {
        let stderr = refused(&[
            "--target",
            "vm-test",
            "--agent",
            "/bin/busybox",
            "--flist",
            flist,
        ]);
        assert!(stderr.contains(says), "{flist}: {stderr}");
    }
    // A node target without the zinit it hands off to.
    let stderr = refused(&["--target", "generic-x86_64", "--agent", "/bin/busybox"]);
    assert!(stderr.contains("--zinit"), "{stderr}");
    // A CA file that holds no certificate.
    let stderr = refused(&[
        "--target",
        "vm-test",
        "--agent",
        "/bin/busybox",
        "--ca-file",
        "/etc/hostname",
    ]);
    assert!(stderr.contains("no PEM certificate"), "{stderr}");
}
