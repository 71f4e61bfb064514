//! The `clock_skew` finding: a logger whose DataTime is later than now +
//! `clock_tolerance` or older than `max_data_age` does not deliver readings (its
//! messages become dead letters `clock_skew`, see `model::check`), and a logger
//! with a wrong clock is an enforcement matter in itself. Sources report each
//! such message through the writer's [`SkewSink`](crate::model::check::SkewSink);
//! this task raises one finding per outlet and local hour (the finding's window
//! is that hour, so the store's natural key keeps it once even across restarts)
//! and hands it to the alerts engine like any other finding. Route it by rule:
//!
//! ```toml
//! [[routes]]
//! rules = ["clock_skew"]
//! team = "field"
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::model::check::{Skew, Skewed};
use crate::model::{Id, Location};
use crate::rules::{Finding, RuleName, Severity};
use crate::store::{Store, StoredFinding};

/// Reports waiting for this task before sources drop them (the dead letters stay).
pub const QUEUE: usize = 256;

/// The finding for one outlet's skewed message received at `s.at`.
pub fn clock_skew_finding(s: &Skewed) -> Finding {
    let hour = s.at.duration_trunc(Duration::hours(1)).unwrap_or(s.at);
    let (value, threshold, what) = match &s.skew {
        Skew::Ahead {
            ahead, tolerance, ..
        } => (
            *ahead as f64,
            *tolerance as f64,
            format!("数据时间超前当前时间 {ahead} 秒（容许 {tolerance} 秒）"),
        ),
        Skew::TooOld {
            ts,
            now,
            max_age_days,
        } => (
            (*now - *ts).num_seconds() as f64,
            (*max_age_days * 86_400) as f64,
            format!("数据时间早于最长数据时效 {max_age_days} 天"),
        ),
    };
    Finding {
        rule: RuleName::ClockSkew,
        severity: Severity::Warning,
        enterprise: s.enterprise.clone(),
        location: Some(s.location.clone()),
        factor: Id::from(""),
        window_start: hour,
        window_end: hour + Duration::hours(1),
        at: s.at,
        value: Some(value),
        threshold: Some(threshold),
        detail: "clock".into(),
        message: format!(
            "数采仪时钟异常：{what}；该数据未作为读数入库（死信 clock_skew），请核查数采仪时钟。 ({})",
            s.skew
        ),
        evidence: Default::default(),
    }
}

/// Raises `clock_skew` findings from the reports on `rx` until `stop`.
pub async fn watch(
    store: Store,
    mut rx: mpsc::Receiver<Skewed>,
    findings: mpsc::Sender<Vec<StoredFinding>>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    // The hour each outlet was last raised for: one store round trip per hour,
    // not per skewed frame.
    let mut raised: HashMap<(Id, Location), DateTime<Utc>> = HashMap::new();
    loop {
        let s = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            s = rx.recv() => match s { Some(s) => s, None => return },
        };
        let finding = clock_skew_finding(&s);
        let key = (s.enterprise.clone(), s.location.clone());
        if raised.get(&key) == Some(&finding.window_start) {
            continue;
        }
        raised.insert(key, finding.window_start);
        tracing::warn!(enterprise = %s.enterprise, location = %s.location, "logger clock: {}", s.skew);
        super::disk::store_and_send(&store, finding, &findings, clock.now()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn one_finding_per_outlet_and_hour() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 12, 34, 0).unwrap();
        let s = |at: DateTime<Utc>| Skewed {
            enterprise: "E1".into(),
            location: Location::Outlet("W1".into()),
            at,
            skew: Skew::Ahead {
                ts: at + Duration::days(1),
                now: at,
                ahead: 86_400,
                tolerance: 600,
            },
        };
        let a = clock_skew_finding(&s(now));
        let b = clock_skew_finding(&s(now + Duration::minutes(20)));
        let c = clock_skew_finding(&s(now + Duration::minutes(30)));
        assert_eq!(a.natural_key(), b.natural_key());
        assert_ne!(
            a.natural_key(),
            c.natural_key(),
            "the next hour is a new finding"
        );
        assert_eq!(a.rule.as_str(), "clock_skew");
        assert_eq!(a.value, Some(86_400.0));
        assert!(a.message.contains("数采仪时钟异常"));
    }
}
