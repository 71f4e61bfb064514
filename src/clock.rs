//! Time is passed in, never read from a global, so tests can run hours of data in
//! milliseconds and a restart test can put the clock exactly where it wants.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock, for the daemon.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to, for tests and simulations.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Mutex::new(start))
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.lock() = t;
    }

    pub fn advance(&self, d: chrono::Duration) {
        let mut now = self.lock();
        *now += d;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        // A poisoned clock only means another test thread panicked mid-update; the
        // timestamp inside is still a valid value.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }
}

/// Wall-clock time run faster, for the demo: `origin_sim + factor × (real elapsed
/// since origin_real)`. The daemon and the simulators share one, so data time,
/// windows, offline detection and alert timestamps all agree; timers that are
/// tokio intervals still tick in real time, which the demo's config allows for.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    origin_real: std::time::Instant,
    origin_sim: DateTime<Utc>,
    factor: f64,
}

impl ScaledClock {
    /// A clock reading `origin_sim` now and running `factor` times as fast as the
    /// wall clock. A factor that is not a positive finite number is taken as 1.
    pub fn new(origin_sim: DateTime<Utc>, factor: f64) -> Self {
        Self::starting_at(std::time::Instant::now(), origin_sim, factor)
    }

    /// As [`ScaledClock::new`], from an explicit real-time origin (for tests).
    pub fn starting_at(
        origin_real: std::time::Instant,
        origin_sim: DateTime<Utc>,
        factor: f64,
    ) -> Self {
        let factor = if factor.is_finite() && factor > 0.0 {
            factor
        } else {
            1.0
        };
        ScaledClock {
            origin_real,
            origin_sim,
            factor,
        }
    }

    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// Simulated time at the real instant `at`.
    pub fn at(&self, at: std::time::Instant) -> DateTime<Utc> {
        let real = at.saturating_duration_since(self.origin_real);
        let sim = real.mul_f64(self.factor);
        // Beyond ~292 years of simulated time chrono cannot add; stay at the origin
        // rather than panic (no demo runs that long).
        chrono::Duration::from_std(sim)
            .ok()
            .and_then(|d| self.origin_sim.checked_add_signed(d))
            .unwrap_or(self.origin_sim)
    }

    /// Real time that `sim` of simulated time takes.
    pub fn real(&self, sim: std::time::Duration) -> std::time::Duration {
        sim.div_f64(self.factor)
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> DateTime<Utc> {
        self.at(std::time::Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::{Duration, Instant};

    #[test]
    fn scaled_clock_runs_factor_times_faster_from_its_origin() {
        let real0 = Instant::now();
        let sim0 = Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap();
        let c = ScaledClock::starting_at(real0, sim0, 60.0);
        assert_eq!(c.at(real0), sim0);
        assert_eq!(
            c.at(real0 + Duration::from_secs(1)),
            sim0 + chrono::Duration::minutes(1)
        );
        assert_eq!(
            c.at(real0 + Duration::from_millis(1500)),
            sim0 + chrono::Duration::seconds(90)
        );
        assert_eq!(c.real(Duration::from_secs(3600)), Duration::from_secs(60));
    }

    #[test]
    fn scaled_clock_never_goes_before_its_origin_and_rejects_odd_factors() {
        let real0 = Instant::now() + Duration::from_secs(10);
        let sim0 = Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap();
        let c = ScaledClock::starting_at(real0, sim0, 60.0);
        assert_eq!(c.at(real0 - Duration::from_secs(5)), sim0);
        for bad in [0.0, -3.0, f64::NAN, f64::INFINITY] {
            assert_eq!(ScaledClock::new(sim0, bad).factor(), 1.0);
        }
    }
}
