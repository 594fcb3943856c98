//! The loader's kernel in the steps: before a module file inside an flist this process
//! mounted goes to the kernel, its blocks are made local through the agent's own handle
//! on that flist. The handle shares its in-flight fetches with the prefetch running
//! beside the loads, so a block is fetched once, and each module loads as soon as its own
//! blocks are in instead of after the whole prefetch (stage 1 streams the prefetch into
//! the loader). Without a mounted flist (bootstrap, a zinit service, an operator's run)
//! it is the kernel underneath, unchanged. The steps that load (modules, coldplug) each
//! wrap the context's kernel in one, and report what their own loads fetched and waited.

use super::flists::Shared;
use super::StepDone;
use crate::flist::fs::FlistFs;
use crate::kmod::load::{Kernel, KernelState, LoadError, NotLoaded, Via};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A [`Kernel`] that makes a module's blocks local before loading it.
pub struct Staged {
    inner: Arc<dyn Kernel + Send>,
    mounted: Shared,
    /// Module files staged, blocks and stored bytes those loads fetched themselves (not
    /// those the prefetch was fetching: they waited for them), microseconds waited.
    files: AtomicU64,
    fetched: AtomicU64,
    bytes_fetched: AtomicU64,
    waited_us: AtomicU64,
}

impl Staged {
    /// `inner`, staging modules from the flists in `mounted` (filled by the flists step).
    pub fn new(inner: Arc<dyn Kernel + Send>, mounted: Shared) -> Self {
        Staged {
            inner,
            mounted,
            files: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
            waited_us: AtomicU64::new(0),
        }
    }

    /// `done` with what the loads through this kernel staged: blocks and bytes they
    /// fetched, and how long they waited for blocks (nothing when no module came from a
    /// mounted flist).
    pub fn counted(&self, done: StepDone) -> StepDone {
        let files = self.files.load(Ordering::Relaxed);
        if files == 0 {
            return done;
        }
        done.count("staged_files", files)
            .count("staged_fetched", self.fetched.load(Ordering::Relaxed))
            .count("bytes_fetched", self.bytes_fetched.load(Ordering::Relaxed))
            .count(
                "staged_wait_ms",
                self.waited_us.load(Ordering::Relaxed) / 1000,
            )
    }

    /// The flist holding `path` and the path inside it.
    fn holder(&self, path: &Path) -> Option<(Arc<FlistFs>, String)> {
        let mounted = self.mounted.lock().unwrap_or_else(|p| p.into_inner());
        mounted.iter().find_map(|m| {
            let inside = path.strip_prefix(&m.target).ok()?;
            Some((Arc::clone(&m.fs), format!("/{}", inside.display())))
        })
    }
}

impl Kernel for Staged {
    fn state(&self, name: &str) -> KernelState {
        self.inner.state(name)
    }

    fn load(
        &self,
        name: &str,
        path: &Path,
        options: &str,
        until: Instant,
    ) -> Result<Via, NotLoaded> {
        if let Some((fs, inside)) = self.holder(path) {
            let started = Instant::now();
            let left = until.saturating_duration_since(started);
            // A block that cannot be had here is not an error of its own: the kernel's
            // read through the mount asks the store again and the load says what failed.
            let staged = crate::flist::prefetch::prefetch_paths(&fs, &[inside], left);
            if staged.failed > 0 || staged.timed_out {
                log::debug!("{name}: {} blocks not staged", staged.failed);
            }
            self.files.fetch_add(1, Ordering::Relaxed);
            self.fetched.fetch_add(staged.fetched, Ordering::Relaxed);
            self.bytes_fetched
                .fetch_add(staged.bytes_fetched, Ordering::Relaxed);
            self.waited_us
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        self.inner.load(name, path, options, until)
    }

    fn install(
        &self,
        name: &str,
        command: &str,
        options: &str,
        until: Instant,
    ) -> Result<(), LoadError> {
        self.inner.install(name, command, options, until)
    }
}
