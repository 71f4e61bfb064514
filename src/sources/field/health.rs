//! Per-device health: online/offline, last good read, errors by kind, and the
//! backoff that keeps a dead device from eating its bus's time.
//!
//! A device goes offline after [`OFFLINE_AFTER`] consecutive failed polls and is
//! then polled less often (interval × 2, × 4 … up to [`MAX_BACKOFF`]) until it
//! answers again; one good poll brings it back online at its normal interval.
//! Transitions are recorded as device status events: the offline rule reads them.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Consecutive failures before a device is reported offline.
pub const OFFLINE_AFTER: u32 = 3;
/// Longest wait between polls of a device that does not answer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    pub online: bool,
    pub last_ok: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub errors: BTreeMap<&'static str, u64>,
    pub polls: u64,
}

/// What changed with one poll, for a status event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Online,
    Offline,
}

impl Health {
    pub fn ok(&mut self, at: DateTime<Utc>) -> Option<Transition> {
        self.polls += 1;
        self.last_ok = Some(at);
        self.consecutive_failures = 0;
        let was = std::mem::replace(&mut self.online, true);
        (!was).then_some(Transition::Online)
    }

    pub fn failed(&mut self, kind: &'static str) -> Option<Transition> {
        self.polls += 1;
        *self.errors.entry(kind).or_default() += 1;
        self.consecutive_failures += 1;
        // Never-seen devices count as online until they have failed enough, so a
        // daemon start does not report the whole city offline.
        if self.consecutive_failures == OFFLINE_AFTER && (self.online || self.last_ok.is_none()) {
            self.online = false;
            return Some(Transition::Offline);
        }
        None
    }

    /// Time until the next poll.
    pub fn next_in(&self, interval: Duration) -> Duration {
        if self.consecutive_failures < OFFLINE_AFTER {
            return interval;
        }
        let doublings = (self.consecutive_failures - OFFLINE_AFTER + 1).min(16);
        interval
            .saturating_mul(1u32 << doublings)
            .min(MAX_BACKOFF.max(interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_after_three_failures_then_backoff_then_back() {
        let mut h = Health::default();
        let i = Duration::from_secs(10);
        assert_eq!(h.failed("timeout"), None);
        assert_eq!(h.failed("timeout"), None);
        assert_eq!(h.next_in(i), i);
        assert_eq!(h.failed("timeout"), Some(Transition::Offline));
        assert_eq!(h.next_in(i), Duration::from_secs(20));
        assert_eq!(h.failed("exception"), None);
        assert_eq!(h.next_in(i), Duration::from_secs(40));
        for _ in 0..20 {
            h.failed("timeout");
        }
        assert_eq!(h.next_in(i), MAX_BACKOFF);
        assert_eq!(h.ok(Utc::now()), Some(Transition::Online));
        assert_eq!(h.next_in(i), i);
        assert_eq!(h.errors["timeout"], 23);
        assert_eq!(h.errors["exception"], 1);
    }
}
