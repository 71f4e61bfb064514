//! The running sources and how a reload changes them.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;

use super::instrument::{MqttStatsLog, ReloadStatus};
use super::reload::{ReloadError, ReloadOutcome, ReloadReport};
use super::{dtu_ids, systemd};
use crate::api::auth::Tokens;
use crate::api::metrics::Metrics;
use crate::clock::Clock;
use crate::config::diff::ConfigDiff;
use crate::config::{Config, ConfigErrors, Diagnostic, LoadOptions};
use crate::sources::field::FieldSources;
use crate::sources::hj212::Registry;
use crate::sources::mqtt::{MqttError, MqttSource};
use crate::store::Writer;

/// The MQTT client and the switch that stops it alone (on an `[mqtt]` change).
pub(super) type MqttSlot = Option<(MqttSource, watch::Sender<bool>)>;

pub(super) fn start_mqtt(
    config: &Config,
    writer: &Writer,
    clock: &Arc<dyn Clock>,
    log: &MqttStatsLog,
) -> Result<MqttSlot, MqttError> {
    let Some(m) = &config.daemon.mqtt else {
        return Ok(None);
    };
    // In a cluster every node shares the config but needs its own session at
    // the broker (same client id: each would take the other's connection).
    let mut m = m.clone();
    if let Some(c) = &config.daemon.cluster {
        m.client_id = format!("{}-{}", m.client_id, c.node_id);
    }
    let (stop, stop_rx) = watch::channel(false);
    let source = MqttSource::start(&m, config, writer.clone(), clock.clone(), stop_rx)?;
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(source.stats());
    Ok(Some((source, stop)))
}

pub(super) struct Live {
    pub config: Arc<Config>,
    pub load: LoadOptions,
    pub config_tx: watch::Sender<Arc<Config>>,
    /// The rules plan follows the config.
    pub plans: super::plans::PlanFeed,
    pub registry_tx: watch::Sender<Arc<Registry>>,
    pub tokens_tx: watch::Sender<Arc<Tokens>>,
    pub field: FieldSources,
    pub mqtt: MqttSlot,
    pub mqtt_log: MqttStatsLog,
    pub writer: Writer,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub status: Arc<ReloadStatus>,
    /// DTU ids the dial-in listener was started for.
    pub dtu_ids: HashSet<String>,
    /// Every polled device in the config in force.
    pub devices: Vec<crate::sources::field::FieldDevice>,
    /// Cluster mode: the lines this node holds, and where the lines that
    /// exist are published (see `crate::cluster::lines`).
    pub cluster_lines: Option<ClusterLines>,
}

pub(super) type ClusterLines = (
    watch::Receiver<std::collections::BTreeSet<String>>,
    watch::Sender<Vec<String>>,
);

fn invalid(file: &str, path: &str, message: String) -> ReloadError {
    ReloadError::Invalid(ConfigErrors(vec![Diagnostic {
        file: file.to_string(),
        line: None,
        path: path.to_string(),
        message,
    }]))
}

impl Live {
    /// Loads, validates and applies the config directory again.
    pub async fn reload(&mut self, origin: &'static str) -> ReloadOutcome {
        systemd::reloading();
        let outcome = self.try_reload(origin).await;
        let result = match &outcome {
            Ok(r) => {
                self.status.failed.store(false, Ordering::Relaxed);
                self.status
                    .last_success_unix
                    .store(self.clock.now().timestamp(), Ordering::Relaxed);
                systemd::ready("ready; config reloaded");
                tracing::info!(origin, config_hash = %r.hash, changes = %serde_json::to_string(&r.diff).unwrap_or_default(), "config reloaded");
                "success"
            }
            Err(e) => {
                self.status.failed.store(true, Ordering::Relaxed);
                systemd::ready("ready; last reload refused, old config in force");
                if let ReloadError::Invalid(errors) = e {
                    for d in &errors.0 {
                        tracing::error!(origin, file = %d.file, line = d.line, key = %d.path, "reload refused: {d}");
                    }
                }
                tracing::error!(
                    origin,
                    "config reload refused; still running on the old config"
                );
                "failure"
            }
        };
        self.metrics
            .counter(
                "pollwatch_config_reloads_total",
                "Config reloads by result.",
                &[("result", result)],
            )
            .inc();
        outcome
    }

    async fn try_reload(&mut self, origin: &'static str) -> ReloadOutcome {
        tracing::info!(origin, dir = %self.config.dir.display(), "reloading config");
        let new = Config::load(&self.config.dir, &self.load).map_err(ReloadError::Invalid)?;
        // Everything that can still fail is checked before anything changes.
        let devices = crate::sources::field::devices(&new).map_err(|e| {
            let file = new
                .enterprises
                .iter()
                .position(|x| x.id == e.enterprise)
                .and_then(|i| new.enterprise_files.get(i))
                .cloned()
                .unwrap_or_default();
            invalid(&file, &e.device, e.to_string())
        })?;
        if let Some(m) = &new.daemon.mqtt {
            if Some(m) != self.config.daemon.mqtt.as_ref() {
                crate::sources::mqtt::conn::options(m)
                    .map_err(|e| invalid(crate::config::DAEMON_FILE, "mqtt", e.to_string()))?;
            }
        }
        let mut diff = ConfigDiff::between(&self.config, &new);
        if !dtu_ids(&devices).is_subset(&self.dtu_ids) {
            diff.restart_required.push("dtu devices");
        }
        for what in &diff.restart_required {
            tracing::warn!(
                setting = what,
                "changed setting takes effect only after a restart"
            );
        }

        self.registry_tx
            .send_replace(Arc::new(Registry::from_config(&new)));
        self.devices = devices;
        if let Some((_, wanted)) = &self.cluster_lines {
            wanted.send_replace(crate::cluster::lines::names(&self.devices));
        }
        self.apply_lines();
        if diff.mqtt {
            if let Some((old, stop)) = self.mqtt.take() {
                tracing::info!("reload: [mqtt] changed; reconnecting the MQTT client");
                let _ = stop.send(true);
                // The old client commits and acknowledges what it holds; the broker
                // redelivers the rest to the new one (same persistent session).
                old.join().await;
            }
            self.mqtt = start_mqtt(&new, &self.writer, &self.clock, &self.mqtt_log)
                .map_err(|e| invalid(crate::config::DAEMON_FILE, "mqtt", e.to_string()))?;
        } else if let Some((m, _)) = &self.mqtt {
            m.update(&new);
        }
        self.tokens_tx
            .send_replace(Arc::new(Tokens::from_config(&new)));
        let new = Arc::new(new);
        self.config_tx.send_replace(new.clone());
        self.plans.set_config(new.clone()).await;
        self.config = new;
        Ok(ReloadReport {
            hash: self.config.hash.clone(),
            diff,
        })
    }

    /// Polls the devices this node should: all of them on a single node; in a
    /// cluster, those on lines it holds (and DTU lines).
    pub fn apply_lines(&mut self) {
        let devices = match &self.cluster_lines {
            Some((held, _)) => crate::cluster::lines::owned(&self.devices, &held.borrow()),
            None => self.devices.clone(),
        };
        self.field.apply(devices);
    }

    /// Stops the pollers and the MQTT client (after the shared shutdown signal)
    /// and lets go of the writer.
    pub async fn stop_sources(mut self) {
        if let Some((m, stop)) = self.mqtt.take() {
            let _ = stop.send(true);
            m.join().await;
        }
        self.field.join().await;
    }
}
