//! Closing days: the daily figures persisted per outlet and limited factor, and the
//! `low_transmission` finding of a day that closes below the outlet's
//! `min_effective_rate`.
//!
//! [`close_days`] counts every closed local day of the repair window (10 days:
//! backfill and late data can still change them) and stores the figures; a figure
//! that changed is rewritten with a higher revision. A day that has just closed
//! (ended within the last [`FRESH`]) and is below the line gives a finding naming
//! its missing and invalid hours; the store keeps one finding per outlet, factor
//! and day, so counting the same day again raises nothing new. A day revised
//! (backfill, late data) revises its stored finding: the new rate when it is
//! still below the line, superseded when it is no longer.

use chrono::{DateTime, Duration, Utc};

use super::rates::{day_start, local_day, Counts};
use super::report::{count_days, targets, ReportError};
use crate::config::{Config, Outlet};
use crate::model::{Id, Location};
use crate::rules::rejudge::Period;
use crate::rules::{Evidence, Finding, RuleName, Severity};
use crate::store::{DayFigures, DayWrite, Revised, Store, StoreError, StoredFinding};

/// Days counted again on every pass: the repair window.
pub const REPAIR_DAYS: i64 = 10;
/// A day that ended within this long is "just closed" and may raise a finding.
pub const FRESH: Duration = Duration::hours(26);

/// What one pass did.
#[derive(Debug, Default)]
pub struct Closed {
    pub new: u32,
    pub revised: u32,
    /// New `low_transmission` findings.
    pub findings: Vec<Finding>,
    /// Revised days: the period of each, and its verdict now (`None`: at or
    /// above the line).
    pub revisions: Vec<(Period, Option<Finding>)>,
    /// Outlets (enterprise, outlet) with hours missing on a day new or revised
    /// in this pass: their loggers may have them.
    pub missing: Vec<(String, String)>,
}

/// Counts and stores the closed days of the repair window as of `now`.
pub async fn close_days(
    cfg: &Config,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<Closed, ReportError> {
    let tz = cfg.timezone;
    let today = local_day(now, tz);
    let days: Vec<_> = (1..=REPAIR_DAYS)
        .rev()
        .filter_map(|k| today.checked_sub_days(chrono::Days::new(k as u64)))
        .collect();
    let mut out = Closed::default();
    for t in targets(cfg, None)? {
        let outlet = cfg
            .enterprise(&t.enterprise)
            .and_then(|e| e.outlets.iter().find(|o| o.id == t.outlet));
        let min = outlet
            .and_then(|o| o.min_effective_rate)
            .unwrap_or(Outlet::DEFAULT_MIN_EFFECTIVE_RATE);
        for d in count_days(store, tz, &t, &days, now).await? {
            let write = store.put_transmission_day(&d, now).await?;
            match write {
                DayWrite::New => out.new += 1,
                DayWrite::Revised => out.revised += 1,
                DayWrite::Unchanged => continue,
            }
            let (start, end) = (
                day_start(d.day, tz)?,
                day_start(d.day.succ_opt().unwrap_or(d.day), tz)?,
            );
            let rate = Counts::from(&d).effective_rate();
            let low = rate.is_some_and(|r| r < min);
            if !d.missing_hours.is_empty() {
                let key = (d.enterprise.clone(), d.outlet.clone());
                if !out.missing.contains(&key) {
                    out.missing.push(key);
                }
            }
            if write == DayWrite::New {
                if now - end <= FRESH && low {
                    out.findings
                        .push(low_transmission(&d, start, end, min, now));
                }
                continue;
            }
            let period = Period {
                enterprise: Id::from(d.enterprise.as_str()),
                location: Location::Outlet(Id::from(d.outlet.as_str())),
                factor: Id::from(d.factor.as_str()),
                start,
                end,
            };
            let verdict = low.then(|| low_transmission(&d, start, end, min, now));
            out.revisions.push((period, verdict));
        }
    }
    Ok(out)
}

/// What storing a pass did.
#[derive(Debug, Default)]
pub struct StoredPass {
    /// New findings (to hand to the alerts engine).
    pub new: Vec<StoredFinding>,
    pub revised: Revised,
}

/// Stores a pass's new findings and applies its revisions: a revised day's
/// stored `low_transmission` takes the new rate, or is superseded (and an alert
/// on nothing else resolved) when the day is no longer below the line. A
/// revised day below the line that had no finding gets none here: only a day
/// that has just closed raises one.
pub async fn store_pass(
    store: &Store,
    closed: Closed,
    now: DateTime<Utc>,
) -> Result<StoredPass, StoreError> {
    let mut out = StoredPass::default();
    let ids = store.insert_findings(&closed.findings, now).await?;
    out.new = ids
        .into_iter()
        .zip(closed.findings)
        .filter_map(|(id, finding)| {
            id.map(|id| StoredFinding {
                id,
                created: now,
                finding,
            })
        })
        .collect();
    let (periods, verdicts): (Vec<Period>, Vec<Option<Finding>>) =
        closed.revisions.into_iter().unzip();
    let verdicts: Vec<Finding> = verdicts.into_iter().flatten().collect();
    out.revised = store
        .revise_findings_of(&[RuleName::LowTransmission], &periods, &verdicts, now)
        .await?;
    Ok(out)
}

fn hours_text(h: &[u8]) -> String {
    h.iter()
        .map(|x| format!("{x}时"))
        .collect::<Vec<_>>()
        .join("、")
}

/// The finding for a day below the line.
pub fn low_transmission(
    d: &DayFigures,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    min: f64,
    now: DateTime<Utc>,
) -> Finding {
    let c = Counts::from(d);
    let rate = c.effective_rate().unwrap_or(0.0);
    let mut message = format!(
        "{} 有效传输率 {:.1}%，低于 {:.1}%（应传 {} 小时，实传 {}，有效 {}）",
        d.day,
        rate * 100.0,
        min * 100.0,
        c.expected,
        c.received,
        c.valid
    );
    if !d.missing_hours.is_empty() {
        message.push_str(&format!("；缺失：{}", hours_text(&d.missing_hours)));
    }
    if !d.invalid_hours.is_empty() {
        message.push_str(&format!("；无效：{}", hours_text(&d.invalid_hours)));
    }
    Finding {
        rule: RuleName::LowTransmission,
        severity: Severity::Notice,
        enterprise: Id::from(d.enterprise.as_str()),
        location: Some(Location::Outlet(Id::from(d.outlet.as_str()))),
        factor: Id::from(d.factor.as_str()),
        window_start: start,
        window_end: end,
        at: now,
        value: Some(rate),
        threshold: Some(min),
        detail: "min_effective_rate".into(),
        message,
        evidence: Evidence::default()
            .param("expected", c.expected)
            .param("received", c.received)
            .param("valid", c.valid)
            .param("missing_hours", d.missing_hours.clone())
            .param("invalid_hours", d.invalid_hours.clone())
            .param("min_effective_rate", min),
    }
}
