//! Store throughput: readings committed per second through the batched writer.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};

use crate::clock::SystemClock;
use crate::model::{DataKind, Flag, Id, Location, Protocol, Reading, SourceRef, Stat};
use crate::store::{Batch, Store, StoreError, StoreOptions, WriteError, Writer, WriterOptions};

#[derive(Debug, Clone)]
pub struct StoreBench {
    pub url: String,
    pub readings: usize,
    pub per_request: usize,
    pub senders: usize,
    /// Outlets of 10 factors each: the number of series is ten times this.
    pub outlets: usize,
}

#[derive(Debug, Clone)]
pub struct StoreReport {
    pub backend: &'static str,
    pub series: usize,
    pub readings: u64,
    /// Readings the store already held; a benchmark with duplicates is not valid.
    pub duplicates: u64,
    pub elapsed: Duration,
    pub commits: u64,
    pub ack_p50: Duration,
    pub ack_p99: Duration,
}

impl StoreReport {
    pub fn readings_per_sec(&self) -> f64 {
        self.readings as f64 / self.elapsed.as_secs_f64()
    }
}

impl fmt::Display for StoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "store {} ({} series): {} readings committed ({} duplicates) in {:.2} s = {:.0} readings/s; {} commits (avg {:.0} readings each); write→durable p50 {:.1} ms, p99 {:.1} ms",
            self.backend,
            self.series,
            self.readings,
            self.duplicates,
            self.elapsed.as_secs_f64(),
            self.readings_per_sec(),
            self.commits,
            self.readings as f64 / self.commits.max(1) as f64,
            self.ack_p50.as_secs_f64() * 1e3,
            self.ack_p99.as_secs_f64() * 1e3,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("a sender task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("benchmark setup failed: {0}")]
    Setup(String),
}

/// Readings shaped like a city's traffic: `outlets` outlets of 10 factors each,
/// one real-time value per factor per second.
pub fn synthetic_readings(n: usize, outlets: usize) -> Vec<Reading> {
    const FACTORS: [&str; 10] = [
        "a21026", "a21002", "a34013", "a19001", "a00000", "a01011", "a01012", "a01013", "a01014",
        "a21005",
    ];
    let enterprise: Id = "bench-enterprise".into();
    let outlet_ids: Vec<Id> = (0..outlets.max(1))
        .map(|i| format!("DA{i:05}").into())
        .collect();
    let factors: Vec<Id> = FACTORS.iter().map(|f| Id::from(*f)).collect();
    let unit: Id = "mg/m³".into();
    let base = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let per_tick = outlet_ids.len() * factors.len();
    (0..n)
        .map(|i| {
            let tick = i / per_tick;
            let within = i % per_tick;
            let outlet = &outlet_ids[within / factors.len()];
            Reading {
                enterprise: enterprise.clone(),
                location: Location::Outlet(outlet.clone()),
                factor: factors[within % factors.len()].clone(),
                unit: unit.clone(),
                ts: base + chrono::Duration::seconds(tick as i64),
                value: (i % 1000) as f64 * 0.1,
                kind: DataKind::Rtd,
                stat: Stat::Rtd,
                converted: false,
                flag: Flag::N,
                source: SourceRef {
                    protocol: Protocol::Sim,
                    device: outlet.clone(),
                    resend: false,
                },
            }
        })
        .collect()
}

/// Pushes `readings` through a fresh writer from `senders` concurrent senders and
/// measures until the last one is durable. A PostgreSQL URL names the server: the
/// benchmark runs in a database of its own that it creates and drops, so earlier
/// runs (whose rows would all be duplicates) cannot flatter the figures.
pub async fn store(opts: &StoreBench) -> Result<StoreReport, BenchError> {
    match crate::store::StoreUrl::parse(&opts.url) {
        Ok(crate::store::StoreUrl::Postgres(url)) => {
            let scratch = ScratchPg::create(&url).await?;
            let report = store_at(&scratch.url, opts).await;
            scratch.drop_db().await?;
            report
        }
        _ => store_at(&opts.url, opts).await,
    }
}

/// A throw-away database on a PostgreSQL server.
pub(crate) struct ScratchPg {
    admin: String,
    name: String,
    pub(crate) url: String,
}

impl ScratchPg {
    pub(crate) async fn create(url: &str) -> Result<Self, BenchError> {
        use sqlx::Connection;
        let name = format!("pollwatch_bench_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .map_err(StoreError::db("connect for benchmark"))?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut conn)
            .await
            .map_err(StoreError::db("drop old benchmark database"))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .map_err(StoreError::db("create benchmark database"))?;
        let _ = conn.close().await;
        let (head, query) = url
            .split_once('?')
            .map_or((url, None), |(h, q)| (h, Some(q)));
        let base = head.rsplit_once('/').map_or(head, |(b, _)| b);
        let scratch = match query {
            Some(q) => format!("{base}/{name}?{q}"),
            None => format!("{base}/{name}"),
        };
        Ok(ScratchPg {
            admin: url.to_string(),
            name,
            url: scratch,
        })
    }

    pub(crate) async fn drop_db(self) -> Result<(), BenchError> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.admin)
            .await
            .map_err(StoreError::db("connect for benchmark cleanup"))?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .map_err(StoreError::db("drop benchmark database"))?;
        Ok(())
    }
}

async fn store_at(url: &str, opts: &StoreBench) -> Result<StoreReport, BenchError> {
    let store = Store::open(url, &StoreOptions::default()).await?;
    let backend = store.backend();
    let (writer, task) = Writer::spawn(
        store.clone(),
        WriterOptions::default(),
        Arc::new(SystemClock),
    );
    let all = synthetic_readings(opts.readings, opts.outlets);
    let per = opts.per_request.max(1);
    let senders = opts.senders.max(1);
    let mut chunks: Vec<Vec<Batch>> = vec![Vec::new(); senders];
    for (i, c) in all.chunks(per).enumerate() {
        chunks[i % senders].push(Batch::readings(c.to_vec()));
    }
    drop(all);

    let started = Instant::now();
    let mut handles = Vec::new();
    for batches in chunks {
        let w = writer.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(batches.len());
            for b in batches {
                let t = Instant::now();
                w.write(b).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, WriteError>(lat)
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await??);
    }
    let elapsed = started.elapsed();
    let stats = writer.stats();
    let readings = stats.readings.load(Ordering::Relaxed);
    let duplicates = stats.duplicates.load(Ordering::Relaxed);
    let commits = stats.commits.load(Ordering::Relaxed);
    drop(writer);
    task.finish(Duration::from_secs(10)).await;
    store.close().await;
    lat.sort();
    let pct = |p: f64| super::percentile(&lat, p);
    Ok(StoreReport {
        backend,
        series: opts.outlets.max(1) * 10,
        readings,
        duplicates,
        elapsed,
        commits,
        ack_p50: pct(0.50),
        ack_p99: pct(0.99),
    })
}
