//! Shared helpers for integration tests: real services, found through the
//! environment, and readings to feed them.
#![allow(dead_code)]

pub mod proxy;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use pollwatch::model::{DataKind, Flag, Id, Location, Protocol, Reading, SourceRef, Stat};

/// The PostgreSQL URL for tests, or `None` after printing that the test is
/// skipped. With `PW_REQUIRE_SERVICES=1` (CI) a missing service fails the test.
pub fn pg_url(test: &str) -> Option<String> {
    match std::env::var("PW_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("PW_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: PW_TEST_DATABASE_URL is not set but PW_REQUIRE_SERVICES=1");
            }
            eprintln!("SKIPPED {test}: set PW_TEST_DATABASE_URL to run it against PostgreSQL");
            None
        }
    }
}

/// A fresh, empty database on the test server, so tests never see each other's rows.
pub async fn fresh_pg_database(base_url: &str) -> String {
    use sqlx::Connection;
    let name = format!("pw_test_{}_{}", std::process::id(), rand_suffix());
    let mut conn = sqlx::PgConnection::connect(base_url)
        .await
        .expect("connect to PW_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    replace_db_name(base_url, &name)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    nanos * 1000 + N.fetch_add(1, Ordering::Relaxed)
}

/// Swaps the database name (the path) of a postgres URL, keeping any query string.
pub fn replace_db_name(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()
}

/// A real-time SO2 reading of outlet DA001 at `t0 + secs`.
pub fn reading(outlet: &str, factor: &str, secs: i64, value: f64) -> Reading {
    Reading {
        enterprise: Id::from("E1"),
        location: Location::Outlet(outlet.into()),
        factor: factor.into(),
        unit: "mg/m³".into(),
        ts: t0() + chrono::Duration::seconds(secs),
        value,
        kind: DataKind::Rtd,
        stat: Stat::Rtd,
        converted: false,
        flag: Flag::N,
        source: SourceRef {
            protocol: Protocol::Hj212,
            device: Arc::from("MN0001"),
        },
    }
}
