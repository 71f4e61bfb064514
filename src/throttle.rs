//! Failed authentications are throttled per client address: after
//! `max_failures` wrong secrets within `window`, that address is refused until
//! the oldest failure leaves the window — the right secret included, so guessing
//! cannot continue by mixing in a known one. Secrets are long random strings; this
//! is a second line, and it keeps a guessing script out of the log.
//!
//! One [`AuthThrottle`] is shared by the HTTP API's bearer tokens and the web
//! console's login form ([`AuthThrottle::default`]: 5 within 15 minutes), so
//! a guesser cannot switch doors; the HJ 212 listener keeps its own for logger
//! passwords (`[hj212] lockout_after`). Time is the daemon's clock, so tests move it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::minutes(15);
/// Addresses remembered at most; beyond it the stalest are forgotten first.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug)]
pub struct AuthThrottle {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<DateTime<Utc>>>>,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        AuthThrottle::new(MAX_FAILURES, WINDOW)
    }
}

impl AuthThrottle {
    /// `max_failures` within `window` close the door; 0 never does.
    pub fn new(max_failures: usize, window: Duration) -> AuthThrottle {
        AuthThrottle {
            max_failures,
            window,
            failures: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<DateTime<Utc>>>> {
        // A poisoned map only lost an update; the failures in it are still valid.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(wait)` while `ip` must not try again.
    pub fn check(&self, ip: IpAddr, now: DateTime<Utc>) -> Result<(), Duration> {
        let mut map = self.lock();
        let Some(times) = map.get_mut(&ip) else {
            return Ok(());
        };
        while times.front().is_some_and(|t| now - *t >= self.window) {
            times.pop_front();
        }
        match times.front() {
            Some(oldest) if self.max_failures > 0 && times.len() >= self.max_failures => {
                Err(*oldest + self.window - now)
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, ip: IpAddr, now: DateTime<Utc>) {
        if self.max_failures == 0 {
            return;
        }
        let mut map = self.lock();
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&ip) {
            map.retain(|_, t| t.back().is_some_and(|last| now - *last < self.window));
            if map.len() >= MAX_ADDRESSES {
                return;
            }
        }
        let times = map.entry(ip).or_default();
        times.push_back(now);
        while times.len() > self.max_failures {
            times.pop_front();
        }
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.lock().remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_close_the_door_until_the_oldest_leaves_the_window() {
        let t = AuthThrottle::default();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let other: IpAddr = "10.0.0.8".parse().unwrap();
        let t0 = DateTime::UNIX_EPOCH + Duration::days(20_000);
        for i in 0..4 {
            t.failed(ip, t0 + Duration::minutes(i));
            assert!(t.check(ip, t0 + Duration::minutes(i)).is_ok(), "{i}");
        }
        t.failed(ip, t0 + Duration::minutes(4));
        let wait = t.check(ip, t0 + Duration::minutes(5)).unwrap_err();
        assert_eq!(wait, Duration::minutes(10), "until 15 min after the first");
        assert!(
            t.check(other, t0 + Duration::minutes(5)).is_ok(),
            "per address"
        );
        assert!(t
            .check(ip, t0 + Duration::minutes(14) + Duration::seconds(59))
            .is_err());
        assert!(t.check(ip, t0 + Duration::minutes(15)).is_ok());
        // A success forgets the failures.
        t.failed(ip, t0 + Duration::minutes(16));
        t.succeeded(ip);
        assert!(t.lock().get(&ip).is_none());
        // Zero: never closes.
        let off = AuthThrottle::new(0, WINDOW);
        for _ in 0..10 {
            off.failed(ip, t0);
        }
        assert!(off.check(ip, t0).is_ok());
    }
}
