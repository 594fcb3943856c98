//! Where file content comes from: the memory cache, then the disk cache, then the
//! stores (one fetch per block however many readers want it at once). A read fetches
//! all the blocks it spans concurrently and prefetches the next ones in the background,
//! on a small pool of long-lived threads ([`super::workers`]).
//! A block whose fetch just failed slowly (a store that stalls or trickles) fails again at
//! once for [`FAILURE_MEMORY`]: the kernel asks again right after an error (its readahead
//! failed, then the read itself), and a stalled store must cost a reader one deadline,
//! not one per request. A quick failure (refused, 5xx, corrupt) is simply tried again.

use super::buffers::BUFFER_SIZE;
use super::cache::{DiskCache, MemoryCache};
use super::codec::BLOCK_SIZE;
use super::meta::BlockRef;
use super::router::{FetchError, Router};
use super::workers::Pool;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

type Fetched = Result<Arc<Vec<u8>>, FetchError>;

#[derive(Default)]
struct InFlight {
    result: Mutex<Option<Fetched>>,
    done: Condvar,
}

/// Counters for the boot report and `status`.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct SourceStats {
    /// Blocks served from memory.
    pub memory_hits: u64,
    /// Blocks served from the disk cache.
    pub disk_hits: u64,
    /// Blocks fetched from stores.
    pub fetched: u64,
    /// Bytes fetched from stores (stored size).
    pub bytes_fetched: u64,
    /// Blobs rejected by verification.
    pub corrupt: u64,
    /// Blocks fetched that the disk cache could not keep (its filesystem full, a write
    /// error, a bound smaller than the block): read again from the store next time.
    pub not_kept: u64,
}

/// What one [`BlockSource::make_local`] call did: exact for that call, whoever else
/// reads the same source meanwhile (a step's own count, not a difference of totals).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MadeLocal {
    /// Stored bytes this call fetched (0: the block was local, or another reader's fetch
    /// of it was under way and this call waited for it).
    pub bytes_fetched: u64,
    /// This call fetched the block and the disk cache could not keep it.
    pub not_kept: bool,
}

/// How long a block's slow failed fetch stands for the next readers of the block.
pub const FAILURE_MEMORY: std::time::Duration = std::time::Duration::from_secs(5);
/// A failed fetch that took this long is remembered.
const SLOW_FAILURE: std::time::Duration = std::time::Duration::from_secs(1);

/// Background block fetches waiting for a thread at most, per mounted flist.
const MAX_QUEUED: usize = 8;

/// Block reads for one mounted flist.
pub struct BlockSource {
    router: Router,
    memory: MemoryCache,
    disk: Option<DiskCache>,
    inflight: Mutex<HashMap<[u8; 32], Arc<InFlight>>>,
    /// Recent failures: when, and what was said.
    failed: Mutex<HashMap<[u8; 32], (std::time::Instant, FetchError)>>,
    /// Background fetches: the pool, and the blocks queued on it not yet started.
    workers: Pool<BlockRef>,
    queued: Mutex<HashSet<[u8; 32]>>,
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    not_kept: AtomicU64,
    /// Blocks to read ahead after a read.
    pub readahead: usize,
}

impl BlockSource {
    /// A source over `router` with caches.
    pub fn new(router: Router, memory_bytes: u64, disk: Option<DiskCache>) -> Arc<BlockSource> {
        Arc::new_cyclic(|source: &std::sync::Weak<BlockSource>| BlockSource {
            router,
            memory: MemoryCache::new(memory_bytes),
            disk,
            inflight: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            workers: {
                let source = source.clone();
                Pool::new(
                    "prefetch",
                    super::prefetch::workers(),
                    MAX_QUEUED,
                    move |block: BlockRef| {
                        if let Some(source) = source.upgrade() {
                            source.unqueue(&block.id);
                            let _ = source.block(&block);
                        }
                    },
                )
            },
            queued: Mutex::new(HashSet::new()),
            memory_hits: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
            not_kept: AtomicU64::new(0),
            readahead: 4,
        })
    }

    /// The router (for describing stores).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// What the source has done.
    pub fn stats(&self) -> SourceStats {
        SourceStats {
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            fetched: self.router.stats.fetched.load(Ordering::Relaxed),
            bytes_fetched: self.router.stats.bytes.load(Ordering::Relaxed),
            corrupt: self.router.stats.corrupt.load(Ordering::Relaxed),
            not_kept: self.not_kept.load(Ordering::Relaxed),
        }
    }

    /// One block's plaintext.
    pub fn block(&self, block: &BlockRef) -> Fetched {
        self.block_counted(block).0
    }

    /// [`BlockSource::block`], and what this call fetched itself.
    fn block_counted(&self, block: &BlockRef) -> (Fetched, MadeLocal) {
        let mut made = MadeLocal::default();
        if let Some(data) = self.memory.get(&block.id) {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            return (Ok(data), made);
        }
        if let Some((at, error)) = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&block.id)
        {
            if at.elapsed() < FAILURE_MEMORY {
                let mut error = error.clone();
                error.attempts.push(format!(
                    "failed {:.1} s ago; fetched again {} s after a failure",
                    at.elapsed().as_secs_f32(),
                    FAILURE_MEMORY.as_secs()
                ));
                return (Err(error), made);
            }
        }
        let (flight, leader) = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match inflight.get(&block.id) {
                Some(flight) => (flight.clone(), false),
                None => {
                    let flight = Arc::new(InFlight::default());
                    inflight.insert(block.id, flight.clone());
                    (flight, true)
                }
            }
        };
        if !leader {
            let mut result = flight.result.lock().unwrap_or_else(|p| p.into_inner());
            while result.is_none() {
                result = flight.done.wait(result).unwrap_or_else(|p| p.into_inner());
            }
            let result = result.clone().unwrap_or_else(|| {
                Err(FetchError {
                    id: String::new(),
                    attempts: Vec::new(),
                })
            });
            return (result, made);
        }
        // A panic while fetching (a bug, or a store client's) must not leave the readers
        // waiting on this block forever: it becomes this block's error for all of them.
        let started = std::time::Instant::now();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.load(block, &mut made)))
                .unwrap_or_else(|panic| {
                    let message = crate::stage1::runner::panic_message(&panic);
                    log::error!("bug: fetching a block panicked: {message}");
                    Err(FetchError {
                        id: crate::flist::codec::hex(&block.id),
                        attempts: vec![format!("the fetch panicked: {message}")],
                    })
                });
        {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            failed.retain(|_, (at, _)| at.elapsed() < FAILURE_MEMORY);
            match &result {
                Ok(_) => failed.remove(&block.id),
                Err(error) if started.elapsed() >= SLOW_FAILURE => {
                    failed.insert(block.id, (std::time::Instant::now(), error.clone()))
                }
                Err(_) => None,
            };
        }
        *flight.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(result.clone());
        flight.done.notify_all();
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&block.id);
        (result, made)
    }

    /// Makes sure a block is local for a later reader: a block the disk cache has is not
    /// read back (the reader verifies it; a torn entry is fetched again then), any other
    /// is fetched and kept like [`BlockSource::block`] does. Says what this call fetched.
    pub fn make_local(&self, block: &BlockRef) -> Result<MadeLocal, FetchError> {
        if self.memory.contains(&block.id) || self.disk.as_ref().is_some_and(|d| d.has(&block.id)) {
            return Ok(MadeLocal::default());
        }
        let (result, made) = self.block_counted(block);
        result.map(|_| made)
    }

    fn load(&self, block: &BlockRef, made: &mut MadeLocal) -> Fetched {
        // The room of a block's blob and plaintext comes out of the memory cache's bound
        // while they are on their way in (the size is known only once fetched).
        let room = self.memory.reserve(2 * BUFFER_SIZE as u64);
        if let Some(disk) = &self.disk {
            if let Some(data) = disk.get(&block.id) {
                self.disk_hits.fetch_add(1, Ordering::Relaxed);
                let data = Arc::new(data);
                drop(room);
                self.memory.put(block.id, data.clone());
                return Ok(data);
            }
        }
        let (plain, stored_bytes) = self.router.fetch(block)?;
        drop(room);
        made.bytes_fetched = stored_bytes;
        let data = Arc::new(plain);
        if let Some(disk) = &self.disk {
            if !disk.put(&block.id, &data) {
                self.not_kept.fetch_add(1, Ordering::Relaxed);
                made.not_kept = true;
            }
        }
        self.memory.put(block.id, data.clone());
        Ok(data)
    }

    /// Bytes `offset..offset+len` of a file of `size` bytes made of `blocks`: short at EOF,
    /// the spanned blocks fetched concurrently. Every block but the last must be full.
    pub fn read(
        self: &Arc<Self>,
        blocks: &[BlockRef],
        size: u64,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, String> {
        self.read_with(blocks, size, offset, len, <[u8]>::to_vec)
    }

    /// Like [`BlockSource::read`], handing the bytes to `consume`: a range inside one block
    /// is lent straight from the cached block, without a copy or an allocation (the
    /// common FUSE read).
    pub fn read_with<R>(
        self: &Arc<Self>,
        blocks: &[BlockRef],
        size: u64,
        offset: u64,
        len: u32,
        consume: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, String> {
        if offset >= size || len == 0 {
            return Ok(consume(&[]));
        }
        let end = size.min(offset + u64::from(len));
        let first = (offset / BLOCK_SIZE as u64) as usize;
        let last = ((end - 1) / BLOCK_SIZE as u64) as usize;
        if first >= blocks.len() {
            return Ok(consume(&[]));
        }
        let last = last.min(blocks.len() - 1);
        if first == last {
            let data = self.block(&blocks[first]).map_err(|e| e.to_string())?;
            check_block_length(first, blocks.len(), &data)?;
            let block_start = first as u64 * BLOCK_SIZE as u64;
            let from = (offset - block_start) as usize;
            let to = ((end - block_start) as usize).min(data.len());
            self.prefetch(&blocks[last + 1..blocks.len().min(last + 1 + self.readahead)]);
            return Ok(consume(data.get(from..to).unwrap_or_default()));
        }
        // The pool fetches the later blocks while this thread fetches the first; a block
        // the pool has not started (or refused) is fetched here in its turn.
        let wanted = &blocks[first..=last];
        self.prefetch(&wanted[1..]);
        let fetched: Vec<Fetched> = wanted.iter().map(|b| self.block(b)).collect();
        // A kept buffer where the range fits one (a READ across two blocks), given back.
        let mut out = super::buffers::take_filled((end - offset) as usize);
        let mut filled = 0;
        for (i, result) in fetched.into_iter().enumerate() {
            let index = first + i;
            let data = result.map_err(|e| e.to_string())?;
            check_block_length(index, blocks.len(), &data)?;
            let block_start = index as u64 * BLOCK_SIZE as u64;
            let from = offset.saturating_sub(block_start) as usize;
            let to = ((end - block_start) as usize).min(data.len());
            if from < to {
                let part = &data[from..to];
                out[filled..filled + part.len()].copy_from_slice(part);
                filled += part.len();
            }
        }
        out.truncate(filled);
        self.prefetch(&blocks[last + 1..blocks.len().min(last + 1 + self.readahead)]);
        let result = consume(&out);
        super::buffers::give(out);
        Ok(result)
    }

    /// Fetches blocks into the cache in the background (bounded; skips cached ones).
    pub fn prefetch(&self, blocks: &[BlockRef]) {
        for block in blocks {
            // Cached, queued or already on its way: another fetch would only wait for it.
            if self.memory.contains(&block.id)
                || self
                    .inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(&block.id)
                || !self
                    .queued
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(block.id)
            {
                continue;
            }
            if !self.workers.submit(*block) {
                self.unqueue(&block.id);
                break;
            }
        }
    }

    fn unqueue(&self, id: &[u8; 32]) {
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// Every block of a file but the last holds exactly [`BLOCK_SIZE`] bytes.
fn check_block_length(index: usize, count: usize, data: &[u8]) -> Result<(), String> {
    if index + 1 < count && data.len() != BLOCK_SIZE {
        return Err(format!(
            "block {index} holds {} bytes; every block but the last holds {BLOCK_SIZE}",
            data.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flist::router::RetryPolicy;
    use crate::flist::store::{BlockStore, StoreError};

    /// A store whose client panics, slowly enough that other readers queue behind it.
    struct Panicking;

    impl BlockStore for Panicking {
        fn get(&self, _id: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
            std::thread::sleep(std::time::Duration::from_millis(200));
            panic!("store client bug");
        }
        fn describe(&self) -> String {
            "panicking://".into()
        }
    }

    #[test]
    fn a_fetch_that_panics_fails_every_reader_of_the_block_instead_of_hanging_them() {
        let router =
            Router::from_stores(vec![(0, 255, Arc::new(Panicking))], RetryPolicy::default());
        let source = BlockSource::new(router, 1 << 20, None);
        let block = BlockRef {
            id: [7; 32],
            key: [0; 32],
        };
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let source = source.clone();
                std::thread::spawn(move || source.block(&block).map(|_| ()))
            })
            .collect();
        for reader in readers {
            let error = reader.join().unwrap().unwrap_err().to_string();
            assert!(error.contains("store client bug"), "{error}");
        }
        assert!(source.inflight.lock().unwrap().is_empty());
    }

    #[test]
    fn make_local_counts_what_this_call_fetched_whoever_else_reads_the_source() {
        use crate::flist::router::tests::MemoryStore;
        let (id, key, stored) = crate::flist::codec::encode(b"a block's plaintext");
        let block = BlockRef { id, key };
        let store = MemoryStore::new(&[(block, stored.clone())], false);
        let router = Router::from_stores(vec![(0, 255, store.clone())], RetryPolicy::default());
        let source = BlockSource::new(router, 1 << 20, None);
        // Readers of the same block at once: the one that fetched counts the bytes, the
        // others waited for it or found it local and count nothing.
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let source = source.clone();
                std::thread::spawn(move || source.make_local(&block).unwrap())
            })
            .collect();
        let made: Vec<MadeLocal> = calls.into_iter().map(|c| c.join().unwrap()).collect();
        let fetched: u64 = made.iter().map(|m| m.bytes_fetched).sum();
        assert_eq!(fetched, stored.len() as u64, "{made:?}");
        assert_eq!(store.calls.load(Ordering::Relaxed), 1);
        assert_eq!(source.make_local(&block).unwrap(), MadeLocal::default());
        assert_eq!(source.stats().bytes_fetched, stored.len() as u64);
    }
}
