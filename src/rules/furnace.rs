//! The furnace temperature of a waste incinerator (生活垃圾焚烧发电厂自动监测数据应用
//! 管理规定): the logger uploads the furnace's 5-minute mean temperature (HJ 212-2025
//! CN 2111, stored as minute data); a mean below 850 ℃ while the furnace burns is a
//! `furnace_temperature` finding, and more than five of them in one natural day is
//! the violation the regulation names — the day's finding is raised at the sixth,
//! not when the day ends, so the duty officer hears of it while it is happening.
//!
//! "Burning" is read from the data's flag: a value flagged as not a valid
//! measurement (F stopped, M maintenance, D fault, C calibration, B communication)
//! is not counted. Start-up and shut-down periods the enterprise declares on the
//! provincial platform are not known here; they show as such flags or not at all.
//!
//! Counting is by the value's own time, per local day, once per 5-minute period
//! (a resend of the same mean counts once), so late means (RF=1 resends, backfill)
//! land on their own day whatever arrived before. The state of the current day is
//! rebuilt at start-up by the replay of [`super::rebuild`].

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::eval::Output;
use super::finding::{Evidence, EvidenceValue, Finding, RuleName, Severity};
use super::plan::{FurnacePlan, OutletPlan};
use super::window::day_start;
use crate::model::{DataKind, Id, Location, Reading};

/// Days whose counts are kept: the current one and a few before it, for late means.
const DAYS_KEPT: usize = 4;
const PERIOD: Duration = Duration::minutes(5);

#[derive(Debug, Default)]
struct Day {
    /// The day's below-minimum means by period start.
    low: BTreeMap<DateTime<Utc>, EvidenceValue>,
    violated: bool,
}

#[derive(Debug, Default)]
pub(crate) struct FurnaceState {
    days: BTreeMap<DateTime<Utc>, Day>,
}

impl FurnaceState {
    /// Judges one reading of the outlet; anything but a 5-minute mean of the
    /// furnace factor is ignored.
    pub fn reading(
        &mut self,
        enterprise: &Id,
        outlet: &OutletPlan,
        tz: Tz,
        r: &Reading,
        out: &mut Output,
    ) {
        let Some(plan) = &outlet.furnace else { return };
        if r.factor != plan.factor || r.kind != DataKind::Min || r.converted {
            return;
        }
        if !r.flag.valid_for_judging() || !r.value.is_finite() || r.value >= plan.min_c {
            return;
        }
        let start = day_start(r.ts, tz);
        let day = self.days.entry(start).or_default();
        let value = super::anomaly::ev(r);
        if day.low.insert(r.ts, value.clone()).is_some() {
            return; // the same period again
        }
        let count = day.low.len() as u32;
        let location = Location::Outlet(outlet.id.clone());
        let evidence = |values: Vec<EvidenceValue>| {
            Evidence {
                values,
                limit: Some(plan.source.clone()),
                ..Evidence::default()
            }
            .param("min_c", plan.min_c)
            .param("max_per_day", plan.max_per_day)
            .param("count_today", count)
        };
        out.findings.push(Finding {
            rule: RuleName::FurnaceTemperature,
            severity: Severity::Warning,
            enterprise: enterprise.clone(),
            location: Some(location.clone()),
            factor: plan.factor.clone(),
            window_start: r.ts,
            window_end: r.ts + PERIOD,
            at: r.ts + PERIOD,
            value: Some(r.value),
            threshold: Some(plan.min_c),
            detail: "5min".into(),
            message: format!(
                "炉膛温度5分钟均值 {:.0} ℃，低于 {:.0} ℃（当日第 {count} 次）",
                r.value, plan.min_c
            ),
            evidence: evidence(vec![value]),
        });
        if count > plan.max_per_day && !day.violated {
            day.violated = true;
            out.findings.push(day_violation(
                enterprise, location, plan, start, tz, r.ts, day, count, evidence,
            ));
        }
        while self.days.len() > DAYS_KEPT {
            self.days.pop_first();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn day_violation(
    enterprise: &Id,
    location: Location,
    plan: &FurnacePlan,
    start: DateTime<Utc>,
    tz: Tz,
    at: DateTime<Utc>,
    day: &Day,
    count: u32,
    evidence: impl Fn(Vec<EvidenceValue>) -> Evidence,
) -> Finding {
    let end = day_start(start + Duration::hours(36), tz);
    Finding {
        rule: RuleName::FurnaceTemperature,
        severity: Severity::Violation,
        enterprise: enterprise.clone(),
        location: Some(location),
        factor: plan.factor.clone(),
        window_start: start,
        window_end: end,
        at: at + PERIOD,
        value: Some(f64::from(count)),
        threshold: Some(f64::from(plan.max_per_day)),
        detail: "day".into(),
        message: format!(
            "炉膛温度低于 {:.0} ℃ 的5分钟均值当日已 {count} 次，超过 {} 次",
            plan.min_c, plan.max_per_day
        ),
        evidence: evidence(day.low.values().cloned().collect()),
    }
}
