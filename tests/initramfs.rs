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
    assert!(line("etc/initagent/config.toml").starts_with("-rw-r--r--"));
    assert!(line("bin/sh").contains("-> /bin/busybox"));
    assert!(line("etc/initagent/modules").starts_with("-rw-r--r--"));
    assert!(line("etc/zinit/internet.yaml").starts_with("-rw-r--r--"));
    assert!(line("etc/zinit/net-renew.yaml").starts_with("-rw-r--r--"));
    let (_, release) = common::kernel::debian_tree();
    assert!(line(&format!("lib/modules/{release}/modules.dep.bin")).starts_with("-rw-r--r--"));
    assert!(
        line(&format!("lib/modules/{release}/kernel/fs/fuse/fuse.ko")).starts_with("-rw-r--r--")
    );
    assert!(
        !listing
            .lines()
            .any(|l| l.ends_with(" sbin/modprobe") || l.contains(" sbin/modprobe -> ")),
        "busybox modprobe is in the image"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_target_and_dynamic_binary_are_refused() {
    let out = Command::new("python3")
        .arg(root().join("initramfs/mkinitramfs.py"))
        .args([
            "--target",
            "nope",
            "--agent",
            "/bin/busybox",
            "-o",
            "/tmp/never.cpio",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no target 'nope'"));
    let out = Command::new("python3")
        .arg(root().join("initramfs/mkinitramfs.py"))
        .args([
            "--target",
            "vm-test",
            "--agent",
            "/bin/ls",
            "-o",
            "/tmp/never.cpio",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not statically linked"));
    assert!(!Path::new("/tmp/never.cpio").exists());
}
