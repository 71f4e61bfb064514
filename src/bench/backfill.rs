//! Late data at scale: a week of hourly backfill (2061 with `-Cou`) for N
//! wastewater loggers arriving at once, beside real-time judging of the city.
//!
//! What it measures, on a SQLite store in a temporary directory: the live
//! evaluator taking the backfill in (each value is found late and its day
//! reported, never judged into the open windows), then each reopened
//! outlet-day read back from the store and judged again
//! ([`crate::rules::rejudge`]) — the work the rules task does while no
//! committed readings wait — and real-time judging of the next hour of the city
//! after it. The findings are not written (the store's findings path is
//! measured by `bench store` / `bench alerts`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};

use super::rules::{city_config, city_readings, RulesBenchError};
use crate::model::{DataKind, Flag, Id, Location, Protocol, Reading, SourceRef, Stat};
use crate::rules::rejudge::{rejudge, Job};
use crate::rules::{Evaluator, Options, Output, Plan};
use crate::store::{Batch, Received, Store, StoreError, StoreOptions};

#[derive(Debug, Clone)]
pub struct BackfillReport {
    pub loggers: usize,
    pub days: u32,
    pub late_values: u64,
    pub jobs: usize,
    /// The live evaluator taking the backfill in.
    pub ingest: Duration,
    /// Reading the reopened outlet-days back from the store.
    pub read: Duration,
    /// Judging them again.
    pub judge: Duration,
    pub findings: usize,
    /// Real-time readings and the time the live evaluator took for them, after
    /// the backfill.
    pub realtime: (u64, Duration),
}

impl fmt::Display for BackfillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_job = (self.read + self.judge).as_secs_f64() * 1e3 / self.jobs.max(1) as f64;
        write!(
            f,
            "backfill: {} loggers × {} days of hourly data = {} late values, taken in by the live evaluator in {:.2} s; \
             {} outlet-days judged again: store reads {:.2} s + judging {:.2} s = {:.2} ms per outlet-day ({} findings); \
             real time after it: {} readings in {:.2} s = {:.0} readings/s",
            self.loggers,
            self.days,
            self.late_values,
            self.ingest.as_secs_f64(),
            self.jobs,
            self.read.as_secs_f64(),
            self.judge.as_secs_f64(),
            per_job,
            self.findings,
            self.realtime.0,
            self.realtime.1.as_secs_f64(),
            self.realtime.0 as f64 / self.realtime.1.as_secs_f64().max(1e-9),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Setup(#[from] RulesBenchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("temporary directory: {0}")]
    Io(#[from] std::io::Error),
}

/// One hour of one logger's backfill: COD, NH3-N, flow and discharge.
fn hour_upload(id: &Id, ts: chrono::DateTime<Utc>, w: f64) -> [Reading; 4] {
    let r = |factor: &str, value: f64, stat: Stat, unit: &str| Reading {
        enterprise: id.clone(),
        location: Location::Outlet("DW001".into()),
        factor: factor.into(),
        unit: unit.into(),
        ts,
        value,
        kind: DataKind::Hour,
        stat,
        converted: false,
        flag: Flag::N,
        source: SourceRef {
            protocol: Protocol::Sim,
            device: "sim".into(),
            resend: false,
        },
    };
    [
        r("w01018", 60.0 + w * 5.0, Stat::Avg, "mg/L"),
        r("w21003", 8.0 + w, Stat::Avg, "mg/L"),
        r("w00000", 20.0 + w, Stat::Avg, "L/s"),
        r("w00000", (20.0 + w) * 3.6, Stat::Cou, "m³"),
    ]
}

pub async fn backfill(loggers: usize, days: u32) -> Result<BackfillReport, BackfillError> {
    let config = city_config(loggers)?;
    let plan = Plan::new(&config);
    let dir = tempfile::tempdir()?;
    let store = Store::open(
        &format!("sqlite://{}/bench.db", dir.path().display()),
        &StoreOptions::default(),
    )
    .await?;
    // The city's first hour of real time (from 08:00 local on 27 November):
    // every day before it is closed.
    let city = city_readings(loggers, 2);
    let mut ev = Evaluator::new(plan.clone(), Options::default());
    let mut out = Output::default();
    for batch in &city[..120] {
        ev.ingest(batch, &mut out);
    }
    out = Output::default();
    let ids: Vec<Id> = (0..loggers).map(|i| Id::from(format!("E{i:04}"))).collect();
    let first = Utc
        .with_ymd_and_hms(2026, 11, 26, 16, 0, 0)
        .single()
        .unwrap_or_default()
        - chrono::Duration::days(i64::from(days));
    // Hour by hour, every logger catching up at once.
    let mut hours = Vec::with_capacity(days as usize * 24);
    for h in 0..i64::from(days) * 24 {
        let ts = first + chrono::Duration::hours(h);
        let mut batch = Vec::with_capacity(loggers * 4);
        for (e, id) in ids.iter().enumerate() {
            batch.extend(hour_upload(id, ts, ((h as usize * 7 + e * 13) % 11) as f64));
        }
        hours.push(batch);
    }
    for chunk in hours.chunks(8) {
        let parts: Vec<Received> = chunk
            .iter()
            .map(|b| Received {
                at: Utc::now(),
                batch: Batch::readings(b.clone()),
            })
            .collect();
        store.commit(&parts).await?;
    }
    let started = Instant::now();
    let mut late_values = 0;
    let mut jobs: BTreeMap<(Id, Id, chrono::DateTime<Utc>), Job> = BTreeMap::new();
    for batch in &hours {
        ev.ingest(batch, &mut out);
        late_values += out.reopened.len() as u64;
        for r in out.reopened.drain(..) {
            jobs.entry((r.enterprise.clone(), r.outlet.clone(), r.day))
                .and_modify(|j| j.add(&r))
                .or_insert_with(|| Job::new(&r));
        }
        out.findings.clear();
        out.emissions.clear();
    }
    let ingest = started.elapsed();
    let opts = Options::default();
    let (mut read, mut judge, mut findings) = (Duration::ZERO, Duration::ZERO, 0);
    for job in jobs.values() {
        let (from, to) = job.span(&plan, &opts);
        let t = Instant::now();
        let readings = store
            .outlet_readings(&job.enterprise, &job.outlet, from, to)
            .await?;
        read += t.elapsed();
        let t = Instant::now();
        let v = rejudge(&plan, &opts, job, &readings);
        judge += t.elapsed();
        findings += v.findings.len() + v.extra.len();
    }
    let t = Instant::now();
    let mut realtime = 0u64;
    for batch in &city[120..] {
        ev.ingest(batch, &mut out);
        realtime += batch.len() as u64;
    }
    let realtime = (realtime, t.elapsed());
    store.close().await;
    Ok(BackfillReport {
        loggers,
        days,
        late_values,
        jobs: jobs.len(),
        ingest,
        read,
        judge,
        findings,
        realtime,
    })
}
