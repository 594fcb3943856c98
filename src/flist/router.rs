//! Routes blocks to stores by the first byte of their id. Every matching store is a
//! candidate (overlapping ranges are fallbacks); a store that keeps failing is tried
//! last; a blob that fails verification counts as that store failing and the next is
//! tried. Whole rounds are retried with backoff while stores are unavailable, within a
//! per-block deadline, so a read ends in bounded time with an error naming every store.

use super::codec::{self, hex};
use super::meta::{BlockRef, Route};
use super::store::{self, BlockStore, StoreError, StoreOptions};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a block could not be had.
#[derive(Debug, Clone)]
pub struct FetchError {
    /// The block id (hex).
    pub id: String,
    /// What each store said (redacted URLs).
    pub attempts: Vec<String>,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.attempts.is_empty() {
            write!(f, "block {}: no route covers it", self.id)
        } else {
            write!(f, "block {}: {}", self.id, self.attempts.join("; "))
        }
    }
}

impl std::error::Error for FetchError {}

/// The ranges of first bytes (inclusive) that no route covers: blocks whose id starts
/// there have no store.
pub fn uncovered(routes: &[Route]) -> Vec<(u8, u8)> {
    let mut covered = [false; 256];
    for route in routes {
        for byte in route.start..=route.end.max(route.start) {
            covered[usize::from(byte)] = true;
        }
    }
    let mut gaps = Vec::new();
    let mut start = None;
    for byte in 0..=255u8 {
        match (covered[usize::from(byte)], start) {
            (false, None) => start = Some(byte),
            (true, Some(first)) => {
                gaps.push((first, byte - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(first) = start {
        gaps.push((first, 255));
    }
    gaps
}

struct Candidate {
    start: u8,
    end: u8,
    store: Arc<dyn BlockStore>,
    failures: AtomicU32,
}

/// Counters of what the router did.
#[derive(Debug, Default)]
pub struct RouterStats {
    /// Blobs fetched.
    pub fetched: AtomicU64,
    /// Bytes of blobs fetched.
    pub bytes: AtomicU64,
    /// Blobs rejected by verification.
    pub corrupt: AtomicU64,
}

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Rounds over all candidates.
    pub rounds: u32,
    /// Pause before the second round; doubles each round.
    pub backoff: Duration,
    /// Give up on a block after this long.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            rounds: 3,
            backoff: Duration::from_millis(200),
            deadline: Duration::from_secs(30),
        }
    }
}

/// Stores by id range.
pub struct Router {
    candidates: Vec<Candidate>,
    policy: RetryPolicy,
    /// What was fetched.
    pub stats: RouterStats,
}

impl Router {
    /// Opens every route's store. A route that cannot be opened is an error naming it.
    pub fn new(
        routes: &[Route],
        options: &StoreOptions,
        policy: RetryPolicy,
    ) -> Result<Router, StoreError> {
        let mut candidates = Vec::new();
        for route in routes {
            candidates.push(Candidate {
                start: route.start,
                end: route.end,
                store: store::open(&route.url, options)?,
                failures: AtomicU32::new(0),
            });
        }
        Ok(Router {
            candidates,
            policy,
            stats: RouterStats::default(),
        })
    }

    /// A router over given stores (tests, fault injection).
    pub fn from_stores(stores: Vec<(u8, u8, Arc<dyn BlockStore>)>, policy: RetryPolicy) -> Router {
        let candidates = stores
            .into_iter()
            .map(|(start, end, store)| Candidate {
                start,
                end,
                store,
                failures: AtomicU32::new(0),
            })
            .collect();
        Router {
            candidates,
            policy,
            stats: RouterStats::default(),
        }
    }

    /// The stores, redacted, with their ranges.
    pub fn describe(&self) -> Vec<String> {
        self.candidates
            .iter()
            .map(|c| format!("{:02x}-{:02x} {}", c.start, c.end, c.store.describe()))
            .collect()
    }

    /// How far the node's clock was found off a store's (seconds, store minus node), when
    /// a store had to sign with its own time.
    pub fn clock_offset(&self) -> Option<i64> {
        self.candidates.iter().find_map(|c| c.store.clock_offset())
    }

    /// Fetches and verifies a block; returns the plaintext and the stored bytes the
    /// stores sent for it (a rejected blob's before it too).
    pub fn fetch(&self, block: &BlockRef) -> Result<(Vec<u8>, u64), FetchError> {
        let started = Instant::now();
        let first = block.id[0];
        let mut order: Vec<&Candidate> = self
            .candidates
            .iter()
            .filter(|c| c.start <= first && first <= c.end)
            .collect();
        let id = hex(&block.id);
        if order.is_empty() {
            return Err(FetchError {
                id,
                attempts: Vec::new(),
            });
        }
        // Healthy stores first; among equals, rotate by the id for an even spread.
        let spread = usize::from(block.id[1]) % order.len();
        order.rotate_left(spread);
        order.sort_by_key(|c| c.failures.load(Ordering::Relaxed).min(8));
        let mut attempts = Vec::new();
        let mut stored_bytes = 0;
        let mut backoff = self.policy.backoff;
        for round in 0..self.policy.rounds.max(1) {
            let mut retryable = false;
            for candidate in &order {
                if started.elapsed() > self.policy.deadline {
                    attempts.push(format!(
                        "gave up after {} s",
                        self.policy.deadline.as_secs()
                    ));
                    return Err(FetchError { id, attempts });
                }
                match candidate.store.get(&block.id) {
                    Ok(stored) => {
                        self.stats.fetched.fetch_add(1, Ordering::Relaxed);
                        self.stats
                            .bytes
                            .fetch_add(stored.len() as u64, Ordering::Relaxed);
                        stored_bytes += stored.len() as u64;
                        match codec::decode(&block.id, &block.key, stored) {
                            Ok(plain) => {
                                candidate.failures.store(0, Ordering::Relaxed);
                                return Ok((plain, stored_bytes));
                            }
                            Err(e) => {
                                self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                                candidate.failures.fetch_add(1, Ordering::Relaxed);
                                log::warn!("block {id} from {}: {e}", candidate.store.describe());
                                attempts.push(format!("{}: {e}", candidate.store.describe()));
                            }
                        }
                    }
                    Err(StoreError::NotFound) => {
                        attempts.push(format!("{}: not found", candidate.store.describe()))
                    }
                    Err(e) => {
                        candidate.failures.fetch_add(1, Ordering::Relaxed);
                        // Refused credentials will not work better a second later.
                        retryable |= !matches!(e, StoreError::Denied(_));
                        attempts.push(format!("{}: {e}", candidate.store.describe()));
                    }
                }
            }
            if !retryable || round + 1 == self.policy.rounds {
                break;
            }
            let left = self.policy.deadline.saturating_sub(started.elapsed());
            std::thread::sleep(backoff.min(left));
            backoff *= 2;
        }
        Err(FetchError { id, attempts })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// An in-memory store with injectable faults.
    pub struct MemoryStore {
        pub blobs: Mutex<HashMap<[u8; 32], Vec<u8>>>,
        pub unavailable: bool,
        pub calls: AtomicU32,
    }

    impl MemoryStore {
        pub fn new(blobs: &[(BlockRef, Vec<u8>)], unavailable: bool) -> Arc<MemoryStore> {
            Arc::new(MemoryStore {
                blobs: Mutex::new(blobs.iter().map(|(b, s)| (b.id, s.clone())).collect()),
                unavailable,
                calls: AtomicU32::new(0),
            })
        }
    }

    impl BlockStore for MemoryStore {
        fn get(&self, id: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.unavailable {
                return Err(StoreError::Unavailable("refused".into()));
            }
            self.blobs
                .lock()
                .unwrap()
                .get(id)
                .cloned()
                .ok_or(StoreError::NotFound)
        }
        fn describe(&self) -> String {
            "memory://test".into()
        }
    }

    fn block(plain: &[u8]) -> (BlockRef, Vec<u8>) {
        let (id, key, stored) = codec::encode(plain);
        (BlockRef { id, key }, stored)
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            rounds: 2,
            backoff: Duration::from_millis(1),
            deadline: Duration::from_secs(5),
        }
    }

    #[test]
    fn route_gaps_are_found() {
        let route = |start, end| Route {
            start,
            end,
            url: "dir:///x".into(),
        };
        assert!(uncovered(&[route(0, 255)]).is_empty());
        assert!(uncovered(&[route(0, 0x7f), route(0x80, 0xff)]).is_empty());
        assert_eq!(uncovered(&[route(0, 0x7f)]), [(0x80, 0xff)]);
        assert_eq!(
            uncovered(&[route(0x10, 0x1f), route(0x30, 0xfe)]),
            [(0, 0x0f), (0x20, 0x2f), (0xff, 0xff)]
        );
        assert_eq!(uncovered(&[]), [(0, 255)]);
    }

    #[test]
    fn falls_back_over_missing_corrupt_and_dead_stores() {
        let (good, stored) = block(b"payload");
        let mut corrupt = stored.clone();
        corrupt[0] ^= 0xff;
        let dead = MemoryStore::new(&[], true);
        let bad = MemoryStore::new(&[(good, corrupt)], false);
        let empty = MemoryStore::new(&[], false);
        let ok = MemoryStore::new(&[(good, stored)], false);
        let router = Router::from_stores(
            vec![
                (0, 255, dead.clone()),
                (0, 255, bad),
                (0, 255, empty),
                (0, 255, ok.clone()),
            ],
            quick(),
        );
        assert_eq!(router.fetch(&good).unwrap().0, b"payload");
        assert_eq!(router.stats.corrupt.load(Ordering::Relaxed), 1);
        // The dead store is now tried last.
        let before = dead.calls.load(Ordering::Relaxed);
        router.fetch(&good).unwrap();
        assert!(dead.calls.load(Ordering::Relaxed) - before <= 1);
    }

    #[test]
    fn errors_name_every_store_and_end_in_bounded_time() {
        let (good, _) = block(b"x");
        let router = Router::from_stores(vec![(0, 255, MemoryStore::new(&[], true))], quick());
        let err = router.fetch(&good).unwrap_err();
        assert_eq!(err.attempts.len(), 2, "two rounds: {err}");
        assert!(err.to_string().contains("memory://test: unavailable"));
        let unrouted = Router::from_stores(vec![], quick());
        assert!(unrouted
            .fetch(&good)
            .unwrap_err()
            .to_string()
            .contains("no route"));
    }
}
