//! Every limit judged whatever a logger uploads, and whenever it arrives: upload
//! shapes (minute only, hourly only with and without `-Cou`, hourly plus a
//! plain-mean daily value, daily only) sent through the real HJ 212 server into a
//! real store, judged by the rules task as in the daemon, on time and a day late.

#[macro_use]
mod common;

use chrono::{DateTime, Duration, Utc};
use common::rules_rig::{local, Rig};
use pollwatch::config::Config;
use pollwatch::rules::{Finding, RuleName};
use pollwatch::store::StoredFinding;

both_backends!(
    hourly_uploads_with_cou_judge_the_flow_weighted_day,
    hourly_uploads_without_cou_weigh_by_the_mean_flow,
    nineteen_valid_hours_are_not_a_valid_day,
    a_plain_daily_mean_hiding_a_weighted_exceedance_is_a_mismatch,
    with_computed_aggregates_the_built_day_is_judged,
    daily_uploads_only_are_judged,
    minute_uploads_only_judge_the_hourly_limit,
    a_day_arriving_a_day_late_gets_the_same_verdicts,
);

const MN: &str = "MN-WW-01";
const PW: &str = "123456";
/// COD ≤ 100 mg/L as a daily mean; NH3-N ≤ 15 mg/L hourly.
const LIMIT: f64 = 100.0;

fn enterprise(outlet_extra: &str) -> String {
    format!(
        r#"
id = "E1"
name = "城南污水处理厂"
district = "吴中区"
industry = "污水处理"

[[outlets]]
id = "DW001"
name = "总排口"
kind = "wastewater"
offline_after = "96h"
hj212 = {{ mn = "{MN}", password = "{PW}" }}
{outlet_extra}

[[outlets.limits]]
factor = "w01018"
max = {LIMIT:.1}
basis = "day"

[[outlets.limits]]
factor = "w21003"
max = 15.0
basis = "hour"
"#
    )
}

fn config(dir: &std::path::Path, outlet_extra: &str) -> Config {
    common::rules_config(
        dir,
        "\n[hj212]\nlisten = \"127.0.0.1:0\"\n",
        &[enterprise(outlet_extra)],
    )
}

/// The day judged: 27 November, local.
const DAY: u8 = 27;

fn day_start() -> DateTime<Utc> {
    local(DAY, 0, 0).1
}

/// The rig on `url` with the outlet's extra config, the clock at noon the day
/// before the judged one.
async fn start(url: &str, outlet_extra: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), outlet_extra);
    let now = local(DAY - 1, 12, 0).1;
    Rig::start(url, &cfg, Some(dir), now, (MN, PW, "32")).await
}

/// COD and flow per hour: 16 hours of 80 mg/L at 100 m³, 8 hours of 130 mg/L at
/// 600 m³. Plain mean 96.67 (compliant), flow-weighted 117.5 (exceeds 100).
fn hour_of_day(h: u8) -> (f64, f64) {
    if h < 16 {
        (80.0, 100.0)
    } else {
        (130.0, 600.0)
    }
}
const PLAIN: f64 = (16.0 * 80.0 + 8.0 * 130.0) / 24.0;
const WEIGHTED: f64 = (16.0 * 80.0 * 100.0 + 8.0 * 130.0 * 600.0) / (16.0 * 100.0 + 8.0 * 600.0);

/// A 2061 CP: COD with its flag, and the hour's flow as `-Cou` (m³) or as the
/// mean flow in L/s (`-Avg`) giving the same volume.
fn hourly_cp(cod: f64, m3: f64, flag: char, cou: bool) -> String {
    let flow = if cou {
        format!("w00000-Avg={:.4},w00000-Cou={m3},w00000-Flag=N", m3 / 3.6)
    } else {
        format!("w00000-Avg={},w00000-Flag=N", m3 / 3.6)
    };
    format!(
        "w01018-Avg={cod},w01018-Cou={:.3},w01018-Flag={flag};{flow}",
        cod * m3 / 1000.0
    )
}

/// The 24 hours of the judged day, flagged by `flag(h)`, then the first hour of
/// the next day (which closes it).
async fn upload_day(rig: &mut Rig, cou: bool, flag: impl Fn(u8) -> char) {
    for h in 0..24 {
        let (cod, m3) = hour_of_day(h);
        rig.upload("2061", (DAY, h, 0), &hourly_cp(cod, m3, flag(h), cou))
            .await;
    }
    rig.upload("2061", (DAY + 1, 0, 0), &hourly_cp(80.0, 100.0, 'N', cou))
        .await;
}

/// The findings of `rule` about the judged day's COD.
fn of_day(found: &[StoredFinding], rule: RuleName) -> Vec<Finding> {
    found
        .iter()
        .map(|s| s.finding.clone())
        .filter(|f| {
            f.rule == rule
                && &*f.factor == "w01018"
                && f.window_start == day_start()
                && f.window_end == day_start() + Duration::days(1)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * b.abs().max(1.0)
}

async fn hourly_uploads_with_cou_judge_the_flow_weighted_day(url: &str) {
    let mut rig = start(url, "").await;
    upload_day(&mut rig, true, |_| 'N').await;
    let (_, found) = rig.finish().await;
    let ex = of_day(&found, RuleName::Exceedance);
    assert_eq!(ex.len(), 1, "one daily exceedance: {found:#?}");
    let f = &ex[0];
    assert!(close(f.value.unwrap(), WEIGHTED), "{f:#?}");
    assert_eq!(f.threshold, Some(LIMIT));
    let e = &f.evidence;
    assert!(
        close(e.measured_average.unwrap(), PLAIN),
        "plain mean beside it"
    );
    assert_eq!(
        e.aggregate.as_deref(),
        Some("built from supplied hours, flow-weighted")
    );
    assert_eq!(e.counts.as_ref().unwrap().valid_hours, Some(24));
    assert_eq!(e.hours.len(), 24, "every hour in the evidence");
    for (h, eh) in e.hours.iter().enumerate() {
        let (cod, m3) = hour_of_day(h as u8);
        assert_eq!(eh.start, day_start() + Duration::hours(h as i64));
        assert_eq!((eh.source.as_str(), eh.valid), ("supplied", true));
        assert_eq!(eh.value, Some(cod));
        assert_eq!(eh.weight_m3, Some(m3));
        assert_eq!(eh.weight_from.as_deref(), Some("cou"));
    }
    assert!(
        of_day(&found, RuleName::MissingData).is_empty(),
        "{found:#?}"
    );
}

async fn hourly_uploads_without_cou_weigh_by_the_mean_flow(url: &str) {
    let mut rig = start(url, "").await;
    upload_day(&mut rig, false, |_| 'N').await;
    let (_, found) = rig.finish().await;
    let ex = of_day(&found, RuleName::Exceedance);
    assert_eq!(ex.len(), 1, "{found:#?}");
    assert!(close(ex[0].value.unwrap(), WEIGHTED), "{:#?}", ex[0]);
    for (h, eh) in ex[0].evidence.hours.iter().enumerate() {
        let (_, m3) = hour_of_day(h as u8);
        assert!(close(eh.weight_m3.unwrap(), m3), "{eh:?}");
        assert_eq!(eh.weight_from.as_deref(), Some("flow_avg"));
    }
}

async fn nineteen_valid_hours_are_not_a_valid_day(url: &str) {
    let mut rig = start(url, "").await;
    // Hours 19–23 flagged M, F, C, D, B: received, not valid.
    let flags = ['M', 'F', 'C', 'D', 'B'];
    upload_day(&mut rig, true, |h| {
        if h >= 19 {
            flags[usize::from(h - 19)]
        } else {
            'N'
        }
    })
    .await;
    let (_, found) = rig.finish().await;
    let missing = of_day(&found, RuleName::MissingData);
    assert_eq!(missing.len(), 1, "{found:#?}");
    assert_eq!(missing[0].value, Some(19.0));
    assert_eq!(missing[0].threshold, Some(20.0));
    let hours = &missing[0].evidence.hours;
    assert_eq!(hours.iter().filter(|h| h.valid).count(), 19);
    assert_eq!(hours[20].flag, Some(pollwatch::model::Flag::F));
    assert!(!hours[20].valid);
    assert!(
        of_day(&found, RuleName::Exceedance).is_empty(),
        "{found:#?}"
    );
}

/// The logger's own daily value is the plain mean: compliant. Judged as it is
/// (`aggregates = "supplied"`), and caught by the cross-check against the day
/// built from its hours.
async fn a_plain_daily_mean_hiding_a_weighted_exceedance_is_a_mismatch(url: &str) {
    let mut rig = start(url, "").await;
    for h in 0..24 {
        let (cod, m3) = hour_of_day(h);
        rig.upload("2061", (DAY, h, 0), &hourly_cp(cod, m3, 'N', true))
            .await;
    }
    let daily = format!("w01018-Avg={PLAIN:.4},w01018-Flag=N;w00000-Cou=6400,w00000-Flag=N");
    rig.upload("2031", (DAY, 0, 0), &daily).await;
    rig.upload("2061", (DAY + 1, 0, 0), &hourly_cp(80.0, 100.0, 'N', true))
        .await;
    let (_, found) = rig.finish().await;
    assert!(
        of_day(&found, RuleName::Exceedance).is_empty(),
        "{found:#?}"
    );
    let mismatch = of_day(&found, RuleName::DataMismatch);
    assert_eq!(mismatch.len(), 1, "{found:#?}");
    assert!(close(
        mismatch[0].value.unwrap(),
        (PLAIN * 1e4).round() / 1e4
    ));
    assert!(
        close(mismatch[0].threshold.unwrap(), WEIGHTED),
        "{mismatch:#?}"
    );
}

async fn with_computed_aggregates_the_built_day_is_judged(url: &str) {
    let mut rig = start(url, "aggregates = \"computed\"").await;
    for h in 0..24 {
        let (cod, m3) = hour_of_day(h);
        rig.upload("2061", (DAY, h, 0), &hourly_cp(cod, m3, 'N', true))
            .await;
    }
    let daily = format!("w01018-Avg={PLAIN:.4},w01018-Flag=N");
    rig.upload("2031", (DAY, 0, 0), &daily).await;
    rig.upload("2061", (DAY + 1, 0, 0), &hourly_cp(80.0, 100.0, 'N', true))
        .await;
    let (_, found) = rig.finish().await;
    let ex = of_day(&found, RuleName::Exceedance);
    assert_eq!(ex.len(), 1, "{found:#?}");
    assert!(close(ex[0].value.unwrap(), WEIGHTED));
    assert_eq!(of_day(&found, RuleName::DataMismatch).len(), 1);
}

/// A logger (or a platform) that sends only daily values: the value is judged,
/// with either setting — there is nothing else to judge.
async fn daily_uploads_only_are_judged(url: &str) {
    let mut url = url.to_string();
    for extra in ["", "aggregates = \"computed\""] {
        let mut rig = start(&url, extra).await;
        rig.upload("2031", (DAY, 0, 0), "w01018-Avg=120.5,w01018-Flag=N")
            .await;
        let (_, found) = rig.finish().await;
        let ex = of_day(&found, RuleName::Exceedance);
        assert_eq!(ex.len(), 1, "{extra}: {found:#?}");
        assert_eq!(ex[0].value, Some(120.5));
        assert_eq!(ex[0].evidence.aggregate.as_deref(), Some("supplied"));
        url = another_database(&url).await;
    }
}

/// A second empty database beside `url`, for a second run of a case.
async fn another_database(url: &str) -> String {
    if url.starts_with("sqlite") {
        url.replace(".db", "-next.db")
    } else {
        let base = std::env::var("PW_TEST_DATABASE_URL").unwrap();
        common::fresh_pg_database(&base).await
    }
}

/// Minute averages only (2051): 50 minutes of NH3-N at 20 mg/L give an hourly
/// mean above 15.
async fn minute_uploads_only_judge_the_hourly_limit(url: &str) {
    let mut rig = start(url, "").await;
    for m in 0..50 {
        rig.upload("2051", (DAY, 9, m), "w21003-Avg=20,w21003-Flag=N")
            .await;
    }
    rig.upload("2051", (DAY, 10, 0), "w21003-Avg=10,w21003-Flag=N")
        .await;
    let (_, found) = rig.finish().await;
    let ex: Vec<_> = found
        .iter()
        .filter(|s| s.finding.rule == RuleName::Exceedance && &*s.finding.factor == "w21003")
        .collect();
    assert_eq!(ex.len(), 1, "{found:#?}");
    assert_eq!(ex[0].finding.window_start, local(DAY, 9, 0).1);
    assert_eq!(ex[0].finding.value, Some(20.0));
    let counts = ex[0].finding.evidence.counts.as_ref().unwrap();
    assert_eq!(counts.valid_minutes, Some(50));
}

/// The day before the judged one ends with one hour, so the outlet's day rolls
/// on while it is silent.
async fn prefix(rig: &mut Rig) {
    rig.upload("2061", (DAY - 1, 23, 0), &hourly_cp(80.0, 100.0, 'N', true))
        .await;
}

/// The same hourly data, on time and a day late (a logger catching up after
/// being offline): the same daily verdict, and the `missing_data` raised while
/// the data was missing is superseded.
async fn a_day_arriving_a_day_late_gets_the_same_verdicts(url: &str) {
    let mut rig = start(url, "").await;
    prefix(&mut rig).await;
    upload_day(&mut rig, true, |_| 'N').await;
    let (_, on_time) = rig.finish().await;
    let want = of_day(&on_time, RuleName::Exceedance);
    assert_eq!(want.len(), 1, "{on_time:#?}");

    let mut rig = start(&another_database(url).await, "").await;
    prefix(&mut rig).await;
    // The day passes in silence: judged missing once it is over.
    rig.at(local(DAY + 1, 1, 10).1);
    let missing = rig
        .wait_for(|f| {
            f.rule == RuleName::MissingData
                && f.window_start == day_start()
                && &*f.factor == "w01018"
        })
        .await;
    assert_eq!(missing.finding.value, Some(0.0));
    // A day late the logger sends it all.
    rig.at(local(DAY + 2, 0, 30).1);
    for h in 0..24 {
        let (cod, m3) = hour_of_day(h);
        let lt = local(DAY, h, 0).0;
        rig.upload_now("2061", lt, &hourly_cp(cod, m3, 'N', true))
            .await;
    }
    let (store, late) = rig.finish().await;
    let got = of_day(&late, RuleName::Exceedance);
    assert_eq!(got.len(), 1, "{late:#?}");
    assert_eq!(got[0].value, want[0].value, "same daily mean");
    assert_eq!(got[0].evidence.hours, want[0].evidence.hours, "same hours");
    assert_eq!(got[0].evidence.counts, want[0].evidence.counts);
    // The missing_data stands in the record, superseded.
    let history = store.finding_history(missing.id).await.unwrap();
    let (_, reason) = history.superseded.expect("superseded");
    assert!(reason.contains("late data"), "{reason}");
    assert_eq!(
        of_day(&late, RuleName::MissingData).len(),
        1,
        "not duplicated"
    );
}
