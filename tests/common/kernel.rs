//! Debian's kernel as `make setup` leaves it: the unpacked package (module tree with
//! depmod output) and an uncompressed vmlinux, in INITAGENT_KCACHE.

use std::path::PathBuf;

/// The kernel cache directory.
pub fn cache() -> PathBuf {
    std::env::var_os("INITAGENT_KCACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/initagent/kernel"))
}

/// (root holding lib/modules/<release>, release).
pub fn debian_tree() -> (PathBuf, String) {
    let cache = cache();
    let release = std::fs::read_to_string(cache.join("kver")).unwrap_or_else(|_| {
        panic!(
            "{}/kver is missing: run `make test` (it fetches Debian's kernel)",
            cache.display()
        )
    });
    (cache.join("root"), release.trim().to_string())
}
