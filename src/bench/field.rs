//! Field polling at scale: N simulated Modbus TCP devices (ten unit ids behind each
//! simulated gateway, as meters sit behind converters) each polled every second
//! for two f32 input registers at 52 and 54 — one request of 4 registers per poll.
//! The simulators run in a child process (`pollwatch simulate modbus`) so that the
//! CPU figure is the poller's (and its store writer's) alone; poll jitter is read
//! from the stored readings' times (the gap between consecutive readings of a
//! device minus its interval).
//!
//! With a peer command ([`super::field_peer`]) the same simulators are then polled
//! by a bare client for the same time, and pollwatch's CPU per 10,000 polls is
//! reported as a ratio to the client's: a figure that survives a busy machine
//! better than either number alone.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::field_peer::{self, per_10k, PeerReport, PeerTarget};
use super::procstat::ProcStats;
use super::BenchError;
use crate::clock::SystemClock;
use crate::config::Device;
use crate::model::{Id, Location, LocationKind};
use crate::sources::field::line::Endpoint;
use crate::sources::field::poll::DevicePlan;
use crate::sources::field::{FieldDevice, FieldSources};
use crate::store::{ReadingQuery, Store, StoreOptions, Writer, WriterOptions};

/// Unit ids behind each simulated gateway.
pub const UNITS_PER_GATEWAY: u16 = 10;

#[derive(Debug, Clone)]
pub struct FieldReport {
    pub devices: usize,
    pub seconds: f64,
    pub cpu_percent: f64,
    pub readings: usize,
    pub jitter_p50: Duration,
    pub jitter_p99: Duration,
    pub missed: usize,
    /// Good polls in the window (readings polled ÷ 2 points); the readings go to
    /// the store (`readings` = polls × 2).
    pub polls: usize,
    pub cost: ProcStats,
    /// The bare client's run against the same simulators, when one was given.
    pub peer: Option<PeerReport>,
}

impl FieldReport {
    pub fn cpu_per_10k(&self) -> f64 {
        per_10k(self.cost.cpu, self.polls as u64)
    }
}

impl fmt::Display for FieldReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "field: {} Modbus TCP devices polled every 1 s for {:.0} s: poller CPU {:.0} % of one core = {:.3} s per 10k polls; {:.2} context switches per poll; peak RSS {:.0} MiB; {} good polls ({:.1} % of expected); poll jitter p50 {:.1} ms, p99 {:.1} ms",
            self.devices,
            self.seconds,
            self.cpu_percent,
            self.cpu_per_10k(),
            self.cost.context_switches as f64 / self.polls.max(1) as f64,
            self.cost.peak_rss_kib as f64 / 1024.0,
            self.polls,
            100.0 * self.polls as f64 / (self.devices as f64 * self.seconds).max(1.0),
            self.jitter_p50.as_secs_f64() * 1e3,
            self.jitter_p99.as_secs_f64() * 1e3,
        )?;
        if let Some(peer) = &self.peer {
            write!(
                f,
                "\n{peer}\nratio: pollwatch CPU per poll = {:.2} × the peer's",
                self.cpu_per_10k() / peer.cpu_per_10k()
            )?;
        }
        Ok(())
    }
}

/// Polls `devices` simulated devices on gateways at 127.0.0.1:`base_port`…
/// for `seconds` after a warm-up, storing into `url`; then, with `peer`, runs that
/// command against the same simulators for as long.
pub async fn modbus(
    url: &str,
    devices: usize,
    base_port: u16,
    seconds: u64,
    peer: Option<&str>,
) -> Result<FieldReport, BenchError> {
    let gateways = devices.div_ceil(usize::from(UNITS_PER_GATEWAY));
    let exe = std::env::current_exe().map_err(|e| BenchError::Setup(e.to_string()))?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "simulate",
            "modbus",
            "--gateways",
            &gateways.to_string(),
            "--base-port",
            &base_port.to_string(),
        ])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::Setup(format!("starting the simulators: {e}")))?;
    // The child prints one line once every listener is bound.
    {
        use tokio::io::AsyncBufReadExt;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Setup("no simulator stdout".into()))?;
        let mut lines = tokio::io::BufReader::new(out).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        if !matches!(ready, Ok(Ok(Some(_)))) {
            return Err(BenchError::Setup("simulators did not start".into()));
        }
    }
    let store = Store::open(url, &StoreOptions::default()).await?;
    let (writer, task) = Writer::spawn(
        store.clone(),
        WriterOptions::default(),
        Arc::new(SystemClock),
    );
    let mut list = Vec::with_capacity(devices);
    for i in 0..devices {
        let gw = base_port + (i / usize::from(UNITS_PER_GATEWAY)) as u16;
        let unit = 1 + (i % usize::from(UNITS_PER_GATEWAY)) as u8;
        let toml = format!(
            "protocol = \"modbus\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{gw}\"\nunit = {unit}\ninterval = \"1s\"\ntimeout = \"500ms\"\n\n[[points]]\nfactor = \"e_p\"\nregister = \"input\"\naddress = 52\ntype = \"f32\"\n\n[[points]]\nfactor = \"e_ep\"\nregister = \"input\"\naddress = 54\ntype = \"f32\"\n"
        );
        let d: Device = toml::from_str(&toml).map_err(|e| BenchError::Setup(e.to_string()))?;
        let plan = DevicePlan::new(&d).map_err(|e| BenchError::Setup(e.to_string()))?;
        list.push(FieldDevice {
            enterprise: Id::from("BENCH"),
            location: Location::Meter(format!("M{i:05}").as_str().into()),
            id: format!("M{i:05}").as_str().into(),
            interval: d.interval.0,
            gap: d.gap(),
            endpoint: Endpoint::of(&d),
            plan,
            config: d.clone(),
        });
    }
    let (stop, stop_rx) = watch::channel(false);
    let sources = FieldSources::start(list, None, writer.clone(), Arc::new(SystemClock), stop_rx);
    // Warm-up: connections opened, first polls spread.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = chrono::Utc::now();
    let stats = sources.stats();
    let polled = || {
        stats
            .modbus_readings
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let (before, readings0) = (ProcStats::read(None).unwrap_or_default(), polled());
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cost = ProcStats::read(None).unwrap_or_default().since(&before);
    // Two points per poll, one reading each.
    let polls = (polled() - readings0) as usize / 2;
    let wall = t0.elapsed();
    let to = chrono::Utc::now();
    let _ = stop.send(true);
    sources.join().await;
    drop(writer);
    task.finish(Duration::from_secs(10)).await;
    let peer = match peer {
        Some(cmd) => {
            let target = PeerTarget {
                base_port,
                gateways,
                units: UNITS_PER_GATEWAY,
                devices,
            };
            Some(field_peer::run(cmd, &target, Duration::from_secs(3), seconds).await?)
        }
        None => None,
    };
    let _ = child.kill().await;

    // Jitter from the stored times of up to 500 devices spread over the lines
    // (reading back every device's series takes longer than the run at 5,000).
    let mut jitter = Vec::new();
    for i in (0..devices).step_by(devices.div_ceil(500).max(1)) {
        let rows = store
            .readings(&ReadingQuery {
                enterprise: "BENCH".into(),
                location_kind: LocationKind::Meter,
                location: format!("M{i:05}"),
                factor: Some("e_p".into()),
                kind: None,
                stat: None,
                from: Some(from),
                to: Some(to),
                limit: None,
            })
            .await?;
        for w in rows.windows(2) {
            let gap = (w[1].ts - w[0].ts).to_std().unwrap_or_default();
            jitter.push(gap.abs_diff(Duration::from_secs(1)));
        }
    }
    store.close().await;
    jitter.sort();
    let expected = (devices as f64 * wall.as_secs_f64()) as usize;
    Ok(FieldReport {
        devices,
        seconds: wall.as_secs_f64(),
        cpu_percent: 100.0 * cost.cpu.as_secs_f64() / wall.as_secs_f64(),
        readings: polls * 2,
        jitter_p50: super::percentile(&jitter, 0.5),
        jitter_p99: super::percentile(&jitter, 0.99),
        missed: expected.saturating_sub(polls),
        polls,
        cost,
        peer,
    })
}
