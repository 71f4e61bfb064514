//! Field-device acquisition: polling Modbus and DL/T 645 devices configured in
//! enterprise files (`[meters.device]`, `[[outlets.devices]]`).
//!
//! Devices are grouped by [`line::Endpoint`] — one task per TCP gateway, serial
//! port or RTU-over-TCP socket. Inside a line, devices are polled in turn, each at
//! its own interval, with the line's quiet gap between requests; devices due at
//! the same time are polled in one burst per timer wake-up ([`task`]), and their
//! readings go to the writer in batches through the [`sink`]. What others get
//! wrong and this module is built around (see `shared/domain/FIELD-DEVICES.md`):
//! a dead or slow device costs its line at most its own timeout per poll and is
//! then polled less and less often ([`health`]); other devices keep their
//! cadence and their readings; after any timeout or odd reply the connection is
//! re-opened so a late answer cannot be read as the next device's value.

pub mod dtu;
pub mod health;
pub mod line;
pub mod modbus_tcp;
pub mod poll;
mod poller;
pub mod sink;
mod task;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::config::{Config, Device};
use crate::model::{Id, Location};
use crate::ratelimit::LogLimiter;
use crate::store::Writer;
use health::Health;
use line::{Endpoint, Line};
use poll::DevicePlan;
pub use poll::PollError;
use poller::Poller;
use sink::Sink;
use task::{LineTask, Polled};

/// A configured device, resolved for polling.
#[derive(Debug, Clone)]
pub struct FieldDevice {
    pub enterprise: Id,
    pub location: Location,
    pub id: Id,
    pub interval: Duration,
    pub gap: Duration,
    pub endpoint: Endpoint,
    pub plan: DevicePlan,
    /// The device as configured: a reload compares these to decide what changed.
    pub config: Device,
}

impl FieldDevice {
    /// Same device, same settings, same destination: a reload leaves it alone.
    fn same_as(&self, other: &FieldDevice) -> bool {
        self.enterprise == other.enterprise
            && self.id == other.id
            && self.location == other.location
            && self.config == other.config
    }

    fn key(&self) -> (String, String) {
        (self.enterprise.to_string(), self.id.to_string())
    }
}

/// Readings polled, per protocol, for metrics.
#[derive(Debug, Default)]
pub struct FieldStats {
    pub modbus_readings: AtomicU64,
    pub dlt645_readings: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("{enterprise} device {device}: {source}")]
pub struct FieldError {
    pub enterprise: String,
    pub device: String,
    #[source]
    pub source: crate::sources::modbus::plan::PlanError,
}

/// Every polled device in the config.
pub fn devices(cfg: &Config) -> Result<Vec<FieldDevice>, FieldError> {
    let mut out = Vec::new();
    for e in &cfg.enterprises {
        let mut add = |location: Location, id: String, d: &Device| -> Result<(), FieldError> {
            let plan = DevicePlan::new(d).map_err(|source| FieldError {
                enterprise: e.id.clone(),
                device: id.clone(),
                source,
            })?;
            out.push(FieldDevice {
                enterprise: e.id.as_str().into(),
                location,
                id: id.as_str().into(),
                interval: d.interval.0,
                gap: d.gap(),
                endpoint: Endpoint::of(d),
                plan,
                config: d.clone(),
            });
            Ok(())
        };
        for m in &e.meters {
            if let Some(d) = &m.device {
                let id = d.id.clone().unwrap_or_else(|| m.id.clone());
                add(Location::Meter(m.id.as_str().into()), id, d)?;
            }
        }
        for o in &e.outlets {
            for (n, d) in o.devices.iter().enumerate() {
                let id =
                    d.id.clone()
                        .unwrap_or_else(|| format!("{}-{}", o.id, n + 1));
                add(Location::Outlet(o.id.as_str().into()), id, d)?;
            }
        }
    }
    Ok(out)
}

/// Health of every device, keyed by (enterprise, device id).
/// Every polled device's health, by (enterprise, device). Updated on every poll,
/// so hashed (seeded per process) rather than ordered: readers do not need order.
pub type HealthTable = HashMap<(String, String), Health, foldhash::fast::RandomState>;
pub type HealthMap = Arc<Mutex<HealthTable>>;

/// The running pollers: one task per line, each fed its device list through a
/// `watch` channel so that a reload can change the devices of a line without
/// closing the line's connection.
pub struct FieldSources {
    lines: HashMap<Endpoint, LineHandle>,
    tasks: JoinSet<()>,
    health: HealthMap,
    stats: Arc<FieldStats>,
    logs: Arc<LogLimiter>,
    dtu: Option<(Arc<dtu::DtuHub>, Vec<u8>)>,
    writer: Writer,
    /// Where lines put their readings; dropped at [`FieldSources::join`] so the
    /// flusher writes what is queued and ends.
    sink: Option<Sink>,
    flusher: tokio::task::JoinHandle<()>,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
    /// The lines' own thread; `None` if it could not be started (then the
    /// lines run on the caller's runtime).
    poller: Option<Poller>,
}

struct LineHandle {
    devices: watch::Sender<Vec<FieldDevice>>,
    stop: watch::Sender<bool>,
}

fn by_line(devices: Vec<FieldDevice>) -> HashMap<Endpoint, Vec<FieldDevice>> {
    let mut lines: HashMap<Endpoint, Vec<FieldDevice>> = HashMap::new();
    for d in devices {
        lines.entry(d.endpoint.clone()).or_default().push(d);
    }
    lines
}

impl FieldSources {
    /// Starts one task per line. DTU lines take their connections from `dtu`
    /// (the hub and the heartbeat to strip).
    pub fn start(
        devices: Vec<FieldDevice>,
        dtu: Option<(Arc<dtu::DtuHub>, Vec<u8>)>,
        writer: Writer,
        clock: Arc<dyn Clock>,
        shutdown: watch::Receiver<bool>,
    ) -> FieldSources {
        let (sink, flusher) = Sink::spawn(writer.clone(), sink::LINGER);
        let mut me = FieldSources {
            lines: HashMap::new(),
            tasks: JoinSet::new(),
            health: Arc::default(),
            stats: Arc::default(),
            logs: Arc::new(LogLimiter::new(Duration::from_secs(60))),
            dtu,
            writer,
            sink: Some(sink),
            flusher,
            clock,
            shutdown,
            poller: Poller::start()
                .map_err(|e| {
                    tracing::warn!(error = %e, "field: no poller thread; lines run on the main runtime")
                })
                .ok(),
        };
        for (endpoint, devices) in by_line(devices) {
            me.spawn_line(endpoint, devices);
        }
        me
    }

    fn spawn_line(&mut self, endpoint: Endpoint, devices: Vec<FieldDevice>) {
        // After join() has begun no line starts; there is nothing left to feed.
        let Some(sink) = self.sink.clone() else {
            return;
        };
        let gap = devices.iter().map(|d| d.gap).max().unwrap_or_default();
        let (devices_tx, devices_rx) = watch::channel(devices.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = LineTask {
            line: Line::new(endpoint.clone(), gap, self.dtu.clone()),
            devices: devices.into_iter().map(Polled::new).collect(),
            writer: self.writer.clone(),
            sink,
            clock: self.clock.clone(),
            health: self.health.clone(),
            logs: self.logs.clone(),
            stats: self.stats.clone(),
        };
        let run = task.run(self.shutdown.clone(), stop_rx, devices_rx);
        match &self.poller {
            Some(p) => self.tasks.spawn_on(run, p.handle()),
            None => self.tasks.spawn(run),
        };
        self.lines.insert(
            endpoint,
            LineHandle {
                devices: devices_tx,
                stop: stop_tx,
            },
        );
    }

    /// Moves to a new device list: lines no device uses any more stop (after the
    /// poll in progress), new lines start, and lines whose devices changed get the
    /// new list and keep their connection; unchanged devices keep their schedule.
    pub fn apply(&mut self, devices: Vec<FieldDevice>) {
        let mut wanted = by_line(devices);
        let keep: std::collections::HashSet<(String, String)> =
            wanted.values().flatten().map(FieldDevice::key).collect();
        self.lines.retain(|endpoint, handle| {
            if wanted.contains_key(endpoint) {
                return true;
            }
            tracing::info!(line = %endpoint, "reload: line no longer used; stopping its poller");
            let _ = handle.stop.send(true);
            false
        });
        for (endpoint, devices) in wanted.drain() {
            match self.lines.get(&endpoint) {
                Some(handle) => {
                    let changed = {
                        let old = handle.devices.borrow();
                        old.len() != devices.len()
                            || old.iter().zip(&devices).any(|(a, b)| !a.same_as(b))
                    };
                    if changed {
                        let _ = handle.devices.send(devices);
                    }
                }
                None => {
                    tracing::info!(line = %endpoint, devices = devices.len(), "reload: starting a poller");
                    self.spawn_line(endpoint, devices);
                }
            }
        }
        lock_health(&self.health).retain(|k, _| keep.contains(k));
    }

    pub fn health(&self) -> HealthMap {
        self.health.clone()
    }

    pub fn stats(&self) -> Arc<FieldStats> {
        self.stats.clone()
    }

    /// Waits for every line task to stop (after shutdown was signalled), then
    /// for their last readings to be handed to the writer.
    pub async fn join(mut self) {
        drop(self.sink.take());
        while self.tasks.join_next().await.is_some() {}
        let _ = self.flusher.await;
    }
}

fn lock_health(h: &HealthMap) -> std::sync::MutexGuard<'_, HealthTable> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}
