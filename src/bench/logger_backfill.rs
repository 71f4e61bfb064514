//! Loggers coming back after a city-wide outage: N loggers each kept `hours` hours
//! of hourly data (4 factors) while the link was down; they reconnect at once and
//! the server asks each for its gap ([`crate::sources::hj212::backfill`]). Beside
//! them, `live` loggers that were never cut off keep uploading real-time data.
//!
//! Measured against an in-process server writing to the store at `url`: the time
//! from the reconnect until every request has ended (9012 received), the process's
//! CPU time over that span (server and simulators share the process, so this is an
//! upper bound for the server), and the 9014 latency of the live loggers' real-time
//! uploads meanwhile.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;

use super::{cpu_time, percentile, BenchError};
use crate::clock::SystemClock;
use crate::completeness::rates::floor_hour;
use crate::sim::hj212_logger::cp_values;
use crate::sim::{Backlog, HistoryMode, LoggerSim};
use crate::sources::hj212::backfill::local;
use crate::sources::hj212::registry::Endpoint;
use crate::sources::hj212::{Backfill, BackfillSettings, Hj212Server, Registry};

const FACTORS: [&str; 4] = ["w01018", "w21003", "w21011", "w21001"];

#[derive(Debug, Clone)]
pub struct LoggerBackfillReport {
    pub loggers: usize,
    pub hours: u32,
    pub rate: u32,
    pub periods: u64,
    pub readings: u64,
    pub elapsed: Duration,
    pub cpu: Option<Duration>,
    pub live_acks: usize,
    pub live_p50: Duration,
    pub live_p99: Duration,
    pub live_max: Duration,
}

impl fmt::Display for LoggerBackfillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "backfill after a {}-hour outage: {} loggers, backfill_rate {}/s",
            self.hours, self.loggers, self.rate
        )?;
        writeln!(
            f,
            "  {} hourly periods ({} readings) back in {:.1} s ({:.0} periods/s)",
            self.periods,
            self.readings,
            secs,
            self.periods as f64 / secs
        )?;
        if let Some(cpu) = self.cpu {
            writeln!(
                f,
                "  CPU (server + simulators): {:.1} s = {:.0} % of one core",
                cpu.as_secs_f64(),
                cpu.as_secs_f64() / secs * 100.0
            )?;
        }
        write!(
            f,
            "  live real-time uploads meanwhile: {} acks, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.live_acks,
            self.live_p50.as_secs_f64() * 1e3,
            self.live_p99.as_secs_f64() * 1e3,
            self.live_max.as_secs_f64() * 1e3
        )
    }
}

fn endpoint(i: usize, backfill: bool) -> Endpoint {
    Endpoint {
        backfill,
        factors: FACTORS.iter().map(|s| s.to_string()).collect(),
        ..super::hj212::logger(
            &format!("E{:04}", i / 2),
            &format!("DW{:03}", i % 2),
            &format!("MN{i:08}"),
        )
    }
}

/// `loggers` loggers back after `hours` hours, `live` loggers uploading meanwhile.
pub async fn logger_backfill(
    url: &str,
    loggers: usize,
    hours: u32,
    live: usize,
    rate: u32,
) -> Result<LoggerBackfillReport, BenchError> {
    let tz = chrono_tz::Asia::Shanghai;
    let (store, writer, task) = super::hj212::store_and_writer(url).await?;
    let mut registry = Registry::default();
    for i in 0..loggers + live {
        registry.insert(endpoint(i, i < loggers));
    }
    let (_reg_tx, reg_rx) = watch::channel(Arc::new(registry));
    let (stop, stop_rx) = watch::channel(false);
    let cfg = super::hj212::server_config(loggers + live + 16);
    let settings = BackfillSettings {
        rate,
        // The outage, and the hour the data of its last hour is still due.
        max_age: Duration::from_secs(u64::from(hours + 1) * 3600),
        answer_timeout: Duration::from_secs(120),
        settle: Duration::ZERO,
        tz,
    };
    let backfill = Backfill::start(store.clone(), settings);
    let server = Hj212Server::start_with_backfill(
        cfg,
        reg_rx,
        writer.clone(),
        Arc::new(SystemClock),
        stop_rx,
        Some(backfill),
    )
    .await
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    let addr = server.local_addr();
    let now = Utc::now();
    let f = floor_hour(now);
    let mut backlog = Backlog::default();
    for k in 1..=i64::from(hours) + 1 {
        let values: Vec<(&str, f64, char)> = FACTORS
            .iter()
            .enumerate()
            .map(|(j, c)| (*c, 10.0 + j as f64 + k as f64 / 100.0, 'N'))
            .collect();
        backlog.keep(
            "2061",
            local(f - chrono::Duration::hours(k), tz),
            &cp_values("Avg", &values),
        );
    }
    let backlog = Arc::new(backlog);
    let rt_cp = cp_values("Rtd", &[("w01018", 20.0, 'N'), ("w21003", 1.0, 'N')]);

    let done = Arc::new(AtomicBool::new(false));
    let mut live_tasks = Vec::new();
    for i in loggers..loggers + live {
        let (done, cp) = (done.clone(), rt_cp.clone());
        live_tasks.push(tokio::spawn(async move {
            let mut sim = LoggerSim::new(addr, &format!("MN{i:08}"), "123456");
            sim.answer_timeout = Duration::from_secs(30);
            let mut lat = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let d = sim.upload("2011", local(Utc::now(), tz), &cp).await?;
                lat.push(d.latency);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok::<_, crate::sim::SimError>(lat)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (cpu0, started) = (cpu_time(), Instant::now());
    let mut tasks = Vec::new();
    for i in 0..loggers {
        let (backlog, cp) = (backlog.clone(), rt_cp.clone());
        tasks.push(tokio::spawn(async move {
            let mut sim = LoggerSim::new(addr, &format!("MN{i:08}"), "123456");
            sim.answer_timeout = Duration::from_secs(30);
            sim.upload("2011", local(Utc::now(), tz), &cp).await?;
            let mut periods = 0u64;
            // One request per day of gap at most; stop when none comes.
            while let Some(req) = sim
                .answer_history(&backlog, HistoryMode::Answer, Duration::from_secs(120))
                .await?
            {
                periods += u64::from(req.uploaded);
                if periods >= u64::from(hours) {
                    break;
                }
            }
            Ok::<_, crate::sim::SimError>(periods)
        }));
    }
    let mut periods = 0;
    for t in tasks {
        periods += t.await?.map_err(|e| BenchError::Setup(e.to_string()))?;
    }
    let elapsed = started.elapsed();
    let cpu = cpu0.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a));
    done.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in live_tasks {
        lat.extend(t.await?.map_err(|e| BenchError::Setup(e.to_string()))?);
    }
    let _ = stop.send(true);
    server.join().await;
    drop(writer);
    task.finish(Duration::from_secs(10)).await;
    store.close().await;
    lat.sort();
    Ok(LoggerBackfillReport {
        loggers,
        hours,
        rate,
        periods,
        readings: periods * FACTORS.len() as u64,
        elapsed,
        cpu,
        live_acks: lat.len(),
        live_p50: percentile(&lat, 0.5),
        live_p99: percentile(&lat, 0.99),
        live_max: lat.last().copied().unwrap_or_default(),
    })
}
