//! Data completeness in the daemon (issue #20).
//!
//! [`run`] closes days for the transmission rates ([`crate::completeness::daily`]):
//! a pass shortly after start and then every `PERIOD`, following config reloads.
//! Findings (`low_transmission`) are stored and handed to the alerts engine like
//! any other; a day that backfill or late data revised revises its finding. An
//! outlet with hours missing on a day it counted is handed to the backfill, which
//! asks its logger if connected.
//!
//! [`short_hours`] sits between the rules engine and the alerts engine: an hour
//! that closed short of its valid minutes because data never arrived
//! (`missing_data` on an hour, its shortfall not explained by values flagged
//! invalid) is handed to the backfill too, so a connected logger is asked for it
//! without waiting for a reconnect.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::completeness::daily::{close_days, store_pass};
use crate::config::Config;
use crate::model::Location;
use crate::rules::{Finding, RuleName};
use crate::sources::hj212::Backfill;
use crate::store::{Store, StoredFinding};

/// Between passes: a day closes at most this long before its figures are stored.
const PERIOD: Duration = Duration::from_secs(15 * 60);
/// The first pass waits this long after start (the daemon has more urgent work).
const FIRST: Duration = Duration::from_secs(60);

pub async fn run(
    store: Store,
    config: watch::Receiver<Arc<Config>>,
    findings: mpsc::Sender<Vec<StoredFinding>>,
    clock: Arc<dyn Clock>,
    backfill: Option<Arc<Backfill>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut wait = FIRST;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = PERIOD;
        let cfg = config.borrow().clone();
        let now = clock.now();
        let closed = match close_days(&cfg, &store, now).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "transmission figures: pass failed; retried next period");
                continue;
            }
        };
        if closed.new + closed.revised > 0 {
            tracing::info!(
                new = closed.new,
                revised = closed.revised,
                findings = closed.findings.len(),
                "transmission figures stored"
            );
        }
        if let Some(b) = &backfill {
            for (enterprise, outlet) in &closed.missing {
                b.wanted(enterprise, outlet, &[], now);
            }
        }
        match store_pass(&store, closed, now).await {
            Ok(stored) => {
                let r = &stored.revised;
                if !r.revised.is_empty() || !r.superseded.is_empty() {
                    tracing::info!(
                        revised = r.revised.len(),
                        superseded = r.superseded.len(),
                        resolved_alerts = r.resolved_alerts.len(),
                        "low_transmission findings revised"
                    );
                }
                if !stored.new.is_empty() && findings.send(stored.new).await.is_err() {
                    tracing::warn!("alerts engine stopped; low_transmission findings are stored");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot store low_transmission findings"),
        }
    }
}

/// Hands the rules engine's findings on to `to`, telling `backfill` about each
/// hour that closed short because data never arrived. Ends when `from` closes.
pub async fn short_hours(
    mut from: mpsc::Receiver<Vec<StoredFinding>>,
    to: mpsc::Sender<Vec<StoredFinding>>,
    backfill: Arc<Backfill>,
    clock: Arc<dyn Clock>,
) {
    while let Some(batch) = from.recv().await {
        let now = clock.now();
        for f in &batch {
            if let Some((outlet, hour)) = short_hour(&f.finding) {
                backfill.wanted(&f.finding.enterprise, outlet, &[hour], now);
            }
        }
        if to.send(batch).await.is_err() {
            tracing::warn!("alerts engine stopped; findings are stored");
        }
    }
}

/// The outlet and hour of a `missing_data` on an hour whose data did not all
/// arrive: the values that did arrive but were flagged invalid (at most one a
/// minute, as a logger sends minute data) do not make up the shortfall.
pub fn short_hour(f: &Finding) -> Option<(&str, DateTime<Utc>)> {
    if f.rule != RuleName::MissingData || f.detail != "hour" {
        return None;
    }
    let Some(Location::Outlet(outlet)) = &f.location else {
        return None;
    };
    let needed = f.threshold.unwrap_or(45.0);
    if let Some(c) = &f.evidence.counts {
        let valid = f64::from(c.valid_minutes.unwrap_or(0));
        let invalid = f64::from(c.values.saturating_sub(c.valid_values).min(60));
        if valid + invalid >= needed {
            return None;
        }
    }
    Some((outlet, f.window_start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Counts, Evidence};
    use chrono::TimeZone;

    fn missing(detail: &str, values: u32, valid_values: u32, valid_minutes: u32) -> Finding {
        let h = Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap();
        Finding {
            rule: RuleName::MissingData,
            severity: crate::rules::Severity::Warning,
            enterprise: "E1".into(),
            location: Some(Location::Outlet("DW001".into())),
            factor: "w01018".into(),
            window_start: h,
            window_end: h + chrono::Duration::hours(1),
            at: h,
            value: Some(f64::from(valid_minutes)),
            threshold: Some(45.0),
            detail: detail.into(),
            message: String::new(),
            evidence: Evidence {
                counts: Some(Counts {
                    values,
                    valid_values,
                    valid_minutes: Some(valid_minutes),
                    ..Counts::default()
                }),
                ..Evidence::default()
            },
        }
    }

    #[test]
    fn only_hours_whose_data_never_arrived_are_asked_for() {
        // 20 minutes arrived, all valid: 40 never did.
        let f = missing("hour", 20, 20, 20);
        let (outlet, hour) = short_hour(&f).unwrap();
        assert_eq!((outlet, hour.timestamp() % 3600), ("DW001", 0));
        // Nothing at all arrived.
        assert!(short_hour(&missing("hour", 0, 0, 0)).is_some());
        // 60 values arrived, 30 flagged M: the logger has nothing better.
        assert!(short_hour(&missing("hour", 60, 30, 30)).is_none());
        // A day short of hours is the daily close's business.
        assert!(short_hour(&missing("day", 0, 0, 0)).is_none());
        let mut other = missing("hour", 0, 0, 0);
        other.rule = RuleName::Exceedance;
        assert!(short_hour(&other).is_none());
    }
}
