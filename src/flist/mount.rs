//! Mounting an flist: opening it with its stores (or an operator's overrides), mounting
//! `/dev/fuse` with mount(2), serving until unmounted, and telling what is mounted at a
//! target — ours with the same flist, something else, or a stale FUSE mount whose daemon
//! died.

use super::cache::DiskCache;
use super::fs::FlistFs;
use super::fuse::FuseAdapter;
use super::meta::{Manifest, Route};
use super::router::{RetryPolicy, Router};
use super::source::BlockSource;
use super::store::{redact, StoreOptions};
use crate::mountinfo;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The FUSE subtype our mounts carry by default (`fuse.initagent` in /proc/mounts).
pub const SUBTYPE: &str = "initagent";

/// How the FUSE mount itself is made.
#[derive(Debug, Clone)]
pub struct FuseOptions {
    /// The subtype: the mount shows as `fuse.<subtype>`.
    pub subtype: String,
    /// Let users other than root read the mount (`allow_other`).
    pub allow_other: bool,
}

impl Default for FuseOptions {
    fn default() -> Self {
        FuseOptions {
            subtype: SUBTYPE.to_string(),
            allow_other: true,
        }
    }
}

impl FuseOptions {
    /// Checks an operator's subtype: a short word of `[a-z0-9_-]`.
    pub fn with_subtype(subtype: &str) -> Result<FuseOptions, String> {
        let valid = !subtype.is_empty()
            && subtype.len() <= 32
            && subtype
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(format!(
                "--fs-subtype {subtype:?}: use 1 to 32 characters of a-z, 0-9, _ and -"
            ));
        }
        Ok(FuseOptions {
            subtype: subtype.to_string(),
            ..FuseOptions::default()
        })
    }
}

/// How to open an flist.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Use these stores instead of the flist's routes (each covers 00-ff).
    pub stores: Vec<String>,
    /// Rewrite route URLs starting with the first string to start with the second.
    pub rewrites: Vec<(String, String)>,
    /// On-disk cache directory.
    pub cache_dir: Option<PathBuf>,
    /// Bound of the disk cache.
    pub cache_bytes: u64,
    /// Bound of the memory cache.
    pub memory_bytes: u64,
    /// Deadline of one store request (a block gets two of them, over every store).
    pub store_timeout: Option<std::time::Duration>,
    /// PEM file of the CAs that HTTPS/S3 stores are verified against instead of the
    /// bundled web roots.
    pub ca_file: Option<PathBuf>,
}

impl OpenOptions {
    /// Defaults: no disk cache, 64 MiB of memory cache, 1 GiB disk bound.
    pub fn new() -> OpenOptions {
        OpenOptions {
            cache_bytes: 1 << 30,
            memory_bytes: 64 << 20,
            ..OpenOptions::default()
        }
    }
}

/// The routes after the operator's overrides and rewrites.
pub fn effective_routes(manifest: &Manifest, options: &OpenOptions) -> Vec<Route> {
    if !options.stores.is_empty() {
        return options
            .stores
            .iter()
            .map(|url| Route {
                start: 0,
                end: 255,
                url: url.clone(),
            })
            .collect();
    }
    manifest
        .routes()
        .iter()
        .map(|route| {
            let mut url = route.url.clone();
            for (from, to) in &options.rewrites {
                if let Some(rest) = url.strip_prefix(from.as_str()) {
                    url = format!("{to}{rest}");
                    break;
                }
            }
            Route {
                url,
                ..route.clone()
            }
        })
        .collect()
}

/// Opens an flist with its stores and caches.
pub fn open(flist: &Path, options: &OpenOptions) -> Result<Arc<FlistFs>, String> {
    let manifest = Manifest::open(flist).map_err(|e| e.to_string())?;
    let routes = effective_routes(&manifest, options);
    if routes.is_empty() {
        return Err(format!(
            "{}: the flist has no store routes; give one with --store URL",
            flist.display()
        ));
    }
    let (store_options, policy) = match options.store_timeout {
        Some(timeout) => (
            StoreOptions {
                connect_timeout: timeout.min(std::time::Duration::from_secs(3)),
                request_timeout: timeout,
                private_roots: None,
            },
            RetryPolicy {
                rounds: 2,
                deadline: timeout * 2,
                ..RetryPolicy::default()
            },
        ),
        None => (StoreOptions::default(), RetryPolicy::default()),
    };
    let store_options = store_options.with_ca_file(options.ca_file.as_deref())?;
    let router = Router::new(&routes, &store_options, policy)
        .map_err(|e| format!("{}: {e}", flist.display()))?;
    let disk = match &options.cache_dir {
        Some(dir) => Some(
            DiskCache::open(dir, options.cache_bytes)
                .map_err(|e| format!("cache {}: {e}", dir.display()))?,
        ),
        None => None,
    };
    let source = BlockSource::new(router, options.memory_bytes, disk);
    Ok(Arc::new(FlistFs::new(manifest, source)))
}

/// What is at a mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountState {
    /// Nothing is mounted there.
    Absent,
    /// One of ours, serving `source` (the flist's path).
    Ours {
        /// The flist path.
        source: String,
    },
    /// Another filesystem.
    Other {
        /// Its type.
        fstype: String,
        /// Its source.
        source: String,
    },
    /// A FUSE mount whose daemon is gone (ENOTCONN).
    Stale {
        /// Its type.
        fstype: String,
    },
}

/// Inspects `target`; a FUSE mount of type `fuse.<subtype>` is ours.
pub fn state(target: &Path, subtype: &str) -> MountState {
    let target = target
        .canonicalize()
        .unwrap_or_else(|_| target.to_path_buf());
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let entries = mountinfo::parse(&text);
    let Some(entry) = mountinfo::mounted_at(&entries, &target.to_string_lossy()) else {
        return MountState::Absent;
    };
    // statfs always reaches the daemon (attributes may be answered from the kernel's
    // cache even after the daemon died).
    if entry.fstype.starts_with("fuse") {
        if let Err(e) = rustix::fs::statfs(&target) {
            if e == rustix::io::Errno::NOTCONN {
                return MountState::Stale {
                    fstype: entry.fstype.clone(),
                };
            }
        }
    }
    if entry.fstype == format!("fuse.{subtype}") {
        MountState::Ours {
            source: entry.source.clone(),
        }
    } else {
        MountState::Other {
            fstype: entry.fstype.clone(),
            source: entry.source.clone(),
        }
    }
}

/// Whether `target` may take a mount of the flist `source`: `Ok(true)` when it already
/// serves it, `Ok(false)` when it is free (a stale mount whose daemon died is removed
/// first), an error naming what is mounted there otherwise.
pub fn claim(target: &Path, source: &str, subtype: &str) -> Result<bool, String> {
    match state(target, subtype) {
        MountState::Ours { source: mounted } if mounted == source => Ok(true),
        MountState::Ours { source: mounted } => Err(format!(
            "{} already serves another flist ({mounted}); `initagent flist umount {}` first",
            target.display(),
            target.display()
        )),
        MountState::Other { fstype, source } => Err(format!(
            "{} already has a {fstype} mount ({source}); not mounting over it",
            target.display()
        )),
        MountState::Stale { fstype } => {
            log::warn!(
                "{}: stale {fstype} mount (its daemon is gone); replacing it",
                target.display()
            );
            crate::sys::mount::unmount(target, true)
                .map_err(|e| format!("{}: unmounting the stale mount: {e}", target.display()))?;
            Ok(false)
        }
        MountState::Absent => Ok(false),
    }
}

/// Mounts `fs` on `target` and serves it until it is unmounted.
pub fn serve(
    fs: Arc<FlistFs>,
    source_name: &str,
    target: &Path,
    threads: usize,
    fuse: &FuseOptions,
) -> Result<(), String> {
    let fd = crate::sys::mount::fuse_mount(source_name, target, &fuse.subtype, fuse.allow_other)
        .map_err(|e| e.to_string())?;
    let mut config = fuser::Config::default();
    config.n_threads = Some(threads.max(1));
    config.clone_fd = threads > 1;
    let session = fuser::Session::from_fd(FuseAdapter::new(fs), fd, fuser::SessionACL::All, config)
        .map_err(|e| format!("FUSE handshake on {}: {e}", target.display()))?;
    session
        .run()
        .map_err(|e| format!("serving {}: {e}", target.display()))
}

/// Describes the stores of an flist after overrides, redacted.
pub fn describe_routes(routes: &[Route]) -> Vec<String> {
    routes
        .iter()
        .map(|r| format!("{:02x}-{:02x} {}", r.start, r.end, redact(&r.url)))
        .collect()
}
