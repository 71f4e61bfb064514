//! The store test-suite, run on SQLite always and on PostgreSQL when
//! `PW_TEST_DATABASE_URL` is set. Every case gets a fresh database.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{reading, t0};
use pollwatch::clock::{Clock, ManualClock};
use pollwatch::model::{DataKind, Flag, LocationKind, Protocol, Stat};
use pollwatch::store::{
    Batch, DeadLetter, ReadingQuery, StatusEvent, Store, StoreOptions, WriteError, Writer,
    WriterOptions,
};

both_backends!(
    idempotent_rewrites,
    ordering_and_filters,
    durable_means_visible_to_a_new_connection,
    dead_letters_and_status_events,
    invalid_reading_is_refused_alone,
    shutdown_flushes_lingering_batches,
    resend_after_compaction_keeps_the_first_value,
    rounds_of_moves_between_commits_keep_every_reading_once,
    resend_marks_stay_with_their_readings,
    device_events_of_one_enterprise,
);

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(t0() + chrono::Duration::hours(1)))
}

async fn open(url: &str) -> Store {
    Store::open(url, &StoreOptions::default()).await.unwrap()
}

fn query(outlet: &str) -> ReadingQuery {
    ReadingQuery::new("E1", LocationKind::Outlet, outlet)
}

async fn idempotent_rewrites(url: &str) {
    let store = open(url).await;
    let (w, task) = Writer::spawn(store.clone(), WriterOptions::default(), clock());
    let first = vec![
        reading("DA001", "a21026", 0, 30.5),
        reading("DA001", "a21002", 0, 40.0),
    ];
    w.write(Batch::readings(first.clone())).await.unwrap();
    // A logger's resend, possibly with a different value: the first stays.
    let mut resend = first.clone();
    resend[0].value = 99.0;
    let d = w.write(Batch::readings(resend)).await.unwrap();
    assert_eq!(d.readings, 2, "a resend is acknowledged like the original");
    // Same reading twice inside one batch.
    let dup = reading("DA001", "a21026", 60, 31.0);
    w.write(Batch::readings(vec![dup.clone(), dup]))
        .await
        .unwrap();

    let stats = w.stats();
    assert_eq!(stats.readings.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(
        stats.duplicates.load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    drop(w);
    task.finish(Duration::from_secs(5)).await;

    let rows = store.readings(&query("DA001")).await.unwrap();
    assert_eq!(rows.len(), 3);
    let so2: Vec<f64> = rows
        .iter()
        .filter(|r| r.factor == "a21026")
        .map(|r| r.value)
        .collect();
    assert_eq!(so2, vec![30.5, 31.0]);
    // Reopening the same store (restart) keeps absorbing resends.
    store.close().await;
    let store = open(url).await;
    let (w, task) = Writer::spawn(store.clone(), WriterOptions::default(), clock());
    w.write(Batch::readings(first)).await.unwrap();
    drop(w);
    task.finish(Duration::from_secs(5)).await;
    assert_eq!(store.readings(&query("DA001")).await.unwrap().len(), 3);
}

async fn ordering_and_filters(url: &str) {
    let store = open(url).await;
    let (w, task) = Writer::spawn(store.clone(), WriterOptions::default(), clock());
    // Written out of order and from concurrent senders; read back in time order.
    let mut handles = Vec::new();
    for i in (0..50).rev() {
        let w = w.clone();
        handles.push(tokio::spawn(async move {
            let mut r = reading("DA001", "a21026", i * 60, i as f64);
            if i % 10 == 0 {
                r.flag = Flag::M;
            }
            let mut hour = reading("DA001", "a21026", i * 3600, 100.0 + i as f64);
            hour.kind = DataKind::Hour;
            hour.stat = Stat::Avg;
            hour.converted = true;
            w.write(Batch::readings(vec![r, hour])).await.unwrap()
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    w.write(Batch::readings(vec![reading("DA002", "a21026", 0, 7.0)]))
        .await
        .unwrap();
    drop(w);
    task.finish(Duration::from_secs(5)).await;

    let mut q = query("DA001");
    q.kind = Some(DataKind::Rtd);
    let rows = store.readings(&q).await.unwrap();
    assert_eq!(rows.len(), 50);
    assert!(rows.windows(2).all(|p| p[0].ts < p[1].ts), "time order");
    assert_eq!(rows[0].value, 0.0);
    assert_eq!(rows[0].flag, Flag::M);
    assert_eq!(rows[1].flag, Flag::N);
    assert_eq!(rows[0].protocol, Protocol::Hj212);
    assert_eq!(rows[0].device, "MN0001");
    assert_eq!(rows[0].unit, "mg/m³");

    q.from = Some(t0() + chrono::Duration::minutes(10));
    q.to = Some(t0() + chrono::Duration::minutes(20));
    let rows = store.readings(&q).await.unwrap();
    let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
    assert_eq!(
        values,
        (10..20).map(f64::from).collect::<Vec<_>>(),
        "from inclusive, to exclusive"
    );

    let mut q = query("DA001");
    q.kind = Some(DataKind::Hour);
    q.limit = Some(5);
    let rows = store.readings(&q).await.unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.converted && r.stat == Stat::Avg));
    assert_eq!(store.readings(&query("DA002")).await.unwrap().len(), 1);
    let mut q = query("DA001");
    q.factor = Some("a21002".into());
    assert!(store.readings(&q).await.unwrap().is_empty());
}

async fn durable_means_visible_to_a_new_connection(url: &str) {
    let store = open(url).await;
    let opts = WriterOptions {
        linger: Duration::from_millis(200),
        ..WriterOptions::default()
    };
    let (w, task) = Writer::spawn(store.clone(), opts, clock());
    let batch = Batch::readings(
        (0..100)
            .map(|i| reading("DA001", "a21026", i, 1.0))
            .collect(),
    );
    w.write(batch).await.unwrap();
    // The acknowledgement is the promise: another connection sees every row now.
    let other = open(url).await;
    assert_eq!(other.readings(&query("DA001")).await.unwrap().len(), 100);
    other.close().await;
    drop(w);
    task.finish(Duration::from_secs(5)).await;
}

async fn dead_letters_and_status_events(url: &str) {
    let store = open(url).await;
    let (w, task) = Writer::spawn(store.clone(), WriterOptions::default(), clock());
    let raw = b"##0101QN=...;CN=2011;\xff\xfe".to_vec();
    let dl = DeadLetter {
        at: t0(),
        protocol: Protocol::Hj212,
        peer: "203.0.113.7:51234".into(),
        reason: "bad_crc".into(),
        detail: "bad CRC: frame says 1C81, computed 1C80".into(),
        raw: raw.clone(),
    };
    w.submit(Batch::dead_letter(dl.clone())).await.unwrap();
    let ev = StatusEvent {
        at: t0(),
        enterprise: "E1".into(),
        device: "meter-1".into(),
        status: "offline".into(),
        detail: "3 timeouts".into(),
    };
    w.write(Batch::status_event(ev.clone())).await.unwrap();
    drop(w);
    task.finish(Duration::from_secs(5)).await;
    assert_eq!(store.dead_letters(10).await.unwrap(), vec![dl]);
    assert_eq!(store.status_events(10).await.unwrap(), vec![ev]);
}

async fn invalid_reading_is_refused_alone(url: &str) {
    let store = open(url).await;
    let (w, task) = Writer::spawn(store.clone(), WriterOptions::default(), clock());
    let bad = reading("DA001", "a21026", 0, f64::NAN);
    let err = w.write(Batch::readings(vec![bad])).await.unwrap_err();
    assert!(matches!(err, WriteError::Invalid(_)));
    assert!(
        err.to_string().contains("value NaN is not a finite number"),
        "{err}"
    );
    w.write(Batch::readings(vec![reading("DA001", "a21026", 1, 2.0)]))
        .await
        .unwrap();
    drop(w);
    task.finish(Duration::from_secs(5)).await;
    assert_eq!(store.readings(&query("DA001")).await.unwrap().len(), 1);
}

async fn shutdown_flushes_lingering_batches(url: &str) {
    let store = open(url).await;
    // A long linger: without a flush at shutdown these would sit in memory.
    let opts = WriterOptions {
        linger: Duration::from_secs(3600),
        max_batch: 1_000_000,
        ..WriterOptions::default()
    };
    let (w, task) = Writer::spawn(store.clone(), opts, clock());
    for i in 0..20 {
        w.submit(Batch::readings(vec![reading("DA001", "a21026", i, 1.0)]))
            .await
            .unwrap();
    }
    drop(w);
    // Were the writer to sit out its linger, this would time out.
    tokio::time::timeout(Duration::from_secs(30), task.finish(Duration::from_secs(5)))
        .await
        .expect("the writer flushes when its last handle is dropped");
    assert_eq!(store.readings(&query("DA001")).await.unwrap().len(), 20);
}

async fn resend_after_compaction_keeps_the_first_value(url: &str) {
    let store = open(url).await;
    let (w, task) = Writer::spawn(store.clone(), WriterOptions::default(), clock());
    let first = reading("DA001", "a21026", 0, 1.0);
    w.write(Batch::readings(vec![
        first.clone(),
        reading("DA001", "a21026", 60, 2.0),
    ]))
    .await
    .unwrap();
    store.compact().await.unwrap();
    // A logger re-sends history after an outage, with a different value.
    let mut resend = first;
    resend.value = 99.0;
    w.write(Batch::readings(vec![
        resend,
        reading("DA001", "a21026", 120, 3.0),
    ]))
    .await
    .unwrap();
    let values = |rows: Vec<pollwatch::store::StoredReading>| {
        rows.iter().map(|r| r.value).collect::<Vec<_>>()
    };
    assert_eq!(
        values(store.readings(&query("DA001")).await.unwrap()),
        vec![1.0, 2.0, 3.0]
    );
    assert_eq!(
        store.count_readings().await.unwrap(),
        3,
        "the resend is not counted"
    );
    store.compact().await.unwrap();
    assert_eq!(store.count_readings().await.unwrap(), 3);
    assert_eq!(
        values(store.readings(&query("DA001")).await.unwrap()),
        vec![1.0, 2.0, 3.0]
    );
    let mut q = query("DA001");
    q.limit = Some(2);
    assert_eq!(values(store.readings(&q).await.unwrap()), vec![1.0, 2.0]);
    drop(w);
    task.finish(Duration::from_secs(5)).await;
}

async fn rounds_of_moves_between_commits_keep_every_reading_once(url: &str) {
    // Tiny tiers so that many rounds and slices happen (SQLite; PostgreSQL has
    // one table and must give the same answers).
    let opts = StoreOptions {
        tiers: pollwatch::store::TierOptions {
            compact_rows: 40,
            slice_rows: 7,
        },
        ..StoreOptions::default()
    };
    let store = Store::open(url, &opts).await.unwrap();
    let (w, task) = Writer::spawn(store.clone(), WriterOptions::default(), clock());
    let outlets = ["DA001", "DA002", "DA003"];
    for minute in 0..60 {
        let mut batch = Vec::new();
        for (k, o) in outlets.iter().enumerate() {
            for f in ["a21026", "a21002", "a34013"] {
                batch.push(reading(o, f, minute * 60, (minute * 10 + k as i64) as f64));
            }
        }
        // Every tenth minute is resent later, as loggers do after an outage.
        if minute % 10 == 0 && minute > 0 {
            let mut resend = reading("DA001", "a21026", (minute - 10) * 60, -1.0);
            resend.value = -1.0;
            batch.push(resend);
        }
        w.write(Batch::readings(batch)).await.unwrap();
    }
    drop(w);
    task.finish(Duration::from_secs(5)).await;
    for (k, o) in outlets.iter().enumerate() {
        let mut q = query(o);
        q.factor = Some("a21026".into());
        let rows = store.readings(&q).await.unwrap();
        let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
        let want: Vec<f64> = (0..60).map(|m| (m * 10 + k as i64) as f64).collect();
        assert_eq!(values, want, "{o}: every minute once, first value kept");
    }
    store.compact().await.unwrap();
    assert_eq!(store.readings(&query("DA002")).await.unwrap().len(), 180);
}

/// The events an enterprise page lists: one enterprise, chosen kinds, newest first.
async fn device_events_of_one_enterprise(url: &str) {
    let store = open(url).await;
    let (w, task) = Writer::spawn(store.clone(), WriterOptions::default(), clock());
    for (i, (enterprise, status)) in [
        ("E1", "key_request"),
        ("E2", "key_request"),
        ("E1", "connected"),
        ("E1", "qc_check"),
    ]
    .into_iter()
    .enumerate()
    {
        let ev = StatusEvent {
            at: t0() + chrono::Duration::seconds(i as i64),
            enterprise: enterprise.into(),
            device: "MN1".into(),
            status: status.into(),
            detail: String::new(),
        };
        w.write(Batch::status_event(ev)).await.unwrap();
    }
    drop(w);
    task.finish(Duration::from_secs(5)).await;
    let got = store
        .device_events("E1", &["key_request", "qc_check"], 10)
        .await
        .unwrap();
    let kinds: Vec<&str> = got.iter().map(|e| e.status.as_str()).collect();
    assert_eq!(kinds, vec!["qc_check", "key_request"]);
}

/// HJ 212-2025 RF=1: a value from the logger's backlog keeps its mark through the
/// recent tier's compaction, in queries and in the evaluator's replay.
async fn resend_marks_stay_with_their_readings(url: &str) {
    let store = open(url).await;
    let (w, task) = Writer::spawn(store.clone(), WriterOptions::default(), clock());
    let live = reading("DA001", "a21026", 120, 30.0);
    let mut late = reading("DA001", "a21026", 60, 31.0);
    late.source.resend = true;
    w.write(Batch::readings(vec![live])).await.unwrap();
    store.compact().await.unwrap();
    w.write(Batch::readings(vec![late])).await.unwrap();
    drop(w);
    task.finish(Duration::from_secs(5)).await;
    let rows = store.readings(&query("DA001")).await.unwrap();
    let marks: Vec<(f64, bool)> = rows.iter().map(|r| (r.value, r.resend)).collect();
    assert_eq!(marks, vec![(31.0, true), (30.0, false)]);
    let replay = store
        .enterprise_readings("E1", t0(), t0() + chrono::Duration::hours(1))
        .await
        .unwrap();
    let marks: Vec<bool> = replay.iter().map(|r| r.source.resend).collect();
    assert_eq!(marks, vec![true, false]);
    assert_eq!(replay[0].source.device, replay[1].source.device);
}
