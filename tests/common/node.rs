//! A node's stores for the end-to-end VM tests and the main job: a module tree and
//! Debian's `firmware-linux-free` tree packed by `initagent flist pack` into one dir
//! store, with the flists' routes pointing where the guest reaches that store
//! ([`GUEST_STORE_URL`]: the host's server inside the run's network namespace).

use std::path::{Path, PathBuf};

/// The store as the guest sees it (QEMU's user network forwards 10.0.2.2 to the host).
pub const GUEST_STORE_URL: &str = "http://10.0.2.2:8080/";

/// The packed node: the store to serve, and the two manifests for the image.
pub struct NodeStore {
    pub store: PathBuf,
    pub modules: PathBuf,
    pub firmware: PathBuf,
}

/// The firmware tree `make setup` extracts (Debian's `firmware-linux-free`).
pub fn firmware_tree() -> PathBuf {
    let dir = PathBuf::from("/var/cache/initagent/firmware/root/lib/firmware");
    assert!(
        dir.is_dir(),
        "{} is missing: run `make setup`",
        dir.display()
    );
    dir
}

/// Packs `modules_tree` (a `/lib/modules/<release>` directory) and the firmware tree
/// into `<scratch>/store`, names the manifests as stage 1 expects them
/// (`modules-<release>.fl`, `firmware.fl`) and routes them to [`GUEST_STORE_URL`].
pub fn pack(name: &str, modules_tree: &Path, release: &str) -> NodeStore {
    let dir = super::scratch(name);
    let store = dir.join("store");
    let store_url = format!("dir://{}", store.display());
    let modules = dir.join(format!("modules-{release}.fl"));
    let firmware = dir.join("firmware.fl");
    // The release agent (the one the VM runs): a debug build packs 400 MB thirty times
    // slower.
    let agent = |args: &[&str]| {
        std::process::Command::new(super::vm::agent_binary())
            .args(args)
            .output()
            .unwrap()
    };
    let firmware_tree = firmware_tree();
    for (manifest, tree) in [
        (&modules, modules_tree),
        (&firmware, firmware_tree.as_path()),
    ] {
        let (manifest, tree) = (manifest.to_str().unwrap(), tree.to_str().unwrap());
        let out = agent(&["flist", "pack", "-m", manifest, "--store", &store_url, tree]);
        assert!(
            out.status.success(),
            "flist pack {tree}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = agent(&["flist", "route", "set", "-m", manifest, GUEST_STORE_URL]);
        assert!(
            out.status.success(),
            "flist route set: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    NodeStore {
        store,
        modules,
        firmware,
    }
}

/// A copy of the module tree `tree` (hard links, so nothing is copied) with a content
/// stamp (`initagent depmod stamp`), as a node image pipeline packs it: stage 1 then
/// proves the maps without reading them or any module.
pub fn stamped_copy(name: &str, tree: &Path, release: &str) -> PathBuf {
    let root = super::scratch(name);
    let copy = root.join("lib/modules").join(release);
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-al")
        .arg(tree)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success(), "cp -al {}", tree.display());
    let out = std::process::Command::new(super::vm::agent_binary())
        .args([
            "depmod",
            "stamp",
            "--root",
            root.to_str().unwrap(),
            "--kernel",
            release,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "depmod stamp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    copy
}
