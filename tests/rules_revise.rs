//! Late data revises what was found: stored findings revised in place and
//! superseded, their alerts' timelines and resolution (both backends); and the
//! evaluator's side — the per-hour choice between our hour and the logger's, and
//! the closed periods late values reopen.

#[macro_use]
mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use pollwatch::model::{DataKind, Flag, Id, Location, Protocol, Reading, SourceRef, Stat};
use pollwatch::rules::rejudge::{self, Job, Period};
use pollwatch::rules::{Evaluator, Finding, Options, Output, Plan, RuleName, Severity};
use pollwatch::store::{verify_chain, AlertState, Store, StoreOptions};

both_backends!(revised_and_superseded_findings_show_on_their_alerts);

/// Shanghai midnight, 27 November 2026.
fn day() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 16, 0, 0).unwrap()
}

fn finding(rule: RuleName, value: f64, threshold: f64) -> Finding {
    Finding {
        rule,
        severity: Severity::Violation,
        enterprise: "E1".into(),
        location: Some(Location::Outlet("DW001".into())),
        factor: "w01018".into(),
        window_start: day(),
        window_end: day() + Duration::days(1),
        at: day() + Duration::days(1),
        value: Some(value),
        threshold: Some(threshold),
        detail: if rule == RuleName::MissingData {
            "day".into()
        } else {
            "outlets[0].limits[0]".into()
        },
        message: format!("{rule} {value}"),
        evidence: Default::default(),
    }
}

async fn alert_for(store: &Store, f: &Finding, id: i64, at: DateTime<Utc>) -> i64 {
    let what = ["E1", "outlet:DW001", "w01018", f.rule.as_str(), "major"];
    common::console::seed_alert_on(store, what, f.value.unwrap_or_default(), at, Some(id)).await
}

/// A day judged on part of its hours: an exceedance at 101 and, for another
/// limit's day, `missing_data`. Its hours came late: the exceedance is revised
/// to 117.5 and the missing data is superseded; each alert's timeline says so,
/// the missing-data alert resolves, and the chains hold.
async fn revised_and_superseded_findings_show_on_their_alerts(url: &str) {
    let store = Store::open(url, &StoreOptions::default()).await.unwrap();
    let t = day() + Duration::days(1) + Duration::hours(1);
    let ex = finding(RuleName::Exceedance, 101.0, 100.0);
    let missing = finding(RuleName::MissingData, 12.0, 20.0);
    let ids = store
        .insert_findings(&[ex.clone(), missing.clone()], t)
        .await
        .unwrap();
    let (ex_id, missing_id) = (ids[0].unwrap(), ids[1].unwrap());
    let ex_alert = alert_for(&store, &ex, ex_id, t).await;
    let missing_alert = alert_for(&store, &missing, missing_id, t).await;

    let later = t + Duration::days(1);
    let period = Period {
        enterprise: "E1".into(),
        location: Location::Outlet("DW001".into()),
        factor: "w01018".into(),
        start: day(),
        end: day() + Duration::days(1),
    };
    let verdicts = vec![finding(RuleName::Exceedance, 117.5, 100.0)];
    store.insert_findings(&verdicts, later).await.unwrap();
    let r = store
        .revise_findings(std::slice::from_ref(&period), &verdicts, later)
        .await
        .unwrap();
    assert_eq!(r.revised, vec![ex_id]);
    assert_eq!(r.superseded, vec![missing_id]);
    assert_eq!(r.resolved_alerts, vec![missing_alert]);

    let h = store.finding_history(ex_id).await.unwrap();
    assert_eq!(h.revision, 1);
    assert!(h.superseded.is_none());
    assert_eq!(h.revisions[0].from_value, Some(101.0));
    assert_eq!(h.revisions[0].to_value, Some(117.5));
    let h = store.finding_history(missing_id).await.unwrap();
    assert!(h.superseded.is_some());

    let events = store.alert_events(ex_alert).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.kind, "revised");
    assert!(
        last.detail
            .contains("revised after late data, from 101.000 to 117.500"),
        "{}",
        last.detail
    );
    assert_eq!(verify_chain(&events), Ok(()));
    let a = store.alert(ex_alert).await.unwrap().unwrap();
    assert_eq!(a.state, AlertState::Open, "the exceedance stands");

    let events = store.alert_events(missing_alert).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds[kinds.len() - 2..], ["revised", "resolved"]);
    assert!(events.last().unwrap().detail.contains("superseded"));
    assert_eq!(verify_chain(&events), Ok(()));
    let a = store.alert(missing_alert).await.unwrap().unwrap();
    assert_eq!(a.state, AlertState::Resolved);
    assert_eq!(a.resolved_by.as_deref(), Some("pollwatch"));

    // Judged again with the same result: nothing more changes.
    let r = store
        .revise_findings(&[period], &verdicts, later + Duration::hours(1))
        .await
        .unwrap();
    assert!(r.revised.is_empty() && r.superseded.is_empty(), "{r:?}");
    assert_eq!(store.finding_history(ex_id).await.unwrap().revision, 1);
    store.close().await;
}

const WASTEWATER: &str = r#"
id = "E1"
name = "测试"
district = "吴中区"
industry = "污水处理"

[[outlets]]
id = "DW001"
name = "总排口"
kind = "wastewater"

[[outlets.limits]]
factor = "w01018"
max = 100.0
basis = "day"
"#;

fn plan() -> Plan {
    let dir = tempfile::tempdir().unwrap();
    Plan::new(&common::rules_config(
        dir.path(),
        "",
        &[WASTEWATER.to_string()],
    ))
}

fn reading(
    factor: &str,
    ts: DateTime<Utc>,
    value: f64,
    kind: DataKind,
    stat: Stat,
    unit: &str,
) -> Reading {
    Reading {
        enterprise: Id::from("E1"),
        location: Location::Outlet("DW001".into()),
        factor: factor.into(),
        unit: unit.into(),
        ts,
        value,
        kind,
        stat,
        converted: false,
        flag: Flag::N,
        source: SourceRef {
            protocol: Protocol::Sim,
            device: "sim".into(),
            resend: false,
        },
    }
}

/// Hour `h` of the day: its real-time values every minute (COD `rtd`, flow 10
/// L/s) when `rtd`, then the logger's 2061 (COD `avg`, 100 m³).
fn hour(h: i64, rtd: Option<f64>, avg: f64) -> Vec<Reading> {
    let start = day() + Duration::hours(h);
    let mut out = Vec::new();
    if let Some(v) = rtd {
        for m in 0..60 {
            let ts = start + Duration::minutes(m);
            out.push(reading("w00000", ts, 10.0, DataKind::Rtd, Stat::Rtd, "L/s"));
            out.push(reading("w01018", ts, v, DataKind::Rtd, Stat::Rtd, "mg/L"));
        }
    }
    out.push(reading(
        "w00000",
        start,
        100.0,
        DataKind::Hour,
        Stat::Cou,
        "m³",
    ));
    out.push(reading(
        "w01018",
        start,
        avg,
        DataKind::Hour,
        Stat::Avg,
        "mg/L",
    ));
    out
}

fn daily(out: &[Finding], rule: RuleName) -> Vec<Finding> {
    out.iter()
        .filter(|f| f.rule == rule && f.window_start == day() && &*f.factor == "w01018")
        .cloned()
        .collect()
}

/// Hours with real-time values use our mean, the others the logger's; each
/// hour's source and weight is in the evidence.
#[test]
fn each_hour_takes_our_mean_where_we_have_one_else_the_loggers() {
    let mut ev = Evaluator::new(plan(), Options::default());
    let mut out = Output::default();
    for h in 0..24 {
        // Our hours 0–11 say 150 (the logger's say 50 and are not used: we have
        // our own); hours 12–23 only the logger's, 90.
        let rtd = (h < 12).then_some(150.0);
        let avg = if h < 12 { 50.0 } else { 90.0 };
        // The 2061 of an hour arrives after it.
        let mut batch = hour(h, rtd, avg);
        let supplied = batch.split_off(batch.len() - 2);
        ev.ingest(&batch, &mut out);
        ev.ingest(&supplied, &mut out);
    }
    ev.tick(day() + Duration::hours(26), &mut out);
    let ex = daily(&out.findings, RuleName::Exceedance);
    assert_eq!(ex.len(), 1, "{:#?}", out.findings);
    let hours = &ex[0].evidence.hours;
    assert_eq!(hours.len(), 24);
    assert!(hours[..12]
        .iter()
        .all(|h| h.source == "computed" && h.value == Some(150.0)));
    assert!(hours[12..]
        .iter()
        .all(|h| h.source == "supplied" && h.value == Some(90.0)));
    assert!(hours[..12]
        .iter()
        .all(|h| h.weight_from.as_deref() == Some("flow")));
    assert!(hours[12..]
        .iter()
        .all(|h| h.weight_from.as_deref() == Some("cou")));
    // 10 L/s × 3600 s = 36 m³ against 100 m³.
    let want = (150.0 * 36.0 + 90.0 * 100.0) / 136.0;
    assert!((ex[0].value.unwrap() - want).abs() < 1e-6, "{:#?}", ex[0]);
    assert_eq!(
        ex[0].evidence.aggregate.as_deref(),
        Some("built from computed and supplied hours, flow-weighted")
    );
}

/// Real-time values for an hour already closed: reported for re-judging (the
/// hour, and the day once it closes), never taken into the open windows; the
/// day judged again from all its readings is the day an on-time run judges.
#[test]
fn late_values_reopen_their_period_and_the_rejudged_day_matches_on_time() {
    let all: Vec<Vec<Reading>> = (0..24).map(|h| hour(h, Some(120.0), 120.0)).collect();
    let mut on_time = Evaluator::new(plan(), Options::default());
    let mut want = Output::default();
    for b in &all {
        on_time.ingest(b, &mut want);
    }
    on_time.tick(day() + Duration::hours(26), &mut want);
    let want = daily(&want.findings, RuleName::Exceedance);
    assert_eq!(want.len(), 1);

    // Hour 5 comes after hour 8 has begun.
    let mut ev = Evaluator::new(plan(), Options::default());
    let mut out = Output::default();
    for (h, b) in all.iter().enumerate() {
        if h != 5 {
            ev.ingest(b, &mut out);
        }
        if h == 8 {
            ev.ingest(&all[5], &mut out);
        }
    }
    assert!(out
        .reopened
        .iter()
        .all(|r| r.hour == Some(day() + Duration::hours(5)) && !r.day_closed));
    assert!(!out.reopened.is_empty());
    ev.tick(day() + Duration::hours(26), &mut out);
    let closed: Vec<_> = out.reopened.iter().filter(|r| r.hour.is_none()).collect();
    assert_eq!(closed.len(), 1, "the day, once closed: {:?}", out.reopened);
    assert!(closed[0].day_closed);

    let mut job = Job::new(closed[0]);
    for r in &out.reopened {
        job.add(r);
    }
    let mut readings: Vec<Reading> = all.concat();
    readings.sort_by_key(|r| r.ts);
    let v = rejudge::rejudge(&plan(), &Options::default(), &job, &readings);
    let got = daily(&v.findings, RuleName::Exceedance);
    assert_eq!(got.len(), 1, "{:#?}", v.findings);
    assert_eq!(got[0].value, want[0].value);
    assert_eq!(got[0].evidence, want[0].evidence);
    assert_eq!(v.periods.len(), 2, "hour 5 and the day");
}

/// Emission of an hour whose values came late counts toward the year's total
/// once the day is judged again, as it would have on time.
#[test]
fn late_hours_count_toward_the_emission_total() {
    let dir = tempfile::tempdir().unwrap();
    let capped =
        format!("{WASTEWATER}\n[[emission_caps]]\nfactor = \"w01018\"\ntonnes_per_year = 100.0\n");
    let plan = Plan::new(&common::rules_config(dir.path(), "", &[capped]));
    let all: Vec<Vec<Reading>> = (0..24).map(|h| hour(h, Some(120.0), 120.0)).collect();
    let run = |skip: Option<usize>| {
        let mut ev = Evaluator::new(plan.clone(), Options::default());
        let mut out = Output::default();
        for (h, b) in all.iter().enumerate() {
            if Some(h) != skip {
                ev.ingest(b, &mut out);
            }
        }
        (ev, out)
    };
    let (mut on_time, mut out) = run(None);
    on_time.tick(day() + Duration::hours(26), &mut out);
    let want = on_time.emission_total("E1", "w01018").unwrap();

    let (mut late, mut out) = run(Some(5));
    late.ingest(&all[5], &mut out);
    late.tick(day() + Duration::hours(26), &mut out);
    let before = late.emission_total("E1", "w01018").unwrap();
    let mut job = Job::new(&out.reopened[0]);
    for r in &out.reopened {
        job.add(r);
    }
    let mut readings: Vec<Reading> = all.concat();
    readings.sort_by_key(|r| r.ts);
    let v = rejudge::rejudge(&plan, &Options::default(), &job, &readings);
    assert_eq!(v.emissions.len(), 1, "hour 5's emission: {:?}", v.emissions);
    late.record_emissions(&v.emissions, &mut Output::default());
    let after = late.emission_total("E1", "w01018").unwrap();
    assert!(before < want, "{before} < {want}");
    assert!((after - want).abs() < 1e-12, "{after} = {want}");
}
