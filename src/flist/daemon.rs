//! The mount daemon as a process: how `initagent flist mount` (and stage 1) start one
//! detached `initagent flist mount --foreground` per flist and wait until it serves, and
//! the daemon's counters file (`--stats FILE`), rewritten while it serves so `status` can
//! show the bytes fetched and the cache hits of every mounted flist.

use super::fs::FlistFs;
use super::mount::{self, MountState};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where stage 1 keeps the counters of the flists it mounted (`<name>.json`).
pub const STATS_DIR: &str = crate::rundir::FLIST_STATS;

/// Everything the daemon's command line carries.
#[derive(Debug, Clone, Default)]
pub struct DaemonRequest {
    /// The flist manifest (absolute).
    pub manifest: PathBuf,
    /// The mount point.
    pub target: PathBuf,
    /// The disk cache directory.
    pub cache: Option<PathBuf>,
    /// Its bound in bytes.
    pub cache_bytes: Option<u64>,
    /// The memory cache's bound in bytes.
    pub memory_bytes: Option<u64>,
    /// Stores that replace the flist's routes.
    pub stores: Vec<String>,
    /// `FROM=TO` route rewrites.
    pub rewrites: Vec<String>,
    /// Seconds one store request may take.
    pub store_timeout: Option<u64>,
    /// CA bundle for HTTPS/S3 stores.
    pub ca_file: Option<PathBuf>,
    /// FUSE subtype.
    pub subtype: String,
    /// `allow_other`.
    pub allow_other: bool,
    /// The counters file.
    pub stats: Option<PathBuf>,
}

/// What a daemon reads on its stdin (`--stores-stdin`): the stores and route rewrites,
/// which may hold credentials.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreSecrets {
    /// Stores that replace the flist's routes.
    pub stores: Vec<String>,
    /// `FROM=TO` route rewrites.
    pub rewrites: Vec<String>,
}

impl StoreSecrets {
    /// Reads them from `input` (the daemon's stdin) to its end, at most 64 KiB.
    pub fn read(input: impl std::io::Read) -> Result<StoreSecrets, String> {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(input, 64 * 1024 + 1), &mut text)
            .map_err(|e| format!("--stores-stdin: {e}"))?;
        if text.len() > 64 * 1024 {
            return Err("--stores-stdin: more than 64 KiB on stdin".into());
        }
        serde_json::from_slice(&text).map_err(|e| {
            format!(
                "--stores-stdin: expected {{\"stores\": [...], \"rewrites\": [...]}} on stdin: {e}"
            )
        })
    }
}

impl DaemonRequest {
    /// The daemon's argv, starting with the agent's own path.
    pub fn argv(&self, exe: &Path) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            exe.display().to_string(),
            "flist".into(),
            "mount".into(),
            "--foreground".into(),
            "-m".into(),
            self.manifest.display().to_string(),
        ];
        if let Some(cache) = &self.cache {
            argv.extend(["--cache".into(), cache.display().to_string()]);
        }
        if let Some(bytes) = self.cache_bytes {
            argv.extend(["--cache-bytes".into(), bytes.to_string()]);
        }
        if let Some(bytes) = self.memory_bytes {
            argv.extend(["--memory-bytes".into(), bytes.to_string()]);
        }
        // Stores and rewrites may carry credentials: they go through stdin, never argv
        // (any user reads /proc/<pid>/cmdline).
        argv.push("--stores-stdin".into());
        if let Some(seconds) = self.store_timeout {
            argv.extend(["--store-timeout".into(), seconds.to_string()]);
        }
        if let Some(ca_file) = &self.ca_file {
            argv.extend(["--ca-file".into(), ca_file.display().to_string()]);
        }
        if let Some(stats) = &self.stats {
            argv.extend(["--stats".into(), stats.display().to_string()]);
        }
        argv.extend(["--fs-subtype".into(), self.subtype.clone()]);
        if !self.allow_other {
            argv.push("--no-allow-other".into());
        }
        argv.push(self.target.display().to_string());
        argv
    }
}

/// A mount daemon found in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Its pid.
    pub pid: i32,
    /// Its state letter from `/proc/<pid>/stat` (`S` sleeping, `T` stopped, `Z` zombie…).
    pub state: char,
}

impl Running {
    /// Stopped by a signal or traced, or a zombie: it serves nothing until someone acts.
    pub fn stopped(&self) -> bool {
        matches!(self.state, 'T' | 't' | 'Z' | 'X')
    }
}

/// Why a mount that did not answer is silent, from the daemons serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// A daemon runs: maybe only busy (every thread waiting on a slow store).
    Busy { pid: i32 },
    /// Its daemon is stopped (or a zombie): it serves nothing until someone acts.
    Stopped { pid: i32, state: char },
    /// No daemon of ours serves it.
    Gone,
}

impl Silence {
    /// Whether the mount may be taken down without taking work from a live daemon.
    pub fn is_dead(self) -> bool {
        !matches!(self, Silence::Busy { .. })
    }
}

/// Why the mount on `target` is silent: busy if any of its daemons runs, else stopped if
/// one is there at all, else gone.
pub fn silence(target: &Path) -> Silence {
    let daemons = running_for(target);
    if let Some(busy) = daemons.iter().find(|d| !d.stopped()) {
        return Silence::Busy { pid: busy.pid };
    }
    match daemons.first() {
        Some(d) => Silence::Stopped {
            pid: d.pid,
            state: d.state,
        },
        None => Silence::Gone,
    }
}

/// The agent's mount daemons serving `target` (`initagent flist mount --foreground … TARGET`),
/// found by their command lines, which never hold a secret.
pub fn running_for(target: &Path) -> Vec<Running> {
    let absolute = std::env::current_dir()
        .map(|dir| dir.join(target))
        .unwrap_or_else(|_| target.to_path_buf());
    let names = [
        target.as_os_str().as_encoded_bytes(),
        absolute.as_os_str().as_encoded_bytes(),
    ];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let ours = names.iter().any(|name| is_daemon_for(&cmdline, name));
        if !ours || pid == std::process::id() as i32 {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) STATE …: the comm may hold spaces and parentheses, the state follows
        // the last ')'.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .unwrap_or('?');
        found.push(Running { pid, state });
    }
    found
}

/// Whether a NUL-separated command line is a foreground mount daemon for `target`.
fn is_daemon_for(cmdline: &[u8], target: &[u8]) -> bool {
    let args: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    args.windows(2)
        .any(|w| w == [b"flist".as_slice(), b"mount".as_slice()])
        && args.contains(&b"--foreground".as_slice())
        && args.last() == Some(&target)
}

/// The OOM score a mount daemon gives itself: the kernel kills it last (a node without
/// its module tree cannot load a driver again), yet not never (`-1000`), so that a daemon
/// that somehow ran away can still be stopped.
pub const OOM_SCORE_ADJ: i32 = -999;

/// Lowers this process's OOM score to [`OOM_SCORE_ADJ`] (the daemon calls it first).
pub fn lower_oom_score() {
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", OOM_SCORE_ADJ.to_string()) {
        log::warn!("/proc/self/oom_score_adj: {e}; the daemon keeps the default OOM score");
    }
}

/// Starts the daemon detached and waits up to `wait` until `target` serves the flist;
/// returns the daemon's pid.
pub fn start(request: &DaemonRequest, wait: Duration) -> Result<i32, String> {
    spawn(request)?.serve(wait)
}

/// A daemon started without its stores: it reads its manifest meanwhile, then waits for
/// the stores on its stdin, and mounts only once [`Starting::serve`] hands them over.
/// Dropped before that, it is killed, and nothing was mounted. Stage 1 starts it beside
/// its probe of the store, so the manifest's reading is not on the boot's path.
pub struct Starting {
    child: Option<crate::sys::process::Child>,
    /// The write end of the daemon's stdin, and what goes through it.
    stores: Option<(std::fs::File, Vec<u8>)>,
    target: PathBuf,
    subtype: String,
    source: String,
}

/// Spawns the daemon for `request` (see [`Starting`]).
pub fn spawn(request: &DaemonRequest) -> Result<Starting, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the agent's own path: {e}"))?;
    spawn_argv(&request.argv(&exe), request)
}

/// [`spawn`] with the daemon's command line given.
fn spawn_argv(argv: &[String], request: &DaemonRequest) -> Result<Starting, String> {
    let secrets = StoreSecrets {
        stores: request.stores.clone(),
        rewrites: request.rewrites.clone(),
    };
    let handing = |e: std::io::Error| format!("handing the stores to the mount daemon: {e}");
    let payload = serde_json::to_vec(&secrets)
        .map_err(std::io::Error::other)
        .map_err(handing)?;
    let (stdin, write) = crate::sys::process::pipe_for(payload.len()).map_err(handing)?;
    let child = crate::sys::process::spawn(
        argv,
        &["PATH=/sbin:/usr/sbin:/bin:/usr/bin".to_string()],
        crate::sys::process::SpawnOptions {
            detach: true,
            stdin: Some(std::os::fd::AsFd::as_fd(&stdin)),
            ..Default::default()
        },
    )
    .map_err(|e| format!("starting the mount daemon: {e}"))?;
    Ok(Starting {
        child: Some(child),
        stores: Some((write, payload)),
        target: request.target.clone(),
        subtype: request.subtype.clone(),
        source: request.manifest.display().to_string(),
    })
}

impl Starting {
    /// Hands the daemon its stores and waits up to `wait` until the target serves the
    /// flist; returns the daemon's pid.
    pub fn serve(mut self, wait: Duration) -> Result<i32, String> {
        if let Some((mut pipe, payload)) = self.stores.take() {
            // A daemon that already ended reads nothing (EPIPE): the wait below says why.
            let _ = std::io::Write::write_all(&mut pipe, &payload);
        }
        let Some(child) = self.child.take() else {
            return Err("the mount daemon was not started".into());
        };
        let deadline = Instant::now() + wait;
        loop {
            if let MountState::Ours { source: mounted } = mount::state(&self.target, &self.subtype)
            {
                if mounted == self.source && std::fs::read_dir(&self.target).is_ok() {
                    return Ok(child.pid());
                }
            }
            // Looked for every 5 ms: the mount is up within tens of milliseconds, and
            // each look is one read of mountinfo.
            if let Ok(Some(exit)) =
                crate::sys::process::wait(&child, Some(Instant::now() + Duration::from_millis(5)))
            {
                return Err(format!(
                    "the mount daemon for {} ended ({exit}); run with --foreground to see why (its log is in dmesg)",
                    self.target.display()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} was not serving within {} s",
                    self.target.display(),
                    wait.as_secs()
                ));
            }
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        // Not handed its stores: it has not mounted, and never will.
        if let (Some(child), Some(_)) = (self.child.take(), self.stores.as_ref()) {
            let _ = crate::sys::process::stop(&child, Duration::ZERO);
        }
    }
}

/// The counters file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DaemonStats {
    /// The flist manifest.
    pub flist: String,
    /// The mount point.
    pub target: String,
    /// The daemon's pid.
    pub pid: u32,
    /// Blocks served from memory.
    pub memory_hits: u64,
    /// Blocks served from the disk cache (among them, what stage 1 prefetched).
    pub disk_hits: u64,
    /// Blocks fetched from the stores.
    pub fetched: u64,
    /// Bytes fetched from the stores.
    pub bytes_fetched: u64,
    /// Blobs that failed verification.
    pub corrupt: u64,
    /// Blocks fetched that the disk cache could not keep (`/run` full).
    #[serde(default)]
    pub not_kept: u64,
    /// The daemon's peak resident memory, KiB.
    pub peak_rss_kib: u64,
}

/// Rewrites `path` every second while the counters change, on a thread of its own.
pub fn keep_stats(fs: Arc<FlistFs>, flist: &str, target: &Path, path: PathBuf) {
    let identity = DaemonStats {
        flist: flist.to_string(),
        target: target.display().to_string(),
        pid: std::process::id(),
        ..DaemonStats::default()
    };
    let spawned = std::thread::Builder::new()
        .name("flist-stats".into())
        .spawn(move || {
            let mut written: Option<DaemonStats> = None;
            loop {
                let stats = fs.source.stats();
                let now = DaemonStats {
                    memory_hits: stats.memory_hits,
                    disk_hits: stats.disk_hits,
                    fetched: stats.fetched,
                    bytes_fetched: stats.bytes_fetched,
                    corrupt: stats.corrupt,
                    not_kept: stats.not_kept,
                    peak_rss_kib: crate::sys::peak_rss_kib("self").unwrap_or(0),
                    ..identity.clone()
                };
                if written.as_ref() != Some(&now) {
                    if let Some(dir) = path.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    let text = serde_json::to_vec_pretty(&now).unwrap_or_default();
                    if let Err(e) = crate::fsutil::write_atomic(&path, &text) {
                        log::warn!("{}: {e}", path.display());
                    }
                    written = Some(now);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    if let Err(e) = spawned {
        log::warn!("no counters file: {e}");
    }
}

/// Reads every counters file in `dir` (name without `.json` → counters).
pub fn read_stats(dir: &Path) -> Vec<(String, DaemonStats)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        if let Ok(stats) = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|raw| serde_json::from_slice(&raw).map_err(|e| e.to_string()))
        {
            found.push((name.to_string(), stats));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in daemon: reads its stdin to the end, then leaves a mark where the real
    /// one would mount.
    fn stand_in(mark: &Path) -> (Vec<String>, DaemonRequest) {
        let script = format!("cat > /dev/null; echo mounted > {}", mark.display());
        let argv = ["/bin/sh", "-c", &script].map(String::from).to_vec();
        let request = DaemonRequest {
            stores: vec!["http://user:secret@store.example/".into()],
            target: mark.to_path_buf(),
            ..DaemonRequest::default()
        };
        (argv, request)
    }

    #[test]
    fn a_daemon_not_handed_its_stores_is_killed_before_it_mounts() {
        let dir = crate::testing::scratch("daemon-killed");
        let mark = dir.join("mark");
        let (argv, request) = stand_in(&mark);
        let starting = spawn_argv(&argv, &request).unwrap();
        let pid = starting.child.as_ref().map(|c| c.pid()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(starting);
        // Killed and reaped: no such process any more, and it never got to its mount.
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None);
        assert_eq!(gone, Err(nix::errno::Errno::ESRCH));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!mark.exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_daemon_handed_its_stores_goes_on_and_the_wait_says_why_it_ended() {
        let dir = crate::testing::scratch("daemon-served");
        let mark = dir.join("mark");
        let (argv, request) = stand_in(&mark);
        // The stand-in ends after its "mount" without serving: the wait says so.
        let err = spawn_argv(&argv, &request)
            .unwrap()
            .serve(Duration::from_secs(10))
            .unwrap_err();
        assert!(err.contains("ended (exit code 0)"), "{err}");
        assert_eq!(std::fs::read_to_string(&mark).unwrap(), "mounted\n");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn daemons_are_found_by_their_command_line() {
        let argv = |words: &[&str]| words.join("\0").into_bytes();
        let daemon = argv(&[
            "/sbin/initagent",
            "flist",
            "mount",
            "--foreground",
            "-m",
            "/etc/a.fl",
            "--stores-stdin",
            "/lib/firmware",
        ]);
        assert!(is_daemon_for(&daemon, b"/lib/firmware"));
        assert!(!is_daemon_for(&daemon, b"/lib/firmwar"));
        assert!(!is_daemon_for(
            &argv(&["initagent", "flist", "mount", "/lib/firmware"]),
            b"/lib/firmware"
        ));
        assert!(!is_daemon_for(b"", b"/lib/firmware"));
        assert!(Running { pid: 1, state: 'T' }.stopped());
        assert!(!Running { pid: 1, state: 'D' }.stopped());
    }

    #[test]
    fn credentials_never_reach_the_argv() {
        let request = DaemonRequest {
            manifest: "/etc/initagent/flists/firmware.fl".into(),
            target: "/lib/firmware".into(),
            stores: vec!["s3s://AK:S/K+=@h/b?region=g".into()],
            rewrites: vec!["s3://x:y@h/=s3://AK:S/K+=@h/".into()],
            ca_file: Some("/etc/initagent/ca.pem".into()),
            ..DaemonRequest::default()
        };
        let argv = request.argv(Path::new("/sbin/initagent")).join(" ");
        assert!(!argv.contains("S/K") && !argv.contains("x:y"), "{argv}");
        assert!(
            argv.contains("--stores-stdin") && argv.contains("--ca-file /etc/initagent/ca.pem")
        );
    }

    #[test]
    fn store_secrets_from_stdin() {
        let secrets = StoreSecrets {
            stores: vec!["s3://AK:SK@h/b".into()],
            rewrites: vec![],
        };
        let text = serde_json::to_vec(&secrets).unwrap();
        assert_eq!(StoreSecrets::read(&text[..]).unwrap(), secrets);
        let err = StoreSecrets::read(&b"--store s3://AK:SK@h/b"[..]).unwrap_err();
        assert!(
            err.contains("--stores-stdin") && !err.contains("SK"),
            "{err}"
        );
        let huge = vec![b' '; 70 * 1024];
        assert!(StoreSecrets::read(&huge[..])
            .unwrap_err()
            .contains("64 KiB"));
    }
}
