//! How a simulated value changes over time, shared by the Modbus and the
//! DL/T 645 simulators.
//!
//! A profile is a pure function of "how long since it was set" and "now",
//! both taken from the caller's [`Clock`](crate::clock::Clock). Nothing here
//! reads the wall clock, so a test can jump an hour ahead with a
//! `ManualClock` and see exactly the value a device would then report.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    Constant(f64),
    /// `start + per_sec × seconds since the profile was set`: energy
    /// counters, or a drifting sensor.
    Ramp {
        start: f64,
        per_sec: f64,
    },
    /// `mean + amplitude × sin(2π t / period)`, t counted from when the
    /// profile was set. A period that is not positive gives `mean`.
    Sine {
        mean: f64,
        amplitude: f64,
        period_secs: f64,
    },
    /// `before` until `at`, `after` from `at` on (inclusive).
    Step {
        before: f64,
        after: f64,
        at: DateTime<Utc>,
    },
    /// The value of the latest entry at or before now; entries need not be
    /// sorted (on equal times the later entry wins). Before the first entry
    /// there is no value, which the simulators report as a device fault, so
    /// a script can also play "the analyzer has nothing yet".
    Script(Vec<(DateTime<Utc>, f64)>),
}

impl Profile {
    /// The value at `now` for a profile set at `since`; `None` only for a
    /// script that has not started.
    pub fn value_at(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> Option<f64> {
        let elapsed = seconds_between(since, now);
        match self {
            Profile::Constant(v) => Some(*v),
            Profile::Ramp { start, per_sec } => Some(start + per_sec * elapsed),
            Profile::Sine {
                mean,
                amplitude,
                period_secs,
            } => {
                if *period_secs > 0.0 && period_secs.is_finite() {
                    let phase = std::f64::consts::TAU * elapsed / period_secs;
                    Some(mean + amplitude * phase.sin())
                } else {
                    Some(*mean)
                }
            }
            Profile::Step { before, after, at } => Some(if now >= *at { *after } else { *before }),
            Profile::Script(entries) => entries
                .iter()
                .filter(|(t, _)| *t <= now)
                .max_by_key(|(t, _)| *t)
                .map(|(_, v)| *v),
        }
    }
}

/// Signed, to the nanosecond where it fits: a clock moved backwards gives a
/// ramp below its start rather than an error.
fn seconds_between(since: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    let d = now - since;
    match d.num_nanoseconds() {
        Some(ns) => ns as f64 / 1e9,
        None => d.num_milliseconds() as f64 / 1e3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap()
    }

    #[test]
    fn constant_and_ramp() {
        assert_eq!(Profile::Constant(3.5).value_at(t0(), t0()), Some(3.5));
        let ramp = Profile::Ramp {
            start: 100.0,
            per_sec: 0.5,
        };
        assert_eq!(ramp.value_at(t0(), t0()), Some(100.0));
        assert_eq!(
            ramp.value_at(t0(), t0() + Duration::seconds(60)),
            Some(130.0)
        );
        assert_eq!(
            ramp.value_at(t0(), t0() - Duration::seconds(10)),
            Some(95.0)
        );
    }

    #[test]
    fn sine_quarter_period_and_degenerate_period() {
        let sine = Profile::Sine {
            mean: 50.0,
            amplitude: 2.0,
            period_secs: 40.0,
        };
        let v = sine.value_at(t0(), t0() + Duration::seconds(10)).unwrap();
        assert!((v - 52.0).abs() < 1e-9);
        let v = sine.value_at(t0(), t0() + Duration::seconds(30)).unwrap();
        assert!((v - 48.0).abs() < 1e-9);
        let flat = Profile::Sine {
            mean: 50.0,
            amplitude: 2.0,
            period_secs: 0.0,
        };
        assert_eq!(flat.value_at(t0(), t0() + Duration::seconds(7)), Some(50.0));
    }

    #[test]
    fn step_is_inclusive_at_its_time() {
        let at = t0() + Duration::minutes(5);
        let step = Profile::Step {
            before: 0.0,
            after: 2.0,
            at,
        };
        assert_eq!(step.value_at(t0(), at - Duration::seconds(1)), Some(0.0));
        assert_eq!(step.value_at(t0(), at), Some(2.0));
    }

    #[test]
    fn script_takes_latest_entry_at_or_before_now() {
        let script = Profile::Script(vec![
            (t0() + Duration::seconds(20), 3.0),
            (t0(), 1.0),
            (t0() + Duration::seconds(10), 2.0),
            (t0() + Duration::seconds(10), 2.5),
        ]);
        assert_eq!(script.value_at(t0(), t0() - Duration::seconds(1)), None);
        assert_eq!(script.value_at(t0(), t0()), Some(1.0));
        assert_eq!(
            script.value_at(t0(), t0() + Duration::seconds(15)),
            Some(2.5)
        );
        assert_eq!(script.value_at(t0(), t0() + Duration::hours(1)), Some(3.0));
        assert_eq!(Profile::Script(vec![]).value_at(t0(), t0()), None);
    }
}
