//! Prefetch: fetch the blocks of given files (or whole directories) into the cache,
//! concurrently and bounded, within a deadline — so that what stage 1 is about to load
//! (modules, firmware) is already local when the kernel asks for it.

use super::fs::FlistFs;
use super::meta::BlockRef;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Parallel fetches at most: two per CPU (one decoding while the other waits for the
/// store), up to eight (enough to hide a remote store's latency). Each holds a block
/// encoded and decoded (about 1 MiB), which is most of PID 1's memory while it prefetches.
pub(crate) fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get() * 2)
        .clamp(2, 8)
}

/// What a prefetch did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PrefetchReport {
    /// Files whose blocks were wanted.
    pub files: u64,
    /// Distinct blocks wanted.
    pub blocks: u64,
    /// Blocks this prefetch fetched from stores (not those another reader was fetching:
    /// it waited for them).
    pub fetched: u64,
    /// Stored bytes of those.
    pub bytes_fetched: u64,
    /// Blocks already cached, or fetched meanwhile by another reader this one waited for.
    pub cached: u64,
    /// Blocks that could not be had.
    pub failed: u64,
    /// Blocks fetched that the disk cache could not keep (its filesystem full).
    pub not_kept: u64,
    /// The deadline passed before every block was had.
    pub timed_out: bool,
    /// Paths that are not in the flist.
    pub not_found: Vec<String>,
}

impl PrefetchReport {
    /// Adds what another prefetch did.
    pub fn add(&mut self, other: &PrefetchReport) {
        self.files += other.files;
        self.blocks += other.blocks;
        self.fetched += other.fetched;
        self.bytes_fetched += other.bytes_fetched;
        self.cached += other.cached;
        self.failed += other.failed;
        self.not_kept += other.not_kept;
        self.timed_out |= other.timed_out;
        self.not_found.extend(other.not_found.iter().cloned());
    }
}

/// Prefetches files and directory trees given as paths inside the flist, the blocks of
/// the first paths first.
pub fn prefetch_paths(fs: &FlistFs, paths: &[String], deadline: Duration) -> PrefetchReport {
    let mut report = PrefetchReport::default();
    let mut files = Vec::new();
    for path in paths {
        match fs.manifest.resolve(path) {
            Some(inode) => {
                let mut pending = vec![inode.ino];
                while let Some(ino) = pending.pop() {
                    let Some(inode) = fs.manifest.inode(ino) else {
                        continue;
                    };
                    if inode.is_dir() {
                        pending.extend_from_slice(fs.manifest.children(ino));
                    } else if inode.is_file() {
                        files.push(ino);
                    }
                }
            }
            None => report.not_found.push(path.clone()),
        }
    }
    // In the order given (a loader reads them in that order), each file once.
    let mut listed = HashSet::new();
    files.retain(|ino| listed.insert(*ino));
    report.files = files.len() as u64;
    let mut seen = HashSet::new();
    let mut blocks: Vec<BlockRef> = Vec::new();
    for ino in files {
        if let Ok(list) = fs.blocks_of(ino) {
            blocks.extend(list.iter().filter(|b| seen.insert(b.id)).copied());
        }
    }
    report.blocks = blocks.len() as u64;
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let [failed, fetched, bytes_fetched, not_kept, local] = [(); 5].map(|()| AtomicU64::new(0));
    let timed_out = Mutex::new(false);
    std::thread::scope(|scope| {
        for _ in 0..workers().min(blocks.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(block) = blocks.get(i) else { return };
                if started.elapsed() > deadline {
                    *timed_out.lock().unwrap_or_else(|p| p.into_inner()) = true;
                    return;
                }
                match fs.source.make_local(block) {
                    Ok(made) => {
                        if made.bytes_fetched > 0 {
                            fetched.fetch_add(1, Ordering::Relaxed);
                            bytes_fetched.fetch_add(made.bytes_fetched, Ordering::Relaxed);
                        } else {
                            local.fetch_add(1, Ordering::Relaxed);
                        }
                        not_kept.fetch_add(u64::from(made.not_kept), Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    report.fetched = fetched.into_inner();
    report.bytes_fetched = bytes_fetched.into_inner();
    report.not_kept = not_kept.into_inner();
    report.failed = failed.into_inner();
    report.timed_out = *timed_out.lock().unwrap_or_else(|p| p.into_inner());
    report.cached = local.into_inner();
    report
}
