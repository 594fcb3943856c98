//! Block caches: a bounded in-memory LRU of decoded blocks, and an optional on-disk
//! cache in rfs's layout (`<dir>/hh/hh/H`, plaintext) that survives reboots. Disk
//! entries are written to a temporary file and renamed, so a torn write never counts,
//! and are checked against the block key when read; the directory is bounded by size,
//! oldest entries evicted first.

use super::codec::{self, hex};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A bounded LRU of decoded blocks, by id.
pub struct MemoryCache {
    capacity: u64,
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    entries: HashMap<[u8; 32], (Arc<Vec<u8>>, u64)>,
    bytes: u64,
    tick: u64,
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
        let size = data.len() as u64;
        if let Some((old, _)) = state.entries.insert(id, (data, tick)) {
            state.bytes -= old.len() as u64;
        }
        state.bytes += size;
        while state.bytes > self.capacity && state.entries.len() > 1 {
            let Some(oldest) = state
                .entries
                .iter()
                .filter(|(k, _)| **k != id)
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((old, _)) = state.entries.remove(&oldest) {
                state.bytes -= old.len() as u64;
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

/// An on-disk cache of decoded blocks.
pub struct DiskCache {
    dir: PathBuf,
    max_bytes: u64,
    bytes: AtomicU64,
    evicting: Mutex<()>,
}

impl DiskCache {
    /// Opens (creates) a cache directory holding at most `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<DiskCache> {
        std::fs::create_dir_all(dir)?;
        let cache = DiskCache {
            dir: dir.to_path_buf(),
            max_bytes,
            bytes: AtomicU64::new(0),
            evicting: Mutex::new(()),
        };
        let used: u64 = cache.entries().iter().map(|(_, size, _)| size).sum();
        cache.bytes.store(used, Ordering::Relaxed);
        Ok(cache)
    }

    fn path(&self, id: &[u8; 32]) -> PathBuf {
        let name = hex(id);
        self.dir.join(&name[..2]).join(&name[2..4]).join(name)
    }

    /// The block, if cached and intact (a damaged entry is removed).
    pub fn get(&self, id: &[u8; 32], key: &[u8; 32]) -> Option<Vec<u8>> {
        let path = self.path(id);
        let data = std::fs::read(&path).ok()?;
        if data.is_empty() || &codec::hash(&data) != key {
            log::warn!("{}: damaged cache entry removed", path.display());
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(data)
    }

    /// Stores a block atomically; errors only cost the cache entry.
    pub fn put(&self, id: &[u8; 32], data: &[u8]) {
        let path = self.path(id);
        let result = (|| {
            std::fs::create_dir_all(path.parent().unwrap_or(&self.dir))?;
            let temporary = path.with_extension(format!(
                "tmp.{}.{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::write(&temporary, data)?;
            std::fs::rename(&temporary, &path)
        })();
        match result {
            Ok(()) => {
                let total =
                    self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed) + data.len() as u64;
                if total > self.max_bytes {
                    self.evict();
                }
            }
            Err(e) => log::warn!("{}: cannot cache: {e}", path.display()),
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
        let target = self.max_bytes / 10 * 9;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_lru_evicts_the_oldest() {
        let cache = MemoryCache::new(10);
        cache.put([1; 32], Arc::new(vec![0; 4]));
        cache.put([2; 32], Arc::new(vec![0; 4]));
        assert!(cache.get(&[1; 32]).is_some());
        cache.put([3; 32], Arc::new(vec![0; 4]));
        assert!(cache.contains(&[1; 32]) && cache.contains(&[3; 32]));
        assert!(!cache.contains(&[2; 32]));
        assert!(cache.bytes() <= 10);
    }

    #[test]
    fn disk_cache_round_trip_damage_and_bound() {
        let dir = std::env::temp_dir().join(format!("initagent-disk-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = DiskCache::open(&dir, 3000).unwrap();
        let data = vec![5u8; 1000];
        let (id, key, _) = codec::encode(&data);
        cache.put(&id, &data);
        assert_eq!(cache.get(&id, &key).unwrap(), data);
        std::fs::write(cache.path(&id), b"torn").unwrap();
        assert!(cache.get(&id, &key).is_none(), "a damaged entry is a miss");
        assert!(!cache.path(&id).exists());
        for i in 0..10u8 {
            let block = vec![i; 1000];
            let (id, _, _) = codec::encode(&block);
            cache.put(&id, &block);
        }
        let used: u64 = cache.entries().iter().map(|(_, s, _)| s).sum();
        assert!(used <= 3000, "{used}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
