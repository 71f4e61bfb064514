//! The monthly report at a city's size: `enterprises` enterprises (one flue-gas
//! outlet each, SO2 limited hourly) with `days` days of real-time data every
//! `interval_s` seconds, their loggers' hourly means (about 3 % of hours
//! missing, 1 % flagged M), a few exceedance findings and alerts per
//! enterprise, some acknowledged. Then, timed separately:
//!
//! - **cold**: the report before any day was closed, so the transmission rates
//!   are counted from the stored hourly values;
//! - **close**: the daemon's day-closing pass over the repair window
//!   ([`crate::completeness::daily::close_days`]), which persists the daily
//!   figures — run once per day of the month, as the daemon does, and the
//!   average pass reported;
//! - **warm**: the report again, now reading the persisted figures — what the
//!   bureau's month-end run sees, since the daemon closes every day;
//! - **xlsx** and **html**: rendering the computed report.
//!
//! The month is the one before `now`'s, so "now" is the first days of the next
//! month, as at month end.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

use super::store::ScratchPg;
use super::BenchError;
use crate::config::{Config, LoadOptions};
use crate::model::{DataKind, Flag, Location, Protocol, Reading, SourceRef, Stat};
use crate::rules::{Evidence, Finding, RuleName, Severity};
use crate::store::{AlertState, Batch, NewAlert, Received, Store, StoreOptions, StoreUrl};

#[derive(Debug, Clone)]
pub struct ReportBench {
    pub url: String,
    pub enterprises: usize,
    pub days: u32,
    pub interval_s: u32,
}

#[derive(Debug, Clone)]
pub struct ReportBenchReport {
    pub backend: &'static str,
    pub enterprises: usize,
    pub days: u32,
    pub readings: u64,
    pub seed: Duration,
    pub cold: Duration,
    pub close: Duration,
    pub warm: Duration,
    pub xlsx: Duration,
    pub html: Duration,
    pub xlsx_bytes: usize,
    pub alerts: u32,
}

impl fmt::Display for ReportBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "report monthly on {} ({} enterprises × {} days, {} readings seeded in {:.0} s): \
             cold {:.2} s (rates counted from hourly values), one day-closing pass {:.2} s, \
             warm {:.2} s (persisted figures); xlsx {:.2} s ({} KiB), html {:.3} s; {} alerts in the month",
            self.backend,
            self.enterprises,
            self.days,
            self.readings,
            self.seed.as_secs_f64(),
            self.cold.as_secs_f64(),
            self.close.as_secs_f64(),
            self.warm.as_secs_f64(),
            self.xlsx.as_secs_f64(),
            self.xlsx_bytes / 1024,
            self.html.as_secs_f64(),
            self.alerts,
        )
    }
}

const DISTRICTS: [&str; 6] = ["吴中区", "相城区", "姑苏区", "虎丘区", "吴江区", "工业园区"];
/// Readings per commit while seeding.
const CHUNK: usize = 20_000;

fn write_config(dir: &Path, url: &str, enterprises: usize) -> Result<Config, BenchError> {
    let setup = |e: std::io::Error| BenchError::Setup(e.to_string());
    std::fs::create_dir_all(dir.join("enterprises")).map_err(setup)?;
    std::fs::write(
        dir.join("pollwatch.toml"),
        format!(
            "[daemon]\ntimezone = \"Asia/Shanghai\"\nstate_dir = {:?}\n\n[storage]\nurl = {url:?}\n",
            dir.join("state").display().to_string()
        ),
    )
    .map_err(setup)?;
    for i in 0..enterprises {
        let platform = if i % 2 == 0 { "provincial" } else { "city" };
        let positive = i % 4 == 0;
        std::fs::write(
            dir.join(format!("enterprises/e{i:04}.toml")),
            format!(
                "id = \"E{i:04}\"\nname = \"企业{i:04}\"\ndistrict = \"{}\"\nindustry = \"火电\"\n\
                 platform = \"{platform}\"\npositive_list = {positive}\n\
                 [[outlets]]\nid = \"DA001\"\nname = \"1#排口\"\nkind = \"flue_gas\"\n\
                 [[outlets.limits]]\nfactor = \"a21026\"\nmax = 35.0\nbasis = \"hour\"\n",
                DISTRICTS[i % DISTRICTS.len()]
            ),
        )
        .map_err(setup)?;
    }
    Config::load(dir, &LoadOptions::default()).map_err(|e| BenchError::Setup(e.to_string()))
}

fn reading(e: &str, ts: DateTime<Utc>, value: f64, hourly: Option<Flag>) -> Reading {
    Reading {
        enterprise: e.into(),
        location: Location::Outlet("DA001".into()),
        factor: "a21026".into(),
        unit: "mg/m³".into(),
        ts,
        value,
        kind: if hourly.is_some() {
            DataKind::Hour
        } else {
            DataKind::Rtd
        },
        stat: if hourly.is_some() {
            Stat::Avg
        } else {
            Stat::Rtd
        },
        converted: false,
        flag: hourly.unwrap_or(Flag::N),
        source: SourceRef {
            protocol: Protocol::Sim,
            device: e.into(),
            resend: false,
        },
    }
}

/// Cheap deterministic noise: the same data on every run.
fn mix(a: u64, b: u64) -> u64 {
    let mut x = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 31;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 33
}

async fn seed(
    store: &Store,
    opts: &ReportBench,
    from: DateTime<Utc>,
) -> Result<(u64, u32), BenchError> {
    let step = chrono::Duration::seconds(i64::from(opts.interval_s.max(1)));
    let end = from + chrono::Duration::days(i64::from(opts.days));
    let mut buf = Vec::with_capacity(CHUNK);
    let mut total = 0u64;
    let mut alerts = 0u32;
    for i in 0..opts.enterprises {
        let e = format!("E{i:04}");
        let mut t = from;
        while t < end {
            let n = mix(i as u64, t.timestamp() as u64);
            buf.push(reading(&e, t, 10.0 + (n % 200) as f64 / 10.0, None));
            if t.timestamp() % 3600 == 0 {
                // The logger's hourly mean: 3 % of hours never arrive, 1 % are M.
                match n % 100 {
                    0..=2 => {}
                    3 => buf.push(reading(&e, t, 20.0, Some(Flag::M))),
                    _ => buf.push(reading(&e, t, 20.0, Some(Flag::N))),
                }
            }
            if buf.len() >= CHUNK {
                total += buf.len() as u64;
                commit(store, std::mem::take(&mut buf)).await?;
            }
            t += step;
        }
        // Five exceedances a month, each with its alert; three acknowledged.
        let mut findings = Vec::new();
        for k in 0..5u32 {
            let start = from + chrono::Duration::hours(i64::from(37 * k + 7 + (i as u32 % 24)));
            findings.push(Finding {
                rule: RuleName::Exceedance,
                severity: Severity::Violation,
                enterprise: e.as_str().into(),
                location: Some(Location::Outlet("DA001".into())),
                factor: "a21026".into(),
                window_start: start,
                window_end: start + chrono::Duration::hours(1),
                at: start + chrono::Duration::hours(1),
                value: Some(40.0 + f64::from(k)),
                threshold: Some(35.0),
                detail: String::new(),
                message: format!("{e} SO2 {}", 40 + k),
                evidence: Evidence::default(),
            });
        }
        let ids = store.insert_findings(&findings, end).await?;
        for (k, (f, id)) in findings.iter().zip(ids).enumerate() {
            let alert = NewAlert {
                key: format!("{e}|outlet:DA001|a21026|exceedance|{k}"),
                enterprise: e.clone(),
                location: "outlet:DA001".into(),
                factor: "a21026".into(),
                rule: "exceedance".into(),
                severity: "major".into(),
                rank: crate::alerts::rank("major"),
                value: f.value,
                threshold: f.threshold,
                message: f.message.clone(),
                facts: "{}".into(),
            };
            let r = store
                .record_finding(
                    &alert,
                    id,
                    "{}",
                    f.at,
                    chrono::Duration::minutes(60),
                    1000,
                    &[],
                    crate::alerts::rank,
                )
                .await?;
            alerts += 1;
            if k < 3 {
                let at = f.at + chrono::Duration::minutes(10 * (k as i64 + 1));
                store
                    .transition_alert(r.alert_id, AlertState::Acknowledged, "bench", "", at)
                    .await?;
            }
        }
    }
    total += buf.len() as u64;
    commit(store, buf).await?;
    Ok((total, alerts))
}

async fn commit(store: &Store, readings: Vec<Reading>) -> Result<(), BenchError> {
    if readings.is_empty() {
        return Ok(());
    }
    store
        .commit(&[Received {
            at: Utc::now(),
            batch: Batch::readings(readings),
        }])
        .await?;
    Ok(())
}

/// Runs the benchmark on `opts.url` (PostgreSQL: a scratch database beside it,
/// dropped afterwards).
pub async fn report(opts: &ReportBench) -> Result<ReportBenchReport, BenchError> {
    let dir = tempfile::tempdir().map_err(|e| BenchError::Setup(e.to_string()))?;
    match StoreUrl::parse(&opts.url) {
        Ok(StoreUrl::Postgres(url)) => {
            let scratch = ScratchPg::create(&url).await?;
            let r = report_at(&scratch.url, dir.path(), opts).await;
            scratch.drop_db().await?;
            r
        }
        _ => report_at(&opts.url, dir.path(), opts).await,
    }
}

async fn report_at(
    url: &str,
    dir: &Path,
    opts: &ReportBench,
) -> Result<ReportBenchReport, BenchError> {
    let cfg = write_config(dir, url, opts.enterprises)?;
    let tz = cfg.timezone;
    let first = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default();
    let from = tz
        .from_local_datetime(&first.and_time(chrono::NaiveTime::MIN))
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| BenchError::Setup("month start".into()))?;
    let month = format!("{:04}-{:02}", first.year(), first.month());
    // Two days into the next month: every day of the month is closable.
    let now = from + chrono::Duration::days(i64::from(opts.days) + 2);
    let store = Store::open(url, &StoreOptions::default()).await?;
    let backend = store.backend();
    let t = Instant::now();
    let (readings, alerts) = seed(&store, opts, from).await?;
    let seed_time = t.elapsed();

    let t = Instant::now();
    crate::report::monthly(&store, &cfg, &month, now)
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let cold = t.elapsed();
    // The daemon closes each day shortly after midnight (and revises the repair
    // window's days on each pass): one pass per day of the month.
    let t = Instant::now();
    for d in 1..=i64::from(opts.days) {
        let at = from + chrono::Duration::days(d) + chrono::Duration::minutes(30);
        crate::completeness::daily::close_days(&cfg, &store, at)
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
    }
    let close = t.elapsed() / opts.days.max(1);
    let t = Instant::now();
    let r = crate::report::monthly(&store, &cfg, &month, now)
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let warm = t.elapsed();
    let t = Instant::now();
    let xlsx = crate::report::xlsx::write(&r).map_err(|e| BenchError::Setup(e.to_string()))?;
    let xlsx_time = t.elapsed();
    let t = Instant::now();
    let page = crate::report::html::page(&r, true);
    let html = t.elapsed();
    drop(page);
    store.close().await;
    Ok(ReportBenchReport {
        backend,
        enterprises: opts.enterprises,
        days: opts.days,
        readings,
        seed: seed_time,
        cold,
        close,
        warm,
        xlsx: xlsx_time,
        html,
        xlsx_bytes: xlsx.len(),
        alerts,
    })
}
