//! Failed console logins are throttled per client address: after
//! [`MAX_FAILURES`] wrong tokens within [`WINDOW`], that address is refused (429)
//! until the oldest failure leaves the window — the right token included, so
//! guessing cannot continue by mixing in a known one. Tokens are long random
//! strings; this is a second line, and it keeps a guessing script out of the log.
//! Time is the daemon's clock, so tests move it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::minutes(15);
/// Addresses remembered at most; beyond it the stalest are forgotten first.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<IpAddr, VecDeque<DateTime<Utc>>>>,
}

impl LoginThrottle {
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
        while times.front().is_some_and(|t| now - *t >= WINDOW) {
            times.pop_front();
        }
        match times.front() {
            Some(oldest) if times.len() >= MAX_FAILURES => Err(*oldest + WINDOW - now),
            _ => Ok(()),
        }
    }

    pub fn failed(&self, ip: IpAddr, now: DateTime<Utc>) {
        let mut map = self.lock();
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&ip) {
            map.retain(|_, t| t.back().is_some_and(|last| now - *last < WINDOW));
            if map.len() >= MAX_ADDRESSES {
                return;
            }
        }
        let times = map.entry(ip).or_default();
        times.push_back(now);
        while times.len() > MAX_FAILURES {
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
        let t = LoginThrottle::default();
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
    }
}
