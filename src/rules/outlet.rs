//! Per-outlet evaluation: each factor's series with its hour and day windows, its
//! limits, and the per-value anomaly checks.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::anomaly::{self, FlowHour, Run};
use super::day::{DayWin, HourFlows};
use super::eval::{kind_ix, Options, Output, Seen, SeriesIx};
use super::finding::{Counts, Evidence, EvidenceValue, Finding, RuleName};
use super::o2::{self, NotJudgeable};
use super::plan::{self, EnterprisePlan, LimitPlan, OutletPlan, GAS_FLOW, WATER_FLOW};
use super::power::{MeterState, PowerState};
use super::totals::{self, CapState};
use super::window::{day_start, hour_start, HourWin, Sample};
use crate::config::{Basis, OutletKind};
use crate::model::{DataKind, FactorClass, Flag, Id, Location, Reading, Stat};

/// An O2 or flow value kept to pair with pollutant values of the same instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pair {
    pub ts: DateTime<Utc>,
    pub value: f64,
}

#[derive(Default)]
pub(crate) struct OutletState {
    pub series: Vec<Series>,
    pub ix: SeriesIx,
    o2: [Option<Pair>; 4],
    flow: [Option<Pair>; 4],
    pub seen: Seen,
    pub fm: FlowHour,
    /// The logger's hourly discharge (`-Cou`) and mean flow, by hour: the
    /// weights of supplied hours in a flow-weighted day.
    pub flows: HourFlows,
    /// Earliest end of an open hour or day among the series: ticks before it have
    /// nothing to close, which keeps a tick over a city cheap.
    next_due: Option<DateTime<Utc>>,
}

/// Everything a series needs from around it.
pub(crate) struct Ctx<'a> {
    pub plan: &'a EnterprisePlan,
    pub op: &'a OutletPlan,
    pub opts: &'a Options,
    pub tz: Tz,
    pub caps: &'a mut [CapState],
    /// The enterprise's power meters, to ask whether production runs (only asked
    /// when a rule needs it: it is not free).
    pub power: Option<(&'a PowerState, &'a [MeterState])>,
    /// The outlet's supplied hourly flows.
    pub flows: &'a HourFlows,
}

impl Ctx<'_> {
    pub fn loc(&self) -> Option<Location> {
        Some(Location::Outlet(self.op.id.clone()))
    }

    /// Whether production runs at `at`, by the linkages' production meters
    /// (`None`: no linkage, or no fresh data).
    pub fn production(&self, at: DateTime<Utc>) -> Option<bool> {
        let (power, meters) = self.power?;
        power.production(self.plan, meters, at)
    }
}

/// A streak of values outside an instant limit.
#[derive(Debug, Clone, Default)]
pub(crate) struct Streak {
    pub(crate) start: Option<DateTime<Utc>>,
    pub(crate) count: u32,
    pub(crate) raised: bool,
    pub(crate) values: Vec<EvidenceValue>,
}

/// Recent (period start, judged mean) pairs, for the supplied/computed cross-check.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recent([Option<(DateTime<Utc>, f64)>; 4]);

impl Recent {
    pub(crate) fn put(&mut self, t: DateTime<Utc>, v: f64) {
        self.0.rotate_right(1);
        self.0[0] = Some((t, v));
    }
    pub(crate) fn get(&self, t: DateTime<Utc>) -> Option<f64> {
        self.0
            .iter()
            .flatten()
            .find(|(s, _)| *s == t)
            .map(|(_, v)| *v)
    }
}

pub(crate) struct Series {
    pub factor: Id,
    pub(crate) limits: Vec<LimitPlan>,
    pub(crate) range: Option<f64>,
    /// Reference O2 when values are oxygen-corrected.
    pub(crate) o2_reference: Option<f64>,
    /// Wastewater pollutant: daily mean flow-weighted.
    pub(crate) weight: bool,
    pub(crate) is_flow: bool,
    pub(crate) water_pollutant: bool,
    /// Emission caps this series counts toward.
    pub(crate) caps: Vec<usize>,
    pub(crate) hour: Option<HourWin>,
    pub(crate) day: Option<DayWin>,
    pub(crate) streaks: Vec<Streak>,
    /// Last valid real-time/minute value.
    pub last: Option<(DateTime<Utc>, f64)>,
    pub(crate) run: Run,
    pub(crate) zero_hour: Option<DateTime<Utc>>,
    pub(crate) negative_hour: Option<DateTime<Utc>>,
    pub(crate) range_hour: Option<DateTime<Utc>>,
    pub(crate) computed_hours: Recent,
    pub(crate) supplied_hours: Recent,
    pub(crate) computed_days: Recent,
    pub(crate) supplied_days: Recent,
}

impl Series {
    fn new(plan: &EnterprisePlan, op: &OutletPlan, oi: usize, factor: &Id) -> Series {
        let fp = op.factors.get(factor).cloned().unwrap_or_default();
        let class = plan::class(factor);
        let pollutant = matches!(
            class,
            Some(FactorClass::GasPollutant | FactorClass::WaterPollutant)
        );
        let caps = plan
            .caps
            .iter()
            .enumerate()
            .filter(|(_, c)| c.factor == *factor && c.outlets.contains(&oi))
            .map(|(i, _)| i)
            .collect();
        Series {
            factor: factor.clone(),
            streaks: vec![Streak::default(); fp.limits.len()],
            limits: fp.limits,
            range: fp.range,
            o2_reference: op
                .o2_reference
                .filter(|_| class == Some(FactorClass::GasPollutant)),
            weight: class == Some(FactorClass::WaterPollutant),
            is_flow: matches!(&**factor, GAS_FLOW | WATER_FLOW),
            water_pollutant: class == Some(FactorClass::WaterPollutant),
            caps: if pollutant { caps } else { Vec::new() },
            hour: None,
            day: None,
            last: None,
            run: Run::default(),
            zero_hour: None,
            negative_hour: None,
            range_hour: None,
            computed_hours: Recent::default(),
            supplied_hours: Recent::default(),
            computed_days: Recent::default(),
            supplied_days: Recent::default(),
        }
    }

    /// Series with limits keep their windows rolling through silence, so an hour
    /// without data is still judged (as missing).
    pub(crate) fn tracked(&self) -> bool {
        !self.limits.is_empty() || !self.caps.is_empty()
    }

    pub(crate) fn has_basis(&self, b: Basis) -> bool {
        self.limits.iter().any(|l| l.basis == b)
    }
}

/// Keeps the outlet's earliest due time when a series' due time moved.
fn earlier_due(
    next_due: &mut Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
    now: Option<DateTime<Utc>>,
) {
    if now != before {
        *next_due = match (*next_due, now) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Flow in the catalogue's per-second unit (gas m³/s, water L/s), so that
/// C × Q is mg/s for both; `None` for a unit we cannot convert.
fn flow_per_second(value: f64, unit: &str, gas: bool) -> Option<f64> {
    match (unit, gas) {
        ("" | "m³/s" | "m3/s", true) | ("" | "L/s" | "l/s", false) => Some(value),
        ("m³/h" | "m3/h", true) => Some(value / 3600.0),
        ("m³/h" | "m3/h", false) => Some(value * 1000.0 / 3600.0),
        ("m³/s" | "m3/s", false) => Some(value * 1000.0),
        _ => None,
    }
}

impl OutletState {
    /// Takes in an O2 or flow value for pairing (called for a batch's instant
    /// before its pollutants).
    pub fn pair_sample(&mut self, r: &Reading) {
        if r.kind == DataKind::Hour && &*r.factor != plan::O2 {
            self.hour_flow(r);
        }
        if r.converted || !matches!(r.stat, Stat::Rtd | Stat::Avg) || !r.flag.valid_for_judging() {
            return;
        }
        let k = kind_ix(r.kind);
        // Pairing only moves forward: an older value arriving again (a replay
        // overtaking queued commits, a logger resending) must not become "the
        // latest O2" for the next pollutant value.
        let newer = |p: &Option<Pair>| p.is_none_or(|p| r.ts >= p.ts);
        if &*r.factor == plan::O2 {
            if newer(&self.o2[k]) {
                self.o2[k] = Some(Pair {
                    ts: r.ts,
                    value: r.value,
                });
            }
        } else if let Some(v) = flow_per_second(r.value, &r.unit, &*r.factor == GAS_FLOW) {
            if newer(&self.flow[k]) {
                self.flow[k] = Some(Pair { ts: r.ts, value: v });
            }
        }
    }

    /// A supplied hourly flow (`-Cou` or `-Avg`), kept as the hour's volume in m³.
    fn hour_flow(&mut self, r: &Reading) {
        if r.converted || !r.flag.valid_for_judging() || !r.value.is_finite() || r.value < 0.0 {
            return;
        }
        let gas = &*r.factor == GAS_FLOW;
        let m3 = match r.stat {
            Stat::Cou => match &*r.unit {
                "" | "m³" | "m3" => Some(r.value),
                "L" | "l" => Some(r.value / 1000.0),
                _ => None,
            },
            // Per second (gas m³/s, water L/s) × 3600 s.
            Stat::Avg => {
                flow_per_second(r.value, &r.unit, gas)
                    .map(|v| if gas { v * 3600.0 } else { v * 3.6 })
            }
            _ => None,
        };
        let Some(m3) = m3 else { return };
        let e = self.flows.entry(r.ts).or_default();
        if r.stat == Stat::Cou {
            e.cou_m3 = Some(m3);
        } else {
            e.avg_m3 = Some(m3);
        }
        // A few days are enough: older hours are re-judged from the store.
        while self
            .flows
            .first_key_value()
            .is_some_and(|(t, _)| r.ts - *t > Duration::days(3))
        {
            self.flows.pop_first();
        }
    }

    fn paired(
        arr: &[Option<Pair>; 4],
        kind: DataKind,
        ts: DateTime<Utc>,
        max_age: Duration,
    ) -> Option<f64> {
        let p = arr[kind_ix(kind)]?;
        let ok = p.ts == ts
            || (matches!(kind, DataKind::Rtd | DataKind::Min) && p.ts < ts && ts - p.ts <= max_age);
        ok.then_some(p.value)
    }

    fn series_ix(
        &mut self,
        plan: &EnterprisePlan,
        op: &OutletPlan,
        oi: usize,
        factor: &Id,
    ) -> usize {
        if let Some(&i) = self.ix.get(&**factor) {
            return i;
        }
        self.series.push(Series::new(plan, op, oi, factor));
        self.ix.insert(factor.clone(), self.series.len() - 1);
        self.series.len() - 1
    }

    /// One reading of this outlet. Returns true if it came too late to be judged.
    #[allow(clippy::too_many_arguments)]
    pub fn reading(
        &mut self,
        plan: &EnterprisePlan,
        oi: usize,
        caps: &mut [CapState],
        opts: &Options,
        tz: Tz,
        power: (&PowerState, &[MeterState]),
        r: &Reading,
        out: &mut Output,
    ) -> bool {
        self.seen.saw_reading(r);
        if r.converted {
            return false;
        }
        let op = &plan.outlets[oi];
        let si = self.series_ix(plan, op, oi, &r.factor);
        let mut ctx = Ctx {
            plan,
            op,
            opts,
            tz,
            caps,
            power: Some(power),
            flows: &self.flows,
        };
        match (r.kind, r.stat) {
            (DataKind::Rtd, Stat::Rtd) | (DataKind::Min, Stat::Avg) => {
                let due = self.series[si].due();
                let o2 = self.series[si]
                    .o2_reference
                    .map(|_| Self::paired(&self.o2, r.kind, r.ts, opts.pair_max_age));
                let flow = Self::paired(&self.flow, r.kind, r.ts, opts.pair_max_age);
                if op.kind == OutletKind::Wastewater && r.flag.valid_for_judging() {
                    let s = &self.series[si];
                    let changed = s.last.is_some_and(|(t, v)| {
                        r.ts > t && (r.value - v).abs() > op.constant_epsilon
                    });
                    self.fm
                        .observe(&ctx, r, s.is_flow, s.water_pollutant && changed, out);
                }
                let late = self.series[si].value(&mut ctx, r, o2, flow, out);
                earlier_due(&mut self.next_due, due, self.series[si].due());
                late
            }
            (DataKind::Hour, Stat::Avg) | (DataKind::Day, Stat::Avg) => {
                let due = self.series[si].due();
                let o2 = Self::paired(&self.o2, r.kind, r.ts, opts.pair_max_age);
                let late = self.series[si].supplied(&mut ctx, r, o2, out);
                if late && r.flag.valid_for_judging() && self.series[si].tracked() {
                    self.series[si].reopen(&ctx, None, day_start(r.ts, tz), out);
                }
                earlier_due(&mut self.next_due, due, self.series[si].due());
                late
            }
            (DataKind::Hour, Stat::Cou) => {
                let s = &self.series[si];
                for &c in &s.caps {
                    // Pollutant -Cou is in kg.
                    totals::record(
                        ctx.plan,
                        ctx.caps,
                        c,
                        ctx.op,
                        r.ts,
                        r.value / 1000.0,
                        "cou",
                        tz,
                        out,
                    );
                }
                false
            }
            _ => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn tick(
        &mut self,
        plan: &EnterprisePlan,
        oi: usize,
        caps: &mut [CapState],
        opts: &Options,
        tz: Tz,
        now: DateTime<Utc>,
        out: &mut Output,
    ) {
        let op = &plan.outlets[oi];
        let mut ctx = Ctx {
            plan,
            op,
            opts,
            tz,
            caps,
            power: None,
            flows: &self.flows,
        };
        let t = now - opts.close_after;
        if self.next_due.is_some_and(|d| t >= d) {
            let mut next: Option<DateTime<Utc>> = None;
            for s in &mut self.series {
                s.roll(&mut ctx, t, false, out);
                if let Some(d) = s.due() {
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
            self.next_due = next;
        }
        self.fm.tick(&ctx, now, out);
    }
}

impl Series {
    /// A real-time or minute value. Returns true when late.
    fn value(
        &mut self,
        ctx: &mut Ctx<'_>,
        r: &Reading,
        o2: Option<Option<f64>>,
        flow: Option<f64>,
        out: &mut Output,
    ) -> bool {
        if self.hour.as_ref().is_some_and(|h| r.ts < h.start) {
            if r.flag.valid_for_judging() && self.tracked() {
                let day = day_start(r.ts, ctx.tz);
                self.reopen(ctx, Some(hour_start(r.ts, ctx.tz)), day, out);
                if let Some(d) = self.day.as_mut().filter(|d| d.start == day) {
                    d.late = true;
                }
            }
            return true;
        }
        self.roll(ctx, r.ts, true, out);
        let start = match &self.hour {
            Some(h) => h.start,
            None => {
                let s = hour_start(r.ts, ctx.tz);
                self.hour = Some(HourWin::new(s));
                s
            }
        };
        if self.day.is_none() {
            let d = day_start(start, ctx.tz);
            let end = day_start(d + Duration::hours(36), ctx.tz);
            self.day = Some(DayWin::new(d, end));
        }
        let Some(hour) = self.hour.as_mut() else {
            return false;
        };
        // A value sent again (a logger's resend, a replay overtaking the tap)
        // counts once.
        let first = match r.kind {
            DataKind::Rtd => hour.first_sight(r.ts),
            DataKind::Min => hour.first_minute_sight(r.ts),
            DataKind::Hour | DataKind::Day => true,
        };
        if !first {
            return false;
        }
        hour.counts.values += 1;
        hour.counts.add_flag(r.flag);
        if !r.flag.valid_for_judging() {
            if matches!(r.flag, Flag::M | Flag::C) {
                hour.mark_maintenance(r.ts);
            }
            return false;
        }
        let fresh = self.last.is_none_or(|(t, _)| r.ts > t);
        if fresh {
            anomaly::check_value(self_anomaly(self), ctx, r, out);
            self.last = Some((r.ts, r.value));
        }
        let Some(hour) = self.hour.as_mut() else {
            return false;
        };
        let mut ev = EvidenceValue {
            ts: r.ts,
            factor: r.factor.clone(),
            value: r.value,
            flag: r.flag,
            corrected: None,
            o2: o2.flatten(),
            resend: r.source.resend,
        };
        let judged = match (self.o2_reference, o2) {
            (Some(reference), Some(o2v)) => match o2::correct(r.value, reference, o2v) {
                Ok(c) => c,
                Err(nj) => {
                    hour.counts.not_judgeable += 1;
                    hour.remember(ev);
                    if !hour.not_judgeable_raised {
                        hour.not_judgeable_raised = true;
                        let h = (
                            hour.start,
                            hour.end(),
                            hour.recent.clone(),
                            hour.counts.clone(),
                        );
                        not_judgeable(ctx, &self.factor, h, nj, out);
                    }
                    return false;
                }
            },
            _ => r.value,
        };
        if self.o2_reference.is_some() {
            ev.corrected = Some(judged);
        }
        let sample = Sample {
            measured: r.value,
            judged,
            flow,
        };
        if r.kind == DataKind::Min {
            hour.supply_minute(r.ts, judged, r.value);
        } else {
            hour.add(r.ts, sample);
        }
        hour.counts.valid_values += 1;
        hour.remember(ev.clone());
        self.instant(ctx, r.ts, judged, ev, out);
        let m = self.hour.as_ref().map_or(0, |h| h.minute_of(r.ts)) as u8;
        if self.hour.as_ref().is_some_and(|h| m > h.evaluated_minute) {
            self.running_hour(ctx, m, out);
        }
        false
    }
}

/// The series state the per-value anomaly checks need.
fn self_anomaly(s: &mut Series) -> anomaly::SeriesView<'_> {
    anomaly::SeriesView {
        factor: &s.factor,
        is_flow: s.is_flow,
        range: s.range,
        run: &mut s.run,
        zero_hour: &mut s.zero_hour,
        negative_hour: &mut s.negative_hour,
        range_hour: &mut s.range_hour,
    }
}

pub(crate) fn not_judgeable(
    ctx: &Ctx<'_>,
    factor: &Id,
    (start, end, values, counts): (DateTime<Utc>, DateTime<Utc>, Vec<EvidenceValue>, Counts),
    nj: NotJudgeable,
    out: &mut Output,
) {
    let o2 = match nj {
        NotJudgeable::HighO2(v) => Some(v),
        NotJudgeable::NoO2 => None,
    };
    let mut f = Finding::new(
        RuleName::NotJudgeable,
        ctx.plan,
        ctx.loc(),
        factor,
        start,
        end,
    )
    .detail("o2")
    .threshold(o2::NOT_JUDGEABLE_O2)
    .message(format!(
        "{} {}: value not judgeable: {}",
        ctx.op.id,
        factor,
        nj.reason()
    ))
    .evidence(
        Evidence {
            values,
            counts: Some(counts),
            ..Evidence::default()
        }
        .param("o2_reference", ctx.op.o2_reference)
        .param("reason", nj.reason()),
    );
    if let Some(v) = o2 {
        f = f.value(v);
    }
    out.findings.push(f);
}
