//! Assembling an alert's [`ChartData`] from the store and the config.
//!
//! The window runs from [`ChartWindow::before`] ahead of the alert's first finding
//! to [`ChartWindow::after`] past its last (or now, if that is sooner), so the
//! officer sees what normal looked like and whether the condition ended.
//!
//! Hourly means are what the rules judged, not a second opinion: the logger's
//! own hourly values when it supplied them, otherwise computed with the rules'
//! own minute slots ([`HourWin`]), validity (≥ `min_valid_minutes` valid
//! minutes), flag handling and O2 correction ([`crate::rules::correct`]). Only
//! the O2 pairing is restated here (the latest O2 of the same data kind, at most
//! `pair_max_age` older), because the evaluator's pairing lives in its streaming
//! state.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::chart::{ChartConflict, ChartData, ChartPoint, HourMean};
use super::EvidenceError;
use crate::config::Config;
use crate::model::{self, DataKind, Location, Stat};
use crate::rules::finding::parse_location;
use crate::rules::plan::{LimitPlan, O2};
use crate::rules::window::{hour_start, HourWin, Sample};
use crate::rules::{correct, LimitRef, Options, Plan};
use crate::store::{AlertRow, FindingQuery, ReadingQuery, Store, StoredFinding, StoredReading};
use crate::timefmt::rfc3339_local;

/// How much context around the alert the chart shows.
#[derive(Debug, Clone, Copy)]
pub struct ChartWindow {
    pub before: Duration,
    pub after: Duration,
}

impl Default for ChartWindow {
    fn default() -> Self {
        ChartWindow {
            before: Duration::hours(6),
            after: Duration::hours(2),
        }
    }
}

/// Readings fetched per series at most: two weeks of minute values. A chart needs
/// far fewer; the cap keeps an alert that lasted months from loading millions,
/// and a chart that hits it says so in its subtitle.
pub(super) const MAX_READINGS: u32 = 20_160;

/// The chart of alert `id`, or `None` when there is no such alert.
pub async fn alert_chart(
    store: &Store,
    config: &Config,
    id: i64,
    now: DateTime<Utc>,
    window: ChartWindow,
) -> Result<Option<ChartData>, EvidenceError> {
    let Some(alert) = store.alert(id).await? else {
        return Ok(None);
    };
    let not_chartable = |reason: &str| EvidenceError::NotChartable {
        id,
        reason: reason.to_string(),
    };
    if alert.factor.is_empty() {
        return Err(not_chartable(
            "the alert is about a whole outlet, meter or enterprise, not one factor",
        ));
    }
    let location = parse_location(&alert.location)
        .ok_or_else(|| not_chartable("the alert has no outlet or meter"))?;
    let findings = store
        .findings(&FindingQuery {
            alert: Some(id),
            limit: 10_000,
            ..Default::default()
        })
        .await?;
    let (span_from, span_to) = span(&alert, &findings);
    let from = span_from - window.before;
    let to = (span_to + window.after).min(now).max(span_to);

    let plan = Plan::enterprise_of(config, &alert.enterprise);
    let outlet = plan.as_ref().and_then(|e| plan_outlet(e, &location));
    let o2_reference = outlet.and_then(|o| o.o2_reference);
    let tz = config.timezone;

    let query = |factor: &str| ReadingQuery {
        from: Some(hour_start(from, tz)),
        to: Some(to),
        limit: Some(MAX_READINGS),
        ..ReadingQuery::new(
            alert.enterprise.clone(),
            location.kind(),
            location.id().to_string(),
        )
        .factor(factor)
    };
    let values = store.readings(&query(&alert.factor)).await?;
    let o2 = match o2_reference {
        Some(_) => store.readings(&query(O2)).await?,
        None => Vec::new(),
    };
    let hours = hourly_means(&values, &o2, HourRules::of(outlet, tz));
    let points = chart_points(&values, from, to);
    let conflicts = store
        .conflicts(&ReadingQuery {
            from: Some(from),
            limit: Some(MAX_READINGS),
            ..query(&alert.factor)
        })
        .await?
        .into_iter()
        .map(|c| ChartConflict {
            ts: c.ts,
            first_value: c.first_value,
            value: c.value,
        })
        .collect();

    let limit_ref = findings
        .iter()
        .find_map(|f| f.finding.evidence.limit.clone());
    let limit = outlet.and_then(|o| pick_limit(o, &alert.factor, limit_ref.as_ref()));
    let (max, min, warn) = match (limit, &limit_ref) {
        (Some(l), _) => (l.max, l.min, l.warn_threshold()),
        (None, Some(r)) => (r.max, r.min, r.warn_at.zip(r.max).map(|(w, m)| w * m)),
        (None, None) => (alert.limit, None, None),
    };

    let catalogue = model::factor(&alert.factor);
    let unit = unit_of(&values, &alert.factor);
    let (title, mut subtitle) = titles(config, &alert, &location, span_from, span_to);
    // The store returns the oldest first: a cut-off chart must say where it ends.
    if values.len() >= MAX_READINGS as usize {
        let last = values.last().map_or(to, |r| r.ts);
        tracing::warn!(
            alert = id,
            readings = values.len(),
            "evidence chart cut off at the reading cap"
        );
        subtitle.push_str(&format!(
            " · 读数过多，仅含至 {} 的 {} 条",
            rfc3339_local(last, tz),
            values.len()
        ));
    }
    Ok(Some(ChartData {
        title,
        subtitle,
        factor: alert.factor.clone(),
        factor_name: catalogue
            .map_or(alert.factor.as_str(), |f| f.name_zh)
            .to_string(),
        unit,
        tz,
        from,
        to,
        points,
        hours: hours
            .into_iter()
            .filter(|h| h.start + Duration::hours(1) > from && h.start < to)
            .collect(),
        limit: max,
        limit_min: min,
        warn,
        alert_from: span_from,
        alert_to: span_to,
        conflicts,
    }))
}

/// The alert's span: its findings' windows, else its own times.
fn span(alert: &AlertRow, findings: &[StoredFinding]) -> (DateTime<Utc>, DateTime<Utc>) {
    let starts = findings.iter().map(|f| f.finding.window_start).min();
    let ends = findings.iter().map(|f| f.finding.window_end).max();
    (
        starts.unwrap_or(alert.opened_at),
        ends.unwrap_or(alert.updated_at),
    )
}

pub(super) fn plan_outlet<'p>(
    e: &'p crate::rules::plan::EnterprisePlan,
    location: &Location,
) -> Option<&'p crate::rules::plan::OutletPlan> {
    let Location::Outlet(id) = location else {
        return None;
    };
    e.outlets.get(*e.outlet_ix.get(&**id)?)
}

/// The limit the finding names (by config key); else the hourly one, else any.
pub(super) fn pick_limit<'p>(
    outlet: &'p crate::rules::plan::OutletPlan,
    factor: &str,
    named: Option<&LimitRef>,
) -> Option<&'p LimitPlan> {
    let limits = &outlet.factors.get(factor)?.limits;
    named
        .and_then(|r| limits.iter().find(|l| l.source.key == r.key))
        .or_else(|| {
            limits
                .iter()
                .find(|l| l.basis == crate::config::Basis::Hour)
        })
        .or(limits.first())
}

fn titles(
    config: &Config,
    alert: &AlertRow,
    location: &Location,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> (String, String) {
    let ent = config.enterprises.iter().find(|e| e.id == alert.enterprise);
    let place = ent.and_then(|e| match location {
        Location::Outlet(id) => e
            .outlets
            .iter()
            .find(|o| o.id == **id)
            .map(|o| o.name.clone()),
        Location::Meter(id) => e
            .meters
            .iter()
            .find(|m| m.id == **id)
            .map(|m| m.name.clone()),
    });
    let title = format!(
        "告警 #{} {} {} {}",
        alert.id,
        ent.map_or(alert.enterprise.as_str(), |e| e.name.as_str()),
        place.unwrap_or_else(|| location.id().to_string()),
        alert.factor
    );
    let fmt = |t: DateTime<Utc>| rfc3339_local(t, config.timezone);
    let subtitle = format!(
        "{} · {} · {} 至 {} · {}",
        alert.rule,
        alert.severity,
        fmt(from),
        fmt(to),
        alert.message
    );
    (title, subtitle)
}

/// The values the rules see (real-time, else the logger's minute means), inside
/// the window.
fn chart_points(
    values: &[StoredReading],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<ChartPoint> {
    let pick = |kind: DataKind, stat: Stat| -> Vec<ChartPoint> {
        values
            .iter()
            .filter(|r| r.kind == kind && r.stat == stat && !r.converted)
            .filter(|r| r.ts >= from && r.ts < to)
            .map(|r| ChartPoint {
                ts: r.ts,
                value: r.value,
                flag: r.flag,
            })
            .collect()
    };
    let rtd = pick(DataKind::Rtd, Stat::Rtd);
    if rtd.is_empty() {
        pick(DataKind::Min, Stat::Avg)
    } else {
        rtd
    }
}

/// The unit the values were stored with, else the factor catalogue's.
pub(super) fn unit_of(values: &[StoredReading], factor: &str) -> String {
    values
        .iter()
        .map(|r| r.unit.as_str())
        .find(|u| !u.is_empty())
        .or(model::factor(factor).map(|f| f.unit))
        .unwrap_or("")
        .to_string()
}

/// The rule parameters hourly means depend on.
#[derive(Debug, Clone, Copy)]
pub struct HourRules {
    pub o2_reference: Option<f64>,
    pub min_valid_minutes: u32,
    pub pair_max_age: Duration,
    pub tz: Tz,
}

impl HourRules {
    /// The outlet's rules (HJ 75's 45 valid minutes and no O2 correction for
    /// a location the plan does not know).
    pub fn of(outlet: Option<&crate::rules::plan::OutletPlan>, tz: Tz) -> HourRules {
        HourRules {
            o2_reference: outlet.and_then(|o| o.o2_reference),
            min_valid_minutes: outlet.map_or(45, |o| o.min_valid_minutes),
            pair_max_age: Options::default().pair_max_age,
            tz,
        }
    }
}

/// Hourly means of one series, in time order: supplied hours as the logger sent
/// them (corrected with its hourly O2), the rest computed from real-time and
/// minute values as the evaluator does.
pub fn hourly_means(
    values: &[StoredReading],
    o2: &[StoredReading],
    rules: HourRules,
) -> Vec<HourMean> {
    let usable = |r: &&StoredReading| !r.converted && r.flag.valid_for_judging();
    // O2 per data kind, in time order (the store returns readings by time).
    let o2_of = |kind: DataKind| -> Vec<(DateTime<Utc>, f64)> {
        let mut v: Vec<_> = o2
            .iter()
            .filter(usable)
            .filter(|p| p.kind == kind && matches!(p.stat, Stat::Rtd | Stat::Avg))
            .map(|p| (p.ts, p.value))
            .collect();
        v.sort_by_key(|p| p.0);
        v
    };
    let o2_by_kind = [DataKind::Rtd, DataKind::Min, DataKind::Hour].map(|k| (k, o2_of(k)));
    let o2_at = |kind: DataKind, ts: DateTime<Utc>| -> Option<f64> {
        let (_, series) = o2_by_kind.iter().find(|(k, _)| *k == kind)?;
        let (t, v) = *series.get(series.partition_point(|p| p.0 <= ts).checked_sub(1)?)?;
        let close = t == ts
            || (matches!(kind, DataKind::Rtd | DataKind::Min) && ts - t <= rules.pair_max_age);
        close.then_some(v)
    };
    let judged = |kind, r: &StoredReading| match rules.o2_reference {
        Some(reference) => correct(r.value, reference, o2_at(kind, r.ts)).ok(),
        None => Some(r.value),
    };

    let mut out: BTreeMap<DateTime<Utc>, HourMean> = BTreeMap::new();
    let mut wins: BTreeMap<DateTime<Utc>, HourWin> = BTreeMap::new();
    for r in values.iter().filter(usable) {
        match (r.kind, r.stat) {
            (DataKind::Hour, Stat::Avg) => {
                out.insert(
                    r.ts,
                    HourMean {
                        start: r.ts,
                        measured: Some(r.value),
                        corrected: rules.o2_reference.and_then(|_| judged(DataKind::Hour, r)),
                        supplied: true,
                        valid_minutes: None,
                        valid: true,
                    },
                );
            }
            (DataKind::Rtd, Stat::Rtd) | (DataKind::Min, Stat::Avg) => {
                // Not judgeable (no O2, O2 ≥ 19 %): left out, as the rules do.
                let Some(j) = judged(r.kind, r) else { continue };
                let start = hour_start(r.ts, rules.tz);
                let w = wins.entry(start).or_insert_with(|| HourWin::new(start));
                if r.kind == DataKind::Min {
                    w.supply_minute(r.ts, j, r.value);
                } else if w.first_sight(r.ts) {
                    w.add(
                        r.ts,
                        Sample {
                            measured: r.value,
                            judged: j,
                            flow: None,
                        },
                    );
                }
            }
            _ => {}
        }
    }
    for (start, w) in wins {
        let st = w.stats(60);
        out.entry(start).or_insert(HourMean {
            start,
            measured: st.measured_mean,
            corrected: rules.o2_reference.and(st.mean),
            supplied: false,
            valid_minutes: Some(st.valid_minutes),
            valid: st.valid_minutes >= rules.min_valid_minutes,
        });
    }
    out.into_values().collect()
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
