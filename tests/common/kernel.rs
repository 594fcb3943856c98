//! The two kernels the suite boots (`docs/testing.md`):
//!
//! * **the current kernel**: whatever Debian ships today, as `make setup` leaves it in
//!   INITAGENT_KCACHE (the unpacked package with depmod output, and an uncompressed
//!   vmlinux). Tests that pack or load its own tree use it; nothing about it is fixed.
//! * **the fixture's kernel**: the one `../shared/fixtures/modules-mini` was packed from by
//!   the real rfs, shipped beside it. Its modules load into that kernel only, so tests
//!   that boot and load modules from the fixture boot it (its vmlinux extracted by `make
//!   setup`), whatever Debian ships.

use std::path::PathBuf;

/// The current kernel's cache directory.
pub fn cache() -> PathBuf {
    std::env::var_os("INITAGENT_KCACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/initagent/kernel"))
}

/// Where `make setup` extracts the fixture kernel's vmlinux.
fn fixture_cache() -> PathBuf {
    std::env::var_os("INITAGENT_FIXTURE_KCACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/initagent/fixture-kernel"))
}

/// A kernel to boot and the module tree that belongs to it.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// What QEMU boots (`-kernel`): an uncompressed vmlinux, entered through PVH.
    pub image: PathBuf,
    /// The directory holding `lib/modules/<release>`.
    pub root: PathBuf,
    pub release: String,
    /// A QEMU NIC model whose driver this tree has.
    pub nic: &'static str,
    /// The `targets/` entry whose module lists this tree holds.
    pub target: &'static str,
}

impl Kernel {
    /// Debian's current kernel (`make setup` fetches it; it changes every few weeks).
    pub fn current() -> Kernel {
        let cache = cache();
        let release = read_setup_file(&cache.join("kver"));
        Kernel {
            image: cache.join("vmlinux"),
            root: cache.join("root"),
            release,
            nic: "virtio-net-pci",
            target: "vm-test",
        }
    }

    /// The kernel the rfs-made `modules-mini` fixture was packed from. Its tree is the
    /// fixture's: 35 modules, no virtio_pci, so the NIC is an e1000.
    pub fn fixture() -> Kernel {
        let fixture = super::fixtures().join("modules-mini");
        let release = read_setup_file(&fixture.join("KVER.txt"));
        Kernel {
            image: fixture_cache().join(format!("vmlinux-{release}")),
            root: fixture.join("tree"),
            release,
            nic: "e1000",
            target: "vm-mini",
        }
    }

    /// `lib/modules/<release>` of this kernel's tree.
    pub fn module_dir(&self) -> PathBuf {
        self.module_dir_in(&self.root)
    }

    /// `lib/modules/<release>` under another root (a copy of the tree).
    pub fn module_dir_in(&self, root: &std::path::Path) -> PathBuf {
        root.join("lib/modules").join(&self.release)
    }
}

fn read_setup_file(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run `make setup` (it fetches Debian's current kernel and \
                 extracts the fixture's)",
                path.display()
            )
        })
        .trim()
        .to_string()
}

/// (root holding lib/modules/<release>, release) of the current kernel.
pub fn debian_tree() -> (PathBuf, String) {
    let kernel = Kernel::current();
    (kernel.root, kernel.release)
}

/// A release string of the same length as `release` that no kernel runs: every digit 9
/// (`6.1.0-28-amd64` → `9.9.9-99-amd64`).
pub fn foreign_release(release: &str) -> String {
    release
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect()
}

/// A copy of a real module that the running kernel must refuse: signature stripped (so
/// the refusal is about the build, not the signature) and vermagic rewritten to
/// [`foreign_release`].
pub fn foreign_module(original: &[u8], release: &str) -> Vec<u8> {
    const MAGIC: &[u8] = b"~Module signature appended~\n";
    let mut data = original.to_vec();
    if data.ends_with(MAGIC) {
        let info_end = data.len() - MAGIC.len();
        let sig_len = u32::from_be_bytes(data[info_end - 4..info_end].try_into().unwrap()) as usize;
        data.truncate(info_end - 12 - sig_len);
    }
    let needle = format!("vermagic={release} SMP");
    let at = data
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .expect("vermagic in module");
    let fake = format!("vermagic={} SMX", foreign_release(release));
    data[at..at + fake.len()].copy_from_slice(fake.as_bytes());
    data
}

/// 5000 bytes that are no module (no ELF header, no `.modinfo`), the same every run.
pub fn garbage_module() -> Vec<u8> {
    (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect()
}

/// `tests/vm/sleepy/sleepy.ko` built for `release` with Kbuild against Debian's
/// `linux-headers-<release>` (installed by `make setup`): a real out-of-tree module whose
/// init sleeps uninterruptibly for `seconds` (its default: ten minutes).
pub fn sleepy_module(release: &str) -> Vec<u8> {
    let build = PathBuf::from("/lib/modules").join(release).join("build");
    assert!(
        build.join("Makefile").exists(),
        "{}: no kernel headers for {release} (run `make setup`: it installs linux-headers-{release})",
        build.display()
    );
    let source = super::vm::repo_root().join("tests/vm/sleepy");
    let dir = super::scratch(&format!("sleepy-{release}"));
    for file in ["sleepy.c", "Kbuild"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let out = std::process::Command::new("make")
        .arg("-C")
        .arg(&build)
        .arg(format!("M={}", dir.display()))
        .arg("modules")
        .output()
        .expect("make (run `make setup`)");
    assert!(
        out.status.success(),
        "building sleepy.ko against {}: {}{}",
        build.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dir.join("sleepy.ko")).unwrap()
}
