//! The leader's term in cluster mode (issue 22; see `crate::cluster`): the
//! rules engine fed from the store, the alerts engine and the dispatcher, all
//! writing through a store fenced at this term's epoch. A term starts when the
//! cluster task says this node leads and ends when it says it no longer does
//! (or at shutdown); a new term is built from the store alone, never from what
//! an earlier term of this node left in memory.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::plans::PlanFeed;
use crate::alerts::{AlertsSetup, AlertsTask, LeaderHooks};
use crate::api::metrics::Metrics;
use crate::clock::Clock;
use crate::cluster::feed::{self, FeedStats};
use crate::cluster::lease::Belief;
use crate::config::Config;
use crate::rules::task::{RulesTask, TaskOptions, TaskStats};
use crate::store::{Store, StoreError};

/// What every term is built from.
pub(super) struct TermCtx {
    pub node: String,
    pub store: Store,
    pub plans: PlanFeed,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub health: crate::notify::HealthBoard,
    pub config: watch::Receiver<Arc<Config>>,
    pub belief: Arc<Belief>,
    /// The running term's rules counters, for `/metrics`.
    pub rules_stats: Arc<Mutex<Arc<TaskStats>>>,
    pub feed_stats: Arc<FeedStats>,
}

pub(super) struct Term {
    epoch: i64,
    store: Store,
    stop: watch::Sender<bool>,
    feed: JoinHandle<()>,
    rules: RulesTask,
    alerts: AlertsTask,
}

impl TermCtx {
    pub async fn start(&self, epoch: i64) -> Result<Term, StoreError> {
        let started = std::time::Instant::now();
        let fenced = self.store.fenced(&self.node, epoch)?;
        let cursor = feed::start_cursor(&fenced, self.clock.now()).await?;
        let (stop, stop_rx) = watch::channel(false);
        let (tap, tap_rx) = mpsc::channel(super::RULES_TAP_QUEUE);
        let feed = tokio::spawn(feed::run(
            fenced.clone(),
            cursor,
            tap,
            self.feed_stats.clone(),
            stop_rx.clone(),
        ));
        let (findings_tx, findings_rx) = mpsc::channel(1024);
        let rules = RulesTask::spawn(
            fenced.clone(),
            self.plans.subscribe(),
            TaskOptions::default(),
            self.clock.clone(),
            tap_rx,
            Some(findings_tx),
        );
        *self.rules_stats.lock().unwrap_or_else(|e| e.into_inner()) = rules.stats.clone();
        let alerts = AlertsTask::spawn_with(
            fenced.clone(),
            AlertsSetup {
                clock: self.clock.clone(),
                metrics: self.metrics.clone(),
                health: self.health.clone(),
                tick: Duration::from_secs(10),
            },
            findings_rx,
            stop_rx,
            self.config.clone(),
            LeaderHooks {
                gate: Some(self.belief.gate(epoch)),
                catch_up_every_tick: true,
            },
        );
        tracing::info!(
            epoch,
            feed_from_txid = cursor.txid,
            took_ms = started.elapsed().as_millis() as u64,
            "leader term started: rules, alerts and dispatcher running"
        );
        Ok(Term {
            epoch,
            store: fenced,
            stop,
            feed,
            rules,
            alerts,
        })
    }
}

impl Term {
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Ends the term: the feed stops (which ends the rules task), the alerts
    /// engine and dispatcher stop (deliveries under way get their short
    /// grace; the gate already keeps a deposed leader from starting any), and
    /// the fenced pool closes.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let _ = self.feed.await;
        self.rules.join(grace).await;
        self.alerts.join().await;
        self.store.close().await;
        tracing::info!(epoch = self.epoch, "leader term ended");
    }
}
