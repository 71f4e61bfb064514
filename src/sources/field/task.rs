//! The task that drives one line: its devices on one schedule, polled in bursts.
//!
//! Devices of a line that share an interval are due at the same instant (the
//! line's offset in the second, spread over lines by a hash of the endpoint), so
//! the task wakes once per tick, polls every device that is due one after the
//! other — the line is a single channel anyway — and hands the tick's readings to
//! the [`Sink`] in one piece. Ten meters behind a gateway cost one timer wake-up
//! a second instead of ten, and one queue entry instead of ten writer requests.
//!
//! Each device keeps its own due time and cadence (due + interval, or the
//! [`health`](super::health) backoff of a failing device), so a dead device is
//! polled less and less often and costs the devices after it in the burst at most
//! its timeout when it is polled.

use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::health::Transition;
use super::line::{Endpoint, Line};
use super::sink::Sink;
use super::{poll, FieldDevice, FieldStats, HealthMap};
use crate::clock::Clock;
use crate::model::{DataKind, Protocol, Reading, SourceRef, Stat};
use crate::ratelimit::LogLimiter;
use crate::store::{Batch, StatusEvent, Writer};

pub(super) struct LineTask {
    pub line: Line,
    pub devices: Vec<Polled>,
    pub writer: Writer,
    pub sink: Sink,
    pub clock: Arc<dyn Clock>,
    pub health: HealthMap,
    pub logs: Arc<LogLimiter>,
    pub stats: Arc<FieldStats>,
}

/// A device of the line with its key in the health map, made once.
pub(super) struct Polled {
    dev: Arc<FieldDevice>,
    key: (String, String),
}

impl Polled {
    pub fn new(dev: FieldDevice) -> Polled {
        let key = dev.key();
        Polled {
            dev: Arc::new(dev),
            key,
        }
    }
}

/// Ticks per second that lines are spread over.
const SLOTS: u64 = 20;

/// Where in its interval a line's ticks fall: one of [`SLOTS`] slots of the
/// second, by a hash of the endpoint (fixed per endpoint, so reloads keep it).
/// Spread, so that a city of gateways does not fire at once; but in slots, so
/// that the lines of a slot fire together: their requests go out back to back
/// and their replies come back to a thread that is still awake, instead of
/// every line's every exchange putting the thread to sleep and waking it.
fn offset(endpoint: &Endpoint, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    endpoint.hash(&mut h);
    let span = interval.min(Duration::from_secs(1));
    let slot = span / SLOTS as u32;
    slot * (h.finish() % SLOTS) as u32
}

impl LineTask {
    pub async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
        mut updates: watch::Receiver<Vec<FieldDevice>>,
    ) {
        let start = Instant::now();
        let mut due: Vec<Instant> = self
            .devices
            .iter()
            .map(|p| start + offset(&self.line.endpoint, p.dev.interval))
            .collect();
        let mut tick: Vec<Reading> = Vec::new();
        loop {
            let Some(next) = due.iter().min().copied() else {
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
                _ = tokio::time::sleep_until(next) => {}
            }
            // Every device due by now, in line order; one that falls due while the
            // burst runs joins it.
            for idx in 0..self.devices.len() {
                let Some(when) = due.get(idx).copied() else {
                    break;
                };
                if when > Instant::now() {
                    continue;
                }
                let next_in = self.poll_one(idx, &mut tick).await;
                // Keep the cadence (due + interval), but never schedule in the past.
                due[idx] = (when + next_in).max(Instant::now());
            }
            if let Err(e) = self.sink.put(std::mem::take(&mut tick)).await {
                tracing::error!(line = %self.line.endpoint, error = %e, "cannot queue readings");
            }
        }
    }

    /// Installs a reloaded device list; returns the new schedule. Devices that did
    /// not change keep their next poll time, new or changed ones are polled now.
    fn replace_devices(&mut self, new: Vec<FieldDevice>, due: &[Instant]) -> Vec<Instant> {
        let now = Instant::now();
        let schedule = new
            .iter()
            .map(|d| {
                self.devices
                    .iter()
                    .position(|old| old.dev.same_as(d))
                    .and_then(|j| due.get(j).copied())
                    .unwrap_or(now)
            })
            .collect();
        let gap = new.iter().map(|d| d.gap).max().unwrap_or_default();
        self.line.set_gap(gap);
        tracing::info!(line = %self.line.endpoint, devices = new.len(), "reload: line's devices updated; connection kept");
        self.devices = new.into_iter().map(Polled::new).collect();
        schedule
    }

    /// Polls one device; its readings go to `tick`. Returns the time until its
    /// next poll.
    async fn poll_one(&mut self, idx: usize, tick: &mut Vec<Reading>) -> Duration {
        let Some((dev, key)) = self.devices.get(idx).map(|p| (p.dev.clone(), &p.key)) else {
            return Duration::from_secs(60);
        };
        // Fields are recorded only when debug logging is on: at info level a
        // per-poll span would format four fields for every poll of every meter.
        let span = tracing::debug_span!("poll", enterprise = %dev.enterprise, location = %dev.location, device = %dev.id, line = %self.line.endpoint);
        let result = if span.is_disabled() {
            poll::poll(&mut self.line, &dev.plan).await
        } else {
            tracing::Instrument::instrument(poll::poll(&mut self.line, &dev.plan), span).await
        };
        let now = self.clock.now();
        let (transition, next_in, detail) = {
            let mut map = self.health.lock().unwrap_or_else(|e| e.into_inner());
            // One search when the device is known (every poll but its first).
            let h = match map.get_mut(key) {
                Some(h) => h,
                None => map.entry(key.clone()).or_default(),
            };
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
                let first = tick.len();
                tick.extend(values.into_iter().filter_map(|(i, value, flag)| {
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
                }));
                // The same per-message checks as every source (codes come from
                // config here, so this is a last line): a poll that fails them is a
                // dead letter, not readings.
                if let Err(e) = crate::model::check::readings(tick.get(first..).unwrap_or(&[])) {
                    tick.truncate(first);
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
                }
                let counter = match protocol {
                    Protocol::Dlt645 => &self.stats.dlt645_readings,
                    _ => &self.stats.modbus_readings,
                };
                counter.fetch_add((tick.len() - first) as u64, Ordering::Relaxed);
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
