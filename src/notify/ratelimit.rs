//! Per-channel rate limit: at most `limit` sends in any 60-second window.
//!
//! A token bucket is the usual tool, but a bucket of 20 that refills at 20 a minute
//! lets 20 through at once and then one more every 3 s — up to 39 in one minute,
//! which a DingTalk robot punishes with a ten-minute mute. A sliding window of send
//! times is exact: the provider counts the same way. Time comes from the injected
//! clock, so tests run a minute of traffic without waiting.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone)]
pub struct SlidingWindow {
    limit: usize,
    window: Duration,
    sent: VecDeque<DateTime<Utc>>,
}

impl SlidingWindow {
    pub fn per_minute(limit: u32) -> Self {
        SlidingWindow {
            limit: limit.max(1) as usize,
            window: Duration::seconds(60),
            sent: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: DateTime<Utc>) {
        while self.sent.front().is_some_and(|t| *t + self.window <= now) {
            self.sent.pop_front();
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Sends still allowed in the window ending now.
    pub fn available(&mut self, now: DateTime<Utc>) -> usize {
        self.expire(now);
        self.limit.saturating_sub(self.sent.len())
    }

    pub fn record(&mut self, now: DateTime<Utc>) {
        self.expire(now);
        self.sent.push_back(now);
    }

    /// When at least `need` slots are free (now, if they already are).
    pub fn available_at(&mut self, now: DateTime<Utc>, need: usize) -> DateTime<Utc> {
        self.expire(now);
        let need = need.min(self.limit);
        if self.sent.len() + need <= self.limit {
            return now;
        }
        // The send whose expiry leaves exactly limit - need in the window.
        let idx = self.sent.len() + need - self.limit - 1;
        self.sent.get(idx).map(|t| *t + self.window).unwrap_or(now)
    }

    /// When the next slot frees up (now, if one is free).
    pub fn next_free_at(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.expire(now);
        if self.sent.len() < self.limit {
            return now;
        }
        let idx = self.sent.len() - self.limit;
        self.sent.get(idx).map(|t| *t + self.window).unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn never_more_than_limit_in_any_minute() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap();
        let mut w = SlidingWindow::per_minute(3);
        for s in [0, 10, 20] {
            assert!(w.available(t0 + Duration::seconds(s)) > 0);
            w.record(t0 + Duration::seconds(s));
        }
        assert_eq!(w.available(t0 + Duration::seconds(59)), 0);
        assert_eq!(
            w.next_free_at(t0 + Duration::seconds(30)),
            t0 + Duration::seconds(60)
        );
        assert_eq!(w.available(t0 + Duration::seconds(60)), 1);
    }
}
