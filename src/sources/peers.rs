//! Per-address limits of the listeners that face the internet (HJ 212, DTU).
//!
//! One address may hold at most `max_per_address` connections at once: a scanner
//! or a broken client that opens thousands of idle connections runs into its own
//! limit, not into the server's, and real loggers from other addresses are still
//! served. Dead-letter rows are sampled per address and minute: past
//! `dead_letters_per_minute`, a refusal is still counted (metrics, logs) but no
//! row is written, so a flood of bad frames cannot fill the database.
//!
//! Windows are measured on the monotonic clock; nothing here is evidence.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use std::time::{Duration, Instant};

/// Addresses remembered at most for dead-letter sampling; beyond it, the map is
/// cleared of finished windows (and, if still full, the address is not sampled).
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug)]
pub struct PeerLimits {
    max_per_address: usize,
    dead_letters_per_minute: u32,
    /// A minute, except in tests.
    window: Duration,
    open: Mutex<HashMap<IpAddr, usize>>,
    written: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// A connection admitted under its address's limit; dropping it frees the place.
#[derive(Debug)]
pub struct PeerSlot {
    limits: Arc<PeerLimits>,
    ip: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.limits.open);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PeerLimits {
    pub fn new(max_per_address: usize, dead_letters_per_minute: u32) -> Arc<PeerLimits> {
        Arc::new(PeerLimits {
            max_per_address: max_per_address.max(1),
            dead_letters_per_minute,
            window: Duration::from_secs(60),
            open: Mutex::default(),
            written: Mutex::default(),
        })
    }

    /// A place for one more connection from `ip`, or `None` at its limit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let mut open = lock(&self.open);
        let n = open.entry(ip).or_default();
        if *n >= self.max_per_address {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections open from `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        lock(&self.open).get(&ip).copied().unwrap_or(0)
    }

    /// May a dead-letter row from `ip` be written now? Counts it if so.
    pub fn dead_letter_allowed(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut written = lock(&self.written);
        if written.len() >= MAX_ADDRESSES && !written.contains_key(&ip) {
            written.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if written.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        let (start, n) = written.entry(ip).or_insert((now, 0));
        if now.duration_since(*start) >= self.window {
            *start = now;
            *n = 0;
        }
        if *n >= self.dead_letters_per_minute {
            return false;
        }
        *n += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_per_address_are_limited_and_freed() {
        let limits = PeerLimits::new(2, 10);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let one = limits.admit(a).unwrap();
        let _two = limits.admit(a).unwrap();
        assert!(limits.admit(a).is_none(), "third from the same address");
        assert!(limits.admit(b).is_some(), "another address is not affected");
        drop(one);
        assert_eq!(limits.open(a), 1);
        assert!(limits.admit(a).is_some());
    }

    #[test]
    fn dead_letters_are_sampled_per_address_and_minute() {
        let mut limits = PeerLimits::new(16, 3);
        Arc::get_mut(&mut limits).unwrap().window = Duration::from_millis(50);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let allowed = (0..10).filter(|_| limits.dead_letter_allowed(a)).count();
        assert_eq!(allowed, 3);
        assert!(limits.dead_letter_allowed(b));
        std::thread::sleep(Duration::from_millis(60));
        assert!(limits.dead_letter_allowed(a), "a new minute");
    }
}
