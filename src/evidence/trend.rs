//! An outlet's last 24 hours for the enterprise page: the hourly means of one
//! limited factor against its permit limit (and early-warning line), drawn by
//! the evidence chart's own renderer ([`super::chart`]) so the page and a case
//! file's chart read the same way.
//!
//! Only the hourly means are drawn, not every real-time value: the page shows a
//! small chart per factor, and the hourly mean is what an hourly limit judges.
//! The means are the rules' own ([`super::data::hourly_means`]): the logger's
//! hourly values where it sent them, otherwise computed from its real-time and
//! minute values with the outlet's validity and O2 correction.

use chrono::{DateTime, Duration, Utc};

use super::chart::ChartData;
use super::data::{hourly_means, pick_limit, plan_outlet, unit_of, HourRules, MAX_READINGS};
use super::EvidenceError;
use crate::config::Config;
use crate::model::{self, Location};
use crate::rules::plan::O2;
use crate::rules::window::hour_start;
use crate::rules::Plan;
use crate::store::{ReadingQuery, Store};

/// The hours a trend covers, the running one included.
pub const HOURS: i64 = 24;

/// The trend of `factor` at `enterprise`'s `outlet` up to `now`; `None` when the
/// config has no such outlet.
pub async fn outlet_trend(
    store: &Store,
    config: &Config,
    enterprise: &str,
    outlet: &str,
    factor: &str,
    now: DateTime<Utc>,
) -> Result<Option<ChartData>, EvidenceError> {
    let tz = config.timezone;
    let Some(plan) = Plan::enterprise_of(config, enterprise) else {
        return Ok(None);
    };
    let location = Location::Outlet(outlet.into());
    let Some(op) = plan_outlet(&plan, &location) else {
        return Ok(None);
    };
    let from = hour_start(now, tz) - Duration::hours(HOURS - 1);
    let query = |f: &str| ReadingQuery {
        from: Some(from),
        to: Some(now),
        limit: Some(MAX_READINGS),
        ..ReadingQuery::new(enterprise, location.kind(), outlet).factor(f)
    };
    let values = store.readings(&query(factor)).await?;
    let o2 = match op.o2_reference {
        Some(_) => store.readings(&query(O2)).await?,
        None => Vec::new(),
    };
    let hours = hourly_means(&values, &o2, HourRules::of(Some(op), tz));
    let limit = pick_limit(op, factor, None);
    let catalogue = model::factor(factor);
    let factor_name = catalogue.map_or(factor, |f| f.name_zh).to_string();
    let unit = unit_of(&values, factor);
    let outlet_name = config
        .enterprise(enterprise)
        .and_then(|e| e.outlets.iter().find(|o| o.id == outlet))
        .map_or(outlet, |o| o.name.as_str());
    let valid = hours.iter().filter(|h| h.valid).count();
    let subtitle = match limit {
        Some(l) => format!(
            "近{HOURS}小时小时均值 · 有效小时 {valid} · 限值 {}",
            l.max.map_or("—".into(), super::scale::fmt_num)
        ),
        None => format!("近{HOURS}小时小时均值 · 有效小时 {valid}"),
    };
    Ok(Some(ChartData {
        title: format!("{outlet_name} {factor_name}"),
        subtitle,
        factor: factor.to_string(),
        factor_name,
        unit,
        tz,
        from,
        to: now,
        points: Vec::new(),
        hours: hours
            .into_iter()
            .filter(|h| h.start >= from && h.start < now)
            .collect(),
        limit: limit.and_then(|l| l.max),
        limit_min: limit.and_then(|l| l.min),
        warn: limit.and_then(|l| l.warn_threshold()),
        // No alert span on a trend.
        alert_from: now,
        alert_to: now,
        conflicts: Vec::new(),
    }))
}
