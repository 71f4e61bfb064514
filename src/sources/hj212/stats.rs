//! Counters of the HJ 212 server, per reason and per MN, for metrics, the status
//! API and tests. Last-seen times feed the offline rule.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

#[derive(Debug, Default)]
pub struct Hj212Stats {
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicU64,
    pub frames: AtomicU64,
    pub readings: AtomicU64,
    pub replies_9014: AtomicU64,
    pub replies_9013: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    unknown_codes: Mutex<BTreeMap<String, u64>>,
    per_mn: Mutex<HashMap<String, MnStats>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MnStats {
    pub frames: u64,
    pub readings: u64,
    pub rejected: u64,
    pub last_seen: Option<DateTime<Utc>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hj212Stats {
    pub fn reject(&self, reason: &'static str, mn: Option<&str>) {
        *lock(&self.rejected).entry(reason).or_default() += 1;
        if let Some(mn) = mn {
            if let Some(s) = lock(&self.per_mn).get_mut(mn) {
                s.rejected += 1;
            }
        }
    }

    pub fn unknown_code(&self, code: &str) -> u64 {
        let mut m = lock(&self.unknown_codes);
        let n = m.entry(code.to_string()).or_default();
        *n += 1;
        *n
    }

    /// An authenticated frame from `mn` at `at`.
    pub fn seen(&self, mn: &str, at: DateTime<Utc>, readings: u64) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.readings.fetch_add(readings, Ordering::Relaxed);
        let mut m = lock(&self.per_mn);
        let s = m.entry(mn.to_string()).or_default();
        s.frames += 1;
        s.readings += readings;
        s.last_seen = Some(s.last_seen.map_or(at, |t| t.max(at)));
    }

    pub fn rejected(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.rejected).clone()
    }

    pub fn rejected_for(&self, reason: &str) -> u64 {
        lock(&self.rejected).get(reason).copied().unwrap_or(0)
    }

    pub fn unknown_codes(&self) -> BTreeMap<String, u64> {
        lock(&self.unknown_codes).clone()
    }

    pub fn mn(&self, mn: &str) -> Option<MnStats> {
        lock(&self.per_mn).get(mn).cloned()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
