//! When coldplug's wait for new devices ends (pure): udevadm settle's rule on the kernel's
//! own event counter. Every uevent the kernel sends takes the next `SEQNUM`, and
//! `/sys/kernel/uevent_seqnum` says the last one sent. Once the socket has delivered the
//! event with that number, every device the loads added so far has been seen: a burst is
//! loaded at once instead of after a gap, and coldplug ends as soon as the loads are done
//! and their events read, instead of after a fixed quiet period. Without the counter
//! (unreadable, or events sent to sockets of other network namespaces that never reach
//! this one) the gap and the quiet period bound the wait, as before.

use std::time::Instant;

/// The event numbers seen: what the kernel had sent when the socket opened (those
/// devices are found by the scan) and the highest number the socket delivered since.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    floor: Option<u64>,
    read: u64,
}

impl Seen {
    /// `kernel` is the counter read just after the socket was bound.
    pub fn new(kernel: Option<u64>) -> Self {
        Seen {
            floor: kernel,
            read: 0,
        }
    }

    /// An event with `seqnum` was read from the socket.
    pub fn note(&mut self, seqnum: Option<u64>) {
        if let Some(seqnum) = seqnum {
            self.read = self.read.max(seqnum);
        }
    }

    /// Every event the kernel had sent when its counter said `kernel` has been read.
    pub fn caught_up(&self, kernel: Option<u64>) -> bool {
        match (self.floor, kernel) {
            (Some(floor), Some(kernel)) => kernel <= floor.max(self.read),
            _ => false,
        }
    }
}

/// Where the wait stands.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    pub now: Instant,
    /// Coldplug's deadline.
    pub deadline: Instant,
    /// Other loads (the baseline beside coldplug) are still adding devices.
    pub holding: bool,
    /// Devices gathered and not loaded yet.
    pub pending: usize,
    /// The socket has delivered every event the kernel has sent.
    pub caught_up: bool,
    /// The gap after the last gathered event ends then.
    pub burst_until: Option<Instant>,
    /// Without news, the wait ends then.
    pub quiet_until: Instant,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The deadline has passed.
    TimedOut,
    /// Load the devices gathered.
    Load,
    /// Nothing is pending and no more devices are coming: coldplug is done.
    Settled,
    /// Read events until then.
    Receive(Instant),
}

/// A large burst is loaded without waiting for its end.
pub const LARGE_BURST: usize = 64;

/// The decision, from where the wait stands.
pub fn next(w: &Wait, slice: std::time::Duration) -> Next {
    if w.now >= w.deadline {
        return Next::TimedOut;
    }
    if w.pending > 0 {
        let gap_over = w.burst_until.is_some_and(|t| w.now >= t);
        if w.caught_up || gap_over || w.pending >= LARGE_BURST {
            return Next::Load;
        }
    } else if !w.holding && (w.caught_up || w.now >= w.quiet_until) {
        return Next::Settled;
    }
    let until = match (w.pending > 0, w.holding) {
        (true, _) => w.burst_until.unwrap_or(w.quiet_until),
        // Held with nothing pending: look at the hold again every slice.
        (false, true) => w.now + slice,
        (false, false) => w.quiet_until,
    };
    Next::Receive(until.min(w.deadline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SLICE: Duration = Duration::from_millis(20);

    /// One instant for every `wait` of a test binary, so their times compare.
    fn zero() -> Instant {
        static ZERO: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *ZERO.get_or_init(Instant::now)
    }

    fn wait(at: u64) -> Wait {
        let zero = zero();
        Wait {
            now: zero + Duration::from_millis(at),
            deadline: zero + Duration::from_secs(30),
            holding: false,
            pending: 0,
            caught_up: false,
            burst_until: None,
            quiet_until: zero + Duration::from_millis(300),
        }
    }

    #[test]
    fn caught_up_when_the_socket_delivered_the_kernels_last_event() {
        let mut seen = Seen::new(Some(100));
        assert!(
            seen.caught_up(Some(100)),
            "nothing sent since the socket opened"
        );
        assert!(!seen.caught_up(Some(103)));
        seen.note(Some(101));
        seen.note(None);
        assert!(!seen.caught_up(Some(103)));
        seen.note(Some(103));
        assert!(seen.caught_up(Some(103)));
        // No counter, now or at the start: never caught up (the time bounds decide).
        assert!(!seen.caught_up(None));
        assert!(!Seen::new(None).caught_up(Some(1)));
    }

    #[test]
    fn settled_at_once_when_caught_up_and_nothing_holds() {
        let w = Wait {
            caught_up: true,
            ..wait(5)
        };
        assert_eq!(next(&w, SLICE), Next::Settled);
        // Another step's loads still add devices: keep reading, a slice at a time.
        let held = Wait { holding: true, ..w };
        assert_eq!(next(&held, SLICE), Next::Receive(held.now + SLICE));
    }

    #[test]
    fn without_the_counter_the_quiet_period_bounds_the_wait() {
        let w = wait(5);
        assert_eq!(next(&w, SLICE), Next::Receive(w.quiet_until));
        let late = wait(300);
        assert_eq!(next(&late, SLICE), Next::Settled);
    }

    #[test]
    fn a_burst_loads_when_read_to_the_end_or_after_its_gap() {
        let gathering = Wait {
            pending: 3,
            burst_until: Some(wait(25).now),
            ..wait(10)
        };
        assert_eq!(next(&gathering, SLICE), Next::Receive(wait(25).now));
        let read_all = Wait {
            caught_up: true,
            ..gathering
        };
        assert_eq!(next(&read_all, SLICE), Next::Load);
        let gap_over = Wait {
            now: wait(25).now,
            ..gathering
        };
        assert_eq!(next(&gap_over, SLICE), Next::Load);
        let large = Wait {
            pending: LARGE_BURST,
            ..gathering
        };
        assert_eq!(next(&large, SLICE), Next::Load);
        // Loaded while another step holds too: those devices need their drivers now.
        let held = Wait {
            holding: true,
            ..read_all
        };
        assert_eq!(next(&held, SLICE), Next::Load);
    }

    #[test]
    fn the_deadline_ends_every_wait() {
        let w = wait(0);
        let over = Wait {
            now: w.deadline,
            pending: 2,
            holding: true,
            ..w
        };
        assert_eq!(next(&over, SLICE), Next::TimedOut);
        let near = Wait {
            deadline: w.now + Duration::from_millis(7),
            ..w
        };
        assert_eq!(next(&near, SLICE), Next::Receive(near.deadline));
    }
}
