//! `pollwatch bench evidence`: what the keyed chain and the readings digest
//! (issue 18) cost per alert event — the HMAC and the digest alone (CPU), and a
//! finding recorded on a new alert end to end (one durable transaction reading
//! the alert back and the window's readings), against the alert-latency budget
//! (p99 < 100 ms); and `alerts verify` per alert.

use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

use super::percentile;
use crate::model::{DataKind, Flag, Id, Location, Protocol, Reading, SourceRef, Stat};
use crate::seal::Keyring;
use crate::store::chain::{hash_v2, readings_manifest, Fields, Window, WindowReading};
use crate::store::{
    AlertPolicy, Batch, FindingOnAlert, NewAlert, Received, Store, StoreError, StoreOptions,
};

#[derive(Debug, Clone)]
pub struct EvidenceReport {
    pub events: usize,
    pub window_readings: usize,
    pub hmac_per_row: Duration,
    pub digest_per_window: Duration,
    pub record_p50: Duration,
    pub record_p99: Duration,
    pub record_max: Duration,
    pub verify_p50: Duration,
    pub verify_p99: Duration,
}

impl fmt::Display for EvidenceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        writeln!(
            f,
            "evidence: {} alert events, {} readings per window (SQLite, synchronous=FULL, keyed)",
            self.events, self.window_readings
        )?;
        writeln!(
            f,
            "  HMAC-SHA256 of one row: {:.1} µs; readings list + SHA-256 of one window: {:.1} µs",
            us(self.hmac_per_row),
            us(self.digest_per_window)
        )?;
        writeln!(
            f,
            "  finding recorded on a new alert (keyed row, alert read back, window read and digested, commit): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(self.record_p50),
            ms(self.record_p99),
            ms(self.record_max)
        )?;
        write!(
            f,
            "  alerts verify per alert (chain, facts, finding, window re-read): p50 {:.2} ms, p99 {:.2} ms",
            ms(self.verify_p50),
            ms(self.verify_p99)
        )
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn reading(outlet: usize, minute: i64) -> Reading {
    Reading {
        enterprise: Id::from("E1"),
        location: Location::Outlet(format!("DA{outlet:04}").into()),
        factor: "a21026".into(),
        unit: "mg/m³".into(),
        ts: t0() + chrono::Duration::minutes(minute),
        value: 30.0 + (minute % 17) as f64,
        kind: DataKind::Rtd,
        stat: Stat::Rtd,
        converted: false,
        flag: Flag::N,
        source: SourceRef {
            protocol: Protocol::Hj212,
            device: std::sync::Arc::from("MN0001"),
            resend: false,
        },
    }
}

fn item(outlet: usize) -> FindingOnAlert {
    let location = format!("outlet:DA{outlet:04}");
    FindingOnAlert {
        alert: NewAlert {
            key: format!("E1|{location}|a21026|exceedance"),
            enterprise: "E1".into(),
            location,
            factor: "a21026".into(),
            rule: "exceedance".into(),
            severity: "violation".into(),
            rank: 2,
            value: Some(41.2),
            threshold: Some(35.0),
            message: "a21026 小时均值 41.2 mg/m³，限值 35".into(),
            facts: "{}".into(),
        },
        finding_id: None,
        evidence: r#"{"value":41.2,"threshold":35.0}"#.into(),
        window_start: t0(),
        window_end: t0() + chrono::Duration::hours(1),
        first_steps: Vec::new(),
        inhibited_by: None,
    }
}

/// Runs the measurement on a fresh SQLite store in a temporary directory.
pub async fn evidence(events: usize, window: usize) -> Result<EvidenceReport, StoreError> {
    let events = events.max(1);
    let keys = Keyring::from_bytes([0x42; 32], &[]);
    // CPU only: one row's HMAC, one window's list and digest.
    let rows: Vec<WindowReading> = (0..window as i64)
        .map(|i| {
            (
                "a21026:rtd:rtd:0".to_string(),
                i * 60_000,
                30.5 + i as f64,
                "N".to_string(),
            )
        })
        .collect();
    let w = Window {
        enterprise: "E1".into(),
        location: "outlet:DA0000".into(),
        factor: "a21026".into(),
        from: t0(),
        to: t0() + chrono::Duration::hours(1),
    };
    let n = 2000u32;
    let start = Instant::now();
    for i in 0..n {
        let (m, d) = readings_manifest(&w, &rows);
        std::hint::black_box((m, d, i));
    }
    let digest_per_window = start.elapsed() / n;
    let facts = "x".repeat(600);
    let detail = "y".repeat(800);
    let start = Instant::now();
    for i in 0..n {
        let h = hash_v2(
            &keys,
            &Fields {
                key_id: keys.current_id(),
                prev: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                alert: i64::from(i),
                seq: 3,
                at: 1_764_000_000_000,
                kind: "finding",
                actor: "pollwatch",
                on_behalf_of: None,
                detail: &detail,
                facts: &facts,
                readings_digest: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            },
        );
        std::hint::black_box(h);
    }
    let hmac_per_row = start.elapsed() / n;

    let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let store = Store::open(
        &url,
        &StoreOptions {
            keys,
            ..Default::default()
        },
    )
    .await?;
    let step = (60 / window.max(1)).max(1) as i64;
    for chunk in (0..events).collect::<Vec<_>>().chunks(200) {
        let readings = chunk
            .iter()
            .flat_map(|o| (0..window as i64).map(move |i| reading(*o, i * step)))
            .collect();
        store
            .commit(&[Received {
                at: t0() + chrono::Duration::hours(1),
                batch: Batch::readings(readings),
            }])
            .await?;
    }
    let policy = AlertPolicy {
        flap_window: chrono::Duration::hours(1),
        flap_limit: 1000,
        rank_of: |_| 1,
    };
    let mut record = Vec::with_capacity(events);
    let mut ids = Vec::with_capacity(events);
    let now = t0() + chrono::Duration::hours(1);
    for o in 0..events {
        let it = item(o);
        let start = Instant::now();
        let r = store.record_findings(&[it], &policy, now).await?;
        record.push(start.elapsed());
        ids.extend(r.iter().map(|r| r.alert_id));
    }
    let mut verify = Vec::with_capacity(ids.len());
    for id in ids.iter().take(200) {
        let start = Instant::now();
        std::hint::black_box(store.verify_alert(*id).await?);
        verify.push(start.elapsed());
    }
    store.close().await;
    record.sort();
    verify.sort();
    Ok(EvidenceReport {
        events,
        window_readings: window,
        hmac_per_row,
        digest_per_window,
        record_p50: percentile(&record, 0.5),
        record_p99: percentile(&record, 0.99),
        record_max: record.last().copied().unwrap_or_default(),
        verify_p50: percentile(&verify, 0.5),
        verify_p99: percentile(&verify, 0.99),
    })
}
