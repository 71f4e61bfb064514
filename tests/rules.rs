//! Scenario tests for the rules engine: for each rule a case that must fire and a
//! near case that must not. The evaluator is pure, so hours of data run in
//! milliseconds; time is the data's time and the `now` given to `tick`.

use chrono::{DateTime, Duration, TimeZone, Utc};
use pollwatch::config::{Config, LoadOptions};
use pollwatch::model::{DataKind, Flag, Id, Location, Protocol, Reading, SourceRef, Stat};
use pollwatch::rules::{Evaluator, Finding, Options, Output, Plan, RuleName};

const DAEMON: &str = "[daemon]\ntimezone = \"Asia/Shanghai\"\n";

/// A config directory holding one enterprise file `E1`.
fn config(enterprise: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("enterprises")).unwrap();
    std::fs::write(dir.path().join("pollwatch.toml"), DAEMON).unwrap();
    std::fs::write(
        dir.path().join("enterprises/e1.toml"),
        format!("id = \"E1\"\nname = \"测试\"\ndistrict = \"吴中区\"\nindustry = \"火电\"\n{enterprise}"),
    )
    .unwrap();
    Config::load(dir.path(), &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn evaluator(enterprise: &str) -> Evaluator {
    Evaluator::new(Plan::new(&config(enterprise)), Options::default())
}

/// 08:00 in Shanghai: hours and days of the test align with local ones.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(secs)
}

fn reading(loc: Location, factor: &str, ts: DateTime<Utc>, value: f64) -> Reading {
    Reading {
        enterprise: Id::from("E1"),
        location: loc,
        factor: factor.into(),
        unit: "".into(),
        ts,
        value,
        kind: DataKind::Rtd,
        stat: Stat::Rtd,
        converted: false,
        flag: Flag::N,
        source: SourceRef {
            protocol: Protocol::Sim,
            device: "sim".into(),
            resend: false,
        },
    }
}

fn outlet(id: &str, factor: &str, ts: DateTime<Utc>, value: f64) -> Reading {
    reading(Location::Outlet(id.into()), factor, ts, value)
}

fn meter(id: &str, ts: DateTime<Utc>, kw: f64) -> Reading {
    reading(Location::Meter(id.into()), "e_p", ts, kw)
}

fn feed(ev: &mut Evaluator, readings: Vec<Reading>) -> Vec<Finding> {
    let mut out = Output::default();
    ev.ingest(&readings, &mut out);
    out.findings
}

fn tick(ev: &mut Evaluator, now: DateTime<Utc>) -> Vec<Finding> {
    let mut out = Output::default();
    ev.tick(now, &mut out);
    out.findings
}

fn of(findings: &[Finding], rule: RuleName) -> Vec<&Finding> {
    findings.iter().filter(|f| f.rule == rule).collect()
}

const FLUE: &str = r#"
[[outlets]]
id = "DA001"
name = "1#烟囱"
kind = "flue_gas"
o2_reference = 6.0

[[outlets.limits]]
factor = "a21026"
max = 35.0
basis = "hour"
"#;

/// One hour of SO2 and O2 every 30 s from `start`, for the first `minutes`
/// minutes, then the hour closed. Returns every finding.
fn flue_hour(
    ev: &mut Evaluator,
    start: DateTime<Utc>,
    minutes: i64,
    so2: f64,
    o2: f64,
) -> Vec<Finding> {
    let mut all = Vec::new();
    for s in (0..minutes * 60).step_by(30) {
        let ts = start + Duration::seconds(s);
        // O2 after the pollutant, as some loggers order a frame.
        all.extend(feed(
            ev,
            vec![
                outlet("DA001", "a21026", ts, so2),
                outlet("DA001", "a19001", ts, o2),
            ],
        ));
    }
    all.extend(tick(ev, start + Duration::minutes(66)));
    all
}

/// O2 sent in its own frame just before the pollutant, with every O2 frame also
/// arriving a second time later (a replay overtaking queued commits, a resend):
/// the old value must not pair with the next pollutant value.
#[test]
fn a_resent_old_o2_value_does_not_correct_a_newer_pollutant_value() {
    let hour = |resend: bool| {
        let mut ev = evaluator(FLUE);
        let mut all = Vec::new();
        let mut previous: Option<Reading> = None;
        for m in 0..60 {
            let ts = t0() + Duration::minutes(m);
            // O2 alternates between 6 % and 10 %: a stale pairing shows.
            let o2 = outlet("DA001", "a19001", ts, if m % 2 == 0 { 6.0 } else { 10.0 });
            all.extend(feed(&mut ev, vec![o2.clone()]));
            if let (true, Some(p)) = (resend, previous.take()) {
                all.extend(feed(&mut ev, vec![p]));
            }
            all.extend(feed(
                &mut ev,
                vec![outlet("DA001", "a21026", ts + Duration::seconds(1), 30.0)],
            ));
            previous = Some(o2);
        }
        all.extend(tick(&mut ev, t0() + Duration::minutes(66)));
        of(&all, RuleName::Exceedance).first().and_then(|f| f.value)
    };
    let once = hour(false);
    assert!(once.is_some(), "30 mg/m³ at 10 % O2 corrects above 35");
    assert_eq!(hour(true), once);
}

/// A logger's minute averages (2051) sent twice count once, like real-time
/// values do.
#[test]
fn minute_averages_sent_twice_count_once() {
    let hour = |twice: bool| {
        let mut ev = evaluator(FLUE);
        let mut all = Vec::new();
        for m in 0..60 {
            let mut batch = vec![
                outlet("DA001", "a21026", t0() + Duration::minutes(m), 40.0),
                outlet("DA001", "a19001", t0() + Duration::minutes(m), 6.0),
            ];
            for r in &mut batch {
                r.kind = DataKind::Min;
                r.stat = Stat::Avg;
            }
            all.extend(feed(&mut ev, batch.clone()));
            if twice {
                all.extend(feed(&mut ev, batch));
            }
        }
        all.extend(tick(&mut ev, t0() + Duration::minutes(66)));
        let ex = of(&all, RuleName::Exceedance);
        assert_eq!(ex.len(), 1, "{all:#?}");
        (ex[0].value, ex[0].evidence.counts.clone())
    };
    let once = hour(false);
    assert_eq!(once.1.as_ref().map(|c| c.values), Some(60));
    assert_eq!(hour(true), once);
}

#[test]
fn hourly_mean_exactly_at_the_limit_is_not_an_exceedance() {
    let mut ev = evaluator(FLUE);
    let f = flue_hour(&mut ev, t0(), 60, 35.0, 6.0);
    assert!(of(&f, RuleName::Exceedance).is_empty(), "{f:#?}");
    assert_eq!(of(&f, RuleName::EarlyWarning).len(), 1, "35 ≥ 0.8 × 35");
}

#[test]
fn hourly_mean_just_above_the_limit_is_an_exceedance_with_evidence() {
    let mut ev = evaluator(FLUE);
    let f = flue_hour(&mut ev, t0(), 60, 35.01, 6.0);
    let ex = of(&f, RuleName::Exceedance);
    assert_eq!(ex.len(), 1, "{f:#?}");
    let e = ex[0];
    assert_eq!(e.window_start, t0());
    assert_eq!(e.window_end, t0() + Duration::hours(1));
    assert!((e.value.unwrap() - 35.01).abs() < 1e-9);
    assert_eq!(e.threshold, Some(35.0));
    let lim = e.evidence.limit.as_ref().unwrap();
    assert_eq!(lim.file, "enterprises/e1.toml");
    assert_eq!(lim.key, "outlets[0].limits[0]");
    assert_eq!(e.evidence.counts.as_ref().unwrap().valid_minutes, Some(60));
    assert_eq!(e.evidence.counts.as_ref().unwrap().valid_values, 120);
    // The evidence serialises (it goes to the store as JSON).
    let json = serde_json::to_string(e).unwrap();
    assert!(json.contains("\"rule\":\"exceedance\""), "{json}");
}

#[test]
fn an_hour_needs_45_valid_minutes() {
    let mut ev = evaluator(FLUE);
    let f = flue_hour(&mut ev, t0(), 44, 50.0, 6.0);
    assert!(
        of(&f, RuleName::Exceedance).is_empty(),
        "44 minutes judge nothing: {f:#?}"
    );
    let missing = of(&f, RuleName::MissingData);
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].value, Some(44.0));

    let mut ev = evaluator(FLUE);
    let f = flue_hour(&mut ev, t0(), 45, 50.0, 6.0);
    assert_eq!(of(&f, RuleName::Exceedance).len(), 1, "{f:#?}");
    assert!(of(&f, RuleName::MissingData).is_empty());
}

#[test]
fn flagged_values_are_counted_but_not_judged() {
    let mut ev = evaluator(FLUE);
    let mut all = Vec::new();
    for m in 0..60 {
        let ts = at(m * 60);
        let mut so2 = outlet("DA001", "a21026", ts, 80.0);
        // 16 minutes in calibration: 44 valid minutes remain.
        if m < 16 {
            so2.flag = Flag::C;
        }
        all.extend(feed(&mut ev, vec![so2, outlet("DA001", "a19001", ts, 6.0)]));
    }
    all.extend(tick(&mut ev, at(3960)));
    assert!(of(&all, RuleName::Exceedance).is_empty(), "{all:#?}");
    let m = of(&all, RuleName::MissingData);
    assert_eq!(m.len(), 1);
    let counts = m[0].evidence.counts.as_ref().unwrap();
    assert_eq!(counts.flags[5], 16, "C counted");
    assert_eq!(counts.valid_minutes, Some(44));
}

#[test]
fn o2_at_19_percent_is_not_judgeable_and_18_9_is_corrected() {
    // 5 mg/m³ at 18.9 % O2 → 5 × 15 / 2.1 = 35.71 > 35.
    let mut ev = evaluator(FLUE);
    let f = flue_hour(&mut ev, t0(), 60, 5.0, 18.9);
    let ex = of(&f, RuleName::Exceedance);
    assert_eq!(ex.len(), 1, "{f:#?}");
    assert!((ex[0].value.unwrap() - 5.0 * 15.0 / 2.1).abs() < 1e-9);
    assert!(of(&f, RuleName::NotJudgeable).is_empty());

    let mut ev = evaluator(FLUE);
    let f = flue_hour(&mut ev, t0(), 60, 5.0, 19.0);
    assert!(of(&f, RuleName::Exceedance).is_empty(), "{f:#?}");
    let nj = of(&f, RuleName::NotJudgeable);
    assert_eq!(nj.len(), 1, "raised once per hour, not per value");
    assert_eq!(nj[0].value, Some(19.0));
    assert_eq!(
        of(&f, RuleName::MissingData).len(),
        1,
        "no judgeable minute in the hour"
    );
    for x in &f {
        if let Some(v) = x.value {
            assert!(v.is_finite());
        }
    }
}

#[test]
fn the_corrected_value_crosses_the_limit_where_the_measured_one_does_not() {
    // 30 mg/m³ measured at 10 % O2: 30 × 15 / 11 = 40.9 > 35.
    let mut ev = evaluator(FLUE);
    let f = flue_hour(&mut ev, t0(), 60, 30.0, 10.0);
    let ex = of(&f, RuleName::Exceedance);
    assert_eq!(ex.len(), 1);
    assert!((ex[0].value.unwrap() - 30.0 * 15.0 / 11.0).abs() < 1e-9);
    assert!((ex[0].evidence.measured_average.unwrap() - 30.0).abs() < 1e-9);
    // The same measured value at the reference O2 is compliant.
    let mut ev = evaluator(FLUE);
    let f = flue_hour(&mut ev, t0(), 60, 30.0, 6.0);
    assert!(of(&f, RuleName::Exceedance).is_empty());
}

#[test]
fn a_running_mean_that_cannot_come_back_is_projected() {
    // 30 min at 30, then 40: mean if the rest stays at 40 is exactly 35 — not above.
    // With 41 it is 35.5.
    for (second_half, fires) in [(40.0, false), (41.0, true)] {
        let mut ev = evaluator(FLUE);
        let mut all = Vec::new();
        for m in 0..60 {
            let v = if m < 30 { 30.0 } else { second_half };
            all.extend(feed(
                &mut ev,
                vec![
                    outlet("DA001", "a21026", at(m * 60), v),
                    outlet("DA001", "a19001", at(m * 60), 6.0),
                ],
            ));
            if m == 32 {
                // Before the hour is over.
                assert_eq!(
                    !of(&all, RuleName::ProjectedExceedance).is_empty(),
                    fires,
                    "{second_half}: {all:#?}"
                );
            }
        }
    }
}

const WATER: &str = r#"
[[outlets]]
id = "DW001"
name = "总排口"
kind = "wastewater"

[[outlets.limits]]
factor = "w01001"
min = 6.0
max = 9.0
basis = "instant"

[[outlets.limits]]
factor = "w01018"
max = 100.0
basis = "day"
"#;

#[test]
fn ph_is_judged_per_value_against_its_range() {
    for (ph, fires) in [(5.99, true), (6.0, false), (9.0, false), (9.01, true)] {
        let mut ev = evaluator(WATER);
        let f = feed(
            &mut ev,
            vec![
                outlet("DW001", "w01001", at(0), 7.0),
                outlet("DW001", "w01001", at(60), ph),
            ],
        );
        let ex = of(&f, RuleName::Exceedance);
        assert_eq!(ex.len(), usize::from(fires), "pH {ph}: {f:#?}");
        if fires {
            assert_eq!(ex[0].value, Some(ph));
            assert_eq!(ex[0].window_start, at(60));
        }
        assert!(
            of(&f, RuleName::EarlyWarning).is_empty(),
            "a range has no 80 %"
        );
    }
}

#[test]
fn instant_limits_with_for_or_repeat_ignore_single_spikes() {
    let cfg = WATER.replace("basis = \"instant\"", "basis = \"instant\"\nfor = \"10m\"");
    let mut ev = evaluator(&cfg);
    // 9 minutes out of range, then back: suppressed.
    let mut f = Vec::new();
    for m in 0..10 {
        f.extend(feed(
            &mut ev,
            vec![outlet("DW001", "w01001", at(m * 60), 9.5)],
        ));
    }
    f.extend(feed(&mut ev, vec![outlet("DW001", "w01001", at(600), 7.0)]));
    assert!(of(&f, RuleName::Exceedance).is_empty(), "{f:#?}");
    // 10 minutes out of range: raised once, for the episode.
    for m in 11..=21 {
        f.extend(feed(
            &mut ev,
            vec![outlet("DW001", "w01001", at(m * 60), 9.5)],
        ));
    }
    let ex = of(&f, RuleName::Exceedance);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].window_start, at(660));
    assert_eq!(ex[0].window_end, at(1260));

    let cfg = WATER.replace("basis = \"instant\"", "basis = \"instant\"\nrepeat = 3");
    let mut ev = evaluator(&cfg);
    let f = feed(
        &mut ev,
        vec![
            outlet("DW001", "w01001", at(0), 5.0),
            outlet("DW001", "w01001", at(60), 5.0),
            outlet("DW001", "w01001", at(120), 6.5),
        ],
    );
    assert!(of(&f, RuleName::Exceedance).is_empty());
    let f = feed(
        &mut ev,
        (3..6)
            .map(|m| outlet("DW001", "w01001", at(m * 60), 5.0))
            .collect(),
    );
    assert_eq!(of(&f, RuleName::Exceedance).len(), 1);
}

/// A local day (from 00:00 Shanghai) of COD and flow, one value a minute: odd hours C=150 at Q=30, even hours
/// C=50 at Q=10. Flow-weighted mean 125 > 100; plain mean exactly 100.
fn water_day(with_flow: bool) -> Vec<Finding> {
    let mut ev = evaluator(WATER);
    let mut all = Vec::new();
    for m in 0..24 * 60 {
        let odd = (m / 60) % 2 == 1;
        let (c, q) = if odd { (150.0, 30.0) } else { (50.0, 10.0) };
        let ts = at(m * 60 - 8 * 3600);
        let mut batch = vec![outlet("DW001", "w01018", ts, c)];
        if with_flow {
            batch.push(outlet("DW001", "w00000", ts, q));
        }
        all.extend(feed(&mut ev, batch));
    }
    all.extend(tick(&mut ev, at(16 * 3600 + 600)));
    all
}

#[test]
fn wastewater_daily_mean_is_flow_weighted_when_flow_is_measured() {
    let f = water_day(true);
    let ex = of(&f, RuleName::Exceedance);
    assert_eq!(ex.len(), 1, "{:#?}", of(&f, RuleName::MissingData));
    assert!((ex[0].value.unwrap() - 125.0).abs() < 1e-9);
    assert!((ex[0].evidence.measured_average.unwrap() - 100.0).abs() < 1e-9);
    assert_eq!(ex[0].window_start, t0() - Duration::hours(8), "local day");

    let f = water_day(false);
    assert!(
        of(&f, RuleName::Exceedance).is_empty(),
        "plain mean 100 is at the limit"
    );
}

#[test]
fn a_value_constant_for_4_hours_is_flagged_but_not_for_3h59() {
    let mut ev = evaluator(FLUE);
    let mut f = Vec::new();
    for m in 0..=239 {
        f.extend(feed(
            &mut ev,
            vec![outlet("DA001", "a19001", at(m * 60), 8.5)],
        ));
    }
    assert!(of(&f, RuleName::ConstantValue).is_empty(), "3 h 59 min");
    // Equal within the epsilon, not identical: the evidence shows both as read.
    f.extend(feed(
        &mut ev,
        vec![outlet("DA001", "a19001", at(240 * 60), 8.5 + 1e-9)],
    ));
    let c = of(&f, RuleName::ConstantValue);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].window_start, t0());
    assert_eq!(c[0].window_end, at(4 * 3600));
    let shown: Vec<(DateTime<Utc>, f64)> = c[0]
        .evidence
        .values
        .iter()
        .map(|v| (v.ts, v.value))
        .collect();
    assert_eq!(shown, [(t0(), 8.5), (at(4 * 3600), 8.5 + 1e-9)]);
    // Still constant: not raised again.
    f.extend(feed(
        &mut ev,
        vec![outlet("DA001", "a19001", at(241 * 60), 8.5)],
    ));
    assert_eq!(of(&f, RuleName::ConstantValue).len(), 1);
}

#[test]
fn zero_negative_and_over_range_values() {
    let cfg = FLUE.replace(
        "o2_reference = 6.0",
        "o2_reference = 6.0\nanalyzers = [{ factor = \"a21026\", range = 200.0 }]",
    );
    let mut ev = evaluator(&cfg);
    let f = feed(
        &mut ev,
        vec![
            outlet("DA001", "a19001", at(0), 6.0),
            outlet("DA001", "a21026", at(0), 200.0),
        ],
    );
    assert!(f.is_empty(), "at the range, positive: {f:#?}");
    // A value from the logger's backlog (HJ 212-2025 RF=1) is judged like any
    // other, and its evidence says where it came from.
    let mut resent = outlet("DA001", "a21026", at(60), 200.1);
    resent.source.resend = true;
    let f = feed(
        &mut ev,
        vec![outlet("DA001", "a19001", at(60), 6.0), resent],
    );
    let over = of(&f, RuleName::OverRange);
    assert_eq!(over.len(), 1);
    assert!(over[0].evidence.values[0].resend);
    let json = serde_json::to_value(&over[0].evidence).unwrap();
    assert_eq!(json["values"][0]["resend"], true);
    let f = feed(
        &mut ev,
        vec![
            outlet("DA001", "a19001", at(120), 6.0),
            outlet("DA001", "a21026", at(120), 0.0),
        ],
    );
    let zero = of(&f, RuleName::ZeroValue);
    assert_eq!(zero.len(), 1);
    let json = serde_json::to_value(&zero[0].evidence).unwrap();
    assert!(
        json["values"][0].get("resend").is_none(),
        "written only when true"
    );
    let f = feed(
        &mut ev,
        vec![
            outlet("DA001", "a19001", at(180), 6.0),
            outlet("DA001", "a21026", at(180), 0.0),
        ],
    );
    assert!(f.is_empty(), "once per hour");
    let f = feed(
        &mut ev,
        vec![
            outlet("DA001", "a19001", at(240), 6.0),
            outlet("DA001", "a21026", at(240), -0.5),
        ],
    );
    assert_eq!(of(&f, RuleName::NegativeValue).len(), 1);
    // Zero flow is not a zero-value anomaly.
    let f = feed(&mut ev, vec![outlet("DA001", "a00000", at(300), 0.0)]);
    assert!(f.is_empty());
}

#[test]
fn offline_after_30_minutes_of_silence() {
    let mut ev = evaluator(FLUE);
    tick(&mut ev, at(0));
    feed(&mut ev, vec![outlet("DA001", "a19001", at(60), 6.0)]);
    let f = tick(&mut ev, at(60 + 29 * 60 + 59));
    assert!(of(&f, RuleName::Offline).is_empty());
    let f = tick(&mut ev, at(60 + 30 * 60));
    let off = of(&f, RuleName::Offline);
    assert_eq!(off.len(), 1);
    assert_eq!(off[0].window_start, at(60));
    assert!(
        of(&tick(&mut ev, at(7200)), RuleName::Offline).is_empty(),
        "raised once"
    );
    feed(&mut ev, vec![outlet("DA001", "a19001", at(7300), 6.0)]);
    assert_eq!(
        of(&tick(&mut ev, at(7300 + 1800)), RuleName::Offline).len(),
        1,
        "a new silence"
    );
}

/// A logger that sends only hourly means stamps each with its hour's start and
/// sends it after the hour: it is alive until the hour's end, not its start.
#[test]
fn an_hourly_only_logger_is_offline_from_the_end_of_its_last_hour() {
    let mut ev = evaluator(FLUE);
    tick(&mut ev, at(0));
    let mut hour = outlet("DA001", "a19001", t0(), 6.0);
    hour.kind = DataKind::Hour;
    hour.stat = Stat::Avg;
    feed(&mut ev, vec![hour]);
    // Received just after 01:00; 30 minutes after the hour's *start* is no silence.
    assert!(of(&tick(&mut ev, at(3600 + 60)), RuleName::Offline).is_empty());
    assert!(of(&tick(&mut ev, at(3600 + 29 * 60 + 59)), RuleName::Offline).is_empty());
    let off = tick(&mut ev, at(3600 + 30 * 60));
    let off = of(&off, RuleName::Offline);
    assert_eq!(off.len(), 1, "30 minutes after the hour the mean covered");
    assert_eq!(off[0].window_start, at(3600));
}

#[test]
fn supplied_and_computed_hourly_means_are_cross_checked() {
    let mut ev = evaluator(FLUE);
    let mut f = flue_hour(&mut ev, t0(), 60, 20.0, 6.0);
    let mut hour = outlet("DA001", "a21026", t0(), 22.0);
    hour.kind = DataKind::Hour;
    hour.stat = Stat::Avg;
    let mut o2 = outlet("DA001", "a19001", t0(), 6.0);
    o2.kind = DataKind::Hour;
    o2.stat = Stat::Avg;
    f.extend(feed(&mut ev, vec![hour.clone(), o2.clone()]));
    let m = of(&f, RuleName::DataMismatch);
    assert_eq!(m.len(), 1, "22 vs 20 is 9 % apart: {f:#?}");
    // 20.9 vs 20 is within 5 %.
    let mut ev = evaluator(FLUE);
    let mut f = flue_hour(&mut ev, t0(), 60, 20.0, 6.0);
    hour.value = 20.9;
    f.extend(feed(&mut ev, vec![hour, o2]));
    assert!(of(&f, RuleName::DataMismatch).is_empty());
}

#[test]
fn a_supplied_hourly_mean_is_judged_on_arrival() {
    let mut ev = evaluator(FLUE);
    let mut hour = outlet("DA001", "a21026", t0(), 36.0);
    hour.kind = DataKind::Hour;
    hour.stat = Stat::Avg;
    let mut o2 = outlet("DA001", "a19001", t0(), 6.0);
    o2.kind = DataKind::Hour;
    o2.stat = Stat::Avg;
    let f = feed(&mut ev, vec![hour, o2]);
    let ex = of(&f, RuleName::Exceedance);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].evidence.aggregate.as_deref(), Some("supplied"));
}

/// With `supplied` aggregates (the default) the logger's valid hourly value is
/// the hour's value: minutes lost on the way do not make the hour missing. When
/// the value arrives after the hour closed short (a backfilled outage), the hour
/// is reported for re-judging so that its `missing_data` is superseded.
#[test]
fn a_supplied_hourly_mean_makes_a_short_hour_valid() {
    let hourly = |ts| {
        let mut v = vec![
            outlet("DA001", "a21026", ts, 20.0),
            outlet("DA001", "a19001", ts, 6.0),
        ];
        for r in &mut v {
            r.kind = DataKind::Hour;
            r.stat = Stat::Avg;
        }
        v
    };
    // 20 minutes of SO2 and O2, the logger's hourly values, then the close.
    let short_then_hourly = |ev: &mut Evaluator| {
        let mut f = Vec::new();
        for s in (0..20 * 60).step_by(30) {
            let ts = at(s);
            f.extend(feed(
                ev,
                vec![
                    outlet("DA001", "a21026", ts, 20.0),
                    outlet("DA001", "a19001", ts, 6.0),
                ],
            ));
        }
        f.extend(feed(ev, hourly(t0())));
        f.extend(tick(ev, t0() + Duration::minutes(66)));
        f
    };
    // Before the hour closes: no missing_data.
    let mut ev = evaluator(FLUE);
    let f = short_then_hourly(&mut ev);
    assert!(of(&f, RuleName::MissingData).is_empty(), "{f:#?}");

    // After: the hour was missing, and is reopened by its hourly value.
    let mut ev = evaluator(FLUE);
    let f = flue_hour(&mut ev, t0(), 20, 20.0, 6.0);
    assert_eq!(of(&f, RuleName::MissingData).len(), 1);
    let mut out = Output::default();
    ev.ingest(&hourly(t0()), &mut out);
    let hours: Vec<_> = out
        .reopened
        .iter()
        .filter(|r| r.factor.as_ref() == "a21026")
        .map(|r| r.hour)
        .collect();
    assert_eq!(hours, [Some(t0())], "{:#?}", out.reopened);

    // A valid computed hour is not reopened by the logger's value (it is
    // cross-checked instead), and with `computed` aggregates the minutes decide.
    let mut ev = evaluator(FLUE);
    flue_hour(&mut ev, t0(), 60, 20.0, 6.0);
    let mut out = Output::default();
    ev.ingest(&hourly(t0()), &mut out);
    assert!(
        out.reopened.iter().all(|r| r.hour.is_none()),
        "{:#?}",
        out.reopened
    );
    let mut ev = evaluator(&FLUE.replace(
        "o2_reference = 6.0",
        "o2_reference = 6.0\naggregates = \"computed\"",
    ));
    let f = short_then_hourly(&mut ev);
    assert_eq!(of(&f, RuleName::MissingData).len(), 1, "{f:#?}");
}

#[test]
fn maintenance_flags_for_more_than_a_tenth_of_the_day() {
    let mut ev = evaluator(FLUE);
    let mut f = Vec::new();
    // 145 minutes flagged M (> 144 = 10 % of 1440).
    for (n, m) in (0..145).enumerate() {
        let mut r = outlet("DA001", "a21026", at(m * 60), 10.0);
        r.flag = Flag::M;
        let _ = n;
        f.extend(feed(&mut ev, vec![r]));
    }
    f.extend(tick(&mut ev, at(3 * 3600 + 600)));
    assert_eq!(
        of(&f, RuleName::MaintenanceOveruse).len(),
        1,
        "{:#?}",
        f.iter().map(|x| x.rule).collect::<Vec<_>>()
    );

    let mut ev = evaluator(FLUE);
    let mut f = Vec::new();
    for m in 0..144 {
        let mut r = outlet("DA001", "a21026", at(m * 60), 10.0);
        r.flag = Flag::M;
        f.extend(feed(&mut ev, vec![r]));
    }
    f.extend(tick(&mut ev, at(3 * 3600 + 600)));
    assert!(of(&f, RuleName::MaintenanceOveruse).is_empty());
}

#[test]
fn zero_flow_while_concentrations_change() {
    let mut ev = evaluator(WATER);
    let mut f = Vec::new();
    for m in 0..60 {
        f.extend(feed(
            &mut ev,
            vec![
                outlet("DW001", "w00000", at(m * 60), 0.0),
                outlet("DW001", "w01018", at(m * 60), 40.0 + (m % 3) as f64),
            ],
        ));
    }
    f.extend(tick(&mut ev, at(3600 + 600)));
    assert_eq!(of(&f, RuleName::FlowMismatch).len(), 1);

    let mut ev = evaluator(WATER);
    let mut f = Vec::new();
    for m in 0..60 {
        f.extend(feed(
            &mut ev,
            vec![
                outlet("DW001", "w00000", at(m * 60), 0.0),
                outlet("DW001", "w01018", at(m * 60), 40.0),
            ],
        ));
    }
    f.extend(tick(&mut ev, at(3600 + 600)));
    assert!(
        of(&f, RuleName::FlowMismatch).is_empty(),
        "flat concentration, no discharge"
    );
}

const POWER: &str = r#"
[[meters]]
id = "M-PROD"
name = "生产线"
role = "production"
baseline_kw = 500.0

[[meters]]
id = "M-TREAT"
name = "治污设施"
role = "treatment"

[[linkages]]
id = "line1"
production = ["M-PROD"]
production_on_kw = 50.0
treatment = ["M-TREAT"]
treatment_normal_kw = 100.0
grace = "15m"

[[orders]]
id = "orange"
kind = "limit"
start = 2026-11-27T16:00:00+08:00
end = 2026-11-27T18:00:00+08:00
allowed_share = 0.6
grace = "15m"
"#;

/// Production at 400 kW every minute from `from` to `to` (minutes), treatment at
/// `treat(m)` kW.
fn power(
    ev: &mut Evaluator,
    from: i64,
    to: i64,
    prod: impl Fn(i64) -> f64,
    treat: impl Fn(i64) -> f64,
) -> Vec<Finding> {
    let mut f = Vec::new();
    for m in from..to {
        f.extend(feed(
            ev,
            vec![
                meter("M-PROD", at(m * 60), prod(m)),
                meter("M-TREAT", at(m * 60), treat(m)),
            ],
        ));
    }
    f
}

#[test]
fn treatment_off_longer_than_the_grace_period() {
    // Off for minutes 10..24 (14 min confirmed), back on at 25.
    let mut ev = evaluator(POWER);
    let f = power(
        &mut ev,
        0,
        40,
        |_| 400.0,
        |m| if (10..25).contains(&m) { 2.0 } else { 100.0 },
    );
    assert!(of(&f, RuleName::TreatmentNotRunning).is_empty(), "{f:#?}");
    // Off for minutes 10..26: confirmed 15 min at minute 25.
    let mut ev = evaluator(POWER);
    let f = power(
        &mut ev,
        0,
        40,
        |_| 400.0,
        |m| if (10..26).contains(&m) { 2.0 } else { 100.0 },
    );
    let nr = of(&f, RuleName::TreatmentNotRunning);
    assert_eq!(nr.len(), 1, "{f:#?}");
    assert_eq!(nr[0].window_start, at(600));
    assert_eq!(nr[0].window_end, at(1500));
    // Underpowered (30 % of normal) is its own rule; production off is no finding.
    let mut ev = evaluator(POWER);
    let f = power(&mut ev, 0, 40, |_| 400.0, |_| 30.0);
    assert_eq!(of(&f, RuleName::TreatmentUnderpowered).len(), 1);
    let mut ev = evaluator(POWER);
    let f = power(&mut ev, 0, 40, |_| 10.0, |_| 0.0);
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn order_windows_start_and_end() {
    // The order runs 08:00–10:00 UTC. Production at 400 kW (> 0.6 × 500) from
    // 07:00 to 11:00: violation from the window's start.
    let mut ev = evaluator(POWER);
    let f = power(&mut ev, 7 * 60, 11 * 60, |_| 400.0, |_| 100.0);
    let v = of(&f, RuleName::OrderViolation);
    assert_eq!(v.len(), 1, "{f:#?}");
    assert_eq!(v[0].window_start, at(8 * 3600));
    assert_eq!(v[0].window_end, at(8 * 3600 + 900));
    // Over the limit only before and after the window: nothing.
    let mut ev = evaluator(POWER);
    let f = power(
        &mut ev,
        7 * 60,
        11 * 60,
        |m| {
            if (8 * 60..10 * 60).contains(&m) {
                250.0
            } else {
                400.0
            }
        },
        |_| 100.0,
    );
    assert!(of(&f, RuleName::OrderViolation).is_empty(), "{f:#?}");
    // Over the limit for the last 10 minutes of the window only: not confirmed
    // for the grace period before the window ends.
    let mut ev = evaluator(POWER);
    let f = power(&mut ev, 9 * 60 + 50, 11 * 60, |_| 400.0, |_| 100.0);
    assert!(of(&f, RuleName::OrderViolation).is_empty(), "{f:#?}");
}

const CAP: &str = r#"
[[outlets]]
id = "DA001"
name = "1#烟囱"
kind = "flue_gas"
o2_reference = 6.0

[[emission_caps]]
factor = "a21026"
tonnes_per_year = 1.0
"#;

fn cou(ts: DateTime<Utc>, kg: f64) -> Reading {
    let mut r = outlet("DA001", "a21026", ts, kg);
    r.kind = DataKind::Hour;
    r.stat = Stat::Cou;
    r
}

#[test]
fn emission_totals_cross_80_percent() {
    let mut ev = evaluator(CAP);
    let mut f = feed(&mut ev, (0..7).map(|h| cou(at(h * 3600), 100.0)).collect());
    f.extend(feed(&mut ev, vec![cou(at(7 * 3600), 99.0)]));
    assert!(
        of(&f, RuleName::EmissionTotal).is_empty(),
        "0.799 t of 1 t: {f:#?}"
    );
    let f = feed(&mut ev, vec![cou(at(8 * 3600), 2.0)]);
    let t = of(&f, RuleName::EmissionTotal);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].detail, "80%");
    assert!((t[0].value.unwrap() - 0.801).abs() < 1e-9);
    assert!((ev.emission_total("E1", "a21026").unwrap() - 0.801).abs() < 1e-9);
    // A resend of an hour replaces it, never adds to it.
    feed(&mut ev, vec![cou(at(8 * 3600), 2.0)]);
    assert!((ev.emission_total("E1", "a21026").unwrap() - 0.801).abs() < 1e-9);
}

#[test]
fn emission_from_concentration_times_flow() {
    let mut ev = evaluator(CAP);
    let mut out = Output::default();
    for m in 0..60 {
        let ts = at(m * 60);
        ev.ingest(
            &[
                outlet("DA001", "a21026", ts, 50.0),
                outlet("DA001", "a19001", ts, 6.0),
                outlet("DA001", "a00000", ts, 100.0),
            ],
            &mut out,
        );
    }
    ev.tick(at(3600 + 600), &mut out);
    // 50 mg/m³ × 100 m³/s × 3600 s × 1e-9 = 0.018 t.
    assert_eq!(out.emissions.len(), 1);
    assert!(
        (out.emissions[0].tonnes - 0.018).abs() < 1e-12,
        "{:?}",
        out.emissions
    );
    assert_eq!(out.emissions[0].source, "computed");
}

#[test]
fn zero_values_while_production_is_metered_off_are_not_anomalies() {
    let cfg = format!("{FLUE}{POWER}");
    let mut ev = evaluator(&cfg);
    let f = feed(
        &mut ev,
        vec![
            meter("M-PROD", at(0), 5.0),
            meter("M-TREAT", at(0), 0.0),
            outlet("DA001", "a19001", at(30), 20.5),
            outlet("DA001", "a21026", at(30), 0.0),
        ],
    );
    assert!(
        of(&f, RuleName::ZeroValue).is_empty(),
        "production off: {f:#?}"
    );
    let f = feed(
        &mut ev,
        vec![
            meter("M-PROD", at(3600), 400.0),
            meter("M-TREAT", at(3600), 100.0),
            outlet("DA001", "a19001", at(3630), 6.0),
            outlet("DA001", "a21026", at(3630), 0.0),
        ],
    );
    assert_eq!(
        of(&f, RuleName::ZeroValue).len(),
        1,
        "production running: {f:#?}"
    );
}
