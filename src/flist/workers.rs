//! A small pool of long-lived worker threads with a bounded queue: the background block
//! fetches of a mounted flist. Threads start as work arrives (up to a bound) and stay; a
//! thread per fetch would map and unmap a stack per block, and an allocator keeps a
//! finished thread's memory apart until another thread takes it over (measured: the
//! daemon's peak RSS grew past 300 MiB over Debian's modules tree). Dropping the pool
//! stops the workers once their current job is done; jobs still queued are dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

struct State<T> {
    jobs: VecDeque<T>,
    threads: usize,
    idle: usize,
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Worker threads running `work` on submitted jobs.
pub struct Pool<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    work: Arc<dyn Fn(T) + Send + Sync>,
    max_threads: usize,
    max_queued: usize,
    name: &'static str,
}

impl<T: Send + 'static> Pool<T> {
    /// A pool of at most `max_threads` threads named `name`, holding at most `max_queued`
    /// jobs that no thread has taken yet.
    pub fn new(
        name: &'static str,
        max_threads: usize,
        max_queued: usize,
        work: impl Fn(T) + Send + Sync + 'static,
    ) -> Pool<T> {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    jobs: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                    closed: false,
                }),
                ready: Condvar::new(),
            }),
            work: Arc::new(work),
            max_threads: max_threads.max(1),
            max_queued,
            name,
        }
    }

    /// Queues a job; false (and the job dropped) when the queue is full or no thread
    /// could be started to run it.
    pub fn submit(&self, job: T) -> bool {
        let mut state = self.shared.lock();
        if state.closed || state.jobs.len() >= self.max_queued {
            return false;
        }
        if state.idle <= state.jobs.len() && state.threads < self.max_threads {
            if self.start_thread().is_err() {
                if state.threads == 0 {
                    return false;
                }
            } else {
                state.threads += 1;
            }
        }
        state.jobs.push_back(job);
        drop(state);
        self.shared.ready.notify_one();
        true
    }

    /// Jobs waiting for a thread.
    pub fn queued(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    fn start_thread(&self) -> std::io::Result<()> {
        let shared = Arc::clone(&self.shared);
        let work = Arc::clone(&self.work);
        std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || loop {
                let job = {
                    let mut state = shared.lock();
                    loop {
                        if state.closed {
                            state.threads -= 1;
                            return;
                        }
                        if let Some(job) = state.jobs.pop_front() {
                            break job;
                        }
                        state.idle += 1;
                        state = shared.ready.wait(state).unwrap_or_else(|p| p.into_inner());
                        state.idle -= 1;
                    }
                };
                // A job that panics costs its own work, not the thread (the pool would
                // count it as running forever).
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(job)));
            })
            .map(drop)
    }
}

impl<T: Send + 'static> Drop for Pool<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.jobs.clear();
        drop(state);
        self.shared.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    fn wait_until(what: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !what() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn runs_every_job_on_at_most_its_threads() {
        let done = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let pool = {
            let (done, running, most) = (done.clone(), running.clone(), most.clone());
            Pool::new("test", 3, 100, move |_: u32| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
                running.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
            })
        };
        for job in 0..30 {
            assert!(pool.submit(job));
        }
        wait_until(|| done.load(Ordering::SeqCst) == 30);
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert!(pool.shared.lock().threads <= 3);
    }

    #[test]
    fn a_full_queue_refuses_instead_of_growing() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let pool = {
            let gate = gate.clone();
            Pool::new("test", 1, 2, move |_: u32| drop(gate.lock()))
        };
        assert!(pool.submit(1)); // taken by the thread, which then blocks on the gate
        wait_until(|| pool.queued() == 0);
        assert!(pool.submit(2));
        assert!(pool.submit(3));
        assert!(!pool.submit(4), "a third waiting job is refused");
        drop(held);
        wait_until(|| pool.queued() == 0);
    }

    #[test]
    fn a_job_that_panics_leaves_its_thread_working() {
        let done = Arc::new(AtomicUsize::new(0));
        let pool = {
            let done = done.clone();
            Pool::new("test", 1, 10, move |job: u32| {
                assert!(job != 0, "job 0 panics");
                done.fetch_add(1, Ordering::SeqCst);
            })
        };
        for job in 0..3 {
            assert!(pool.submit(job));
        }
        wait_until(|| done.load(Ordering::SeqCst) == 2);
        assert_eq!(pool.shared.lock().threads, 1);
    }

    #[test]
    fn dropping_the_pool_stops_its_threads() {
        let pool = Pool::new("test", 2, 10, |_: u32| {});
        for job in 0..4 {
            pool.submit(job);
        }
        let shared = Arc::clone(&pool.shared);
        wait_until(|| shared.lock().jobs.is_empty());
        drop(pool);
        wait_until(|| shared.lock().threads == 0);
    }
}
