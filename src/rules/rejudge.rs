//! Late data is judged: a value for a period the evaluator has already closed
//! re-opens that period's judgement.
//!
//! Backfilled hours, HJ 212-2025 resends (RF=1) and a logger catching up after a
//! night offline all arrive late by nature, and a bureau's completeness figures
//! accept repairs for ten days; their exceedances must be found, and the
//! `missing_data` raised while they were missing must not stand. The live
//! evaluator cannot take them in — its windows have moved on, and late data never
//! moves an open window — so it reports each closed period that late values
//! belong to ([`Reopened`]), and the task merges those per outlet and local day
//! ([`Job`]) and, once the burst is over, judges the day again here: every reading
//! of the outlet for that day, read back from the store, through a fresh
//! evaluator — the same code, so the verdict is the one an on-time run reaches
//! (invariant 4). The task then compares the verdicts on the reopened periods
//! with what is stored: a finding is revised under its natural key (never
//! duplicated), a new one is added, one no longer found is superseded (see
//! `Store::revise_findings`).
//!
//! The cost is bounded: one store read and one day of one outlet's readings per
//! job, whatever number of late values it merged, and the task runs jobs only
//! while no committed readings wait to be judged, so a week of backfill never
//! holds up real-time judging.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use super::eval::{EmissionHour, Evaluator, Options, Output, Reopened};
use super::finding::{Finding, RuleName};
use super::plan::{IdMap, Plan};
use super::window::day_start;
use crate::model::{Id, Location, Reading};

/// Verdicts on a period that are revised or superseded when it is judged again.
/// (Projections are about a period still running, and per-value findings are
/// added if new but never withdrawn: the value was what it was.)
pub const REVISABLE: &[RuleName] = &[
    RuleName::Exceedance,
    RuleName::EarlyWarning,
    RuleName::MissingData,
    RuleName::DataMismatch,
];

/// Per-value rules whose findings about late values are added if new.
const PER_VALUE: &[RuleName] = &[
    RuleName::Exceedance,
    RuleName::ZeroValue,
    RuleName::NegativeValue,
    RuleName::OverRange,
    RuleName::NotJudgeable,
];

/// What of one series is re-judged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Affected {
    /// Closed hours that got late values.
    pub hours: BTreeSet<DateTime<Utc>>,
    /// Whether the day was closed (else it is judged when it closes).
    pub day_closed: bool,
}

/// One outlet's local day to judge again.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub enterprise: Id,
    pub outlet: Id,
    pub day: DateTime<Utc>,
    pub series: BTreeMap<Id, Affected>,
}

impl Job {
    pub fn new(r: &Reopened) -> Job {
        let mut j = Job {
            enterprise: r.enterprise.clone(),
            outlet: r.outlet.clone(),
            day: r.day,
            series: BTreeMap::new(),
        };
        j.add(r);
        j
    }

    /// Merges another late value of the same outlet and day.
    pub fn add(&mut self, r: &Reopened) {
        let a = self.series.entry(r.factor.clone()).or_default();
        if let Some(h) = r.hour {
            a.hours.insert(h);
        }
        a.day_closed |= r.day_closed;
    }

    /// The readings to read back: the day, and a few minutes before it for the
    /// O2 and flow its first values pair with.
    pub fn span(&self, plan: &Plan, opts: &Options) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            self.day - opts.pair_max_age,
            day_start(self.day + Duration::hours(36), plan.tz),
        )
    }
}

/// A period whose stored verdicts are replaced by the new ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub enterprise: Id,
    pub location: Location,
    pub factor: Id,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// What judging a job again found.
#[derive(Debug, Default)]
pub struct Verdicts {
    pub periods: Vec<Period>,
    /// The verdicts ([`REVISABLE`] rules) on those periods.
    pub findings: Vec<Finding>,
    /// Per-value findings about values of the reopened hours: stored if new.
    pub extra: Vec<Finding>,
    /// Emission of the reopened hours computed from their values.
    pub emissions: Vec<EmissionHour>,
}

/// Judges `job` again from `readings` (the outlet's readings over
/// [`Job::span`], in time order).
pub fn rejudge(plan: &Plan, opts: &Options, job: &Job, readings: &[Reading]) -> Verdicts {
    let mut v = Verdicts::default();
    let Some(&e) = plan.enterprise_ix.get(&*job.enterprise) else {
        return v;
    };
    let mut ix = IdMap::default();
    ix.insert(job.enterprise.clone(), 0);
    let one = Plan {
        tz: plan.tz,
        enterprises: vec![plan.enterprises[e].clone()],
        enterprise_ix: ix,
    };
    let (_, day_end) = job.span(plan, opts);
    let mut ev = Evaluator::new(one, opts.clone());
    let mut out = Output::default();
    ev.ingest(readings, &mut out);
    // Past the day's end and the grace for its last supplied hour: every hour
    // and the day close.
    ev.tick(
        day_end + Duration::hours(1) + opts.close_after + Duration::seconds(1),
        &mut out,
    );
    let location = Location::Outlet(job.outlet.clone());
    for (factor, a) in &job.series {
        let mut add = |start, end| {
            v.periods.push(Period {
                enterprise: job.enterprise.clone(),
                location: location.clone(),
                factor: factor.clone(),
                start,
                end,
            })
        };
        for &h in &a.hours {
            add(h, h + Duration::hours(1));
        }
        if a.day_closed {
            add(job.day, day_end);
        }
    }
    let is_period = |f: &Finding| {
        v.periods.iter().any(|p| {
            p.factor == f.factor
                && p.start == f.window_start
                && p.end == f.window_end
                && f.location.as_ref() == Some(&p.location)
        })
    };
    let in_hours = |f: &Finding| {
        f.location.as_ref() == Some(&location)
            && job.series.get(&f.factor).is_some_and(|a| {
                a.hours
                    .iter()
                    .any(|&h| f.window_start >= h && f.window_start < h + Duration::hours(1))
            })
    };
    for f in out.findings {
        if REVISABLE.contains(&f.rule) && is_period(&f) {
            v.findings.push(f);
        } else if PER_VALUE.contains(&f.rule) && !is_period(&f) && in_hours(&f) {
            v.extra.push(f);
        }
    }
    v.emissions = out
        .emissions
        .into_iter()
        .filter(|h| {
            h.outlet == job.outlet
                && job
                    .series
                    .get(&h.factor)
                    .is_some_and(|a| a.hours.contains(&h.hour))
        })
        .collect();
    v
}
