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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    /// Defaults: no disk cache, 16 MiB of memory cache, 1 GiB disk bound. The memory
    /// cache bridges the kernel's partial reads of a block and holds the blocks read
    /// ahead; the files' content stays in the kernel's page cache (kept between opens),
    /// so a larger one mostly holds the same bytes twice.
    pub fn new() -> OpenOptions {
        OpenOptions {
            cache_bytes: 1 << 30,
            memory_bytes: 16 << 20,
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
    let manifest = Manifest::open_shared(flist).map_err(|e| e.to_string())?;
    let routes = effective_routes(&manifest, options);
    if routes.is_empty() {
        return Err(format!(
            "{}: the flist has no store routes; give one with --store URL",
            flist.display()
        ));
    }
    let gaps = super::router::uncovered(&routes);
    if !gaps.is_empty() {
        let gaps: Vec<String> = gaps
            .iter()
            .map(|(a, b)| format!("{a:02x}-{b:02x}"))
            .collect();
        return Err(format!(
            "{}: no store route covers blocks whose id starts with {} (routes: {}); \
             add one with `initagent flist route set`, or give --store URL",
            flist.display(),
            gaps.join(", "),
            describe_routes(&routes).join(", ")
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
    /// A mount that did not answer within [`ANSWER_WITHIN`]: its daemon is stopped
    /// (SIGSTOP), stuck, or busy with every thread.
    NotAnswering {
        /// Its type.
        fstype: String,
        /// Its source.
        source: String,
        /// Its FUSE connection (`/sys/fs/fuse/connections/<n>`), for FUSE mounts.
        connection: Option<u32>,
    },
}

/// How long a mount gets to answer `statfs` before it counts as not answering. Every
/// inspection of a mount is bounded by it: `status`, `flist mount` and `umount`, the
/// `flists` step.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Inspects `target`; a FUSE mount of type `fuse.<subtype>` is ours. Whatever the mount's
/// daemon does, this returns within [`ANSWER_WITHIN`] (the look that may reach the
/// daemon runs on a thread of its own, left behind if it does not return).
pub fn state(target: &Path, subtype: &str) -> MountState {
    let (sender, receiver) = std::sync::mpsc::channel();
    let (path, owned_subtype) = (target.to_path_buf(), subtype.to_string());
    let spawned = std::thread::Builder::new()
        .name("mount-probe".into())
        .spawn(move || {
            let _ = sender.send(inspect(&path, &owned_subtype));
        });
    if spawned.is_err() {
        return inspect(target, subtype);
    }
    match receiver.recv_timeout(ANSWER_WITHIN) {
        Ok(state) => state,
        Err(_) => not_answering(target),
    }
}

fn inspect(target: &Path, subtype: &str) -> MountState {
    let target = target
        .canonicalize()
        .unwrap_or_else(|_| target.to_path_buf());
    let Some(entry) = crate::sys::mount::mounted_at(&target) else {
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

/// The mount at `target` described without touching it (canonicalize and statfs would
/// wait for its daemon): the path is only made absolute.
fn not_answering(target: &Path) -> MountState {
    let absolute = std::env::current_dir()
        .map(|dir| dir.join(target))
        .unwrap_or_else(|_| target.to_path_buf());
    match crate::sys::mount::mounted_at(&absolute) {
        Some(entry) => MountState::NotAnswering {
            fstype: entry.fstype.clone(),
            source: entry.source.clone(),
            connection: entry.fuse_connection(),
        },
        None => MountState::NotAnswering {
            fstype: "unknown".into(),
            source: String::new(),
            connection: None,
        },
    }
}

/// Where the kernel's FUSE control filesystem is mounted.
const FUSECTL: &str = "/sys/fs/fuse/connections";

/// Takes a mount whose daemon does not answer out of the way, without waiting for it:
/// aborts its FUSE connection (every request waiting on it fails, the mount turns stale),
/// kills its daemons if they are ours, and detaches the mount. Returns what it did.
pub fn release(target: &Path, connection: Option<u32>) -> Result<String, String> {
    let mut done = Vec::new();
    if let Some(connection) = connection {
        match abort_connection(connection) {
            Ok(()) => done.push(format!("aborted FUSE connection {connection}")),
            Err(e) => log::warn!("{}: {e}", target.display()),
        }
    }
    for daemon in super::daemon::running_for(target) {
        let pid = nix::unistd::Pid::from_raw(daemon.pid);
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
            done.push(format!(
                "killed its daemon (pid {}, {})",
                daemon.pid, daemon.state
            ));
        }
    }
    crate::sys::mount::unmount(target, true)
        .map_err(|e| format!("{}: detaching the mount: {e}", target.display()))?;
    done.push("detached the mount".into());
    Ok(done.join(", "))
}

fn abort_connection(connection: u32) -> Result<(), String> {
    let dir = Path::new(FUSECTL).join(connection.to_string());
    if !dir.exists() {
        // Not mounted yet (an initramfs mounts only what it needs).
        let _ = crate::sys::mount::mount(
            "fusectl",
            FUSECTL,
            "fusectl",
            rustix::mount::MountFlags::empty(),
            "",
        );
    }
    std::fs::write(dir.join("abort"), "1")
        .map_err(|e| format!("{}: {e}", dir.join("abort").display()))
}

/// Whether `target` may take a mount of the flist `source`: `Ok(true)` when it already
/// serves it, `Ok(false)` when it is free (a stale mount whose daemon died, or one whose
/// daemon is stopped or gone, is removed first), an error naming what is mounted there
/// otherwise.
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
        MountState::NotAnswering {
            fstype,
            source: mounted,
            connection,
        } => {
            if fstype != format!("fuse.{subtype}") {
                return Err(format!(
                    "{} has a {fstype} mount ({mounted}) that did not answer within {:.1} s; \
                     not ours, not touching it",
                    target.display(),
                    ANSWER_WITHIN.as_secs_f32()
                ));
            }
            // A daemon that runs may only be busy (every thread waiting on a slow
            // store): it is not taken down under the operator's feet.
            if let super::daemon::Silence::Busy { pid } = super::daemon::silence(target) {
                return Err(format!(
                    "{} ({fstype}, {mounted}) did not answer within {:.1} s, and its daemon \
                     (pid {pid}) is running: busy or stuck; `initagent flist umount {}` takes it down",
                    target.display(),
                    ANSWER_WITHIN.as_secs_f32(),
                    target.display()
                ));
            }
            let done = release(target, connection)?;
            log::warn!(
                "{}: {fstype} mount did not answer and its daemon is stopped or gone: {done}; replacing it",
                target.display()
            );
            Ok(false)
        }
        MountState::Absent => Ok(false),
    }
}

/// The kernel's readahead on a mounted flist, KiB.
const READAHEAD_KIB: u32 = 4096;

/// Mounts `fs` on `target` and serves it until it is unmounted.
pub fn serve(
    fs: Arc<FlistFs>,
    source_name: &str,
    target: &Path,
    threads: usize,
    fuse: &FuseOptions,
) -> Result<(), String> {
    let canonical = target
        .canonicalize()
        .unwrap_or_else(|_| target.to_path_buf());
    let fd = crate::sys::mount::fuse_mount(source_name, target, &fuse.subtype, fuse.allow_other)
        .map_err(|e| e.to_string())?;
    let mut config = fuser::Config::default();
    config.n_threads = Some(threads.max(1));
    config.clone_fd = threads > 1;
    let session = fuser::Session::from_fd(FuseAdapter::new(fs), fd, fuser::SessionACL::All, config)
        .map_err(|e| format!("FUSE handshake on {}: {e}", target.display()))?;
    // The kernel reads ahead 128 KiB on FUSE mounts by default: READ requests of 128 KiB
    // at most, four per block. Read ahead further, so sequential readers (module loading,
    // firmware, `cat`) get whole blocks per request.
    // (Found through mountinfo: a stat of the mount point would wait for this daemon.)
    match crate::sys::mount::mounted_at(&canonical) {
        Some(entry) => {
            if let Err(e) = crate::sys::mount::set_readahead(&entry.device, READAHEAD_KIB) {
                log::debug!("{}: readahead left as it is: {e}", target.display());
            }
        }
        None => log::debug!(
            "{}: not in mountinfo; readahead left as it is",
            target.display()
        ),
    }
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
