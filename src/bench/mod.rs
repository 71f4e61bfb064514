//! Benchmarks shared by `pollwatch bench` and `benches/`: the same code measures on
//! a developer's machine and on a unit's server. Figures go to BENCHMARKS.md;
//! nothing here is asserted in tests.

pub mod alerts;
pub mod backfill;
pub mod chart;
pub mod field;
pub mod hj212;
pub mod mqtt;
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
