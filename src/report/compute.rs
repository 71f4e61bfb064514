//! The month's numbers, from the store and the config (see the module docs of
//! [`crate::report`] for what each counts).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::*;
use crate::config::{Config, Enterprise, Outlet};
use crate::store::{ReportAlert, ReportFinding, Store};

/// `2026-11` → its first local date and the next month's.
pub fn month_days(month: &str) -> Result<(NaiveDate, NaiveDate), ReportError> {
    let bad = || ReportError::Month(month.to_string());
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    if y.len() != 4 || m.len() != 2 {
        return Err(bad());
    }
    let y: i32 = y.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    let first = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)?;
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    }
    .ok_or_else(bad)?;
    Ok((first, next))
}

/// `2026-11` → the month's local midnights in UTC, `[from, to)`.
pub fn month_bounds(month: &str, tz: Tz) -> Result<(DateTime<Utc>, DateTime<Utc>), ReportError> {
    let (first, next) = month_days(month)?;
    let midnight = |d: NaiveDate| {
        crate::timefmt::local_to_utc(d.and_time(chrono::NaiveTime::MIN), tz)
            .map_err(|_| ReportError::Month(month.to_string()))
    };
    Ok((midnight(first)?, midnight(next)?))
}

/// Computes the report for `month` (`YYYY-MM`) in the config's time zone.
pub async fn monthly(
    store: &Store,
    cfg: &Config,
    month: &str,
    now: DateTime<Utc>,
) -> Result<MonthlyReport, ReportError> {
    let tz = cfg.timezone;
    let (from, to) = month_bounds(month, tz)?;
    let (first, next) = month_days(month)?;
    let alerts = store.report_alerts(from, to).await?;
    let findings = store.report_findings(from, to).await?;
    let last_seen = store.last_seen_before(to).await?;
    let runtime_orders = store.orders(Some(from)).await?;
    let names: HashMap<&str, &Enterprise> =
        cfg.enterprises.iter().map(|e| (e.id.as_str(), e)).collect();
    let name = |id: &str| names.get(id).map(|e| e.name.clone()).unwrap_or_default();
    let seen: HashMap<(&str, &str), DateTime<Utc>> = last_seen
        .iter()
        .map(|l| ((l.enterprise.as_str(), l.location.as_str()), l.at))
        .collect();
    let mut orders = Vec::new();
    for e in &cfg.enterprises {
        for o in &e.orders {
            let (start, end) = (o.start.with_timezone(&Utc), o.end.with_timezone(&Utc));
            orders.push((
                e.id.clone(),
                o.id.clone(),
                o.kind.as_str(),
                start,
                end,
                "config",
            ));
        }
    }
    for o in &runtime_orders {
        let start = o.order.start.with_timezone(&Utc);
        let kind = o.order.kind.as_str();
        let end = o.effective_end();
        orders.push((
            o.enterprise.clone(),
            o.order.id.clone(),
            kind,
            start,
            end,
            "api",
        ));
    }
    let orders = orders
        .into_iter()
        .filter(|(_, _, _, start, end, _)| *start < to && *end > from)
        .map(|(enterprise, order, kind, start, end, source)| {
            let inside = |a: DateTime<Utc>, b: DateTime<Utc>| hours(a.max(from), b.min(to));
            let hits: Vec<&ReportFinding> = findings
                .iter()
                .filter(|f| {
                    f.rule == "order_violation" && f.enterprise == enterprise && f.detail == order
                })
                .collect();
            let hours_in_force = inside(start, end);
            let violation_hours: f64 = hits
                .iter()
                .map(|f| inside(f.window_start.max(start), f.window_end.min(end)))
                .sum();
            OrderRow {
                enterprise_name: name(&enterprise),
                enterprise,
                order,
                kind: kind.to_string(),
                start,
                end,
                source: source.to_string(),
                hours_in_force,
                violation_hours,
                compliance_hours: (hours_in_force - violation_hours).max(0.0),
                violations: hits.len() as u32,
            }
        })
        .collect();
    Ok(MonthlyReport {
        month: month.to_string(),
        timezone: tz.name().to_string(),
        from,
        to,
        generated_at: now,
        overview: overview(cfg, &seen, to),
        transmission: super::transmission::month(cfg, store, first, next, now).await?,
        alerts: alert_stats(&alerts, &names, from, to),
        exceedances: exceedances(&findings, &name),
        power: power(&findings, &name),
        orders,
        positive_list: positive_list(cfg, &findings),
        alerts_per_day: per_day(&alerts, tz, from, to),
    })
}

fn hours(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    if b <= a {
        return 0.0;
    }
    (b - a).num_seconds() as f64 / 3600.0
}

fn online(
    seen: &HashMap<(&str, &str), DateTime<Utc>>,
    e: &str,
    loc: &str,
    within: Duration,
    at: DateTime<Utc>,
) -> bool {
    seen.get(&(e, loc)).is_some_and(|t| at - *t <= within)
}

fn overview(
    cfg: &Config,
    seen: &HashMap<(&str, &str), DateTime<Utc>>,
    to: DateTime<Utc>,
) -> Overview {
    let mut o = Overview::default();
    let mut districts: BTreeMap<String, DistrictRow> = BTreeMap::new();
    let default_offline =
        Duration::from_std(Outlet::DEFAULT_OFFLINE_AFTER).unwrap_or(Duration::minutes(30));
    for e in &cfg.enterprises {
        let auto = !e.outlets.is_empty();
        let power = !e.meters.is_empty();
        o.enterprises += 1;
        o.automatic_monitoring += u32::from(auto);
        o.power_monitoring += u32::from(power);
        o.positive_list += u32::from(e.positive_list);
        let platform = e.platform.map(|p| p.as_str()).unwrap_or("unset");
        *o.by_platform.entry(platform.to_string()).or_default() += 1;
        let d = districts
            .entry(e.district.clone())
            .or_insert_with(|| DistrictRow {
                district: e.district.clone(),
                ..DistrictRow::default()
            });
        d.enterprises += 1;
        d.automatic_monitoring += u32::from(auto);
        d.power_monitoring += u32::from(power);
        d.positive_list += u32::from(e.positive_list);
        for out in &e.outlets {
            o.outlets += 1;
            let within = out
                .offline_after
                .and_then(|d| Duration::from_std(d.0).ok())
                .unwrap_or(default_offline);
            let loc = format!("outlet:{}", out.id);
            o.outlets_online += u32::from(online(seen, &e.id, &loc, within, to));
        }
        for m in &e.meters {
            o.meters += 1;
            let within = m
                .offline_after
                .and_then(|d| Duration::from_std(d.0).ok())
                .unwrap_or(default_offline);
            let loc = format!("meter:{}", m.id);
            o.meters_online += u32::from(online(seen, &e.id, &loc, within, to));
        }
    }
    o.by_district = districts.into_values().collect();
    o
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn alert_stats(
    alerts: &[ReportAlert],
    names: &HashMap<&str, &Enterprise>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> AlertStats {
    let mut s = AlertStats::default();
    let mut waits = Vec::new();
    for a in alerts {
        if a.resolved_at.is_none_or(|r| r >= to) {
            s.open_at_month_end += 1;
        }
        if a.opened_at < from {
            continue;
        }
        s.opened += 1;
        *s.by_rule.entry(a.rule.clone()).or_default() += 1;
        *s.by_severity.entry(a.severity.clone()).or_default() += 1;
        let district = names
            .get(a.enterprise.as_str())
            .map(|e| e.district.clone())
            .unwrap_or_else(|| "(未配置)".to_string());
        *s.by_district.entry(district).or_default() += 1;
        if let Some(ack) = a.acked_at {
            let minutes = (ack - a.opened_at).num_milliseconds() as f64 / 60_000.0;
            s.acknowledged += 1;
            s.acked_within_15m += u32::from(minutes <= 15.0);
            s.acked_within_30m += u32::from(minutes <= 30.0);
            s.acked_within_60m += u32::from(minutes <= 60.0);
            waits.push(minutes);
        }
        if a.resolved_at.is_some_and(|r| r < to) {
            match a.resolved_by.as_deref() {
                Some("pollwatch") | None => s.resolved_automatically += 1,
                Some(_) => s.resolved_by_officer += 1,
            }
        }
    }
    waits.sort_by(f64::total_cmp);
    s.median_ack_minutes = percentile(&waits, 0.5);
    s.p90_ack_minutes = percentile(&waits, 0.9);
    s
}

fn exceedances(findings: &[ReportFinding], name: &dyn Fn(&str) -> String) -> Vec<ExceedanceRow> {
    let mut rows: BTreeMap<(String, String, String), ExceedanceRow> = BTreeMap::new();
    for f in findings.iter().filter(|f| f.rule == "exceedance") {
        let key = (f.enterprise.clone(), f.location.clone(), f.factor.clone());
        let r = rows.entry(key).or_insert_with(|| ExceedanceRow {
            enterprise: f.enterprise.clone(),
            enterprise_name: name(&f.enterprise),
            location: f.location.clone(),
            factor: f.factor.clone(),
            hours: 0,
            days: 0,
            episodes: 0,
            max_value: None,
        });
        let span = f.window_end - f.window_start;
        if span == Duration::hours(1) {
            r.hours += 1;
        } else if span >= Duration::hours(23) && span <= Duration::hours(25) {
            r.days += 1;
        } else {
            r.episodes += 1;
        }
        if let Some(v) = f.value {
            r.max_value = Some(r.max_value.map_or(v, |m: f64| m.max(v)));
        }
    }
    let mut rows: Vec<ExceedanceRow> = rows.into_values().collect();
    rows.sort_by_key(|r| std::cmp::Reverse((r.hours, r.days)));
    rows
}

fn power(findings: &[ReportFinding], name: &dyn Fn(&str) -> String) -> Vec<PowerRow> {
    let mut rows: BTreeMap<String, PowerRow> = BTreeMap::new();
    for f in findings {
        let not_running = f.rule == "treatment_not_running";
        if !not_running && f.rule != "treatment_underpowered" {
            continue;
        }
        let r = rows
            .entry(f.enterprise.clone())
            .or_insert_with(|| PowerRow {
                enterprise: f.enterprise.clone(),
                enterprise_name: name(&f.enterprise),
                not_running_hours: 0.0,
                underpowered_hours: 0.0,
                findings: 0,
            });
        let h = hours(f.window_start, f.window_end);
        if not_running {
            r.not_running_hours += h;
        } else {
            r.underpowered_hours += h;
        }
        r.findings += 1;
    }
    rows.into_values().collect()
}

fn positive_list(cfg: &Config, findings: &[ReportFinding]) -> Vec<PositiveRow> {
    cfg.enterprises
        .iter()
        .filter(|e| e.positive_list)
        .map(|e| {
            let mine: Vec<&ReportFinding> =
                findings.iter().filter(|f| f.enterprise == e.id).collect();
            let mut by_rule = BTreeMap::new();
            for f in &mine {
                *by_rule.entry(f.rule.clone()).or_default() += 1;
            }
            let violations = mine.iter().filter(|f| f.severity == "violation").count() as u32;
            PositiveRow {
                enterprise: e.id.clone(),
                enterprise_name: e.name.clone(),
                district: e.district.clone(),
                findings: mine.len() as u32,
                violations,
                by_rule,
                assessment: if violations > 0 { "review" } else { "keep" }.to_string(),
            }
        })
        .collect()
}

fn per_day(
    alerts: &[ReportAlert],
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DayCount> {
    let mut days: BTreeMap<NaiveDate, DayCount> = BTreeMap::new();
    let mut d = from.with_timezone(&tz).date_naive();
    let last = (to - Duration::seconds(1)).with_timezone(&tz).date_naive();
    while d <= last {
        days.insert(
            d,
            DayCount {
                day: format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day()),
                by_severity: BTreeMap::new(),
            },
        );
        d = d.succ_opt().unwrap_or(last + Duration::days(1));
    }
    for a in alerts
        .iter()
        .filter(|a| a.opened_at >= from && a.opened_at < to)
    {
        let day = tz.from_utc_datetime(&a.opened_at.naive_utc()).date_naive();
        if let Some(c) = days.get_mut(&day) {
            *c.by_severity.entry(a.severity.clone()).or_default() += 1;
        }
    }
    days.into_values().collect()
}
