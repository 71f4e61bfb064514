//! A full disk (issue 16): nothing is acknowledged that is not committed, and every
//! write path recovers by itself when space returns. `SQLITE_FULL` is forced with
//! the store's page cap (`PRAGMA max_page_count` on every connection), which fails
//! writes exactly where a full file system does; `disk_full_tmpfs.rs` fills a real
//! one.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::t0;
use pollwatch::clock::SystemClock;
use pollwatch::model::{Location, LocationKind, Protocol, Reading};
use pollwatch::rules::{Finding, RuleName, Severity};
use pollwatch::store::{
    Batch, DeadLetter, NewAlert, ReadingQuery, Received, StatusEvent, Store, StoreOptions,
    TierOptions, Writer, WriterOptions,
};

fn opts(limit: &Arc<AtomicU64>, connections: u32) -> StoreOptions {
    StoreOptions {
        // A write lock held by a broken connection shows quickly as "locked".
        connect_timeout: Duration::from_millis(500),
        max_connections: connections,
        // The archive move runs after nearly every commit.
        tiers: TierOptions {
            compact_rows: 200,
            slice_rows: 100,
        },
        sqlite_page_limit: Some(limit.clone()),
        ..StoreOptions::default()
    }
}

/// Pages in the SQLite database (what the cap counts), read on a connection of
/// our own.
async fn page_count(url: &str) -> u64 {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    n as u64
}

/// `n` real-time readings of one logger's outlet at `secs`, with long-ish text so
/// that batches need pages.
fn frame(outlet: &str, secs: i64, n: usize) -> Vec<Reading> {
    (0..n)
        .map(|i| {
            let value = secs as f64 + i as f64 / 100.0;
            let mut r = common::reading(outlet, &format!("a{:05}", 21000 + i), secs, value);
            r.source.device = Arc::from(format!("MN-{outlet}"));
            r
        })
        .collect()
}

fn finding(i: i64, text: usize) -> Finding {
    let start = t0() + ChronoDuration::hours(i);
    Finding {
        rule: RuleName::Exceedance,
        severity: Severity::Violation,
        enterprise: "E1".into(),
        location: Some(Location::Outlet("DA001".into())),
        factor: "a21026".into(),
        window_start: start,
        window_end: start + ChronoDuration::hours(1),
        at: start + ChronoDuration::hours(1),
        value: Some(40.0),
        threshold: Some(35.0),
        detail: "outlets[0].limits[0]".into(),
        message: "x".repeat(text),
        evidence: Default::default(),
    }
}

fn alert(key: &str) -> NewAlert {
    NewAlert {
        key: key.into(),
        enterprise: "E1".into(),
        location: "DA001".into(),
        factor: "a21026".into(),
        rule: "exceedance".into(),
        severity: "violation".into(),
        rank: 2,
        value: Some(40.0),
        threshold: Some(35.0),
        message: "m".into(),
        facts: "{}".into(),
    }
}

async fn record(store: &Store, key: &str, now: DateTime<Utc>) -> Result<i64, String> {
    store
        .record_finding(
            &alert(key),
            None,
            "{}",
            now,
            ChronoDuration::hours(1),
            100,
            &[],
            |_| 0,
        )
        .await
        .map(|r| r.alert_id)
        .map_err(|e| e.to_string())
}

/// Loggers send as fast as they are answered while the disk fills, then space is
/// freed. Meanwhile the archive move runs after commits and findings are written
/// on the same pool. Every acknowledged frame must be in the database after a
/// clean close and reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_acknowledges_only_committed_readings() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let limit = Arc::new(AtomicU64::new(0));
    let store = Store::open(&url, &opts(&limit, 4)).await.unwrap();
    let (writer, task) = Writer::spawn(
        store.clone(),
        WriterOptions {
            retry_min: Duration::from_millis(10),
            retry_max: Duration::from_millis(100),
            commit_timeout: Duration::from_secs(5),
            ..WriterOptions::default()
        },
        Arc::new(SystemClock),
    );
    writer
        .write(Batch::readings(frame("SEED", 0, 30)))
        .await
        .unwrap();
    limit.store(page_count(&url).await + 6, Ordering::SeqCst);

    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut loggers = Vec::new();
    for l in 0..6 {
        let (w, acked, stop) = (writer.clone(), acked.clone(), stop.clone());
        loggers.push(tokio::spawn(async move {
            let outlet = format!("DA{l:03}");
            let mut secs = 1;
            while !stop.load(Ordering::SeqCst) {
                // A logger waits for its answer at most a while, then resends.
                match tokio::time::timeout(
                    Duration::from_millis(300),
                    w.write(Batch::readings(frame(&outlet, secs, 30))),
                )
                .await
                {
                    Ok(Ok(_)) => {
                        acked.lock().unwrap().push((outlet.clone(), secs));
                        secs += 1;
                    }
                    Ok(Err(e)) => panic!("writer refused a frame: {e}"),
                    Err(_) => {} // unanswered: send it again
                }
            }
        }));
    }
    let findings_stored: Arc<Mutex<Vec<i64>>> = Arc::default();
    let other = {
        let (store, stop, stored) = (store.clone(), stop.clone(), findings_stored.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                if let Ok(ids) = store.insert_findings(&[finding(i, 3000)], Utc::now()).await {
                    if ids[0].is_some() {
                        stored.lock().unwrap().push(i);
                    }
                    i += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Full for a while, then space returns; then run on for a while.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let answered_while_full = acked.lock().unwrap().len();
    limit.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    for l in loggers {
        l.await.unwrap();
    }
    other.await.unwrap();
    drop(writer);
    task.finish(Duration::from_secs(10)).await;
    store.close().await;

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > answered_while_full,
        "nothing was answered after space returned ({} answered while full)",
        acked.len()
    );
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let mut missing = Vec::new();
    for (outlet, secs) in &acked {
        let q = ReadingQuery {
            from: Some(t0() + ChronoDuration::seconds(*secs)),
            to: Some(t0() + ChronoDuration::seconds(*secs + 1)),
            ..ReadingQuery::new("E1", LocationKind::Outlet, outlet.as_str())
        };
        let n = store.readings(&q).await.unwrap().len();
        if n != 30 {
            missing.push((outlet.clone(), *secs, n));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} answered frames are not (fully) stored : {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
    let stored_findings = store
        .findings(&pollwatch::store::FindingQuery {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    assert_eq!(stored_findings, findings_stored.lock().unwrap().len());
    store.close().await;
}

/// One connection, so the one that failed is the one reused: a write that failed
/// for a full disk must not leave it unusable (or silently inside a transaction)
/// for the next write path.
#[tokio::test]
async fn sqlite_full_then_space_every_write_path_commits() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let limit = Arc::new(AtomicU64::new(0));
    let store = Store::open(&url, &opts(&limit, 1)).await.unwrap();
    store
        .insert_findings(&[finding(0, 10)], t0())
        .await
        .unwrap();
    limit.store(page_count(&url).await + 1, Ordering::SeqCst);
    // The writer's path: one big commit.
    let big: Vec<Received> = (1..100)
        .map(|s| Received {
            at: t0(),
            batch: Batch::readings(frame("BIG", s, 30)),
        })
        .collect();
    let err = store.commit(&big).await.unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
    let big: Vec<Finding> = (1..200).map(|i| finding(i, 4000)).collect();
    let err = store.insert_findings(&big, t0()).await.unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
    // And an alert while full fails too (or lands): either way no stuck state.
    let _ = record(&store, "while-full", t0()).await;
    limit.store(0, Ordering::SeqCst);

    let ids = store
        .insert_findings(&[finding(500, 10)], t0())
        .await
        .unwrap();
    assert!(ids[0].is_some());
    let id = record(&store, "after", t0())
        .await
        .unwrap_or_else(|e| panic!("alert write after space returned: {e}"));
    let escalated = store
        .queue_escalations(&[(id, vec!["officer".to_string()])], t0())
        .await
        .unwrap_or_else(|e| panic!("escalation after space returned: {e}"));
    assert_eq!(escalated, vec![(id, vec!["officer".to_string()])]);
    let (writer, task) = Writer::spawn(
        store.clone(),
        WriterOptions::default(),
        Arc::new(SystemClock),
    );
    writer
        .write(Batch::readings(frame("DA001", 1, 30)))
        .await
        .unwrap();
    drop(writer);
    task.finish(Duration::from_secs(5)).await;
    assert!(store.compact().await.is_ok());
    store.close().await;

    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let f = store
        .findings(&pollwatch::store::FindingQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(f
        .iter()
        .any(|s| s.finding.window_start == finding(500, 10).window_start));
    assert_eq!(store.count_readings().await.unwrap(), 30);
    let alerts = store
        .alerts(&pollwatch::store::AlertQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(alerts.iter().any(|a| a.id == id), "{alerts:?}");
    store.close().await;
}

/// PostgreSQL: a COMMIT that fails (here a deferred constraint trigger, checked
/// only at COMMIT) answers nothing, stores nothing, and the connection that saw
/// it is closed, not handed to the next write. Each status event records the
/// backend process that wrote it, so the test sees which connection was used.
#[tokio::test]
async fn postgres_failed_commit_discards_the_connection() {
    use sqlx::Connection;
    let Some(base) = common::pg_url("store_disk_full::postgres_failed_commit") else {
        return;
    };
    let url = common::fresh_pg_database(&base).await;
    let store = Store::open(
        &url,
        &StoreOptions {
            max_connections: 1,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    for sql in [
        "CREATE FUNCTION stamp_pid() RETURNS trigger AS $$ BEGIN NEW.detail := pg_backend_pid()::text; RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER stamp_pid BEFORE INSERT ON device_status FOR EACH ROW EXECUTE FUNCTION stamp_pid()",
        "CREATE FUNCTION refuse_boom() RETURNS trigger AS $$ BEGIN IF NEW.reason = 'boom' THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; END $$ LANGUAGE plpgsql",
        "CREATE CONSTRAINT TRIGGER refuse_boom AFTER INSERT ON dead_letters DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
    ] {
        sqlx::query(sql).execute(&mut admin).await.unwrap();
    }
    let status = |n: &str| StatusEvent {
        at: t0(),
        enterprise: "E1".into(),
        device: n.into(),
        status: "online".into(),
        detail: String::new(),
    };
    let part = |batch: Batch| Received { at: t0(), batch };
    store
        .commit(&[part(Batch::status_event(status("before")))])
        .await
        .unwrap();
    // One transaction: readings, a status event and the dead letter the trigger
    // refuses at COMMIT.
    let mut doomed = Batch::readings(frame("DA001", 1, 30));
    doomed.status_events.push(status("doomed"));
    doomed.dead_letters.push(DeadLetter {
        at: t0(),
        protocol: Protocol::Hj212,
        peer: "test".into(),
        reason: "boom".into(),
        detail: String::new(),
        raw: Vec::new(),
    });
    let err = store.commit(&[part(doomed)]).await.unwrap_err();
    assert!(err.to_string().contains("commit"), "{err}");
    store
        .commit(&[part(Batch::status_event(status("after")))])
        .await
        .unwrap();

    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT device, detail FROM device_status ORDER BY id")
            .fetch_all(&mut admin)
            .await
            .unwrap();
    let devices: Vec<&str> = rows.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(devices, ["before", "after"], "nothing of the failed commit");
    let readings: i64 = sqlx::query_scalar("SELECT count(*) FROM readings")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(readings, 0);
    assert_ne!(
        rows[0].1, rows[1].1,
        "the write after a failed COMMIT ran on the same connection (backend pid)"
    );
    admin.close().await.unwrap();
    store.close().await;
}

/// The archive move needs room for a copy of what it moves: below twice
/// `min_free` it waits, while the writer (still above `min_free`) carries on.
#[tokio::test]
async fn the_archive_move_stops_before_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let free = {
        let s = rustix::fs::statvfs(dir.path()).unwrap();
        s.f_bavail * s.f_frsize
    };
    let store_with = |min_free: u64| {
        let url = url.clone();
        async move {
            Store::open(
                &url,
                &StoreOptions {
                    tiers: TierOptions {
                        compact_rows: 10,
                        slice_rows: 1000,
                    },
                    min_free: pollwatch::config::MinFree {
                        bytes: Some(min_free),
                        percent: None,
                    },
                    ..StoreOptions::default()
                },
            )
            .await
            .unwrap()
        }
    };
    let part = |secs| Received {
        at: t0(),
        batch: Batch::readings(frame("DA001", secs, 30)),
    };
    // Free space between min_free and twice min_free: the archive waits.
    let store = store_with(free * 2 / 3).await;
    let space = store.space().unwrap().current().unwrap();
    assert!(space.archive_paused() && !space.low(), "{space:?}");
    store.commit(&[part(1)]).await.unwrap();
    store.commit(&[part(2)]).await.unwrap();
    assert_eq!(store.compact().await.unwrap(), 60, "nothing was moved");
    store.close().await;
    // Plenty of room: the commits move what is due themselves.
    let store = store_with(0).await;
    store.commit(&[part(3)]).await.unwrap();
    store.commit(&[part(4)]).await.unwrap();
    assert_eq!(store.compact().await.unwrap(), 0, "moved after the commits");
    assert_eq!(store.count_readings().await.unwrap(), 120);
    store.close().await;
}
