//! The daemon's life: open the store, start the writer (and, as they land, the
//! sources and the rest of the pipeline), run until told to stop, then stop in the
//! order that loses nothing — sources first, so no new input arrives; then the
//! writer, which commits everything it was handed; then the store.
//!
//! Shutdown follows tokio's mini-redis: the caller passes a future that completes on
//! SIGTERM/SIGINT (or whatever a test wants), and every task holding a [`Writer`]
//! drops it on the way out, which is what lets the writer finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::Config;
use std::collections::HashSet;

use crate::rules::task::{RulesTask, TaskOptions};
use crate::rules::Plan;
use crate::sources::field::dtu::{DtuHub, DtuOptions};
use crate::sources::field::line::Endpoint;
use crate::sources::field::FieldSources;
use crate::sources::hj212::{Hj212Server, Registry, ServerConfig};
use crate::sources::mqtt::MqttSource;
use crate::store::{Store, StoreError, StoreOptions, StoreUrl, Writer, WriterOptions};

/// How long shutdown waits for an unreachable store before abandoning unwritten
/// batches. systemd's default stop timeout is 90 s; we aim to be gone within 10.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Commits the rules engine may be behind before the writer stops offering it
/// readings (it then rebuilds from the store). A commit is one batch of up to
/// `max_batch` readings, so this is minutes of city-scale traffic.
pub const RULES_TAP_QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hj212(#[from] crate::sources::hj212::ServerError),
    #[error(transparent)]
    Field(#[from] crate::sources::field::FieldError),
    #[error(transparent)]
    Dtu(#[from] crate::sources::field::dtu::DtuListenError),
    #[error(transparent)]
    Mqtt(#[from] crate::sources::mqtt::MqttError),
}

pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        sqlite_synchronous: config.daemon.storage.sqlite_synchronous,
        ..StoreOptions::default()
    }
}

pub fn writer_options(config: &Config) -> WriterOptions {
    let s = &config.daemon.storage;
    WriterOptions {
        max_batch: s.max_batch,
        linger: s.linger.0,
        queue: s.queue,
        ..WriterOptions::default()
    }
}

pub async fn open_store(config: &Config) -> Result<Store, StoreError> {
    Store::open(&config.storage_url, &store_options(config)).await
}

/// Runs until `shutdown` completes, then drains and returns.
pub async fn run(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let devices = crate::sources::field::devices(&config)?;
    let store = open_store(&config).await?;
    // The rules engine judges what the writer has committed (never before).
    let (tap, tap_rx) = tokio::sync::mpsc::channel(RULES_TAP_QUEUE);
    let (writer, writer_task) = Writer::spawn(
        store.clone(),
        WriterOptions {
            tap: Some(tap),
            ..writer_options(&config)
        },
        clock.clone(),
    );
    let (findings_tx, findings_rx) = tokio::sync::mpsc::channel(1024);
    let rules = RulesTask::spawn(
        store.clone(),
        Plan::new(&config),
        TaskOptions::default(),
        clock.clone(),
        tap_rx,
        Some(findings_tx),
    );
    // Alerts follow the findings. Without a usable notifier (a secret file
    // missing, say) ingest and judging go on — readings must not be lost for an
    // SMS token — and the error says what is missing.
    let (stop_alerts, alerts_stop) = watch::channel(false);
    let alerts = match crate::notify::Notifier::from_config(&config, clock.clone()) {
        Ok(notifier) => {
            let notifier = Arc::new(notifier);
            let shared = Arc::new(config.clone());
            Some(crate::alerts::AlertsTask::spawn(
                crate::alerts::AlertEngine::new(
                    store.clone(),
                    notifier.clone(),
                    shared,
                    clock.clone(),
                ),
                crate::alerts::Dispatcher::new(store.clone(), notifier, clock.clone()),
                findings_rx,
                std::time::Duration::from_secs(10),
                alerts_stop,
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "alerts are DISABLED: findings are stored but nobody is notified");
            None
        }
    };
    let (stop_sources, sources_stop) = watch::channel(false);
    let registry = Arc::new(Registry::from_config(&config));
    let (_registry_tx, registry_rx) = watch::channel(registry.clone());
    let hj212 = Hj212Server::start(
        ServerConfig::from_config(&config),
        registry_rx,
        writer.clone(),
        clock.clone(),
        sources_stop.clone(),
    )
    .await?;
    let polled = devices.len();
    let dtu_ids: HashSet<String> = devices
        .iter()
        .filter_map(|d| match &d.endpoint {
            Endpoint::Dtu(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let dtu = if dtu_ids.is_empty() {
        None
    } else {
        let section = &config.daemon.dtu;
        let heartbeat = section.heartbeat_bytes().unwrap_or_default();
        let opts = DtuOptions {
            listen: section.listen.0,
            registration_timeout: section.registration_timeout.0,
            registration_prefix: section.registration_prefix.as_bytes().to_vec(),
            registration_suffix: section.registration_suffix.as_bytes().to_vec(),
            heartbeat: heartbeat.clone(),
        };
        let hub = Arc::new(DtuHub::default());
        let (addr, task) = crate::sources::field::dtu::listen(
            opts,
            dtu_ids,
            hub.clone(),
            writer.clone(),
            clock.clone(),
            sources_stop.clone(),
        )
        .await?;
        tracing::info!(dtu = %addr, "DTU listener bound");
        Some((hub, heartbeat, task))
    };
    let mqtt = match &config.daemon.mqtt {
        Some(m) => Some(MqttSource::start(
            m,
            &config,
            writer.clone(),
            clock.clone(),
            sources_stop.clone(),
        )?),
        None => None,
    };
    let field = FieldSources::start(
        devices,
        dtu.as_ref().map(|(hub, hb, _)| (hub.clone(), hb.clone())),
        writer.clone(),
        clock,
        sources_stop,
    );
    tracing::info!(
        store = %StoreUrl::redacted(&config.storage_url),
        enterprises = config.enterprises.len(),
        hj212 = %hj212.local_addr(),
        loggers = registry.len(),
        polled_devices = polled,
        timezone = %config.timezone,
        "pollwatch ready"
    );

    shutdown.await;

    tracing::info!("shutting down: no new input; finishing in-flight frames");
    let _ = stop_sources.send(true);
    hj212.join().await;
    field.join().await;
    if let Some(m) = mqtt {
        m.join().await;
    }
    if let Some((_, _, task)) = dtu {
        let _ = task.await;
    }
    tracing::info!("flushing the store writer");
    drop(writer);
    writer_task.finish(SHUTDOWN_GRACE).await;
    tracing::info!("judging the last committed readings");
    rules.join(SHUTDOWN_GRACE).await;
    if let Some(a) = alerts {
        // The findings channel is closed now; the task settles what it holds.
        a.join().await;
    }
    drop(stop_alerts);
    store.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}
