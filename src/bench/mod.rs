//! Benchmarks shared by `pollwatch bench` and `benches/`: the same code measures on
//! a developer's machine and on a unit's server. Figures go to BENCHMARKS.md;
//! nothing here is asserted in tests.

pub mod alert_load;
pub mod alerts;
pub mod backfill;
pub mod chart;
pub mod cluster;
pub mod evidence;
pub mod field;
pub mod field_peer;
pub mod hj212;
pub mod hj212_steady;
pub mod logger_backfill;
pub mod mqtt;
pub mod procstat;
pub mod report;
pub mod rules;
pub mod store;

pub use store::{store, synthetic_readings, BenchError, StoreBench, StoreReport};

use std::time::Duration;

/// The value at fraction `p` (0..=1) of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i]
}

/// User + system CPU time of this process from /proc (Linux), in clock ticks of
/// 1/100 s (the kernel's USER_HZ on every Linux we ship to).
pub(crate) fn cpu_time() -> Option<Duration> {
    procstat::ProcStats::read(None).map(|s| s.cpu)
}
