//! [`AlertsTask`] runs the engine and the dispatcher: findings from the rules
//! task open and update alerts, and each is followed at once by a dispatch round,
//! so an officer hears of a new alert within the time its channel takes. It
//! follows reloads: the duty roster changes every shift, and a sysadmin must not
//! restart the daemon (and its loggers' connections) to change who is called.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{AlertEngine, Dispatcher};
use crate::api::metrics::Metrics;
use crate::clock::Clock;
use crate::config::Config;
use crate::notify::Notifier;
use crate::store::{Store, StoredFinding};

/// The alerts engine and dispatcher as one task of the daemon.
pub struct AlertsTask {
    handle: JoinHandle<()>,
}

impl AlertsTask {
    /// Runs until `shutdown`. With `configs`, each reloaded config brings a new
    /// duty roster, routes and channels (see [`AlertsTask::reconfigure`]).
    pub fn spawn(
        engine: AlertEngine,
        dispatcher: Dispatcher,
        findings: mpsc::Receiver<Vec<StoredFinding>>,
        tick: Duration,
        shutdown: watch::Receiver<bool>,
        configs: Option<watch::Receiver<Arc<Config>>>,
    ) -> AlertsTask {
        AlertsTask {
            handle: tokio::spawn(run(engine, dispatcher, findings, tick, shutdown, configs)),
        }
    }

    /// The daemon's alerts: built from the config in force, and rebuilt on each
    /// reload. While the channels cannot be built (a secret file missing, say)
    /// alerting waits for a reload that fixes them; findings are stored meanwhile
    /// and recorded on alerts as soon as it starts ([`AlertEngine::catch_up`]).
    pub fn spawn_from_config(
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        mut findings: mpsc::Receiver<Vec<StoredFinding>>,
        tick: Duration,
        mut shutdown: watch::Receiver<bool>,
        mut configs: watch::Receiver<Arc<Config>>,
    ) -> AlertsTask {
        let handle = tokio::spawn(async move {
            let (config, notifier) = loop {
                let config = configs.borrow_and_update().clone();
                match Notifier::from_config(&config, clock.clone()) {
                    Ok(n) => break (config, Arc::new(n)),
                    Err(e) => tracing::error!(
                        error = %e,
                        "alerts are DISABLED until a reload fixes this: findings are stored but nobody is notified"
                    ),
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    changed = configs.changed() => if changed.is_err() { return },
                    // Findings are in the store; catch_up records them later.
                    batch = findings.recv() => if batch.is_none() { return },
                }
            };
            let engine = AlertEngine::new(store.clone(), notifier.clone(), config, clock.clone())
                .with_metrics(metrics.clone());
            let dispatcher = Dispatcher::new(store, notifier, clock).with_metrics(metrics);
            run(engine, dispatcher, findings, tick, shutdown, Some(configs)).await;
        });
        AlertsTask { handle }
    }

    pub async fn join(self) {
        let _ = self.handle.await;
    }

    /// A reload: names, severities, the roster, routes and channels come from the
    /// new config. Messages that waited in the old channels' digest queues (in
    /// memory) are pending again, so the new channels send them; nothing accepted
    /// is sent twice. A notifier that cannot be built (a secret file missing)
    /// leaves the old one in force, loudly. The channels' rate-limit windows
    /// start afresh.
    async fn reconfigure(
        engine: &mut AlertEngine,
        dispatcher: &mut Dispatcher,
        config: Arc<Config>,
    ) {
        match Notifier::from_config(&config, dispatcher.clock.clone()) {
            Ok(n) => {
                let n = Arc::new(n);
                engine.reconfigure(config, n.clone());
                dispatcher.notifier = n;
                match dispatcher.recover().await {
                    Ok(requeued) => tracing::info!(
                        requeued,
                        "alerts follow the reloaded config (roster, routes, channels)"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot requeue digest-held notifications after a reload; they are requeued at the next start")
                    }
                }
            }
            Err(e) => tracing::error!(
                error = %e,
                "reloaded config has unusable notification channels; alerts keep the previous roster and channels"
            ),
        }
    }
}

async fn run(
    mut engine: AlertEngine,
    mut dispatcher: Dispatcher,
    mut findings: mpsc::Receiver<Vec<StoredFinding>>,
    tick: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut configs: Option<watch::Receiver<Arc<Config>>>,
) {
    match dispatcher.recover().await {
        Ok(n) if n > 0 => tracing::info!(
            requeued = n,
            "notifications from before the restart are pending again"
        ),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot requeue notifications"),
    }
    match engine.catch_up().await {
        Ok(n) if n > 0 => tracing::info!(
            findings = n,
            "findings from before the restart recorded on alerts"
        ),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot catch up with stored findings"),
    }
    let mut timer = tokio::time::interval(tick);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            batch = findings.recv() => {
                let Some(batch) = batch else { break };
                for f in &batch {
                    // A busy database is retried; what still fails is
                    // caught up from the findings table at the next start.
                    let mut delay = Duration::from_millis(50);
                    for attempt in 1..=6 {
                        match engine.on_finding(f).await {
                            Ok(_) => break,
                            Err(e) if attempt < 6 => {
                                tracing::warn!(finding = f.id, attempt, error = %e, "recording a finding failed; retrying");
                                tokio::time::sleep(delay).await;
                                delay *= 2;
                            }
                            Err(e) => tracing::error!(finding = f.id, error = %e, "finding not recorded as an alert; it is caught up at the next start"),
                        }
                    }
                }
            }
            _ = timer.tick() => {
                if let Err(e) = engine.tick().await {
                    tracing::error!(error = %e, "alert tick failed");
                }
            }
            changed = async { configs.as_mut()?.changed().await.ok() }, if configs.is_some() => {
                match changed.and(configs.as_mut()) {
                    Some(rx) => {
                        let config = rx.borrow_and_update().clone();
                        AlertsTask::reconfigure(&mut engine, &mut dispatcher, config).await;
                    }
                    None => configs = None,
                }
            }
        }
        if let Err(e) = dispatcher.run_once().await {
            tracing::error!(error = %e, at = %Utc::now(), "dispatch round failed; retried next round");
        }
    }
}
