//! A fleet of simulated HJ 212 loggers at a steady rate: N loggers, each on its own
//! TCP connection, each uploading one 2011 real-time frame every interval, their
//! sends spread evenly over the interval as a city's loggers are. The CPU benchmark
//! (`pollwatch bench hj212-steady`) runs the fleet in a child process so that only
//! the server's CPU is counted; the fleet reports what it sent and how fast the
//! 9014s came back in [`FleetLine`]s, which that benchmark parses.
//!
//! Each upload carries the wall-clock time as its DataTime (one second later than
//! the logger's previous one at least), so every frame is new data for the store,
//! not a duplicate it drops. A fleet can be told to go idle: the loggers keep their
//! connections but send nothing, for measuring what a connected but quiet city
//! costs.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Duration as ChronoDuration, NaiveDateTime, Timelike};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::hj212_logger::cp_values;
use super::LoggerSim;
use crate::sources::hj212::codec::time::LocalDateTime;

/// Factor codes of the fleet's uploads (flue gas).
const CODES: [&str; 10] = [
    "a21026", "a21002", "a34013", "a19001", "a00000", "a01011", "a01012", "a01013", "a01014",
    "a21005",
];

#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub addr: SocketAddr,
    pub loggers: usize,
    pub interval: Duration,
    /// Factors per upload, 1 to 10 (flue-gas codes; more are taken as 10).
    pub factors: usize,
    /// The loggers' local time zone, for DataTime.
    pub tz: chrono_tz::Tz,
}

/// The logger MN of fleet member `i` (the benchmark's registry uses the same).
pub fn fleet_mn(i: usize) -> String {
    format!("MN{i:08}")
}

/// The fleet's password.
pub const FLEET_PASSWORD: &str = "123456";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Send,
    Idle,
    Stop,
}

#[derive(Debug, Default)]
struct Counters {
    connected: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    /// Send → 9014 latencies since the last mark.
    latencies: Mutex<Vec<Duration>>,
    /// sent, acked, failed at the last mark.
    mark: Mutex<[u64; 3]>,
}

/// A running fleet; dropping it stops the loggers.
pub struct Fleet {
    counters: Arc<Counters>,
    phase: watch::Sender<Phase>,
    tasks: JoinSet<()>,
}

/// What the fleet did since its last mark, as the line it prints:
/// `fleet TAG: connected=N sent=N acked=N failed=N p50_ms=X p99_ms=X`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetLine {
    pub tag: String,
    pub connected: u64,
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl fmt::Display for FleetLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fleet {}: connected={} sent={} acked={} failed={} p50_ms={:.3} p99_ms={:.3}",
            self.tag, self.connected, self.sent, self.acked, self.failed, self.p50_ms, self.p99_ms
        )
    }
}

impl FleetLine {
    /// A line as [`Display`](fmt::Display) writes it; `None` for any other line.
    pub fn parse(line: &str) -> Option<FleetLine> {
        let rest = line.trim().strip_prefix("fleet ")?;
        let (tag, fields) = rest.split_once(": ")?;
        let mut out = FleetLine {
            tag: tag.to_string(),
            ..Default::default()
        };
        for kv in fields.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            match k {
                "connected" => out.connected = v.parse().ok()?,
                "sent" => out.sent = v.parse().ok()?,
                "acked" => out.acked = v.parse().ok()?,
                "failed" => out.failed = v.parse().ok()?,
                "p50_ms" => out.p50_ms = v.parse().ok()?,
                "p99_ms" => out.p99_ms = v.parse().ok()?,
                _ => return None,
            }
        }
        Some(out)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fleet {
    /// Starts every logger: each connects at once and sends its first upload at its
    /// place in the first interval.
    pub fn start(opts: &FleetOptions) -> Fleet {
        let counters = Arc::new(Counters::default());
        let (phase, phase_rx) = watch::channel(Phase::Send);
        let mut tasks = JoinSet::new();
        let start = tokio::time::Instant::now();
        let cp = Arc::new(fleet_cp(opts.factors));
        for i in 0..opts.loggers {
            let offset = opts.interval.mul_f64(i as f64 / opts.loggers.max(1) as f64);
            tasks.spawn(run_logger(
                i,
                opts.clone(),
                start + offset,
                cp.clone(),
                counters.clone(),
                phase_rx.clone(),
            ));
        }
        Fleet {
            counters,
            phase,
            tasks,
        }
    }

    /// Counts and latencies since the last mark.
    pub fn line(&self, tag: &str) -> FleetLine {
        let c = &self.counters;
        let mut lat = lock(&c.latencies).clone();
        lat.sort_unstable();
        let at = |p: f64| crate::bench::percentile(&lat, p).as_secs_f64() * 1e3;
        let [sent0, acked0, failed0] = *lock(&c.mark);
        FleetLine {
            tag: tag.to_string(),
            connected: c.connected.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed).saturating_sub(sent0),
            acked: c.acked.load(Ordering::Relaxed).saturating_sub(acked0),
            failed: c.failed.load(Ordering::Relaxed).saturating_sub(failed0),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
        }
    }

    /// Starts a new window: counts and latencies from now on.
    pub fn mark(&self) {
        let c = &self.counters;
        let now = [
            c.sent.load(Ordering::Relaxed),
            c.acked.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
        ];
        *lock(&c.mark) = now;
        lock(&c.latencies).clear();
    }

    /// Loggers keep their connections but stop uploading (an upload in flight
    /// finishes).
    pub fn idle(&self) {
        let _ = self.phase.send(Phase::Idle);
    }

    /// Closes every connection and waits for the loggers to end.
    pub async fn stop(mut self) {
        let _ = self.phase.send(Phase::Stop);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The CP text of every upload: `factors` (at most 10) real-time values, flag N.
fn fleet_cp(factors: usize) -> String {
    let values: Vec<(&str, f64, char)> = CODES
        .iter()
        .take(factors.max(1))
        .enumerate()
        .map(|(k, code)| (*code, 10.0 + k as f64 * 1.25, 'N'))
        .collect();
    cp_values("Rtd", &values)
}

/// This logger's next DataTime: now in `tz`, at least a second after `last`.
fn next_data_time(tz: chrono_tz::Tz, last: Option<NaiveDateTime>) -> NaiveDateTime {
    let now = chrono::Utc::now().with_timezone(&tz).naive_local();
    let now = now.with_nanosecond(0).unwrap_or(now);
    match last {
        Some(l) if now <= l => l + ChronoDuration::seconds(1),
        _ => now,
    }
}

fn local(t: NaiveDateTime) -> Option<LocalDateTime> {
    LocalDateTime::parse_compact(&t.format("%Y%m%d%H%M%S").to_string()).ok()
}

async fn run_logger(
    i: usize,
    opts: FleetOptions,
    first: tokio::time::Instant,
    cp: Arc<String>,
    counters: Arc<Counters>,
    mut phase: watch::Receiver<Phase>,
) {
    let mut sim = LoggerSim::new(opts.addr, &fleet_mn(i), FLEET_PASSWORD);
    sim.st = "31".into();
    sim.answer_timeout = Duration::from_secs(10);
    // Connect at once, retrying (a thousand connects at the same instant can
    // overflow a listen backlog).
    while sim.connect().await.is_err() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = phase.wait_for(|p| *p == Phase::Stop) => return,
        }
    }
    counters.connected.fetch_add(1, Ordering::Relaxed);
    let mut ticks = tokio::time::interval_at(first, opts.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    loop {
        let now = *phase.borrow_and_update();
        match now {
            Phase::Stop => break,
            Phase::Idle => {
                if phase.changed().await.is_err() {
                    break;
                }
                continue;
            }
            Phase::Send => {}
        }
        tokio::select! {
            _ = ticks.tick() => {}
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
        }
        let t = next_data_time(opts.tz, last);
        last = Some(t);
        let Some(data_time) = local(t) else {
            continue;
        };
        counters.sent.fetch_add(1, Ordering::Relaxed);
        match sim.upload("2011", data_time, &cp).await {
            Ok(d) => {
                counters.acked.fetch_add(1, Ordering::Relaxed);
                lock(&counters.latencies).push(d.latency);
            }
            Err(_) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    sim.disconnect();
    counters.connected.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_round_trips() {
        let l = FleetLine {
            tag: "report".into(),
            connected: 1000,
            sent: 3001,
            acked: 3000,
            failed: 1,
            p50_ms: 1.25,
            p99_ms: 12.5,
        };
        assert_eq!(FleetLine::parse(&l.to_string()), Some(l));
        assert_eq!(FleetLine::parse("simulating 3 gateways"), None);
        assert_eq!(FleetLine::parse("fleet x: sent=abc"), None);
    }

    #[test]
    fn data_time_advances() {
        let tz = chrono_tz::Asia::Shanghai;
        let a = next_data_time(tz, None);
        let b = next_data_time(tz, Some(a));
        assert!(b > a);
        let far = a + ChronoDuration::hours(1);
        assert_eq!(
            next_data_time(tz, Some(far)),
            far + ChronoDuration::seconds(1)
        );
        assert!(local(a).is_some());
    }

    #[test]
    fn cp_has_every_factor() {
        assert_eq!(fleet_cp(4).matches("-Rtd=").count(), 4);
        let cp = fleet_cp(12);
        assert_eq!(cp.matches("-Rtd=").count(), 10);
        assert!(cp.starts_with("a21026-Rtd=10,a21026-Flag=N"));
    }
}
