//! How long this node believes it holds a lease, on its own monotonic clock.
//!
//! The database decides who holds a lease (`expires` on its clock); a node
//! only ever needs a safe *lower* bound of its own lease. It takes the instant
//! just before it sent the acquire or renewal, `t0`, and believes the lease
//! until `t0 + lease`: the database computed `expires` later than `t0`, so the
//! node's belief ends first (clock rates aside, which NTP keeps to parts per
//! million). The clock is `Instant` — CLOCK_MONOTONIC — which keeps running
//! while the process is stopped (SIGSTOP, a frozen VM): a leader that comes
//! back after its lease ran out sees at once that it no longer leads, before it
//! sends or writes anything. Its writes would be refused anyway by the
//! database's fence; the deadline is what keeps it from *sending*.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The term this node believes it holds: epoch and local deadline.
#[derive(Debug, Default)]
pub struct Belief {
    held: Mutex<Option<(i64, Instant)>>,
}

impl Belief {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(i64, Instant)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Acquired or renewed `epoch` with a request sent at `sent`.
    pub fn hold(&self, epoch: i64, sent: Instant, lease: Duration) {
        *self.lock() = Some((epoch, sent + lease));
    }

    pub fn drop_lease(&self) {
        *self.lock() = None;
    }

    /// The epoch held, if the deadline has not passed.
    pub fn current(&self) -> Option<i64> {
        match *self.lock() {
            Some((epoch, until)) if Instant::now() < until => Some(epoch),
            _ => None,
        }
    }

    /// Held once, but the deadline passed (the node was paused or the
    /// database did not answer in time).
    pub fn lapsed(&self) -> bool {
        matches!(*self.lock(), Some((_, until)) if Instant::now() >= until)
    }

    /// True while this node still holds `epoch`: what the dispatcher asks
    /// before each send.
    pub fn gate(self: &Arc<Self>, epoch: i64) -> crate::alerts::Gate {
        let me = self.clone();
        Arc::new(move || me.current() == Some(epoch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_belief_ends_at_its_deadline_and_only_for_its_epoch() {
        let b = Arc::new(Belief::default());
        assert_eq!(b.current(), None);
        b.hold(3, Instant::now(), Duration::from_secs(60));
        assert_eq!(b.current(), Some(3));
        let gate = b.gate(3);
        let stale = b.gate(2);
        assert!(gate());
        assert!(!stale());
        // Sent long enough ago that the lease is over.
        let ago = Instant::now()
            .checked_sub(Duration::from_secs(120))
            .expect("monotonic clock past two minutes");
        b.hold(3, ago, Duration::from_secs(60));
        assert!(b.lapsed());
        assert_eq!(b.current(), None);
        assert!(!gate());
        b.drop_lease();
        assert!(!b.lapsed());
    }
}
