//! Field polling at scale: N simulated Modbus TCP devices (ten unit ids behind each
//! simulated gateway, as meters sit behind converters) each polled every second.
//! The simulators run in a child process (`pollwatch simulate modbus`) so that the
//! CPU figure is the poller's alone; poll jitter is read from the stored readings'
//! times (the gap between consecutive readings of a device minus its interval).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

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
}

impl fmt::Display for FieldReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "field: {} Modbus TCP devices polled every 1 s for {:.0} s: poller CPU {:.0} % of one core; {} readings ({:.1} % of expected); poll jitter p50 {:.1} ms, p99 {:.1} ms",
            self.devices,
            self.seconds,
            self.cpu_percent,
            self.readings,
            100.0 * self.readings as f64 / (self.devices as f64 * self.seconds).max(1.0),
            self.jitter_p50.as_secs_f64() * 1e3,
            self.jitter_p99.as_secs_f64() * 1e3,
        )
    }
}

/// CPU time (user + system) this process has used.
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces) — utime is 14th,
    // stime 15th overall, in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Polls `devices` simulated devices on gateways at 127.0.0.1:`base_port`…
/// for `seconds` after a warm-up, storing into `url`.
pub async fn modbus(
    url: &str,
    devices: usize,
    base_port: u16,
    seconds: u64,
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
            "protocol = \"modbus\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{gw}\"\nunit = {unit}\ninterval = \"1s\"\ntimeout = \"500ms\"\n\n[[points]]\nfactor = \"e_p\"\nregister = \"input\"\naddress = 52\ntype = \"f32\"\n\n[[points]]\nfactor = \"e_ep\"\nregister = \"input\"\naddress = 72\ntype = \"f32\"\n"
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
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = cpu_time().saturating_sub(cpu0);
    let wall = t0.elapsed();
    let to = chrono::Utc::now();
    let _ = stop.send(true);
    sources.join().await;
    drop(writer);
    task.finish(Duration::from_secs(10)).await;
    let _ = child.kill().await;

    let mut jitter = Vec::new();
    let mut readings = 0;
    for i in 0..devices {
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
        readings += rows.len();
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
        cpu_percent: 100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        readings,
        jitter_p50: super::percentile(&jitter, 0.5),
        jitter_p99: super::percentile(&jitter, 0.99),
        missed: expected.saturating_sub(readings),
    })
}
