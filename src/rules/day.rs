//! The day of one series, built hour by hour from the best data each hour has.
//!
//! Loggers send different shapes: real-time values, minute averages (2051),
//! hourly averages (2061) with the hour's discharge (`w00000-Cou`), daily values
//! (2031) — many send hourly and daily values only, and platforms that forward
//! data always do. A daily limit must be judged whatever arrives, so a day keeps
//! one entry per hour with what we computed from real-time/minute values and what
//! the logger supplied, and picks per hour when it is judged:
//!
//! - the hour we computed, when it is valid (≥ `min_valid_minutes`): our own mean
//!   of the values is what the rules exist to check;
//! - else the logger's hourly average, when its flag is valid (N, S, T; an hour
//!   flagged F, M, C, D or B is not valid, HJ 75/76);
//! - else the hour is not valid.
//!
//! A wastewater day is flow-weighted (ΣCᵢQᵢ/ΣQᵢ over hours): a computed hour
//! weighs with its mean flow × 3600 s, a supplied hour with its `-Cou` discharge,
//! else the logger's hourly mean flow × 3600 s. If any valid hour has no weight
//! the weighted mean would be partial, and the plain mean of the hours is judged
//! (the evidence says which). Hours are kept rather than running sums because
//! they arrive in any order — the supplied hour after our own, the flow in a
//! later frame, a backfill a day late (see [`super::rejudge`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::finding::{Counts, HourEvidence};
use crate::model::Flag;

/// Discharge of one hour of one outlet, m³, as the logger reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HourFlow {
    /// The hour's discharge (`w00000-Cou` / `a00000-Cou`).
    pub cou_m3: Option<f64>,
    /// The hour's mean flow × 3600 s.
    pub avg_m3: Option<f64>,
}

/// Supplied hourly flows of an outlet by hour start (kept for a few days).
pub type HourFlows = BTreeMap<DateTime<Utc>, HourFlow>;

/// An hour computed from real-time/minute values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComputedHour {
    pub valid: bool,
    /// Mean of the judged (corrected) values.
    pub mean: f64,
    pub measured: f64,
    /// (flow-weighted concentration, volume m³) when every valid value had a flow.
    pub weighted: Option<(f64, f64)>,
}

/// A logger's hourly average (2061).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SuppliedHour {
    pub judged: f64,
    pub measured: f64,
    pub flag: Flag,
    /// Flag valid (N, S, T) and, for flue gas, an O2 to correct with.
    pub valid: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayHour {
    pub start: DateTime<Utc>,
    pub computed: Option<ComputedHour>,
    pub supplied: Option<SuppliedHour>,
}

/// The open day of one series.
#[derive(Debug, Clone)]
pub struct DayWin {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// By hour start, in order.
    pub hours: Vec<DayHour>,
    pub counts: Counts,
    pub maintenance_minutes: u32,
    pub warned: u32,
    pub projected: u32,
    pub maintenance_raised: bool,
    /// A value of one of its hours came after that hour had closed: once the day
    /// closes it is judged again from the store.
    pub late: bool,
}

/// One valid hour as the day uses it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourPick {
    pub start: DateTime<Utc>,
    pub supplied: bool,
    pub value: f64,
    pub measured: f64,
    /// (concentration weighed, volume m³, where the volume came from).
    pub weight: Option<(f64, f64, &'static str)>,
}

/// The day as judged: the hour picks and how they combine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayAgg {
    pub picks: Vec<HourPick>,
    /// Flow-weighted (every valid hour had a volume).
    pub weighted: bool,
}

impl DayWin {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        DayWin {
            start,
            end,
            hours: Vec::new(),
            counts: Counts::default(),
            maintenance_minutes: 0,
            warned: 0,
            projected: 0,
            maintenance_raised: false,
            late: false,
        }
    }

    fn entry(&mut self, start: DateTime<Utc>) -> &mut DayHour {
        let i = match self.hours.binary_search_by_key(&start, |h| h.start) {
            Ok(i) => i,
            Err(i) => {
                self.hours.insert(
                    i,
                    DayHour {
                        start,
                        ..DayHour::default()
                    },
                );
                i
            }
        };
        &mut self.hours[i]
    }

    pub fn put_computed(&mut self, start: DateTime<Utc>, h: ComputedHour) {
        self.entry(start).computed = Some(h);
    }

    /// Records a supplied hour; false if the same hour was supplied already (a
    /// resend), which then counts once.
    pub fn put_supplied(&mut self, start: DateTime<Utc>, h: SuppliedHour) -> bool {
        let e = self.entry(start);
        let first = e.supplied.is_none();
        e.supplied = Some(h);
        first
    }

    /// Whether any hour of this day came from the logger: its last hour is sent
    /// after the day ends, so the day is closed an hour later.
    pub fn has_supplied(&self) -> bool {
        self.hours.iter().any(|h| h.supplied.is_some())
    }

    /// The best data per hour (see the module docs). `weight`: a wastewater
    /// pollutant, judged flow-weighted.
    pub fn aggregate(&self, flows: &HourFlows, weight: bool) -> DayAgg {
        let mut picks = Vec::with_capacity(self.hours.len());
        for h in &self.hours {
            if let Some(c) = h.computed.filter(|c| c.valid) {
                picks.push(HourPick {
                    start: h.start,
                    supplied: false,
                    value: c.mean,
                    measured: c.measured,
                    weight: c.weighted.map(|(conc, m3)| (conc, m3, "flow")),
                });
            } else if let Some(s) = h.supplied.filter(|s| s.valid) {
                let f = flows.get(&h.start);
                let w = f
                    .and_then(|f| f.cou_m3.map(|v| (v, "cou")))
                    .or_else(|| f.and_then(|f| f.avg_m3.map(|v| (v, "flow_avg"))));
                picks.push(HourPick {
                    start: h.start,
                    supplied: true,
                    value: s.judged,
                    measured: s.measured,
                    weight: w.map(|(m3, from)| (s.measured, m3, from)),
                });
            }
        }
        let weighted = weight
            && !picks.is_empty()
            && picks.iter().all(|p| p.weight.is_some())
            && picks
                .iter()
                .filter_map(|p| p.weight)
                .map(|w| w.1)
                .sum::<f64>()
                > 0.0;
        DayAgg { picks, weighted }
    }

    /// Every hour of the day with its source, for the evidence.
    pub fn evidence(&self, agg: &DayAgg) -> Vec<HourEvidence> {
        self.hours
            .iter()
            .map(|h| {
                let pick = agg.picks.iter().find(|p| p.start == h.start);
                let source = match (pick, h.computed, h.supplied) {
                    (Some(p), _, _) if p.supplied => "supplied",
                    (Some(_), _, _) => "computed",
                    (None, Some(_), _) => "computed",
                    (None, None, Some(_)) => "supplied",
                    (None, None, None) => "none",
                };
                HourEvidence {
                    start: h.start,
                    source: source.into(),
                    valid: pick.is_some(),
                    value: pick
                        .map(|p| p.value)
                        .or_else(|| h.supplied.map(|s| s.judged).or(h.computed.map(|c| c.mean))),
                    flag: h.supplied.filter(|_| source == "supplied").map(|s| s.flag),
                    weight_m3: pick.and_then(|p| p.weight).map(|w| w.1),
                    weight_from: pick.and_then(|p| p.weight).map(|w| w.2.to_string()),
                }
            })
            .collect()
    }
}

impl DayAgg {
    pub fn valid_hours(&self) -> u32 {
        self.picks.len() as u32
    }

    /// ΣCQ and ΣQ over the valid hours (0 when not weighted).
    pub fn sums(&self) -> (f64, f64) {
        if !self.weighted {
            return (0.0, 0.0);
        }
        self.picks
            .iter()
            .filter_map(|p| p.weight)
            .fold((0.0, 0.0), |(cq, q), (c, v, _)| (cq + c * v, q + v))
    }

    /// The daily mean as judged: flow-weighted when every valid hour had its
    /// volume, else the plain mean of the hourly means.
    pub fn mean(&self) -> Option<f64> {
        if self.picks.is_empty() {
            None
        } else if self.weighted {
            let (cq, q) = self.sums();
            Some(cq / q)
        } else {
            self.plain_mean()
        }
    }

    pub fn plain_mean(&self) -> Option<f64> {
        (!self.picks.is_empty())
            .then(|| self.picks.iter().map(|p| p.value).sum::<f64>() / self.picks.len() as f64)
    }

    /// The daily mean if every remaining hour repeated the last valid one.
    pub fn projected(&self, hours_left: u32) -> Option<f64> {
        let last = self.picks.last()?;
        let k = f64::from(hours_left);
        if self.weighted {
            let (c, v, _) = last.weight?;
            let (cq, q) = self.sums();
            let den = q + v * k;
            (den > 0.0).then(|| (cq + c * v * k) / den)
        } else {
            let n = self.picks.len() as f64;
            Some((self.plain_mean()? * n + last.value * k) / (n + k))
        }
    }

    pub fn aggregate_label(&self) -> String {
        let supplied = self.picks.iter().filter(|p| p.supplied).count();
        let source = match (supplied, self.picks.len() - supplied) {
            (0, _) => "computed",
            (_, 0) => "built from supplied hours",
            _ => "built from computed and supplied hours",
        };
        if self.weighted {
            format!("{source}, flow-weighted")
        } else {
            source.to_string()
        }
    }
}
