//! Block caches: a bounded in-memory LRU of decoded blocks, and an optional on-disk
//! cache in rfs's layout (`<dir>/hh/hh/H`: the plaintext, then its CRC-32 and the tag
//! `IAC1`) that survives reboots. Disk entries are written to a temporary file and
//! renamed, and checked against their CRC-32 when read: a torn or damaged entry is
//! removed, never served. (The blocks' BLAKE2b id and key are checked when they come from
//! the store; checking them again on every read from the node's own disk would cost two
//! hashes per block, the CRC one tenth of one.) The directory is bounded by size,
//! oldest entries evicted first. Where the cache lives in memory (`/run` is a tmpfs) its
//! bound follows what the node has ([`bound_here`]), and a full filesystem makes it give
//! room back instead of holding the last of it.

use super::codec::hex;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A bounded LRU of decoded blocks, by id. Each block counts at what its buffer costs
/// under the allocator ([`super::buffers::cost`]), not the bytes it holds: the bound is
/// the memory the cache takes.
pub struct MemoryCache {
    capacity: u64,
    state: Mutex<MemoryState>,
}

/// A cached block, when it was last used (a tick), what it costs.
type Entry = (Arc<Vec<u8>>, u64, u64);

#[derive(Default)]
struct MemoryState {
    entries: HashMap<[u8; 32], Entry>,
    bytes: u64,
    /// Held for blocks on their way in.
    reserved: u64,
    tick: u64,
}

/// Room held in a [`MemoryCache`] for a block on its way in; given back when dropped.
pub struct Reserved<'a> {
    cache: &'a MemoryCache,
    bytes: u64,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        let mut state = self.cache.lock();
        state.reserved = state.reserved.saturating_sub(self.bytes);
    }
}

impl MemoryCache {
    /// A cache holding at most `capacity` bytes of blocks.
    pub fn new(capacity: u64) -> MemoryCache {
        MemoryCache {
            capacity,
            state: Mutex::new(MemoryState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The block, if cached (and marks it recently used).
    pub fn get(&self, id: &[u8; 32]) -> Option<Arc<Vec<u8>>> {
        let mut state = self.lock();
        state.tick += 1;
        let tick = state.tick;
        let entry = state.entries.get_mut(id)?;
        entry.1 = tick;
        Some(entry.0.clone())
    }

    /// Whether the block is cached (without touching its age).
    pub fn contains(&self, id: &[u8; 32]) -> bool {
        self.lock().entries.contains_key(id)
    }

    /// Adds a block, evicting the least recently used ones past the capacity.
    pub fn put(&self, id: [u8; 32], data: Arc<Vec<u8>>) {
        let mut state = self.lock();
        state.tick += 1;
        let tick = state.tick;
        let size = super::buffers::cost(data.len(), data.capacity());
        if let Some((_, _, old)) = state.entries.insert(id, (data, tick, size)) {
            state.bytes -= old;
        }
        state.bytes += size;
        self.evict(&mut state, Some(&id));
    }

    /// Holds `bytes` of the capacity for a block on its way in (the blob fetched and the
    /// plaintext it decodes to) until the returned guard is dropped: the blocks in flight
    /// take their room from the cached ones instead of adding to the bound.
    pub fn reserve(&self, bytes: u64) -> Reserved<'_> {
        let mut state = self.lock();
        state.reserved += bytes;
        self.evict(&mut state, None);
        Reserved { cache: self, bytes }
    }

    /// Evicts the least recently used blocks (but `keep`) while the cache is over its
    /// capacity.
    fn evict(&self, state: &mut MemoryState, keep: Option<&[u8; 32]>) {
        while state.bytes + state.reserved > self.capacity {
            let Some(oldest) = state
                .entries
                .iter()
                .filter(|(k, _)| Some(*k) != keep)
                .min_by_key(|(_, (_, t, _))| *t)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((old, _, size)) = state.entries.remove(&oldest) {
                state.bytes -= size;
                // Unless a reader still holds it, its buffer serves a later block.
                if let Ok(buffer) = Arc::try_unwrap(old) {
                    super::buffers::give(buffer);
                }
            }
        }
    }

    /// What the blocks held cost.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

/// An on-disk cache of decoded blocks.
pub struct DiskCache {
    dir: PathBuf,
    max_bytes: AtomicU64,
    bytes: AtomicU64,
    evicting: Mutex<()>,
}

impl DiskCache {
    /// Opens (creates) a cache directory holding at most `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<DiskCache> {
        std::fs::create_dir_all(dir)?;
        let cache = DiskCache {
            dir: dir.to_path_buf(),
            max_bytes: AtomicU64::new(max_bytes),
            bytes: AtomicU64::new(0),
            evicting: Mutex::new(()),
        };
        // A write cut short by a crash or a power loss leaves its temporary file; one
        // older than this boot has no writer left.
        let booted = boot_time();
        let mut used = 0;
        for (path, size, modified) in cache.entries() {
            let temporary = path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().contains(".tmp."));
            if temporary && booted.is_some_and(|booted| modified < booted) {
                let _ = std::fs::remove_file(&path);
            } else {
                used += size;
            }
        }
        cache.bytes.store(used, Ordering::Relaxed);
        Ok(cache)
    }

    fn path(&self, id: &[u8; 32]) -> PathBuf {
        let name = hex(id);
        self.dir.join(&name[..2]).join(&name[2..4]).join(name)
    }

    /// The block, if cached and intact (a damaged entry is removed).
    pub fn get(&self, id: &[u8; 32]) -> Option<Vec<u8>> {
        let path = self.path(id);
        let mut file = std::fs::File::open(&path).ok()?;
        let size = file.metadata().map_or(0, |m| m.len() as usize);
        let mut data =
            super::buffers::read_all(&mut file, size, 2 * super::codec::BLOCK_SIZE).ok()?;
        if !strip_trailer(&mut data) {
            log::warn!("{}: damaged cache entry removed", path.display());
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(data)
    }

    /// Whether an entry for the block is there (not read: whoever reads it verifies it).
    pub fn has(&self, id: &[u8; 32]) -> bool {
        std::fs::metadata(self.path(id)).is_ok_and(|m| m.len() > TRAILER.len() as u64)
    }

    /// Stores a block atomically; whether it was kept. Errors only cost the cache entry,
    /// and leave no temporary file. A full filesystem (or quota) lowers the bound to three
    /// quarters of what the cache holds and evicts down to it: others need that room more
    /// than a cache does. A block larger than the bound is not written.
    pub fn put(&self, id: &[u8; 32], data: &[u8]) -> bool {
        if data.len() as u64 > self.max_bytes.load(Ordering::Relaxed) {
            return false;
        }
        let path = self.path(id);
        let temporary = path.with_extension(format!(
            "tmp.{}.{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let result = (|| {
            std::fs::create_dir_all(path.parent().unwrap_or(&self.dir))?;
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(data)?;
            file.write_all(&trailer(data))?;
            drop(file);
            std::fs::rename(&temporary, &path)
        })();
        match result {
            Ok(()) => {
                let total =
                    self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed) + data.len() as u64;
                if total > self.max_bytes.load(Ordering::Relaxed) {
                    self.evict();
                }
                true
            }
            Err(e) => {
                let _ = std::fs::remove_file(&temporary);
                let full = matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ENOSPC) | Some(nix::libc::EDQUOT)
                );
                if full {
                    let held: u64 = self.entries().iter().map(|(_, size, _)| size).sum();
                    let lowered = held / 4 * 3;
                    let before = self.max_bytes.fetch_min(lowered, Ordering::Relaxed);
                    if lowered < before {
                        log::warn!(
                            "{}: the filesystem is full; this cache now keeps at most {} KiB (was {} KiB)",
                            self.dir.display(),
                            lowered >> 10,
                            before >> 10
                        );
                    }
                    self.evict();
                } else {
                    log::warn!("{}: cannot cache: {e}", path.display());
                }
                false
            }
        }
    }

    fn entries(&self) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
        let mut out = Vec::new();
        let Ok(level1) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for a in level1.flatten() {
            let Ok(level2) = std::fs::read_dir(a.path()) else {
                continue;
            };
            for b in level2.flatten() {
                let Ok(files) = std::fs::read_dir(b.path()) else {
                    continue;
                };
                for file in files.flatten() {
                    if let Ok(meta) = file.metadata() {
                        out.push((
                            file.path(),
                            meta.len(),
                            meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                        ));
                    }
                }
            }
        }
        out
    }

    /// Removes the oldest entries until the cache is under 90 % of its bound.
    fn evict(&self) {
        let Ok(_guard) = self.evicting.try_lock() else {
            return;
        };
        let mut entries = self.entries();
        entries.sort_by_key(|(_, _, modified)| *modified);
        let mut total: u64 = entries.iter().map(|(_, size, _)| size).sum();
        let target = self.max_bytes.load(Ordering::Relaxed) / 10 * 9;
        for (path, size, _) in entries {
            if total <= target {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= size;
            }
        }
        self.bytes.store(total, Ordering::Relaxed);
    }

    /// Bytes held (approximately, between evictions).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// What ends every disk entry: the CRC-32 of the block (little-endian), then this tag.
const TRAILER: [u8; 4] = *b"IAC1";

fn trailer(data: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
    out[4..].copy_from_slice(&TRAILER);
    out
}

/// Checks an entry's trailer and cuts it off; false when the entry is torn or damaged.
fn strip_trailer(entry: &mut Vec<u8>) -> bool {
    let Some(at) = entry.len().checked_sub(8) else {
        return false;
    };
    if at == 0 || entry[at..] != trailer(&entry[..at]) {
        return false;
    }
    entry.truncate(at);
    true
}

/// When this boot began (`btime` in `/proc/stat`).
fn boot_time() -> Option<std::time::SystemTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("btime "))?;
    let seconds: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
}

/// The least a disk cache is given when memory is short (room permitting).
const MIN_CACHE_BYTES: u64 = 4 << 20;

/// How much each of `caches` disk caches may hold: `configured` at most; an eighth of the
/// memory the node has available (`MemAvailable`), shared, but not below 4 MiB; and a
/// quarter of the room left in the filesystem that holds them (a tmpfs such as `/run` is
/// memory too), shared, whatever the floor. Unknown figures do not bound it.
pub fn bound(configured: u64, mem_available: Option<u64>, room: Option<u64>, caches: u64) -> u64 {
    let caches = caches.max(1);
    let mut bound = configured;
    if let Some(memory) = mem_available {
        bound = bound.min((memory / 8 / caches).max(MIN_CACHE_BYTES));
    }
    if let Some(room) = room {
        bound = bound.min(room / 4 / caches);
    }
    bound
}

/// [`bound`] with this node's figures: `MemAvailable` from `/proc/meminfo` and the room
/// left in the filesystem that holds `dir` (or its nearest existing parent).
pub fn bound_here(dir: &Path, configured: u64, caches: u64) -> u64 {
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_available(&text));
    let room = dir
        .ancestors()
        .find(|d| d.exists())
        .and_then(|d| rustix::fs::statvfs(d).ok())
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize));
    bound(configured, memory, room, caches)
}

/// [`bound`] for a cache on the node's disk: memory does not bound it, the size of its
/// filesystem does (a quarter, shared; not the room left, which the cache's own entries
/// take, so the bound stays the same from boot to boot). A filesystem that fills up
/// anyway lowers it ([`DiskCache::put`]).
pub fn bound_on_disk(dir: &Path, configured: u64, caches: u64) -> u64 {
    let size = rustix::fs::statvfs(dir)
        .ok()
        .map(|s| s.f_blocks.saturating_mul(s.f_frsize));
    bound(configured, None, size, caches)
}

/// `MemAvailable` in bytes, from the text of `/proc/meminfo`.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_bound_follows_memory_and_room() {
        const GIB: u64 = 1 << 30;
        const MIB: u64 = 1 << 20;
        // A large node: the configured gigabyte.
        assert_eq!(bound(GIB, Some(64 * GIB), Some(32 * GIB), 2), GIB);
        // 2 GiB available: 128 MiB for each of two caches.
        assert_eq!(bound(GIB, Some(2 * GIB), Some(GIB), 2), 128 * MIB);
        // 512 MiB available (the test VMs): 32 MiB each.
        assert_eq!(bound(GIB, Some(512 * MIB), Some(256 * MIB), 2), 32 * MIB);
        // Memory short: the floor; /run nearly full: a quarter of its room, shared.
        assert_eq!(bound(GIB, Some(MIB), Some(GIB), 2), MIN_CACHE_BYTES);
        assert_eq!(bound(GIB, Some(64 * GIB), Some(400 * MIB), 2), 50 * MIB);
        assert_eq!(bound(GIB, Some(64 * GIB), Some(8 * MIB), 2), MIB);
        // Nothing known: the configured bound, which the floor never raises.
        assert_eq!(bound(GIB, None, None, 2), GIB);
        assert_eq!(bound(MIB, Some(MIB), None, 1), MIB);
        assert_eq!(
            mem_available("MemTotal: 100 kB\nMemAvailable:    2048 kB\n"),
            Some(2 << 20)
        );
        assert_eq!(mem_available("garbage"), None);
    }

    #[test]
    fn memory_lru_evicts_the_oldest() {
        // Each 4-byte block costs 21 bytes under the allocator: two fit in 50, not three.
        let cache = MemoryCache::new(50);
        cache.put([1; 32], Arc::new(vec![0; 4]));
        cache.put([2; 32], Arc::new(vec![0; 4]));
        assert!(cache.get(&[1; 32]).is_some());
        cache.put([3; 32], Arc::new(vec![0; 4]));
        assert!(cache.contains(&[1; 32]) && cache.contains(&[3; 32]));
        assert!(!cache.contains(&[2; 32]));
        assert!(cache.bytes() <= 50);
    }

    #[test]
    fn room_held_for_blocks_in_flight_comes_out_of_the_cached_ones() {
        let cache = MemoryCache::new(100);
        cache.put([1; 32], Arc::new(vec![0; 4]));
        cache.put([2; 32], Arc::new(vec![0; 4]));
        let held = cache.reserve(70);
        assert!(!cache.contains(&[1; 32]) && cache.contains(&[2; 32]));
        cache.put([3; 32], Arc::new(vec![0; 4])); // 70 + 21: the block before it goes
        assert!(!cache.contains(&[2; 32]) && cache.contains(&[3; 32]));
        drop(held);
        cache.put([4; 32], Arc::new(vec![0; 4]));
        assert!(cache.contains(&[3; 32]) && cache.contains(&[4; 32]));
    }

    #[test]
    fn memory_cache_counts_what_the_allocator_spends() {
        let cache = MemoryCache::new(1 << 20);
        cache.put([1; 32], Arc::new(vec![0; 97_000]));
        assert_eq!(cache.bytes(), 104_832);
    }

    #[test]
    fn disk_cache_round_trip_damage_and_bound() {
        let dir = std::env::temp_dir().join(format!("initagent-disk-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = DiskCache::open(&dir, 3000).unwrap();
        let data = vec![5u8; 1000];
        let (id, _, _) = super::super::codec::encode(&data);
        cache.put(&id, &data);
        assert_eq!(cache.get(&id).unwrap(), data);
        // A temporary file of an earlier boot is removed when the cache is opened.
        let orphan = cache.path(&id).with_extension("tmp.1.ThreadId(2)");
        std::fs::write(&orphan, b"half").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(400 * 86400);
        std::fs::File::options()
            .write(true)
            .open(&orphan)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let reopened = DiskCache::open(&dir, 3000).unwrap();
        assert!(!orphan.exists());
        assert_eq!(reopened.get(&id).unwrap(), data);
        // One byte changed in the middle of the block: the CRC says so.
        let mut entry = std::fs::read(cache.path(&id)).unwrap();
        assert_eq!(
            entry.len(),
            data.len() + 8,
            "the block, its CRC-32, the tag"
        );
        entry[500] ^= 1;
        std::fs::write(cache.path(&id), &entry).unwrap();
        assert!(cache.get(&id).is_none(), "a changed byte is a miss");
        assert!(!cache.path(&id).exists());
        cache.put(&id, &data);
        std::fs::write(cache.path(&id), b"torn").unwrap();
        assert!(cache.get(&id).is_none(), "a damaged entry is a miss");
        assert!(!cache.path(&id).exists());
        for i in 0..10u8 {
            let block = vec![i; 1000];
            let (id, _, _) = super::super::codec::encode(&block);
            cache.put(&id, &block);
        }
        let used: u64 = cache.entries().iter().map(|(_, s, _)| s).sum();
        assert!(used <= 3000, "{used}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
