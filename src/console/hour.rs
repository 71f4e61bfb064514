//! The current hour's running averages of an outlet, computed from stored
//! readings with the rules engine's own accumulator ([`HourWin`]) and oxygen
//! correction ([`correct`]), so the console and the engine average the same way:
//! one slot per minute, a logger's minute average preferring over real-time
//! values, values flagged F/M/C/D/B left out.
//!
//! One simplification, stated where it shows: O2 is paired with a pollutant
//! value of the same timestamp only (the engine also accepts a slightly older
//! O2 value); a value without one counts as "not judgeable" here.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::config::{Basis, Outlet};
use crate::model::{DataKind, Stat};
use crate::rules::correct;
use crate::rules::plan::O2;
use crate::rules::window::{HourStats, HourWin, Sample};
use crate::store::StoredReading;

/// One factor with an hourly limit, so far this hour.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorHour {
    pub factor: String,
    pub limit: Option<f64>,
    /// The early-warning line (`warn_at × limit`).
    pub warn: Option<f64>,
    pub stats: HourStats,
    /// Values left out because they could not be corrected to reference O2.
    pub not_judgeable: u32,
}

fn counts(r: &StoredReading) -> bool {
    !r.converted
        && r.flag.valid_for_judging()
        && matches!(
            (r.kind, r.stat),
            (DataKind::Rtd, Stat::Rtd) | (DataKind::Min, Stat::Avg)
        )
}

/// Running means of `outlet`'s hourly-limited factors over `readings` (those of
/// the hour starting at `start`), up to `now`.
pub fn running_hour(
    outlet: &Outlet,
    readings: &[StoredReading],
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<FactorHour> {
    let o2: HashMap<(DateTime<Utc>, DataKind), f64> = readings
        .iter()
        .filter(|r| r.factor == O2 && counts(r))
        .map(|r| ((r.ts, r.kind), r.value))
        .collect();
    let mut out = Vec::new();
    for limit in outlet.limits.iter().filter(|l| l.basis == Basis::Hour) {
        let mut win = HourWin::new(start);
        let mut not_judgeable = 0;
        for r in readings
            .iter()
            .filter(|r| r.factor == limit.factor && counts(r))
        {
            let judged = match outlet.o2_reference {
                Some(reference) => {
                    match correct(r.value, reference, o2.get(&(r.ts, r.kind)).copied()) {
                        Ok(v) => v,
                        Err(_) => {
                            not_judgeable += 1;
                            continue;
                        }
                    }
                }
                None => r.value,
            };
            if r.kind == DataKind::Min {
                win.supply_minute(r.ts, judged, r.value);
            } else {
                win.add(
                    r.ts,
                    Sample {
                        measured: r.value,
                        judged,
                        flow: None,
                    },
                );
            }
        }
        let upto = if now >= win.end() {
            60
        } else {
            win.minute_of(now) + 1
        };
        out.push(FactorHour {
            factor: limit.factor.clone(),
            limit: limit.max,
            warn: limit.max.map(|m| m * limit.warn_at()),
            stats: win.stats(upto),
            not_judgeable,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Flag, Protocol};
    use chrono::TimeZone;

    fn r(factor: &str, min: u32, value: f64, flag: Flag) -> StoredReading {
        let ts = Utc.with_ymd_and_hms(2026, 11, 27, 1, min, 0).unwrap();
        StoredReading {
            factor: factor.into(),
            unit: "mg/m3".into(),
            kind: DataKind::Rtd,
            stat: Stat::Rtd,
            converted: false,
            ts,
            value,
            flag,
            protocol: Protocol::Hj212,
            device: "MN".into(),
            received: ts,
            resend: false,
        }
    }

    fn outlet() -> Outlet {
        toml::from_str(
            "id = \"DA001\"\nname = \"1#\"\nkind = \"flue_gas\"\no2_reference = 6.0\n\
             [[limits]]\nfactor = \"a21026\"\nmax = 35.0\nbasis = \"hour\"\n",
        )
        .unwrap()
    }

    #[test]
    fn corrected_and_measured_means_leave_out_flagged_and_uncorrectable_values() {
        let start = Utc.with_ymd_and_hms(2026, 11, 27, 1, 0, 0).unwrap();
        let readings = vec![
            r("a19001", 0, 6.0, Flag::N),
            r("a21026", 0, 30.0, Flag::N),
            // At 11 % O2 the corrected value is 20 × 15/10 = 30.
            r("a19001", 1, 11.0, Flag::N),
            r("a21026", 1, 20.0, Flag::N),
            // Maintenance: left out.
            r("a19001", 2, 6.0, Flag::N),
            r("a21026", 2, 500.0, Flag::M),
            // No O2 at this instant: not judgeable.
            r("a21026", 3, 40.0, Flag::N),
        ];
        let now = start + chrono::Duration::minutes(10);
        let got = running_hour(&outlet(), &readings, start, now);
        assert_eq!(got.len(), 1);
        let h = &got[0];
        assert_eq!(h.stats.valid_minutes, 2);
        assert_eq!(h.stats.mean, Some(30.0));
        assert_eq!(h.stats.measured_mean, Some(25.0));
        assert_eq!(h.not_judgeable, 1);
        assert_eq!(h.limit, Some(35.0));
        assert_eq!(h.warn, Some(35.0 * 0.8));
    }
}
