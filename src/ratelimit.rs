//! Rate-limited logging for noisy peers.
//!
//! An internet-facing port sees scanners and misconfigured loggers that repeat the
//! same mistake every few seconds. Logging each occurrence drowns the journal;
//! logging none hides the problem. [`LogLimiter`] lets the first occurrence per key
//! through, then one per interval with the number suppressed in between. Counting
//! happens elsewhere (metrics); this only decides what is worth a log line.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LogLimiter {
    interval: Duration,
    max_keys: usize,
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl LogLimiter {
    pub fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            max_keys: 10_000,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(suppressed)` when a line for `key` may be logged now, with how many
    /// were suppressed since the last one; `None` to stay quiet.
    pub fn allow(&self, key: &str) -> Option<u64> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= self.max_keys && !seen.contains_key(key) {
            // A flood of distinct keys (a scan from many addresses): forget old ones
            // rather than grow without bound.
            seen.retain(|_, (t, _)| now.duration_since(*t) < self.interval);
            if seen.len() >= self.max_keys {
                return None;
            }
        }
        match seen.get_mut(key) {
            Some((last, suppressed)) if now.duration_since(*last) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                let n = *suppressed;
                *last = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                seen.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_passes_repeats_are_counted() {
        let l = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.allow("1.2.3.4 bad_crc"), Some(0));
        assert_eq!(l.allow("1.2.3.4 bad_crc"), None);
        assert_eq!(l.allow("1.2.3.4 bad_crc"), None);
        assert_eq!(l.allow("5.6.7.8 bad_crc"), Some(0));
        let l = LogLimiter::new(Duration::ZERO);
        assert_eq!(l.allow("k"), Some(0));
        assert_eq!(l.allow("k"), Some(0));
    }
}
