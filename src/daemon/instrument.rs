//! The daemon's metrics: collectors over the counters the sources and the writer
//! already keep (see [`crate::api::metrics`] for why they are read at scrape time).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::api::metrics::Metrics;
use crate::config::Config;
use crate::sources::field::{FieldStats, HealthMap};
use crate::sources::hj212::Hj212Stats;
use crate::sources::mqtt::MqttStats;
use crate::store::{SpaceWatch, WriterStats};

/// Every MQTT client the daemon ran (one per `[mqtt]` change); summed so that
/// counters stay monotonic across a reload that reconnects.
pub type MqttStatsLog = Arc<Mutex<Vec<Arc<MqttStats>>>>;

/// Outcome of the last reload, for `pollwatch_config_last_reload_*`.
#[derive(Default)]
pub struct ReloadStatus {
    pub failed: AtomicBool,
    pub last_success_unix: AtomicI64,
}

pub struct Sources {
    pub hj212: Arc<Hj212Stats>,
    pub mqtt: MqttStatsLog,
    pub field: Arc<FieldStats>,
    pub health: HealthMap,
    pub writer: Arc<WriterStats>,
    pub queue: Box<dyn Fn() -> usize + Send + Sync>,
    pub config: watch::Receiver<Arc<Config>>,
    pub reload: Arc<ReloadStatus>,
    /// The SQLite store's file system (`None` on PostgreSQL).
    pub space: Option<SpaceWatch>,
}

fn get(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

pub fn register(metrics: &Metrics, s: Sources) {
    metrics.collect(move |o| {
        const ACCEPTED: &str = "Readings accepted from sources, by source and protocol.";
        o.counter(
            "pollwatch_readings_accepted_total",
            ACCEPTED,
            &[("source", "hj212_server"), ("protocol", "hj212")],
            get(&s.hj212.readings),
        );
        o.counter(
            "pollwatch_readings_accepted_total",
            ACCEPTED,
            &[("source", "field"), ("protocol", "modbus")],
            get(&s.field.modbus_readings),
        );
        o.counter(
            "pollwatch_readings_accepted_total",
            ACCEPTED,
            &[("source", "field"), ("protocol", "dlt645")],
            get(&s.field.dlt645_readings),
        );
        let mqtt: Vec<Arc<MqttStats>> = s.mqtt.lock().unwrap_or_else(|e| e.into_inner()).clone();
        o.counter(
            "pollwatch_readings_accepted_total",
            ACCEPTED,
            &[("source", "mqtt"), ("protocol", "mqtt")],
            mqtt.iter().map(|m| get(&m.readings)).sum(),
        );
        o.counter(
            "pollwatch_mqtt_messages_acked_total",
            "MQTT messages acknowledged after their content was durable.",
            &[],
            mqtt.iter().map(|m| get(&m.acked)).sum(),
        );
        const REJECTED: &str =
            "Input refused, by source and reason (kept as dead letters where there were bytes).";
        for (reason, n) in s.hj212.rejected() {
            o.counter(
                "pollwatch_frames_rejected_total",
                REJECTED,
                &[("source", "hj212"), ("reason", reason)],
                n,
            );
        }
        let mut mqtt_rejected = std::collections::BTreeMap::<&str, u64>::new();
        for m in &mqtt {
            for (reason, n) in m.rejected() {
                *mqtt_rejected.entry(reason).or_default() += n;
            }
        }
        for (reason, n) in mqtt_rejected {
            o.counter(
                "pollwatch_frames_rejected_total",
                REJECTED,
                &[("source", "mqtt"), ("reason", reason)],
                n,
            );
        }
        for (reason, n) in s.writer.dead_letters_by_reason() {
            o.counter(
                "pollwatch_dead_letters_total",
                "Dead letters committed to the store, by reason.",
                &[("reason", &reason)],
                n,
            );
        }
        o.gauge(
            "pollwatch_hj212_connections",
            "HJ 212 logger connections open.",
            &[],
            get(&s.hj212.connections_open) as f64,
        );
        let (online, offline) = {
            let h = s.health.lock().unwrap_or_else(|e| e.into_inner());
            let on = h.values().filter(|d| d.online).count();
            (on, h.len() - on)
        };
        const DEVICES: &str = "Polled devices by status (those not yet polled are not counted).";
        o.gauge(
            "pollwatch_devices",
            DEVICES,
            &[("status", "online")],
            online as f64,
        );
        o.gauge(
            "pollwatch_devices",
            DEVICES,
            &[("status", "offline")],
            offline as f64,
        );

        let w = &s.writer;
        o.counter(
            "pollwatch_store_commits_total",
            "Store transactions committed.",
            &[],
            get(&w.commits),
        );
        o.counter(
            "pollwatch_store_failed_commits_total",
            "Store commits that failed (and were retried).",
            &[],
            get(&w.failed_commits),
        );
        o.counter(
            "pollwatch_store_duplicates_total",
            "Readings already stored (a resend), skipped.",
            &[],
            get(&w.duplicates),
        );
        o.counter(
            "pollwatch_store_conflicting_resends_total",
            "Resent readings whose value differed from the stored one (recorded; the first value stands).",
            &[],
            get(&w.conflicts),
        );
        o.counter(
            "pollwatch_store_refused_requests_total",
            "Requests the database refused with a data error (kept as dead letters store_refused, not acknowledged).",
            &[],
            get(&w.refused),
        );
        o.summary(
            "pollwatch_store_batch_readings",
            "Readings per committed transaction.",
            get(&w.readings) as f64,
            get(&w.commits),
        );
        o.summary(
            "pollwatch_store_commit_seconds",
            "Time to commit one transaction.",
            get(&w.commit_micros_total) as f64 / 1e6,
            get(&w.commits),
        );
        o.gauge(
            "pollwatch_store_last_batch_readings",
            "Readings in the last committed transaction.",
            &[],
            get(&w.last_batch_readings) as f64,
        );
        o.gauge(
            "pollwatch_store_last_commit_seconds",
            "Duration of the last commit.",
            &[],
            get(&w.last_commit_micros) as f64 / 1e6,
        );
        if let Some(space) = s.space.as_ref().and_then(|w| w.current()) {
            o.gauge(
                "pollwatch_storage_free_bytes",
                "Free bytes on the store's file system (available to pollwatch).",
                &[],
                space.free as f64,
            );
            o.gauge(
                "pollwatch_storage_min_free_bytes",
                "[storage] min_free resolved for this file system: below it new data is held.",
                &[],
                space.min_free as f64,
            );
        }
        o.gauge(
            "pollwatch_storage_holding",
            "1 while the writer holds new data because free disk space is below min_free.",
            &[],
            if w.holding_for_space.load(Ordering::Relaxed) {
                1.0
            } else {
                0.0
            },
        );
        o.counter(
            "pollwatch_storage_space_holds_total",
            "Times the writer held a batch because free disk space was below min_free.",
            &[],
            get(&w.space_holds),
        );
        o.gauge(
            "pollwatch_pipeline_queue_depth",
            "Requests waiting in a pipeline stage's queue.",
            &[("stage", "store_writer")],
            (s.queue)() as f64,
        );

        let cfg = s.config.borrow().clone();
        o.gauge(
            "pollwatch_config_info",
            "The config in force; hash is SHA-256 over its files.",
            &[("hash", &cfg.hash)],
            1.0,
        );
        o.gauge(
            "pollwatch_config_enterprises",
            "Enterprises configured.",
            &[],
            cfg.enterprises.len() as f64,
        );
        o.gauge(
            "pollwatch_config_last_reload_successful",
            "1 if the last reload (or the start-up load) succeeded, 0 if it was refused.",
            &[],
            if s.reload.failed.load(Ordering::Relaxed) {
                0.0
            } else {
                1.0
            },
        );
        o.gauge(
            "pollwatch_config_last_reload_success_timestamp_seconds",
            "When the config in force was loaded (Unix time).",
            &[],
            s.reload.last_success_unix.load(Ordering::Relaxed) as f64,
        );
    });
}
