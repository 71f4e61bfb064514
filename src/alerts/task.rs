//! [`AlertsTask`] runs the engine, and beside it the dispatcher as a task of its
//! own ([`DispatchTask`]): findings from the rules task open and update alerts,
//! and each committed batch wakes the dispatcher, which sends from the outbox
//! while the engine goes on with the next findings. Recording an alert never
//! waits for a provider (invariant 6).
//!
//! It follows reloads: the duty roster changes every shift, and a sysadmin must
//! not restart the daemon (and its loggers' connections) to change who is
//! called. Channels that cannot be built (a secret file missing) are
//! unavailable, not fatal: alerting always runs, and [`HealthBoard`] tells the
//! console and `/metrics` which channel is down and why.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use super::{AlertEngine, DispatchTask, Dispatcher};
use crate::api::metrics::Metrics;
use crate::clock::Clock;
use crate::config::Config;
use crate::notify::{HealthBoard, Notifier};
use crate::store::{Store, StoredFinding};

/// The alerts engine and dispatcher as tasks of the daemon.
pub struct AlertsTask {
    handle: JoinHandle<()>,
}

/// What the alerts task is built from besides the store.
pub struct AlertsSetup {
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub health: HealthBoard,
    /// How often alerts resolve, re-open and escalate by time.
    pub tick: Duration,
}

/// What changes when the alerts run on a cluster's leader (issue 22).
#[derive(Clone, Default)]
pub struct LeaderHooks {
    /// The dispatcher sends only while this says the node leads.
    pub gate: Option<super::Gate>,
    /// Findings other nodes stored (clock skew, DTU takeovers they saw) reach
    /// no channel of this node: record them from the table at every tick.
    pub catch_up_every_tick: bool,
}

impl AlertsTask {
    /// The daemon's alerts: built from the config in force, and rebuilt on each
    /// reload. Findings stored while the task was down are recorded on alerts
    /// as it starts ([`AlertEngine::catch_up`]).
    pub fn spawn_from_config(
        store: Store,
        setup: AlertsSetup,
        findings: mpsc::Receiver<Vec<StoredFinding>>,
        shutdown: watch::Receiver<bool>,
        configs: watch::Receiver<Arc<Config>>,
    ) -> AlertsTask {
        Self::spawn_with(
            store,
            setup,
            findings,
            shutdown,
            configs,
            LeaderHooks::default(),
        )
    }

    /// [`spawn_from_config`](Self::spawn_from_config) with the hooks of a
    /// cluster's leader.
    pub fn spawn_with(
        store: Store,
        setup: AlertsSetup,
        findings: mpsc::Receiver<Vec<StoredFinding>>,
        shutdown: watch::Receiver<bool>,
        mut configs: watch::Receiver<Arc<Config>>,
        hooks: LeaderHooks,
    ) -> AlertsTask {
        let config = configs.borrow_and_update().clone();
        let notifier = Arc::new(build(&config, &setup));
        let engine = AlertEngine::new(store.clone(), notifier.clone(), config, setup.clock.clone())
            .with_metrics(setup.metrics.clone());
        let mut dispatcher = Dispatcher::new(store, notifier.clone(), setup.clock.clone())
            .with_metrics(setup.metrics.clone());
        if let Some(g) = hooks.gate {
            dispatcher = dispatcher.with_gate(g);
        }
        let handle = tokio::spawn(run(
            engine,
            dispatcher,
            notifier,
            setup,
            findings,
            shutdown,
            configs,
            hooks.catch_up_every_tick,
        ));
        AlertsTask { handle }
    }

    pub async fn join(self) {
        let _ = self.handle.await;
    }
}

/// A notifier from the config, with its channels' health published.
fn build(config: &Config, setup: &AlertsSetup) -> Notifier {
    let n = Notifier::from_config(config, setup.clock.clone());
    setup.health.set(n.health());
    n
}

#[allow(clippy::too_many_arguments)]
async fn run(
    mut engine: AlertEngine,
    dispatcher: Dispatcher,
    notifier: Arc<Notifier>,
    setup: AlertsSetup,
    mut findings: mpsc::Receiver<Vec<StoredFinding>>,
    mut shutdown: watch::Receiver<bool>,
    mut configs: watch::Receiver<Arc<Config>>,
    catch_up_every_tick: bool,
) {
    match dispatcher.recover().await {
        Ok(n) if n > 0 => tracing::info!(
            requeued = n,
            "notifications from before the restart are pending again"
        ),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot requeue notifications"),
    }
    let wake = Arc::new(Notify::new());
    let (notifiers_tx, notifiers) = watch::channel(notifier);
    // The dispatcher stops when this task does, whichever way it ends (the
    // daemon's shutdown, or the rules task closing the findings channel).
    let (stop_dispatch, dispatch_stop) = watch::channel(false);
    let dispatch = DispatchTask::spawn(dispatcher, wake.clone(), notifiers, dispatch_stop);
    match engine.catch_up().await {
        Ok(n) if n > 0 => {
            tracing::info!(
                findings = n,
                "findings from before the restart recorded on alerts"
            );
            wake.notify_one();
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot catch up with stored findings"),
    }
    let mut timer = tokio::time::interval(setup.tick);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            batch = findings.recv() => {
                let Some(mut batch) = batch else { break };
                // Take whatever else is waiting: a burst is recorded in a few
                // transactions, not one per finding.
                while batch.len() < 1000 {
                    match findings.try_recv() {
                        Ok(more) => batch.extend(more),
                        Err(_) => break,
                    }
                }
                if catch_up_every_tick {
                    // The table is read at every tick too: what a catch-up
                    // recorded already is not recorded twice.
                    batch = still_unalerted(&engine, batch).await;
                }
                engine.on_findings_retrying(&batch).await;
                wake.notify_one();
            }
            _ = timer.tick() => {
                if catch_up_every_tick {
                    match engine.catch_up().await {
                        Ok(n) if n > 0 => wake.notify_one(),
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "cannot record findings other nodes stored"),
                    }
                }
                match engine.tick().await {
                    Ok(r) if !r.escalated.is_empty() || !r.reopened.is_empty() => wake.notify_one(),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "alert tick failed"),
                }
            }
            changed = configs.changed() => {
                if changed.is_err() {
                    break;
                }
                let config = configs.borrow_and_update().clone();
                let n = Arc::new(build(&config, &setup));
                engine.reconfigure(config, n.clone());
                let _ = notifiers_tx.send(n);
                wake.notify_one();
            }
        }
    }
    let _ = stop_dispatch.send(true);
    dispatch.join().await;
}

/// The findings of `batch` that are on no alert yet (all of them when the
/// store cannot say: recording twice is the lesser harm than not at all).
async fn still_unalerted(engine: &AlertEngine, batch: Vec<StoredFinding>) -> Vec<StoredFinding> {
    let Some(first) = batch.iter().map(|f| f.id).min() else {
        return batch;
    };
    let q = crate::store::FindingQuery {
        unalerted: true,
        after_id: Some(first - 1),
        limit: 100_000,
        ..Default::default()
    };
    match engine.store().findings(&q).await {
        Ok(open) => {
            let open: std::collections::HashSet<i64> = open.iter().map(|f| f.id).collect();
            batch.into_iter().filter(|f| open.contains(&f.id)).collect()
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell which findings are on alerts already");
            batch
        }
    }
}
