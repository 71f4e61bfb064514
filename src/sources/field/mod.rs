//! Field-device acquisition: polling Modbus and DL/T 645 devices configured in
//! enterprise files (`[meters.device]`, `[[outlets.devices]]`).
//!
//! Devices are grouped by [`line::Endpoint`] — one task per TCP gateway, serial
//! port or RTU-over-TCP socket. Inside a line, devices are polled in turn, each at
//! its own interval, with the line's quiet gap between requests. What others get
//! wrong and this module is built around (see `shared/domain/FIELD-DEVICES.md`):
//! a dead or slow device costs its line at most its own timeout per poll and is
//! then polled less and less often ([`health`]); other devices keep their
//! cadence and their readings; after any timeout or odd reply the connection is
//! re-opened so a late answer cannot be read as the next device's value.

pub mod dtu;
pub mod health;
pub mod line;
pub mod poll;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::config::{Config, Device};
use crate::model::{DataKind, Id, Location, Protocol, Reading, SourceRef, Stat};
use crate::ratelimit::LogLimiter;
use crate::store::{Batch, StatusEvent, Writer};
use health::{Health, Transition};
use line::{Endpoint, Line};
use poll::DevicePlan;
pub use poll::PollError;

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
pub type HealthMap = Arc<Mutex<BTreeMap<(String, String), Health>>>;

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
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
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
        let mut me = FieldSources {
            lines: HashMap::new(),
            tasks: JoinSet::new(),
            health: Arc::default(),
            stats: Arc::default(),
            logs: Arc::new(LogLimiter::new(Duration::from_secs(60))),
            dtu,
            writer,
            clock,
            shutdown,
        };
        for (endpoint, devices) in by_line(devices) {
            me.spawn_line(endpoint, devices);
        }
        me
    }

    fn spawn_line(&mut self, endpoint: Endpoint, devices: Vec<FieldDevice>) {
        let gap = devices.iter().map(|d| d.gap).max().unwrap_or_default();
        let (devices_tx, devices_rx) = watch::channel(devices.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = LineTask {
            line: Line::new(endpoint.clone(), gap, self.dtu.clone()),
            devices,
            writer: self.writer.clone(),
            clock: self.clock.clone(),
            health: self.health.clone(),
            logs: self.logs.clone(),
            stats: self.stats.clone(),
        };
        self.tasks
            .spawn(task.run(self.shutdown.clone(), stop_rx, devices_rx));
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

    /// Waits for every line task to stop (after shutdown was signalled).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

fn lock_health(h: &HealthMap) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Health>> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}

struct LineTask {
    line: Line,
    devices: Vec<FieldDevice>,
    writer: Writer,
    clock: Arc<dyn Clock>,
    health: HealthMap,
    logs: Arc<LogLimiter>,
    stats: Arc<FieldStats>,
}

impl LineTask {
    async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
        mut updates: watch::Receiver<Vec<FieldDevice>>,
    ) {
        let start = Instant::now();
        // Spread the first polls over the line so devices do not all fire at once.
        let n = self.devices.len().max(1) as u32;
        let mut due: Vec<Instant> = self
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| start + d.interval.min(Duration::from_secs(1)) * i as u32 / n)
            .collect();
        loop {
            let Some((idx, when)) = due.iter().copied().enumerate().min_by_key(|(_, t)| *t) else {
                return;
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = stop.changed() => return,
                Ok(()) = updates.changed() => {
                    let new = updates.borrow_and_update().clone();
                    due = self.replace_devices(new, &due);
                    continue;
                }
                _ = tokio::time::sleep_until(when) => {}
            }
            let next_in = self.poll_one(idx).await;
            // Keep the cadence (due + interval), but never schedule in the past.
            due[idx] = (when + next_in).max(Instant::now());
        }
    }

    /// Installs a reloaded device list; returns the new schedule. Devices that did
    /// not change keep their next poll time, new or changed ones are polled soon.
    fn replace_devices(&mut self, new: Vec<FieldDevice>, due: &[Instant]) -> Vec<Instant> {
        let now = Instant::now();
        let n = new.len().max(1) as u32;
        let schedule = new
            .iter()
            .enumerate()
            .map(|(i, d)| {
                self.devices
                    .iter()
                    .position(|old| old.same_as(d))
                    .and_then(|j| due.get(j).copied())
                    .unwrap_or_else(|| now + d.interval.min(Duration::from_secs(1)) * i as u32 / n)
            })
            .collect();
        let gap = new.iter().map(|d| d.gap).max().unwrap_or_default();
        self.line.set_gap(gap);
        tracing::info!(line = %self.line.endpoint, devices = new.len(), "reload: line's devices updated; connection kept");
        self.devices = new;
        schedule
    }

    async fn poll_one(&mut self, idx: usize) -> Duration {
        let Some(dev) = self.devices.get(idx).cloned() else {
            return Duration::from_secs(60);
        };
        let span = tracing::info_span!("poll", enterprise = %dev.enterprise, location = %dev.location, device = %dev.id, line = %self.line.endpoint);
        let result =
            tracing::Instrument::instrument(poll::poll(&mut self.line, &dev.plan), span).await;
        let now = self.clock.now();
        let key = (dev.enterprise.to_string(), dev.id.to_string());
        let (transition, next_in, detail) = {
            let mut map = self.health.lock().unwrap_or_else(|e| e.into_inner());
            let h = map.entry(key).or_default();
            match &result {
                Ok(_) => (h.ok(now), h.next_in(dev.interval), String::new()),
                Err(e) => (h.failed(e.kind()), h.next_in(dev.interval), e.to_string()),
            }
        };
        match result {
            Ok(values) => {
                let protocol = match dev.plan.protocol {
                    crate::config::DeviceProtocol::Modbus => Protocol::Modbus,
                    crate::config::DeviceProtocol::Dlt645 => Protocol::Dlt645,
                };
                let readings: Vec<Reading> = values
                    .into_iter()
                    .filter_map(|(i, value, flag)| {
                        let t = dev.plan.targets.get(i)?;
                        value.is_finite().then(|| Reading {
                            enterprise: dev.enterprise.clone(),
                            location: dev.location.clone(),
                            factor: t.factor.clone(),
                            unit: t.unit.clone(),
                            ts: now,
                            value,
                            kind: DataKind::Rtd,
                            stat: Stat::Rtd,
                            converted: false,
                            flag,
                            source: SourceRef {
                                protocol,
                                device: dev.id.clone(),
                                resend: false,
                            },
                        })
                    })
                    .collect();
                // The same per-message checks as every source (codes come from
                // config here, so this is a last line): a poll that fails them is a
                // dead letter, not readings.
                let readings = match crate::model::check::readings(&readings) {
                    Ok(()) => readings,
                    Err(e) => {
                        tracing::warn!(enterprise = %dev.enterprise, device = %dev.id, reason = e.reason, "poll refused: {}", e.detail);
                        let letter = crate::store::DeadLetter {
                            at: now,
                            protocol,
                            peer: self.line.endpoint.to_string(),
                            reason: e.reason.to_string(),
                            detail: format!("{}/{}: {}", dev.enterprise, dev.id, e.detail),
                            raw: Vec::new(),
                        };
                        if let Err(e) = self.writer.submit(Batch::dead_letter(letter)).await {
                            tracing::error!(device = %dev.id, error = %e, "cannot record dead letter");
                        }
                        Vec::new()
                    }
                };
                let counter = match protocol {
                    Protocol::Dlt645 => &self.stats.dlt645_readings,
                    _ => &self.stats.modbus_readings,
                };
                counter.fetch_add(readings.len() as u64, Ordering::Relaxed);
                if let Err(e) = self.writer.submit(Batch::readings(readings)).await {
                    tracing::error!(device = %dev.id, error = %e, "cannot queue readings");
                }
            }
            Err(e) => {
                if e.poisons_link() {
                    self.line.drop_link();
                }
                let key = format!("{}/{} {}", dev.enterprise, dev.id, e.kind());
                if let Some(suppressed) = self.logs.allow(&key) {
                    tracing::warn!(enterprise = %dev.enterprise, device = %dev.id, line = %self.line.endpoint, suppressed, "poll failed: {e}");
                }
            }
        }
        if let Some(t) = transition {
            let status = match t {
                Transition::Online => "online",
                Transition::Offline => "offline",
            };
            tracing::info!(enterprise = %dev.enterprise, device = %dev.id, status, "device {status}");
            let ev = StatusEvent {
                at: now,
                enterprise: dev.enterprise.to_string(),
                device: dev.id.to_string(),
                status: status.to_string(),
                detail,
            };
            if let Err(e) = self.writer.submit(Batch::status_event(ev)).await {
                tracing::error!(error = %e, "cannot record device status");
            }
        }
        next_in
    }
}
