//! The database goes away while readings keep arriving: nothing accepted is lost,
//! nothing is acknowledged before it is durable, and the writer recovers by itself.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{proxy::Proxy, reading, t0};
use pollwatch::clock::ManualClock;
use pollwatch::model::LocationKind;
use pollwatch::store::{Batch, ReadingQuery, Store, StoreOptions, Writer, WriterOptions};

fn all(outlet: &str) -> ReadingQuery {
    ReadingQuery::new("E1", LocationKind::Outlet, outlet)
}

fn opts() -> WriterOptions {
    WriterOptions {
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        ..WriterOptions::default()
    }
}

/// Writes `n` single-reading batches from concurrent senders while `outage` runs,
/// and returns once every one was acknowledged.
async fn write_through(w: &Writer, n: i64) -> tokio::task::JoinHandle<usize> {
    let w = w.clone();
    tokio::spawn(async move {
        let mut handles = Vec::new();
        for i in 0..n {
            let w = w.clone();
            handles.push(tokio::spawn(async move {
                w.write(Batch::readings(vec![reading(
                    "DA001", "a21026", i, i as f64,
                )]))
                .await
                .unwrap()
                .readings
            }));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut acked = 0;
        for h in handles {
            acked += h.await.unwrap();
        }
        acked
    })
}

#[tokio::test]
async fn postgres_outage_loses_no_accepted_reading() {
    let Some(base) = common::pg_url("store_outage::postgres") else {
        return;
    };
    let url = common::fresh_pg_database(&base).await;
    // Route the writer through a proxy we can cut, like a PostgreSQL restart does.
    let target: std::net::SocketAddr = {
        let hostport = url.split('@').nth(1).unwrap().split('/').next().unwrap();
        let hostport = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:5432")
        };
        tokio::net::lookup_host(hostport)
            .await
            .unwrap()
            .next()
            .unwrap()
    };
    let proxy = Proxy::start(target).await;
    let via_proxy = url
        .replacen(&target.to_string(), &proxy.addr.to_string(), 1)
        .replacen("localhost:5432", &proxy.addr.to_string(), 1);
    assert_ne!(via_proxy, url, "test URL must name host:port explicitly");
    let store = Store::open(
        &via_proxy,
        &StoreOptions {
            connect_timeout: Duration::from_millis(500),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let (w, task) = Writer::spawn(store.clone(), opts(), clock);

    let sender = write_through(&w, 300).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failed = w.stats().failed_commits.load(Ordering::Relaxed);
    assert!(failed > 0, "the outage was noticed by the writer");
    proxy.restore();

    let acked = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("writer recovers after the outage")
        .unwrap();
    assert_eq!(acked, 300);
    drop(w);
    task.finish(Duration::from_secs(10)).await;

    let direct = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let rows = direct.readings(&all("DA001")).await.unwrap();
    assert_eq!(
        rows.len(),
        300,
        "every acknowledged reading is stored exactly once"
    );
}

#[tokio::test]
async fn sqlite_locked_by_another_process_is_waited_out() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = open_with_short_waits(&url).await;
    let clock = Arc::new(ManualClock::new(t0()));
    let (w, task) = Writer::spawn(store.clone(), opts(), clock);

    // Another program (a backup tool, a sysadmin's sqlite3 shell) takes the write lock.
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    let sender = write_through(&w, 100).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        w.stats().failed_commits.load(Ordering::Relaxed) > 0,
        "the lock was hit"
    );
    assert!(
        !sender.is_finished(),
        "nothing is acknowledged while the store is locked"
    );
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    other.close().await.unwrap();

    let acked = tokio::time::timeout(Duration::from_secs(30), sender)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acked, 100);
    drop(w);
    task.finish(Duration::from_secs(5)).await;
    assert_eq!(store.readings(&all("DA001")).await.unwrap().len(), 100);
}

#[tokio::test]
async fn shutdown_during_an_outage_abandons_loudly_and_acks_nothing() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = open_with_short_waits(&url).await;
    let (w, task) = Writer::spawn(store.clone(), opts(), Arc::new(ManualClock::new(t0())));
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    let w2 = w.clone();
    let pending = tokio::spawn(async move {
        w2.write(Batch::readings(vec![reading("DA001", "a21026", 0, 1.0)]))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(w);
    task.finish(Duration::from_millis(500)).await;
    let err = pending.await.unwrap().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("shut down before the store accepted the batch"),
        "{err}"
    );
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
}

/// A SQLite store whose lock waits and pool acquires give up after 100 ms, the
/// schema migrated first with the default waits: on a loaded test machine the
/// migrations alone can outlast 100 ms, and the tests are about what the writer
/// does when the lock is held, not about opening.
async fn open_with_short_waits(url: &str) -> Store {
    Store::open(url, &StoreOptions::default())
        .await
        .unwrap()
        .close()
        .await;
    Store::open(
        url,
        &StoreOptions {
            connect_timeout: Duration::from_millis(100),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap()
}
