//! HJ 212 at a city's steady rate (issue 23): what the server side of pollwatch —
//! the HJ 212 server and its store writer on SQLite with `synchronous = FULL` —
//! spends in CPU per stored frame when N loggers each upload one real-time frame
//! every interval, and what it spends when they are connected but quiet, and with
//! no logger connected at all.
//!
//! The loggers run in a child process (`pollwatch simulate hj212-fleet`), so the
//! CPU read from /proc for this process is the server's and the writer's alone (as
//! in [`super::field`]). The child is steered over its stdin (`mark`, `report`,
//! `idle`, `quit`) and answers with [`FleetLine`]s: frames sent, 9014s received,
//! failures and send → 9014 latency over the measured window. Frames are counted
//! on the server's side from the 9014s it sent (each only after the commit) and
//! readings from the writer's committed rows, so the per-frame figure divides by
//! what was really stored.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use super::hj212::BenchServer;
use super::procstat::ProcStats;
use super::BenchError;
use crate::sim::hj212_fleet::{fleet_mn, FleetLine};

#[derive(Debug, Clone)]
pub struct SteadyOptions {
    /// Store URL (a fresh SQLite file in the CLI).
    pub url: String,
    pub loggers: usize,
    /// Seconds between one logger's uploads.
    pub interval_secs: u64,
    /// Seconds measured at the steady rate.
    pub seconds: u64,
    /// Seconds measured for each idle floor.
    pub idle_seconds: u64,
    /// Factors per frame (1 to 10).
    pub factors: usize,
    /// The shortest warm-up: every logger's first frame stored, and this long.
    pub min_warmup: Duration,
    /// The pollwatch binary that runs the fleet (`simulate hj212-fleet`).
    pub fleet_exe: PathBuf,
}

/// What the server cost over a quiet spell.
#[derive(Debug, Clone, Default)]
pub struct Floor {
    /// Loggers connected during it.
    pub connected: u64,
    pub seconds: f64,
    pub cost: ProcStats,
    /// Frames answered during it (0 when the fleet really was quiet).
    pub frames: u64,
}

impl Floor {
    pub fn cpu_percent(&self) -> f64 {
        100.0 * self.cost.cpu.as_secs_f64() / self.seconds.max(1e-9)
    }

    pub fn switches_per_sec(&self) -> f64 {
        self.cost.context_switches as f64 / self.seconds.max(1e-9)
    }
}

#[derive(Debug, Clone)]
pub struct SteadyReport {
    pub loggers: usize,
    pub interval_secs: u64,
    pub factors: usize,
    pub warmup: Duration,
    /// Wall time of the measured window.
    pub seconds: f64,
    /// 9014s the server sent in the window: frames stored.
    pub frames: u64,
    /// Readings the writer committed in the window (duplicates not counted).
    pub readings: u64,
    pub duplicates: u64,
    /// Frames the server rejected in the window (0 in a sound run).
    pub rejected: u64,
    /// This process (server + writer) over the window.
    pub cost: ProcStats,
    /// The fleet's process over the window (not in `cost`; shown so a fleet
    /// that starves the server of a core on a small machine is seen).
    pub fleet_cpu: Duration,
    /// The fleet's own account of the window.
    pub fleet: FleetLine,
    /// Every logger connected, none sending.
    pub idle: Floor,
    /// No logger connected.
    pub empty: Floor,
}

impl SteadyReport {
    /// CPU seconds per 1,000 stored frames (= ms per frame).
    pub fn cpu_per_1k_frames(&self) -> f64 {
        1000.0 * self.cost.cpu.as_secs_f64() / self.frames.max(1) as f64
    }

    fn expected_frames(&self) -> f64 {
        self.loggers as f64 * self.seconds / self.interval_secs.max(1) as f64
    }
}

impl fmt::Display for SteadyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.seconds.max(1e-9);
        writeln!(
            f,
            "hj212 steady: {} loggers, one 2011 frame of {} factors each every {} s, SQLite FULL; {:.0} s measured after a {:.1} s warm-up",
            self.loggers, self.factors, self.interval_secs, self.seconds, self.warmup.as_secs_f64()
        )?;
        writeln!(
            f,
            "  stored: {} frames ({:.1} % of expected) = {:.1} frames/s, {} readings ({} duplicates, {} frames rejected); fleet sent {}, acked {}, failed {}; send→9014 p50 {:.1} ms, p99 {:.1} ms; fleet CPU {:.2} s (not counted)",
            self.frames,
            100.0 * self.frames as f64 / self.expected_frames().max(1.0),
            self.frames as f64 / secs,
            self.readings,
            self.duplicates,
            self.rejected,
            self.fleet.sent,
            self.fleet.acked,
            self.fleet.failed,
            self.fleet.p50_ms,
            self.fleet.p99_ms,
            self.fleet_cpu.as_secs_f64()
        )?;
        writeln!(
            f,
            "  server CPU (user+sys): {:.2} s = {:.2} % of one core; {:.3} ms per stored frame = {:.3} CPU s per 1,000 frames; {:.2} context switches per frame; peak RSS {:.0} MiB",
            self.cost.cpu.as_secs_f64(),
            100.0 * self.cost.cpu.as_secs_f64() / secs,
            self.cpu_per_1k_frames(),
            self.cpu_per_1k_frames(),
            self.cost.context_switches as f64 / self.frames.max(1) as f64,
            self.cost.peak_rss_kib as f64 / 1024.0
        )?;
        for (what, floor) in [
            ("loggers connected, none sending", &self.idle),
            ("loggers connected (none)", &self.empty),
        ] {
            writeln!(
                f,
                "  idle floor, {} {what}, {:.0} s: CPU {:.3} s = {:.3} % of one core, {:.1} context switches/s, {} frames",
                floor.connected,
                floor.seconds,
                floor.cost.cpu.as_secs_f64(),
                floor.cpu_percent(),
                floor.switches_per_sec(),
                floor.frames
            )?;
        }
        Ok(())
    }
}

/// The child fleet: commands in, report lines out.
struct FleetChild {
    child: Child,
    stdin: ChildStdin,
    reports: mpsc::Receiver<FleetLine>,
}

impl FleetChild {
    fn spawn(opts: &SteadyOptions, addr: std::net::SocketAddr) -> Result<Self, BenchError> {
        let mut child = tokio::process::Command::new(&opts.fleet_exe)
            .args([
                "simulate",
                "hj212-fleet",
                "--addr",
                &addr.to_string(),
                "--loggers",
                &opts.loggers.to_string(),
                "--interval",
                &opts.interval_secs.to_string(),
                "--factors",
                &opts.factors.to_string(),
            ])
            .kill_on_drop(true)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| BenchError::Setup(format!("starting the fleet: {e}")))?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => return Err(BenchError::Setup("no fleet stdin/stdout".into())),
        };
        let (tx, reports) = mpsc::channel(16);
        // Only `report` lines are wanted; the per-second ticks are read and dropped
        // (the fleet prints none while idle, so this task sleeps then).
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Some(report) = FleetLine::parse(&line).filter(|l| l.tag == "report") else {
                    continue;
                };
                if tx.send(report).await.is_err() {
                    break;
                }
            }
        });
        Ok(FleetChild {
            child,
            stdin,
            reports,
        })
    }

    async fn command(&mut self, cmd: &str) -> Result<(), BenchError> {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .map_err(|e| BenchError::Setup(format!("fleet command {cmd}: {e}")))
    }

    /// The fleet's account since its last mark.
    async fn report(&mut self) -> Result<FleetLine, BenchError> {
        self.command("report").await?;
        match tokio::time::timeout(Duration::from_secs(30), self.reports.recv()).await {
            Ok(Some(l)) => Ok(l),
            _ => Err(BenchError::Setup("the fleet did not report".into())),
        }
    }

    /// Asks the fleet to close its connections and exit; kills it if it does not.
    async fn quit(mut self) {
        let _ = self.command("quit").await;
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Polls `ready` every 100 ms until it holds or `limit` passes.
async fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while !ready() {
        if t.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Measures the server's cost over `seconds` of quiet.
async fn floor(connected: u64, seconds: u64, answered: impl Fn() -> u64) -> Floor {
    let (before, frames0) = (ProcStats::read(None).unwrap_or_default(), answered());
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cost = ProcStats::read(None).unwrap_or_default().since(&before);
    Floor {
        connected,
        seconds: t.elapsed().as_secs_f64(),
        cost,
        frames: answered() - frames0,
    }
}

/// Runs the benchmark: warm-up, the steady window, the connected idle floor and
/// the empty floor.
pub async fn steady(opts: &SteadyOptions) -> Result<SteadyReport, BenchError> {
    if opts.loggers == 0 || opts.interval_secs == 0 {
        return Err(BenchError::Setup(
            "--loggers and --interval must be at least 1".into(),
        ));
    }
    let bench = BenchServer::start(&opts.url, opts.loggers, false).await?;
    let stats = bench.server.stats();
    let wstats = bench.writer.stats_handle();
    let mut fleet = FleetChild::spawn(opts, bench.server.local_addr())?;

    // Warm-up: every logger connected and its first frame stored (its series
    // created, a one-time cost), and at least `min_warmup`.
    let started = Instant::now();
    let limit = Duration::from_secs(60 + 3 * opts.interval_secs);
    let n = opts.loggers as u64;
    let mut next = 0;
    let warmed = wait_until(limit, || {
        while next < opts.loggers
            && stats
                .mn(&fleet_mn(next))
                .is_some_and(|m| m.frames > 0 && m.readings > 0)
        {
            next += 1;
        }
        next == opts.loggers && get(&stats.connections_open) >= n && get(&stats.replies_9014) >= n
    })
    .await;
    if !warmed {
        return Err(BenchError::Setup(format!(
            "warm-up: {next} of {} loggers stored a frame, {} connected",
            opts.loggers,
            get(&stats.connections_open)
        )));
    }
    let rest = opts.min_warmup.saturating_sub(started.elapsed());
    tokio::time::sleep(rest).await;
    let warmup = started.elapsed();

    // The steady window.
    let rejected = || stats.rejected().values().sum::<u64>();
    let counters = || {
        (
            get(&stats.replies_9014),
            get(&wstats.readings),
            get(&wstats.duplicates),
            rejected(),
        )
    };
    fleet.command("mark").await?;
    let child = fleet.child.id();
    let fleet_cpu = || ProcStats::read(child).map(|s| s.cpu).unwrap_or_default();
    let (before, c0, f0) = (
        ProcStats::read(None).unwrap_or_default(),
        counters(),
        fleet_cpu(),
    );
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(opts.seconds)).await;
    let cost = ProcStats::read(None).unwrap_or_default().since(&before);
    let c1 = counters();
    let fleet_cpu = fleet_cpu().saturating_sub(f0);
    let seconds = t.elapsed().as_secs_f64();
    let line = fleet.report().await?;

    // Connected, quiet: let uploads in flight finish first.
    fleet.command("idle").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answered = || get(&stats.replies_9014);
    let connected = get(&stats.connections_open);
    let idle = floor(connected, opts.idle_seconds, answered).await;

    // No logger connected.
    fleet.quit().await;
    wait_until(Duration::from_secs(30), || {
        get(&stats.connections_open) == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let empty = floor(get(&stats.connections_open), opts.idle_seconds, answered).await;
    bench.finish().await;

    Ok(SteadyReport {
        loggers: opts.loggers,
        interval_secs: opts.interval_secs,
        factors: opts.factors,
        warmup,
        seconds,
        frames: c1.0 - c0.0,
        readings: c1.1 - c0.1,
        duplicates: c1.2 - c0.2,
        rejected: c1.3 - c0.3,
        cost,
        fleet_cpu,
        fleet: line,
        idle,
        empty,
    })
}
