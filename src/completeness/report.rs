//! The transmission report: per enterprise, outlet and limited factor, the counts
//! and rates over local days `from..to` (`to` exclusive).
//!
//! Days whose figures are persisted (`transmission_days`, written by the daemon
//! when a day closes and revised while the repair window is open) are read from
//! there; any other day — today, or a day the daemon never closed — is counted from
//! the stored hourly values. A month's report therefore scans raw readings only for
//! the days nobody has closed yet.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::rates::{day_figures, day_start, Counts, HourValue};
use crate::config::Config;
use crate::model::{DataKind, LocationKind, Stat};
use crate::store::{DayFigures, ReadingQuery, Store, StoreError};
use crate::timefmt::TimeError;

/// The longest range one report may cover.
pub const MAX_DAYS: i64 = 366;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Range(String),
    #[error("enterprise {0:?} is not in the config")]
    UnknownEnterprise(String),
    #[error(transparent)]
    Time(#[from] TimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One outlet of one enterprise and the factors it has limits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub enterprise: String,
    pub outlet: String,
    pub factors: Vec<String>,
}

/// The outlets and limited factors counted, in config order.
pub fn targets(cfg: &Config, enterprise: Option<&str>) -> Result<Vec<Target>, ReportError> {
    if let Some(e) = enterprise {
        if cfg.enterprise(e).is_none() {
            return Err(ReportError::UnknownEnterprise(e.to_string()));
        }
    }
    let mut out = Vec::new();
    for e in &cfg.enterprises {
        if enterprise.is_some_and(|id| id != e.id) {
            continue;
        }
        for o in &e.outlets {
            let factors: BTreeSet<String> = o.limits.iter().map(|l| l.factor.clone()).collect();
            if factors.is_empty() {
                continue;
            }
            out.push(Target {
                enterprise: e.id.clone(),
                outlet: o.id.clone(),
                factors: factors.into_iter().collect(),
            });
        }
    }
    Ok(out)
}

/// Counts `days` of one target from the stored hourly values (one query).
pub async fn count_days(
    store: &Store,
    tz: Tz,
    t: &Target,
    days: &[NaiveDate],
    until: DateTime<Utc>,
) -> Result<Vec<DayFigures>, ReportError> {
    let (Some(first), Some(last)) = (days.iter().min(), days.iter().max()) else {
        return Ok(Vec::new());
    };
    let q = ReadingQuery {
        kind: Some(DataKind::Hour),
        stat: Some(Stat::Avg),
        from: Some(day_start(*first, tz)?),
        to: Some(day_start(last.succ_opt().unwrap_or(*last), tz)?),
        ..ReadingQuery::new(
            t.enterprise.as_str(),
            LocationKind::Outlet,
            t.outlet.as_str(),
        )
    };
    let mut by_factor: BTreeMap<&str, Vec<HourValue>> = BTreeMap::new();
    let rows = store.readings(&q).await?;
    for r in &rows {
        by_factor
            .entry(r.factor.as_str())
            .or_default()
            .push(HourValue {
                hour: r.ts,
                flag: r.flag,
                converted: r.converted,
            });
    }
    let mut out = Vec::new();
    for f in &t.factors {
        let values = by_factor.get(f.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        for d in days {
            out.push(day_figures(
                (&t.enterprise, &t.outlet, f),
                *d,
                tz,
                values,
                until,
            )?);
        }
    }
    Ok(out)
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub enterprise: String,
    pub outlet: String,
    pub factor: String,
    pub counts: Counts,
    pub missing_hours: u32,
    pub invalid_hours: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub rows: Vec<ReportRow>,
}

/// Checks a requested range.
pub fn check_range(from: NaiveDate, to: NaiveDate) -> Result<(), ReportError> {
    if to <= from {
        return Err(ReportError::Range(format!(
            "--to {to} must be after --from {from} (--to is exclusive)"
        )));
    }
    if (to - from).num_days() > MAX_DAYS {
        return Err(ReportError::Range(format!(
            "at most {MAX_DAYS} days per report; {from}..{to} is {} days",
            (to - from).num_days()
        )));
    }
    Ok(())
}

/// The report over local days `from..to` as of `now`.
pub async fn transmission_report(
    cfg: &Config,
    store: &Store,
    from: NaiveDate,
    to: NaiveDate,
    enterprise: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Report, ReportError> {
    check_range(from, to)?;
    let tz = cfg.timezone;
    let targets = targets(cfg, enterprise)?;
    let stored = store.transmission_days(from, to, enterprise).await?;
    let mut known: BTreeMap<(String, String, String), Vec<DayFigures>> = BTreeMap::new();
    for s in stored {
        let f = s.figures;
        known
            .entry((f.enterprise.clone(), f.outlet.clone(), f.factor.clone()))
            .or_default()
            .push(f);
    }
    let all_days: Vec<NaiveDate> = from.iter_days().take_while(|d| *d < to).collect();
    let mut rows = Vec::new();
    for t in &targets {
        // Days some factor of this outlet has no persisted figure for.
        let missing: Vec<NaiveDate> = all_days
            .iter()
            .copied()
            .filter(|d| {
                t.factors.iter().any(|f| {
                    known
                        .get(&(t.enterprise.clone(), t.outlet.clone(), f.clone()))
                        .is_none_or(|v| !v.iter().any(|x| x.day == *d))
                })
            })
            .collect();
        let counted = count_days(store, tz, t, &missing, now).await?;
        for f in &t.factors {
            let key = (t.enterprise.clone(), t.outlet.clone(), f.clone());
            let persisted = known.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            let mut row = ReportRow {
                enterprise: t.enterprise.clone(),
                outlet: t.outlet.clone(),
                factor: f.clone(),
                counts: Counts::default(),
                missing_hours: 0,
                invalid_hours: 0,
            };
            for d in &all_days {
                let day = persisted
                    .iter()
                    .find(|x| x.day == *d)
                    .or_else(|| counted.iter().find(|x| x.factor == *f && x.day == *d));
                if let Some(x) = day {
                    row.counts.add(Counts::from(x));
                    row.missing_hours += x.missing_hours.len() as u32;
                    row.invalid_hours += x.invalid_hours.len() as u32;
                }
            }
            rows.push(row);
        }
    }
    Ok(Report { from, to, rows })
}

/// The report as JSON (CLI `--json` and the API): rates as fractions 0–1, `null`
/// where the denominator is zero.
pub fn report_json(r: &Report) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = r
        .rows
        .iter()
        .map(|x| {
            serde_json::json!({
                "enterprise": x.enterprise,
                "outlet": x.outlet,
                "factor": x.factor,
                "expected": x.counts.expected,
                "received": x.counts.received,
                "valid": x.counts.valid,
                "missing_hours": x.missing_hours,
                "invalid_hours": x.invalid_hours,
                "transmission_rate": x.counts.transmission_rate(),
                "validity_rate": x.counts.validity_rate(),
                "effective_rate": x.counts.effective_rate(),
            })
        })
        .collect();
    serde_json::json!({
        "from": r.from.to_string(),
        "to": r.to.to_string(),
        "rows": rows,
    })
}

/// The report as a table: rates in percent, one decimal.
pub fn report_table(r: &Report) -> String {
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
    let mut out = format!(
        "{:<22} {:<8} {:<8} {:>8} {:>8} {:>6} {:>12} {:>9} {:>9}\n",
        "enterprise",
        "outlet",
        "factor",
        "expected",
        "received",
        "valid",
        "transmission",
        "validity",
        "effective"
    );
    for x in &r.rows {
        out.push_str(&format!(
            "{:<22} {:<8} {:<8} {:>8} {:>8} {:>6} {:>12} {:>9} {:>9}\n",
            x.enterprise,
            x.outlet,
            x.factor,
            x.counts.expected,
            x.counts.received,
            x.counts.valid,
            pct(x.counts.transmission_rate()),
            pct(x.counts.validity_rate()),
            pct(x.counts.effective_rate()),
        ));
    }
    out
}

/// A date given on the command line or in a query: `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<NaiveDate, ReportError> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| ReportError::Range(format!("cannot read date {s:?}: use YYYY-MM-DD")))
}
