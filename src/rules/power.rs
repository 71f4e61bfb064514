//! Power-usage monitoring (用电监控): treatment must run while production runs,
//! and production must respect stop/limit orders.
//!
//! A state counts only as far as the meters confirm it: an episode runs from the
//! first reading that shows it to the oldest of the latest readings that still
//! show it, and becomes a finding when that span reaches the grace period. So a
//! treatment meter that reads "off" for 14 minutes and then "on" never fires a
//! 15-minute grace, whatever order the two meters' readings arrive in, and a
//! meter that falls silent leaves the episode unconfirmed (offline reports it).

use chrono::{DateTime, Utc};

use super::eval::{Output, Seen};
use super::finding::{Evidence, Finding, RuleName};
use super::plan::{EnterprisePlan, POWER};
use crate::model::{DataKind, Location, Reading, Stat};

#[derive(Debug, Clone, Default)]
pub(crate) struct MeterState {
    pub seen: Seen,
    /// Latest valid active power (time, kW).
    power: Option<(DateTime<Utc>, f64)>,
}

#[derive(Debug, Clone, Default)]
struct Episode {
    rule: Option<RuleName>,
    start: Option<DateTime<Utc>>,
    raised: bool,
}

pub(crate) struct PowerState {
    links: Vec<Episode>,
    orders: Vec<Episode>,
}

impl PowerState {
    pub fn new(plan: &EnterprisePlan) -> Self {
        PowerState {
            links: vec![Episode::default(); plan.linkages.len()],
            orders: vec![Episode::default(); plan.orders.len()],
        }
    }

    fn fresh(
        plan: &EnterprisePlan,
        meters: &[MeterState],
        m: usize,
        at: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, f64)> {
        meters[m]
            .power
            .filter(|(t, _)| *t <= at && at - *t <= plan.meters[m].offline_after)
    }

    /// Whether production runs at `at`, by the linkages' production meters.
    pub fn production(
        &self,
        plan: &EnterprisePlan,
        meters: &[MeterState],
        at: DateTime<Utc>,
    ) -> Option<bool> {
        let mut known_off = false;
        for l in &plan.linkages {
            let mut all_fresh = !l.production.is_empty();
            for &m in &l.production {
                match Self::fresh(plan, meters, m, at) {
                    Some((_, kw)) if kw > l.production_on_kw => return Some(true),
                    Some(_) => {}
                    None => all_fresh = false,
                }
            }
            known_off |= all_fresh;
        }
        known_off.then_some(false)
    }

    pub fn reading(
        &mut self,
        plan: &EnterprisePlan,
        meters: &mut [MeterState],
        i: usize,
        r: &Reading,
        out: &mut Output,
    ) {
        meters[i].seen.saw_reading(r);
        let power = &*r.factor == POWER
            && !r.converted
            && matches!(
                (r.kind, r.stat),
                (DataKind::Rtd, Stat::Rtd) | (DataKind::Min, Stat::Avg)
            )
            && r.flag.valid_for_judging();
        if !power || meters[i].power.is_some_and(|(t, _)| r.ts < t) {
            return;
        }
        meters[i].power = Some((r.ts, r.value));
        for &l in &plan.meter_linkages[i] {
            self.linkage(plan, meters, l, r.ts, out);
        }
        for &o in &plan.meter_orders[i] {
            self.order(plan, meters, o, r.ts, out);
        }
    }

    fn linkage(
        &mut self,
        plan: &EnterprisePlan,
        meters: &[MeterState],
        li: usize,
        at: DateTime<Utc>,
        out: &mut Output,
    ) {
        let l = &plan.linkages[li];
        let ep = &mut self.links[li];
        let on: Option<DateTime<Utc>> = l
            .production
            .iter()
            .filter_map(|&m| Self::fresh(plan, meters, m, at))
            .filter(|(_, kw)| *kw > l.production_on_kw)
            .map(|(t, _)| t)
            .max();
        // Every treatment meter must be fresh: one silent meter makes the sum
        // meaningless (offline reports it).
        let mut kw = 0.0;
        let mut treat_ts: Option<DateTime<Utc>> = None;
        for &m in &l.treatment {
            match Self::fresh(plan, meters, m, at) {
                Some((t, p)) => {
                    kw += p;
                    treat_ts = Some(treat_ts.map_or(t, |x| x.min(t)));
                }
                None => {
                    *ep = Episode::default();
                    return;
                }
            }
        }
        let (Some(prod_ts), Some(treat_ts)) = (on, treat_ts) else {
            *ep = Episode::default();
            return;
        };
        let (rule, fraction) = if kw < l.off_below * l.treatment_normal_kw {
            (RuleName::TreatmentNotRunning, l.off_below)
        } else if kw < l.underpowered_below * l.treatment_normal_kw {
            (RuleName::TreatmentUnderpowered, l.underpowered_below)
        } else {
            *ep = Episode::default();
            return;
        };
        if ep.rule != Some(rule) {
            *ep = Episode {
                rule: Some(rule),
                start: Some(prod_ts.max(treat_ts)),
                raised: false,
            };
        }
        let Some(start) = ep.start else { return };
        let confirmed = prod_ts.min(treat_ts);
        if ep.raised || confirmed < start || confirmed - start < l.grace {
            return;
        }
        ep.raised = true;
        let loc = l
            .treatment
            .first()
            .map(|&m| Location::Meter(plan.meters[m].id.clone()));
        let meters_json: serde_json::Map<String, serde_json::Value> = l
            .production
            .iter()
            .chain(&l.treatment)
            .filter_map(|&m| {
                Some((
                    plan.meters[m].id.to_string(),
                    serde_json::json!(meters[m].power?.1),
                ))
            })
            .collect();
        out.findings.push(
            Finding::new(rule, plan, loc, POWER, start, confirmed)
                .value(kw)
                .threshold(fraction * l.treatment_normal_kw)
                .detail(l.id.to_string())
                .message(format!(
                    "linkage {}: production running while treatment draws {kw:.1} kW (< {:.0} % of normal {} kW) for {} min",
                    l.id,
                    fraction * 100.0,
                    l.treatment_normal_kw,
                    (confirmed - start).num_minutes()
                ))
                .evidence(
                    Evidence::default()
                        .param("meters_kw", meters_json)
                        .param("production_on_kw", l.production_on_kw)
                        .param("treatment_normal_kw", l.treatment_normal_kw)
                        .param("off_below", l.off_below)
                        .param("underpowered_below", l.underpowered_below)
                        .param("grace_minutes", l.grace.num_minutes())
                        .param("config", format!("{} {}", plan.file, l.key)),
                ),
        );
    }

    fn order(
        &mut self,
        plan: &EnterprisePlan,
        meters: &[MeterState],
        oi: usize,
        at: DateTime<Utc>,
        out: &mut Output,
    ) {
        let o = &plan.orders[oi];
        let ep = &mut self.orders[oi];
        if at < o.start || at >= o.end {
            *ep = Episode::default();
            return;
        }
        // Only readings taken inside the window count.
        let mut kw = 0.0;
        let mut confirmed: Option<DateTime<Utc>> = None;
        for &m in &o.meters {
            if let Some((t, p)) = Self::fresh(plan, meters, m, at).filter(|(t, _)| *t >= o.start) {
                kw += p;
                confirmed = Some(confirmed.map_or(t, |x| x.min(t)));
            }
        }
        let allowed = o.allowed_share * o.baseline_kw;
        let Some(confirmed) = confirmed.filter(|_| kw > allowed) else {
            *ep = Episode::default();
            return;
        };
        let start = *ep.start.get_or_insert(at);
        if ep.raised || confirmed < start || confirmed - start < o.grace {
            return;
        }
        ep.raised = true;
        out.findings.push(
            Finding::new(RuleName::OrderViolation, plan, None, POWER, start, confirmed)
                .value(kw)
                .threshold(allowed)
                .detail(o.id.to_string())
                .message(format!(
                    "order {} ({}, {} – {}): production draws {kw:.1} kW, allowed {allowed:.1} kW ({:.0} % of baseline {} kW), for {} min",
                    o.id,
                    o.kind.as_str(),
                    o.start,
                    o.end,
                    o.allowed_share * 100.0,
                    o.baseline_kw,
                    (confirmed - start).num_minutes()
                ))
                .evidence(
                    Evidence::default()
                        .param("order", o.id.to_string())
                        .param("kind", o.kind.as_str())
                        .param("window_start", o.start.to_rfc3339())
                        .param("window_end", o.end.to_rfc3339())
                        .param("allowed_share", o.allowed_share)
                        .param("baseline_kw", o.baseline_kw)
                        .param("grace_minutes", o.grace.num_minutes())
                        .param("meters", o.meters.iter().map(|&m| plan.meters[m].id.to_string()).collect::<Vec<_>>())
                        .param("config", format!("{} {}", plan.file, o.key)),
                ),
        );
    }
}
