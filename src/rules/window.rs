//! Periods and accumulators: minutes inside the hour, hours inside the day.
//!
//! An hour keeps one slot per minute rather than running sums, because data arrive
//! in any mix of real-time values and supplied minute averages, and out of order: a
//! slot can prefer the logger's 2051 minute value over our own mean of its
//! real-time values, and validity (≥ 45 valid minutes, HJ 75) is a count of slots.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::finding::{Counts, EvidenceValue};

/// Start of the local hour containing `t`.
pub fn hour_start(t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let local = t.with_timezone(&tz);
    let naive = local.naive_local();
    let floored = naive
        .date()
        .and_time(NaiveTime::from_hms_opt(naive.hour(), 0, 0).unwrap_or_default());
    tz.from_local_datetime(&floored)
        .earliest()
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|| t - Duration::seconds(i64::from(t.minute() * 60 + t.second())))
}

/// Start of the local day containing `t`.
pub fn day_start(t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let local = t.with_timezone(&tz).date_naive();
    tz.from_local_datetime(&local.and_time(NaiveTime::MIN))
        .earliest()
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or(t)
}

/// Start of the local year containing `t`, and of the next one.
pub fn year_bounds(t: DateTime<Utc>, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    use chrono::Datelike;
    let y = t.with_timezone(&tz).year();
    let at = |y: i32| {
        chrono::NaiveDate::from_ymd_opt(y, 1, 1)
            .and_then(|d| {
                tz.from_local_datetime(&d.and_time(NaiveTime::MIN))
                    .earliest()
            })
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or(t)
    };
    (at(y), at(y + 1))
}

/// What one value contributes.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// As measured.
    pub measured: f64,
    /// Corrected to reference O2 (= measured where correction does not apply).
    pub judged: f64,
    /// Flow rate at the same time, for flow-weighted means and C × Q.
    pub flow: Option<f64>,
}

/// One minute of one series.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slot {
    n: u32,
    sum_judged: f64,
    sum_measured: f64,
    sum_cq: f64,
    sum_q: f64,
    q_n: u32,
    /// The logger's own minute average (2051), which wins over our mean.
    supplied: Option<(f64, f64)>,
    /// Flagged M or C (maintenance, calibration) at least once.
    pub maintenance: bool,
    /// Seconds of the minute that already brought a real-time value: a reading
    /// delivered twice (a resend, a replay overlapping the live feed) counts once.
    seen: u64,
}

impl Slot {
    fn add(&mut self, s: Sample) {
        self.n += 1;
        self.sum_judged += s.judged;
        self.sum_measured += s.measured;
        if let Some(q) = s.flow {
            self.sum_cq += s.measured * q;
            self.sum_q += q;
            self.q_n += 1;
        }
    }

    pub fn valid(&self) -> bool {
        self.n > 0 || self.supplied.is_some()
    }

    /// (judged, measured) minute value.
    pub fn value(&self) -> Option<(f64, f64)> {
        self.supplied.or_else(|| {
            (self.n > 0).then(|| {
                let n = f64::from(self.n);
                (self.sum_judged / n, self.sum_measured / n)
            })
        })
    }
}

/// How many values the evidence of a window keeps (the latest ones).
pub const EVIDENCE_VALUES: usize = 6;

/// The open hour of one series.
#[derive(Debug, Clone)]
pub struct HourWin {
    pub start: DateTime<Utc>,
    /// Kept rather than computed: the hot path compares against it per value.
    end: DateTime<Utc>,
    start_ms: i64,
    pub slots: Box<[Slot; 60]>,
    pub counts: Counts,
    /// Minute index up to which the running mean was last evaluated.
    pub evaluated_minute: u8,
    /// Early warning / projection already raised in this hour, per limit (bits).
    pub warned: u32,
    pub projected: u32,
    pub not_judgeable_raised: bool,
    pub recent: Vec<EvidenceValue>,
}

/// The result of a closed or running hour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourStats {
    pub valid_minutes: u32,
    /// Mean of the valid minutes' judged (corrected) values.
    pub mean: Option<f64>,
    /// Mean of the measured values (emission totals use the measured concentration).
    pub measured_mean: Option<f64>,
    /// ΣCQ and ΣQ over the values that had a flow.
    pub sum_cq: f64,
    pub sum_q: f64,
    /// Values that had a flow.
    pub q_n: u32,
    pub maintenance_minutes: u32,
    /// Judged value of the latest valid minute.
    pub last: Option<f64>,
}

impl HourWin {
    pub fn new(start: DateTime<Utc>) -> Self {
        HourWin {
            start,
            end: start + Duration::hours(1),
            start_ms: start.timestamp_millis(),
            slots: Box::new([Slot::default(); 60]),
            counts: Counts::default(),
            evaluated_minute: 0,
            warned: 0,
            projected: 0,
            not_judgeable_raised: false,
            recent: Vec::new(),
        }
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    pub fn minute_of(&self, t: DateTime<Utc>) -> usize {
        ((t.timestamp_millis() - self.start_ms).div_euclid(60_000)).clamp(0, 59) as usize
    }

    pub fn add(&mut self, t: DateTime<Utc>, s: Sample) {
        let m = self.minute_of(t);
        self.slots[m].add(s);
    }

    /// Marks the second of `t` as seen; false if a value for it was seen already.
    pub fn first_sight(&mut self, t: DateTime<Utc>) -> bool {
        let ms = t.timestamp_millis() - self.start_ms;
        let m = ms.div_euclid(60_000).clamp(0, 59) as usize;
        let bit = 1u64 << ms.div_euclid(1000).rem_euclid(60);
        let slot = &mut self.slots[m];
        let new = slot.seen & bit == 0;
        slot.seen |= bit;
        new
    }

    /// Like [`first_sight`](Self::first_sight) for a logger's minute average
    /// (one per minute; bit 60, above the 60 seconds' bits).
    pub fn first_minute_sight(&mut self, t: DateTime<Utc>) -> bool {
        let m = self.minute_of(t);
        let slot = &mut self.slots[m];
        let new = slot.seen & (1u64 << 60) == 0;
        slot.seen |= 1u64 << 60;
        new
    }

    pub fn supply_minute(&mut self, t: DateTime<Utc>, judged: f64, measured: f64) {
        let m = self.minute_of(t);
        self.slots[m].supplied = Some((judged, measured));
    }

    pub fn mark_maintenance(&mut self, t: DateTime<Utc>) {
        let m = self.minute_of(t);
        self.slots[m].maintenance = true;
    }

    pub fn remember(&mut self, v: EvidenceValue) {
        if self.recent.len() == EVIDENCE_VALUES {
            self.recent.remove(0);
        }
        self.recent.push(v);
    }

    /// Statistics over minutes `[0, upto)`.
    pub fn stats(&self, upto: usize) -> HourStats {
        let mut s = HourStats {
            valid_minutes: 0,
            mean: None,
            measured_mean: None,
            sum_cq: 0.0,
            sum_q: 0.0,
            q_n: 0,
            maintenance_minutes: 0,
            last: None,
        };
        let (mut sj, mut sm) = (0.0, 0.0);
        for slot in &self.slots[..upto.min(60)] {
            if slot.maintenance {
                s.maintenance_minutes += 1;
            }
            s.sum_cq += slot.sum_cq;
            s.sum_q += slot.sum_q;
            s.q_n += slot.q_n;
            if let Some((j, m)) = slot.value() {
                s.valid_minutes += 1;
                sj += j;
                sm += m;
                s.last = Some(j);
            }
        }
        if s.valid_minutes > 0 {
            let n = f64::from(s.valid_minutes);
            s.mean = Some(sj / n);
            s.measured_mean = Some(sm / n);
        }
        s
    }
}
