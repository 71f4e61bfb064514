//! Alerting under load, with every channel hanging (a peer that accepts TCP
//! connections and never answers):
//!
//! - **burst**: findings for N distinct alerts handed over at once, as the rules
//!   task does after loggers catch up; the time until all N are open on the
//!   board, while the dispatcher's attempts sit in the hanging channel's lane;
//! - **tick**: the escalation tick over N open alerts that have all their due
//!   steps queued: CPU per tick, and rows written per tick (none is due, so
//!   none should be — the tick reads, and writes only new steps).
//!
//! `pollwatch bench alert-load [--alerts N] [--url postgres://…]`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use tokio::sync::{watch, Notify};

use super::alerts::config;
use super::{cpu_time, BenchError};
use crate::alerts::{AlertEngine, DispatchTask, Dispatcher};
use crate::clock::{Clock, SystemClock};
use crate::model::Location;
use crate::notify::Notifier;
use crate::rules::{Evidence, Finding, RuleName, Severity};
use crate::store::{AlertQuery, AlertState, Store, StoreOptions, StoredFinding};

pub struct AlertLoadReport {
    pub backend: &'static str,
    pub alerts: usize,
    pub all_open: Duration,
    pub ticks: u32,
    pub cpu_per_tick: Duration,
    pub wall_per_tick: Duration,
    pub rows_written_per_tick: f64,
}

impl fmt::Display for AlertLoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "alert load ({}, every channel hanging): {} alerts open {:.0} ms after their findings; tick over {} open alerts: {:.1} ms CPU, {:.1} ms wall, {:.1} rows written per tick ({} ticks)",
            self.backend,
            self.alerts,
            self.all_open.as_secs_f64() * 1e3,
            self.alerts,
            self.cpu_per_tick.as_secs_f64() * 1e3,
            self.wall_per_tick.as_secs_f64() * 1e3,
            self.rows_written_per_tick,
            self.ticks,
        )
    }
}

async fn hanging_peer() -> Result<String, BenchError> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let addr = l
        .local_addr()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    Ok(format!("http://{addr}/cgi-bin/webhook/send?key=bench"))
}

async fn rows(store: &Store) -> Result<usize, BenchError> {
    let open = store
        .alerts(&AlertQuery {
            limit: u32::MAX,
            ..Default::default()
        })
        .await?;
    let mut n = open.len();
    n += store.outbox(None, None, u32::MAX).await?.len();
    for a in &open {
        n += store.alert_events(a.id).await?.len();
    }
    Ok(n)
}

/// `url`: a store URL, or `None` for a fresh SQLite file.
pub async fn alert_load(
    n: usize,
    ticks: u32,
    url: Option<&str>,
) -> Result<AlertLoadReport, BenchError> {
    let setup = |e: &dyn fmt::Display| BenchError::Setup(e.to_string());
    let dir = tempfile::tempdir().map_err(|e| setup(&e))?;
    let storage = url
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display()));
    let peer = hanging_peer().await?;
    // The alerts are for outlets the config does not list; the engine records
    // them all the same (names fall back to ids).
    let cfg = Arc::new(config(
        dir.path(),
        &peer,
        Some(&storage),
        "timeout = \"60s\"\n",
        0,
    )?);
    let store = Store::open(&cfg.storage_url, &StoreOptions::default()).await?;
    let backend = if storage.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let notifier = Arc::new(Notifier::from_config(&cfg, clock.clone()));
    let engine = AlertEngine::new(store.clone(), notifier.clone(), cfg.clone(), clock.clone());
    let wake = Arc::new(Notify::new());
    let (stop, stop_rx) = watch::channel(false);
    let (_n_tx, n_rx) = watch::channel(notifier.clone());
    let dispatch = DispatchTask::spawn(
        Dispatcher::new(store.clone(), notifier, clock.clone()),
        wake.clone(),
        n_rx,
        stop_rx,
    );
    let t = Utc
        .with_ymd_and_hms(2026, 11, 27, 1, 0, 0)
        .single()
        .ok_or_else(|| setup(&"time"))?;
    let findings: Vec<Finding> = (0..n)
        .map(|i| Finding {
            rule: RuleName::Exceedance,
            severity: Severity::Violation,
            enterprise: "E1".into(),
            location: Some(Location::Outlet(format!("DA{i:05}").as_str().into())),
            factor: "a21026".into(),
            window_start: t,
            window_end: t + chrono::Duration::hours(1),
            at: t + chrono::Duration::hours(1),
            value: Some(41.2),
            threshold: Some(35.0),
            detail: "outlets[0].limits[0]".into(),
            message: "SO2 小时均值(折算) 41.2 mg/m³，限值 35".into(),
            evidence: Evidence::default(),
        })
        .collect();
    let ids = store.insert_findings(&findings, Utc::now()).await?;
    let batch: Vec<StoredFinding> = findings
        .into_iter()
        .zip(ids)
        .filter_map(|(finding, id)| {
            Some(StoredFinding {
                id: id?,
                created: Utc::now(),
                finding,
            })
        })
        .collect();
    let started = Instant::now();
    for chunk in batch.chunks(1000) {
        engine.on_findings_retrying(chunk).await;
        wake.notify_one();
    }
    let all_open = started.elapsed();
    let open = store
        .alerts(&AlertQuery {
            state: Some(AlertState::Open),
            limit: u32::MAX,
            ..Default::default()
        })
        .await?
        .len();
    if open != n {
        return Err(setup(&format!("{open} of {n} alerts open")));
    }
    let before = rows(&store).await?;
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    for _ in 0..ticks {
        engine.tick().await.map_err(|e| setup(&e))?;
    }
    let wall = wall0.elapsed();
    let cpu = cpu_time()
        .zip(cpu0)
        .map(|(a, b)| a.saturating_sub(b))
        .unwrap_or_default();
    let written = rows(&store).await?.saturating_sub(before);
    let _ = stop.send(true);
    dispatch.join().await;
    store.close().await;
    let k = ticks.max(1);
    Ok(AlertLoadReport {
        backend,
        alerts: n,
        all_open,
        ticks,
        cpu_per_tick: cpu / k,
        wall_per_tick: wall / k,
        rows_written_per_tick: written as f64 / f64::from(k),
    })
}
