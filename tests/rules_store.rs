//! The rules engine with a real store: findings and emission hours on both
//! backends, and a restart in the middle of an hour judging that hour exactly as an
//! uninterrupted run does (invariant 4).

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use pollwatch::clock::ManualClock;
use pollwatch::config::Config;
use pollwatch::model::{DataKind, Flag, Id, Location, Protocol, Reading, SourceRef, Stat};
use pollwatch::rules::task::{RulesTask, TaskOptions};
use pollwatch::rules::{EmissionHour, Evaluator, Finding, Options, Output, Plan, RuleName};
use pollwatch::store::{Batch, FindingQuery, Store, StoreOptions, Writer, WriterOptions};

both_backends!(
    findings_are_stored_once_by_natural_key,
    cou_replaces_an_estimate_never_the_reverse,
    restart_mid_hour_gives_the_same_hourly_verdict,
    a_plan_swap_mid_hour_replays_only_what_changed,
);

/// E1, a flue-gas outlet with SO2 ≤ 35 mg/m³ hourly at 6 % O2.
const ENTERPRISE: &str = common::alerting::FLUE_GAS_ENTERPRISE;

fn config() -> Config {
    config_of(&[ENTERPRISE.to_string()])
}

fn config_of(enterprises: &[String]) -> Config {
    let dir = tempfile::tempdir().unwrap();
    common::rules_config(dir.path(), "", enterprises)
}

fn plan_rx(config: &Config) -> tokio::sync::watch::Receiver<Arc<Plan>> {
    tokio::sync::watch::channel(Arc::new(Plan::new(config))).1
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap()
}

fn reading(factor: &str, ts: DateTime<Utc>, value: f64) -> Reading {
    Reading {
        enterprise: Id::from("E1"),
        location: Location::Outlet("DA001".into()),
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
            device: "MN1".into(),
            resend: false,
        },
    }
}

/// One upload every 30 s: SO2 and O2 varying so that the corrected hourly mean
/// lands just above 35 and every minute matters.
fn upload(i: i64) -> Vec<Reading> {
    let ts = t0() + Duration::seconds(30 * i);
    let so2 = 30.0 + (i % 7) as f64 * 0.9;
    let o2 = 6.5 + (i % 5) as f64 * 0.25;
    let mut r = vec![reading("a21026", ts, so2), reading("a19001", ts, o2)];
    // A few minutes in calibration: counted, excluded.
    if (40..44).contains(&i) {
        r[0].flag = Flag::C;
    }
    r
}

fn finding(rule: RuleName, start: DateTime<Utc>, value: f64) -> Finding {
    Finding {
        rule,
        severity: pollwatch::rules::Severity::Violation,
        enterprise: "E1".into(),
        location: Some(Location::Outlet("DA001".into())),
        factor: "a21026".into(),
        window_start: start,
        window_end: start + Duration::hours(1),
        at: start + Duration::hours(1),
        value: Some(value),
        threshold: Some(35.0),
        detail: "outlets[0].limits[0]".into(),
        message: "test".into(),
        evidence: Default::default(),
    }
}

async fn findings_are_stored_once_by_natural_key(url: &str) {
    let store = Store::open(url, &StoreOptions::default()).await.unwrap();
    let a = finding(RuleName::Exceedance, t0(), 36.0);
    let mut b = finding(RuleName::Exceedance, t0() + Duration::hours(1), 37.0);
    b.evidence = pollwatch::rules::Evidence::default().param("x", 1);
    let ids = store
        .insert_findings(&[a.clone(), b.clone()], t0())
        .await
        .unwrap();
    assert!(ids.iter().all(Option::is_some), "{ids:?}");
    // A replay raises `a` again, with a different value: the first stands.
    let mut again = a.clone();
    again.value = Some(99.0);
    let ids2 = store.insert_findings(&[again], t0()).await.unwrap();
    assert_eq!(ids2, vec![None]);
    let all = store
        .findings(&FindingQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].finding, b, "newest first, evidence round-trips");
    assert_eq!(all[1].finding, a);
    let only = store
        .findings(&FindingQuery {
            rule: Some("exceedance".into()),
            after_id: ids[0],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(Some(only[0].id), ids[1]);
}

async fn cou_replaces_an_estimate_never_the_reverse(url: &str) {
    let store = Store::open(url, &StoreOptions::default()).await.unwrap();
    let h = |tonnes, source| EmissionHour {
        enterprise: "E1".into(),
        outlet: "DA001".into(),
        factor: "a21026".into(),
        hour: t0(),
        tonnes,
        source,
    };
    store.upsert_emissions(&[h(0.5, "computed")]).await.unwrap();
    store.upsert_emissions(&[h(0.25, "cou")]).await.unwrap();
    store
        .upsert_emissions(&[h(0.75, "computed")])
        .await
        .unwrap();
    let sums = store
        .emission_sums(t0() - Duration::days(1), t0() + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(sums.len(), 1);
    assert_eq!(sums[0].tonnes, 0.25);
}

/// The hour's judgement by an evaluator that saw every upload without a break.
fn uninterrupted() -> Vec<Finding> {
    let mut ev = Evaluator::new(Plan::new(&config()), Options::default());
    let mut out = Output::default();
    for i in 0..120 {
        ev.ingest(&upload(i), &mut out);
    }
    ev.tick(t0() + Duration::minutes(66), &mut out);
    out.findings
}

/// A store writer whose commits feed a rules task, as in the daemon.
fn pipeline(
    store: &Store,
    clock: &Arc<ManualClock>,
    plans: tokio::sync::watch::Receiver<Arc<Plan>>,
) -> (Writer, pollwatch::store::WriterTask, RulesTask) {
    common::rules_pipeline(
        store,
        clock,
        plans,
        TaskOptions {
            tick: StdDuration::from_millis(20),
            ..TaskOptions::default()
        },
        None,
    )
}

async fn run_daemon_part(
    url: &str,
    clock: Arc<ManualClock>,
    uploads: std::ops::Range<i64>,
    end_at: DateTime<Utc>,
) {
    let store = Store::open(url, &StoreOptions::default()).await.unwrap();
    let (writer, wtask, rules) = pipeline(&store, &clock, plan_rx(&config()));
    for i in uploads {
        clock.set(t0() + Duration::seconds(30 * i + 1));
        writer.write(Batch::readings(upload(i))).await.unwrap();
    }
    clock.set(end_at);
    drop(writer);
    wtask.finish(StdDuration::from_secs(5)).await;
    rules.join(StdDuration::from_secs(10)).await;
    store.close().await;
}

async fn restart_mid_hour_gives_the_same_hourly_verdict(url: &str) {
    let expected = uninterrupted();
    let ex: Vec<&Finding> = expected
        .iter()
        .filter(|f| f.rule == RuleName::Exceedance)
        .collect();
    assert_eq!(
        ex.len(),
        1,
        "the scenario must produce a verdict: {expected:#?}"
    );

    let clock = Arc::new(ManualClock::new(t0()));
    // First life: 27 minutes of data, then a stop.
    run_daemon_part(url, clock.clone(), 0..54, t0() + Duration::minutes(27)).await;
    // Second life: rebuilds from the store, receives the rest of the hour.
    run_daemon_part(url, clock.clone(), 54..120, t0() + Duration::minutes(66)).await;

    let store = Store::open(url, &StoreOptions::default()).await.unwrap();
    let stored = store
        .findings(&FindingQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let key = |f: &Finding| (f.rule, f.detail.clone(), f.window_start);
    let mut got: Vec<_> = stored.iter().map(|s| key(&s.finding)).collect();
    let mut want: Vec<_> = expected.iter().map(key).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "same findings as an uninterrupted run");
    let stored_ex = stored
        .iter()
        .find(|s| s.finding.rule == RuleName::Exceedance)
        .unwrap();
    assert_eq!(stored_ex.finding.value, ex[0].value, "same hourly mean");
    assert_eq!(
        stored_ex.finding.evidence.counts, ex[0].evidence.counts,
        "same counts"
    );
}

/// A tap nobody drains never holds up ingestion: the writer keeps committing,
/// counts what it could not offer, and the numbers show the receiver the gap.
#[tokio::test]
async fn a_full_tap_never_blocks_the_writer_and_shows_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let (tap, mut rx) = tokio::sync::mpsc::channel(1);
    let clock = Arc::new(ManualClock::new(t0()));
    let (writer, wtask) = Writer::spawn(
        store.clone(),
        WriterOptions {
            tap: Some(tap),
            ..WriterOptions::default()
        },
        clock,
    );
    for i in 0..4 {
        tokio::time::timeout(
            StdDuration::from_secs(5),
            writer.write(Batch::readings(upload(i))),
        )
        .await
        .expect("a full tap must not block the writer")
        .unwrap();
    }
    assert_eq!(
        writer
            .stats()
            .tap_lagged
            .load(std::sync::atomic::Ordering::Relaxed),
        6,
        "three commits of two readings not offered"
    );
    let first = rx.recv().await.unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(first.readings.len(), 2);
    writer.write(Batch::readings(upload(4))).await.unwrap();
    let next = rx.recv().await.unwrap();
    assert_eq!(next.seq, 5, "the receiver sees that 2–4 are missing");
    // Dropped just before shutdown, with no batch after them: the writer ends
    // with an empty marker numbered after them, so the gap still shows (the rules
    // engine then judges them from the store before its final tick).
    for i in 5..7 {
        writer.write(Batch::readings(upload(i))).await.unwrap();
    }
    drop(writer);
    let finishing = tokio::spawn(wtask.finish(StdDuration::from_secs(5)));
    let delivered = rx.recv().await.unwrap();
    assert_eq!((delivered.seq, delivered.readings.len()), (6, 2));
    let marker = rx.recv().await.unwrap();
    assert_eq!(
        (marker.seq, marker.readings.len()),
        (8, 0),
        "7 was dropped: the marker shows it"
    );
    assert!(rx.recv().await.is_none());
    finishing.await.unwrap();
    // Every reading is in the store all the same.
    let stored = store
        .readings(&pollwatch::store::ReadingQuery::new(
            "E1",
            pollwatch::model::LocationKind::Outlet,
            "DA001",
        ))
        .await
        .unwrap();
    assert_eq!(stored.len(), 14);
}

/// A reload (or an order) mid-hour: E1's limit changes, E2's config does not.
/// E1 is replayed from the store and judged against the new limit with exactly
/// the counts of an uninterrupted run (nothing judged twice); E2 keeps its state
/// and is not replayed.
async fn a_plan_swap_mid_hour_replays_only_what_changed(url: &str) {
    let expected = uninterrupted();
    let want = expected
        .iter()
        .find(|f| f.rule == RuleName::Exceedance)
        .expect("the scenario raises an exceedance");
    let e2 = ENTERPRISE.replace("id = \"E1\"", "id = \"E2\"");
    let before = config_of(&[ENTERPRISE.to_string(), e2.clone()]);
    let after = config_of(&[ENTERPRISE.replace("max = 35.0", "max = 34.0"), e2]);

    let clock = Arc::new(ManualClock::new(t0()));
    let store = Store::open(url, &StoreOptions::default()).await.unwrap();
    let (plans, plans_rx) = tokio::sync::watch::channel(Arc::new(Plan::new(&before)));
    let (writer, wtask, rules) = pipeline(&store, &clock, plans_rx);
    let both = |i: i64| {
        let mut r = upload(i);
        let mut r2 = r.clone();
        for x in &mut r2 {
            x.enterprise = Id::from("E2");
        }
        r.extend(r2);
        r
    };
    for i in 0..120 {
        clock.set(t0() + Duration::seconds(30 * i + 1));
        writer.write(Batch::readings(both(i))).await.unwrap();
        if i == 53 {
            plans.send(Arc::new(Plan::new(&after))).unwrap();
            let deadline = std::time::Instant::now() + StdDuration::from_secs(20);
            while rules
                .stats
                .replans
                .load(std::sync::atomic::Ordering::Relaxed)
                == 0
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "plan swap not applied"
                );
                tokio::time::sleep(StdDuration::from_millis(5)).await;
            }
        }
    }
    clock.set(t0() + Duration::minutes(66));
    drop(writer);
    wtask.finish(StdDuration::from_secs(5)).await;
    let stats = rules.stats.clone();
    rules.join(StdDuration::from_secs(10)).await;
    assert_eq!(
        stats.replayed.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "only E1 is replayed"
    );

    let stored = store
        .findings(&FindingQuery {
            rule: Some("exceedance".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let of = |e: &str| {
        let v: Vec<_> = stored
            .iter()
            .filter(|s| &*s.finding.enterprise == e)
            .collect();
        assert_eq!(v.len(), 1, "{e}: one exceedance: {stored:#?}");
        v[0].finding.clone()
    };
    let (e1, e2) = (of("E1"), of("E2"));
    assert_eq!(e1.threshold, Some(34.0), "E1 judged by the new limit");
    assert_eq!(e2.threshold, Some(35.0), "E2 still by its own");
    for f in [&e1, &e2] {
        assert_eq!(f.value, want.value, "{}: same hourly mean", f.enterprise);
        assert_eq!(
            f.evidence.counts, want.evidence.counts,
            "{}: nothing counted twice",
            f.enterprise
        );
    }
    store.close().await;
}
/// A plan swap or a gap recovery replays from the store while commits already
/// queued on the tap follow, in order or behind newer readings: the overlap must
/// count once, and an old O2 value must not pair with a newer pollutant value.
#[test]
fn readings_judged_twice_count_once() {
    let mut ev = Evaluator::new(Plan::new(&config()), Options::default());
    let mut out = Output::default();
    for i in 0..120 {
        ev.ingest(&upload(i), &mut out);
        if i < 54 {
            ev.ingest(&upload(i), &mut out);
        }
        // A replay overtaking commits still queued: older readings come again
        // after newer ones.
        if i == 80 {
            for j in 60..80 {
                ev.ingest(&upload(j), &mut out);
            }
        }
    }
    ev.tick(t0() + Duration::minutes(66), &mut out);
    let verdict = |f: &[Finding]| {
        f.iter()
            .find(|f| f.rule == RuleName::Exceedance)
            .map(|f| (f.value, f.evidence.counts.clone()))
    };
    let once = verdict(&uninterrupted());
    assert!(once.is_some());
    assert_eq!(verdict(&out.findings), once);
}

/// An hour that closes with an exceedance and an emission hour, while the
/// emission table cannot be written: the finding is stored once and still
/// reaches the alerts engine (a retry of both writes found it stored already and
/// handed nothing on).
#[tokio::test]
async fn a_failed_emissions_write_does_not_hold_back_the_findings() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let cfg = config_of(&[format!(
        "{ENTERPRISE}\n[[emission_caps]]\nfactor = \"a21026\"\ntonnes_per_year = 1.0\n"
    )]);
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    // Every emissions write fails from now on (as on a full disk); reads work.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON emission_hours BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let clock = Arc::new(ManualClock::new(t0()));
    let (tap, rx) = tokio::sync::mpsc::channel(64);
    let (writer, wtask) = Writer::spawn(
        store.clone(),
        WriterOptions {
            tap: Some(tap),
            ..WriterOptions::default()
        },
        clock.clone(),
    );
    let (found_tx, mut found_rx) = tokio::sync::mpsc::channel(16);
    let rules = RulesTask::spawn(
        store.clone(),
        plan_rx(&cfg),
        TaskOptions {
            tick: StdDuration::from_millis(20),
            store_attempts: 2,
            ..TaskOptions::default()
        },
        clock.clone(),
        rx,
        Some(found_tx),
    );
    for i in 0..120 {
        clock.set(t0() + Duration::seconds(30 * i + 1));
        let mut batch = upload(i);
        batch.push(reading("a00000", t0() + Duration::seconds(30 * i), 100.0));
        writer.write(Batch::readings(batch)).await.unwrap();
    }
    clock.set(t0() + Duration::minutes(66));
    drop(writer);
    wtask.finish(StdDuration::from_secs(5)).await;
    rules.join(StdDuration::from_secs(20)).await;
    let mut handed_on = Vec::new();
    while let Ok(batch) = found_rx.try_recv() {
        handed_on.extend(batch);
    }
    assert!(
        handed_on
            .iter()
            .any(|f| f.finding.rule == RuleName::Exceedance),
        "{handed_on:#?}"
    );
    let stored = store
        .findings(&FindingQuery {
            rule: Some("exceedance".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    store.close().await;
}
