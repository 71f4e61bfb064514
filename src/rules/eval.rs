//! The evaluator: routes each reading to its outlet or meter state, and moves time
//! on for the rules that fire on silence.

use chrono::{DateTime, Duration, Utc};

use super::finding::{Evidence, Finding, RuleName, Severity};
use super::furnace::FurnaceState;
use super::outlet::OutletState;
use super::plan::{EnterprisePlan, Plan, GAS_FLOW, O2, WATER_FLOW};
use super::power::{MeterState, PowerState};
use super::totals::CapState;
use crate::model::{DataKind, Id, Location, Reading};

#[derive(Debug, Clone)]
pub struct Options {
    /// An hour (day) is closed this long after it ends, so that late real-time
    /// values and the logger's minute data still count.
    pub close_after: Duration,
    /// How much older than a value its O2 or flow may be.
    pub pair_max_age: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            close_after: Duration::minutes(5),
            pair_max_age: Duration::minutes(5),
        }
    }
}

/// One hour's emission of one pollutant at one outlet, in tonnes. The task stores
/// these so the year-to-date total survives a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct EmissionHour {
    pub enterprise: Id,
    pub outlet: Id,
    pub factor: Id,
    pub hour: DateTime<Utc>,
    pub tonnes: f64,
    /// `cou` (the logger's discharge amount) or `computed` (C × Q).
    pub source: &'static str,
}

/// A closed period that late values belong to: the task re-judges it from the
/// store ([`super::rejudge`]). One per late value; the task merges them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reopened {
    pub enterprise: Id,
    pub outlet: Id,
    pub factor: Id,
    /// Start of the local day of the values.
    pub day: DateTime<Utc>,
    /// The closed hour they belong to; `None` when only the day is re-judged.
    pub hour: Option<DateTime<Utc>>,
    /// Whether the day is closed too (else it is judged when it closes).
    pub day_closed: bool,
}

/// What one call produced.
#[derive(Debug, Default)]
pub struct Output {
    pub findings: Vec<Finding>,
    pub emissions: Vec<EmissionHour>,
    /// Closed periods that late values belong to.
    pub reopened: Vec<Reopened>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty() && self.emissions.is_empty()
    }
}

pub(crate) struct EntState {
    pub outlets: Vec<OutletState>,
    pub meters: Vec<MeterState>,
    pub power: PowerState,
    pub caps: Vec<CapState>,
    /// Per outlet; only those with a furnace rule ever hold anything.
    pub furnaces: Vec<FurnaceState>,
}

impl EntState {
    fn new(e: &EnterprisePlan) -> Self {
        EntState {
            outlets: e.outlets.iter().map(|_| OutletState::default()).collect(),
            meters: e.meters.iter().map(|_| MeterState::default()).collect(),
            power: PowerState::new(e),
            caps: e.caps.iter().map(|_| CapState::default()).collect(),
            furnaces: e.outlets.iter().map(|_| FurnaceState::default()).collect(),
        }
    }
}

/// Readings in, findings out. See the module docs of [`crate::rules`].
pub struct Evaluator {
    pub(crate) plan: Plan,
    pub(crate) opts: Options,
    pub(crate) ents: Vec<EntState>,
    /// Readings for enterprises, outlets or meters not in config (counted, not judged).
    pub unknown: u64,
    /// Values that arrived for an hour already closed.
    pub late: u64,
    pub ingested: u64,
    scratch: Vec<u32>,
}

impl Evaluator {
    pub fn new(plan: Plan, opts: Options) -> Self {
        let ents = plan.enterprises.iter().map(EntState::new).collect();
        Evaluator {
            plan,
            opts,
            ents,
            unknown: 0,
            late: 0,
            ingested: 0,
            scratch: Vec::new(),
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Swaps in a new plan (a config reload, an order issued or cancelled).
    /// Enterprises whose compiled plan is unchanged keep their state — open
    /// windows, power episodes, silence — so a reload costs them nothing. New and
    /// changed ones start empty; their ids are returned, and the caller replays
    /// their readings from the store ([`super::rebuild::replay`]).
    pub fn replace_plan(&mut self, plan: Plan) -> Vec<Id> {
        let old_plan = std::mem::replace(&mut self.plan, plan);
        let mut old: std::collections::HashMap<Id, (EnterprisePlan, EntState)> = old_plan
            .enterprises
            .into_iter()
            .zip(std::mem::take(&mut self.ents))
            .map(|(p, s)| (p.id.clone(), (p, s)))
            .collect();
        let mut replay = Vec::new();
        self.ents = self
            .plan
            .enterprises
            .iter()
            .map(|e| match old.remove(&e.id) {
                Some((p, state)) if p == *e => state,
                _ => {
                    replay.push(e.id.clone());
                    EntState::new(e)
                }
            })
            .collect();
        replay
    }

    /// Judges durable readings. Readings of one upload (one HJ 212 frame) come
    /// together: O2 and flow of a batch are taken in first, so a pollutant is
    /// corrected with the O2 of its own instant whatever the order inside the frame.
    pub fn ingest(&mut self, readings: &[Reading], out: &mut Output) {
        // Readings of one instant are taken together: O2 and flow first, so a
        // pollutant is corrected with the O2 of its own instant whatever the order
        // inside the frame. A commit is nearly always in time order already; only
        // when it is not do we sort (indices, into a reused buffer).
        let sorted = readings.windows(2).all(|w| w[0].ts <= w[1].ts);
        let mut order = std::mem::take(&mut self.scratch);
        order.clear();
        if !sorted {
            order.extend(0..readings.len() as u32);
            order.sort_by_key(|&i| readings[i as usize].ts);
        }
        let at = |k: usize| -> &Reading {
            if sorted {
                &readings[k]
            } else {
                &readings[order[k] as usize]
            }
        };
        let mut k = 0;
        while k < readings.len() {
            let ts = at(k).ts;
            let mut end = k + 1;
            while end < readings.len() && at(end).ts == ts {
                end += 1;
            }
            for j in k..end {
                let r = at(j);
                if let Location::Outlet(o) = &r.location {
                    if matches!(&*r.factor, O2 | GAS_FLOW | WATER_FLOW) {
                        if let Some((e, i)) = self.outlet_ix(&r.enterprise, o) {
                            self.ents[e].outlets[i].pair_sample(r);
                        }
                    }
                }
            }
            for j in k..end {
                self.one(at(j), out);
            }
            k = end;
        }
        self.scratch = order;
    }

    fn one(&mut self, r: &Reading, out: &mut Output) {
        self.ingested += 1;
        match &r.location {
            Location::Outlet(o) => {
                let Some((e, i)) = self.outlet_ix(&r.enterprise, o) else {
                    self.unknown += 1;
                    return;
                };
                let plan = &self.plan.enterprises[e];
                let ent = &mut self.ents[e];
                if plan.outlets[i].furnace.is_some() {
                    ent.furnaces[i].reading(&plan.id, &plan.outlets[i], self.plan.tz, r, out);
                }
                let late = ent.outlets[i].reading(
                    plan,
                    i,
                    &mut ent.caps,
                    &self.opts,
                    self.plan.tz,
                    (&ent.power, &ent.meters),
                    r,
                    out,
                );
                self.late += u64::from(late);
            }
            Location::Meter(m) => {
                let Some(&e) = self.plan.enterprise_ix.get(&*r.enterprise) else {
                    self.unknown += 1;
                    return;
                };
                let plan = &self.plan.enterprises[e];
                let Some(&i) = plan.meter_ix.get(&**m) else {
                    self.unknown += 1;
                    return;
                };
                let ent = &mut self.ents[e];
                ent.power.reading(plan, &mut ent.meters, i, r, out);
            }
        }
    }

    fn outlet_ix(&self, enterprise: &str, outlet: &str) -> Option<(usize, usize)> {
        let &e = self.plan.enterprise_ix.get(enterprise)?;
        let &i = self.plan.enterprises[e].outlet_ix.get(outlet)?;
        Some((e, i))
    }

    /// Moves time on to `now`: closes hours and days whose data can no longer
    /// arrive, and raises `offline` for locations silent for too long. A location
    /// never heard from counts from the first tick.
    pub fn tick(&mut self, now: DateTime<Utc>, out: &mut Output) {
        let tz = self.plan.tz;
        for (e, ent) in self.ents.iter_mut().enumerate() {
            let plan = &self.plan.enterprises[e];
            for (i, o) in ent.outlets.iter_mut().enumerate() {
                o.tick(plan, i, &mut ent.caps, &self.opts, tz, now, out);
                let op = &plan.outlets[i];
                offline(
                    plan,
                    || Location::Outlet(op.id.clone()),
                    op.offline_after,
                    &mut o.seen,
                    now,
                    out,
                );
            }
            for (i, m) in ent.meters.iter_mut().enumerate() {
                let mp = &plan.meters[i];
                offline(
                    plan,
                    || Location::Meter(mp.id.clone()),
                    mp.offline_after,
                    &mut m.seen,
                    now,
                    out,
                );
            }
        }
    }

    /// Adds emission of earlier in the year (from the store, at start-up) to the
    /// caps that count this outlet's pollutant.
    pub fn seed_emissions(
        &mut self,
        enterprise: &str,
        outlet: &str,
        factor: &str,
        year_start: DateTime<Utc>,
        tonnes: f64,
    ) {
        let Some(&e) = self.plan.enterprise_ix.get(enterprise) else {
            return;
        };
        let plan = &self.plan.enterprises[e];
        let Some(&oi) = plan.outlet_ix.get(outlet) else {
            return;
        };
        for (c, cap) in plan.caps.iter().enumerate() {
            if &*cap.factor == factor && cap.outlets.contains(&oi) {
                self.ents[e].caps[c].add_seed(year_start, tonnes);
            }
        }
    }

    /// Counts emission hours computed elsewhere (a day judged again after late
    /// data) toward the caps, replacing what was counted for the same hours.
    pub fn record_emissions(&mut self, hours: &[EmissionHour], out: &mut Output) {
        let tz = self.plan.tz;
        for h in hours {
            let Some(&e) = self.plan.enterprise_ix.get(&*h.enterprise) else {
                continue;
            };
            let plan = &self.plan.enterprises[e];
            let Some(&oi) = plan.outlet_ix.get(&*h.outlet) else {
                continue;
            };
            for (c, cap) in plan.caps.iter().enumerate() {
                if cap.factor == h.factor && cap.outlets.contains(&oi) {
                    super::totals::record(
                        plan,
                        &mut self.ents[e].caps,
                        c,
                        &plan.outlets[oi],
                        h.hour,
                        h.tonnes,
                        h.source,
                        tz,
                        out,
                    );
                }
            }
        }
    }

    /// Year-to-date tonnes of an enterprise's cap on `factor`.
    pub fn emission_total(&self, enterprise: &str, factor: &str) -> Option<f64> {
        let &e = self.plan.enterprise_ix.get(enterprise)?;
        let c = self.plan.enterprises[e]
            .caps
            .iter()
            .position(|c| &*c.factor == factor)?;
        Some(self.ents[e].caps[c].total())
    }

    /// Number of series with state (for benchmarks and metrics).
    pub fn series(&self) -> usize {
        self.ents
            .iter()
            .flat_map(|e| &e.outlets)
            .map(|o| o.series.len())
            .sum()
    }
}

/// When a location was last heard from, and whether its silence was reported.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    pub last: Option<DateTime<Utc>>,
    /// First tick, for locations never heard from.
    pub since: Option<DateTime<Utc>>,
    pub raised: bool,
}

impl Seen {
    /// A reading proves the device was alive until the end of the period its value
    /// covers: an hourly mean stamped 08:00 (HJ 212 stamps the period's start) is
    /// sent after 09:00. Judging silence by the stamp alone made loggers that send
    /// only hourly data look offline half an hour after each upload.
    pub fn saw_reading(&mut self, r: &Reading) {
        let span = match r.kind {
            DataKind::Rtd => Duration::zero(),
            DataKind::Min => Duration::minutes(1),
            DataKind::Hour => Duration::hours(1),
            DataKind::Day => Duration::days(1),
        };
        self.saw(r.ts + span);
    }

    pub fn saw(&mut self, t: DateTime<Utc>) {
        if self.last.is_none_or(|l| t > l) {
            self.last = Some(t);
            self.raised = false;
        }
    }
}

fn offline(
    plan: &EnterprisePlan,
    loc: impl FnOnce() -> Location,
    after: Duration,
    seen: &mut Seen,
    now: DateTime<Utc>,
    out: &mut Output,
) {
    let since = *seen.since.get_or_insert(now);
    let last = seen.last.unwrap_or(since);
    if seen.raised || now - last < after {
        return;
    }
    seen.raised = true;
    let loc = loc();
    let silent = (now - last).num_minutes();
    let what = if seen.last.is_some() {
        format!("last data at {last}")
    } else {
        "no data since start-up".to_string()
    };
    out.findings.push(
        Finding::new(RuleName::Offline, plan, Some(loc.clone()), "", last, now)
            .value(silent as f64)
            .threshold(after.num_minutes() as f64)
            .message(format!("{loc}: no data for {silent} min ({what})"))
            .evidence(
                Evidence::default()
                    .param("offline_after_minutes", after.num_minutes())
                    .param("last_seen", seen.last.map(|t| t.to_rfc3339())),
            ),
    );
}

impl Finding {
    /// A finding with the rule's default severity; fill in with the setters.
    pub(crate) fn new(
        rule: RuleName,
        plan: &EnterprisePlan,
        location: Option<Location>,
        factor: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Finding {
        use RuleName::*;
        let severity = match rule {
            Exceedance | OrderViolation | TreatmentNotRunning => Severity::Violation,
            EarlyWarning
            | ProjectedExceedance
            | ConstantValue
            | FlowMismatch
            | TreatmentUnderpowered
            | EmissionTotal
            | DataMismatch
            | NegativeValue => Severity::Warning,
            _ => Severity::Notice,
        };
        Finding {
            rule,
            severity,
            enterprise: plan.id.clone(),
            location,
            factor: Id::from(factor),
            window_start: start,
            window_end: end,
            at: end,
            value: None,
            threshold: None,
            detail: String::new(),
            message: String::new(),
            evidence: Evidence::default(),
        }
    }
    pub(crate) fn value(mut self, v: f64) -> Self {
        self.value = Some(v);
        self
    }
    pub(crate) fn threshold(mut self, v: f64) -> Self {
        self.threshold = Some(v);
        self
    }
    pub(crate) fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = d.into();
        self
    }
    pub(crate) fn message(mut self, m: String) -> Self {
        self.message = m;
        self
    }
    pub(crate) fn evidence(mut self, e: Evidence) -> Self {
        self.evidence = e;
        self
    }
    pub(crate) fn severity(mut self, s: Severity) -> Self {
        self.severity = s;
        self
    }
}

/// The index of a data kind, for per-kind arrays.
pub(crate) fn kind_ix(k: DataKind) -> usize {
    match k {
        DataKind::Rtd => 0,
        DataKind::Min => 1,
        DataKind::Hour => 2,
        DataKind::Day => 3,
    }
}

/// Series of one outlet by factor, created on first sight (one allocation per new
/// series, none per reading).
pub(crate) type SeriesIx = super::plan::IdMap<usize>;
