//! The counting itself, pure: hourly values in, a day's figures out.
//!
//! By the definitions the bureau is judged on: hourly values per outlet and limited
//! factor; an hour flagged F (stopped) leaves both counts; M, C, D and B are
//! received but not valid; N, T and S are valid. An hour is expected only once it
//! has ended (`until`), so today's figures do not count the future as missing.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;

use crate::model::Flag;
use crate::store::DayFigures;
use crate::timefmt::{local_to_utc, TimeError};

/// Expected, received and valid hours, and the rates they give.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub expected: u32,
    pub received: u32,
    pub valid: u32,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.expected += other.expected;
        self.received += other.received;
        self.valid += other.valid;
    }

    /// received / expected; `None` when nothing was expected.
    pub fn transmission_rate(&self) -> Option<f64> {
        ratio(self.received, self.expected)
    }

    /// valid / received.
    pub fn validity_rate(&self) -> Option<f64> {
        ratio(self.valid, self.received)
    }

    /// valid / expected (= transmission × validity).
    pub fn effective_rate(&self) -> Option<f64> {
        ratio(self.valid, self.expected)
    }
}

fn ratio(n: u32, d: u32) -> Option<f64> {
    (d > 0).then(|| f64::from(n) / f64::from(d))
}

impl From<&DayFigures> for Counts {
    fn from(d: &DayFigures) -> Counts {
        Counts {
            expected: d.expected,
            received: d.received,
            valid: d.valid,
        }
    }
}

/// The UTC start of local day `day` in `tz`.
pub fn day_start(day: NaiveDate, tz: Tz) -> Result<DateTime<Utc>, TimeError> {
    local_to_utc(day.and_time(chrono::NaiveTime::MIN), tz)
}

/// The local day `t` falls in.
pub fn local_day(t: DateTime<Utc>, tz: Tz) -> NaiveDate {
    t.with_timezone(&tz).date_naive()
}

/// One hourly value: the hour's start (UTC) and its flag. When a logger supplies
/// both a raw and an O2-corrected hourly mean, the raw one's flag is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourValue {
    pub hour: DateTime<Utc>,
    pub flag: Flag,
    pub converted: bool,
}

/// One local day's figures for one outlet and factor. `values` may hold values of
/// other days (they are ignored) and several values for one hour.
pub fn day_figures(
    key: (&str, &str, &str),
    day: NaiveDate,
    tz: Tz,
    values: &[HourValue],
    until: DateTime<Utc>,
) -> Result<DayFigures, TimeError> {
    let start = day_start(day, tz)?;
    let end = day_start(day.succ_opt().unwrap_or(day), tz)?;
    // Per hour start: the flag that counts (raw before converted).
    let mut by_hour: BTreeMap<DateTime<Utc>, (bool, Flag)> = BTreeMap::new();
    for v in values {
        let h = floor_hour(v.hour);
        if h < start || h >= end {
            continue;
        }
        match by_hour.get(&h) {
            Some((conv, _)) if !*conv || v.converted => {}
            _ => {
                by_hour.insert(h, (v.converted, v.flag));
            }
        }
    }
    let (enterprise, outlet, factor) = key;
    let mut f = DayFigures {
        enterprise: enterprise.to_string(),
        outlet: outlet.to_string(),
        factor: factor.to_string(),
        day,
        expected: 0,
        received: 0,
        valid: 0,
        missing_hours: Vec::new(),
        invalid_hours: Vec::new(),
    };
    let mut h = start;
    while h < end {
        let local_hour = h.with_timezone(&tz).hour() as u8;
        let ended = h + Duration::hours(1) <= until;
        match by_hour.get(&h).map(|(_, flag)| *flag) {
            Some(Flag::F) => {}
            Some(flag) => {
                f.expected += 1;
                f.received += 1;
                if flag.valid_for_judging() {
                    f.valid += 1;
                } else {
                    f.invalid_hours.push(local_hour);
                }
            }
            None if ended => {
                f.expected += 1;
                f.missing_hours.push(local_hour);
            }
            None => {}
        }
        h += Duration::hours(1);
    }
    Ok(f)
}

/// The start of the hour `t` falls in.
pub fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp().div_euclid(3600) * 3600;
    DateTime::from_timestamp(secs, 0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz() -> Tz {
        chrono_tz::Asia::Shanghai
    }

    /// COMPLETENESS.md's worked example: hours 0–19 arrive, 20–23 never do; 5 and 6
    /// are M; 12 is F.
    #[test]
    fn worked_example_gives_23_19_17() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let start = day_start(day, tz()).unwrap();
        let values: Vec<HourValue> = (0..20)
            .map(|h| HourValue {
                hour: start + Duration::hours(h),
                flag: match h {
                    5 | 6 => Flag::M,
                    12 => Flag::F,
                    _ => Flag::N,
                },
                converted: false,
            })
            .collect();
        let until = start + Duration::days(2);
        let f = day_figures(("E", "O", "w01018"), day, tz(), &values, until).unwrap();
        assert_eq!((f.expected, f.received, f.valid), (23, 19, 17));
        assert_eq!(f.missing_hours, vec![20, 21, 22, 23]);
        assert_eq!(f.invalid_hours, vec![5, 6]);
        let c = Counts::from(&f);
        assert_eq!(
            format!("{:.1}", c.transmission_rate().unwrap() * 100.0),
            "82.6"
        );
        assert_eq!(format!("{:.1}", c.validity_rate().unwrap() * 100.0), "89.5");
        assert_eq!(
            format!("{:.1}", c.effective_rate().unwrap() * 100.0),
            "73.9"
        );
    }

    #[test]
    fn hours_not_yet_ended_are_not_expected_and_raw_flag_wins() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let start = day_start(day, tz()).unwrap();
        let values = [
            // Converted N, raw D for hour 0: the raw one counts, whatever the order.
            HourValue {
                hour: start,
                flag: Flag::N,
                converted: true,
            },
            HourValue {
                hour: start,
                flag: Flag::D,
                converted: false,
            },
            HourValue {
                hour: start + Duration::hours(1),
                flag: Flag::N,
                converted: true,
            },
            // Another day: ignored.
            HourValue {
                hour: start - Duration::hours(1),
                flag: Flag::N,
                converted: false,
            },
        ];
        // Three hours have ended: 0 (D), 1 (N), 2 (missing); hour 3 is running.
        let until = start + Duration::minutes(3 * 60 + 30);
        let f = day_figures(("E", "O", "a21026"), day, tz(), &values, until).unwrap();
        assert_eq!((f.expected, f.received, f.valid), (3, 2, 1));
        assert_eq!(f.missing_hours, vec![2]);
        assert_eq!(f.invalid_hours, vec![0]);
        let none = Counts::default();
        assert_eq!(none.transmission_rate(), None);
    }
}
