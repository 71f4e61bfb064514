//! This node's cluster task: a heartbeat, the leader lease and the line leases,
//! every third of the lease. It publishes the role ([`Role`]) and the lines it
//! holds on watch channels; the daemon starts and stops the leader's engines
//! and the pollers from them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::lease::Belief;
use super::lines::fair_share;
use super::LEADER;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub node: String,
    pub lease: Duration,
    /// Where this node's API listens (shown to the others).
    pub http: String,
    pub started: DateTime<Utc>,
}

/// What this node is in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Follower,
    Leader { epoch: i64, since: DateTime<Utc> },
}

#[derive(Debug, Default)]
pub struct ClusterStats {
    pub leader: AtomicBool,
    pub renewals: AtomicU64,
    pub renew_failures: AtomicU64,
    pub acquisitions: AtomicU64,
    pub losses: AtomicU64,
    pub heartbeat_failures: AtomicU64,
    pub lines_held: AtomicU64,
}

/// The running cluster task.
pub struct Cluster {
    pub node: String,
    pub lease: Duration,
    pub role: watch::Receiver<Role>,
    pub lines: watch::Receiver<BTreeSet<String>>,
    pub belief: Arc<Belief>,
    pub stats: Arc<ClusterStats>,
    /// The leased lines that exist (the daemon updates it on reloads).
    pub wanted: watch::Sender<Vec<String>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Cluster {
    pub fn start(
        store: Store,
        opts: ClusterOptions,
        wanted_lines: Vec<String>,
        stats: Arc<ClusterStats>,
    ) -> Cluster {
        let (role_tx, role) = watch::channel(Role::Follower);
        let (lines_tx, lines) = watch::channel(BTreeSet::new());
        let (wanted, wanted_rx) = watch::channel(wanted_lines);
        let (stop, stop_rx) = watch::channel(false);
        let belief = Arc::new(Belief::default());
        let run = Run {
            store,
            opts: opts.clone(),
            belief: belief.clone(),
            stats: stats.clone(),
            role: role_tx,
            lines: lines_tx,
            held: None,
            held_lines: BTreeMap::new(),
        };
        Cluster {
            node: opts.node,
            lease: opts.lease,
            role,
            lines,
            belief,
            stats,
            wanted,
            stop,
            task: tokio::spawn(run.run(wanted_rx, stop_rx)),
        }
    }

    /// Stops renewing and releases every lease this node holds, so the others
    /// take over at once instead of after the lease.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Run {
    store: Store,
    opts: ClusterOptions,
    belief: Arc<Belief>,
    stats: Arc<ClusterStats>,
    role: watch::Sender<Role>,
    lines: watch::Sender<BTreeSet<String>>,
    /// The leader epoch this node holds.
    held: Option<i64>,
    /// Lines held, with their epochs and local deadlines.
    held_lines: BTreeMap<String, (i64, Instant)>,
}

impl Run {
    fn lease_ms(&self) -> i64 {
        self.opts.lease.as_millis() as i64
    }

    async fn run(
        mut self,
        mut wanted: watch::Receiver<Vec<String>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let period = self.opts.lease / 3;
        loop {
            self.heartbeat().await;
            self.leader_round().await;
            let w = wanted.borrow_and_update().clone();
            self.lines_round(&w).await;
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(period) => {}
            }
        }
        if let Some(epoch) = self.held.take() {
            self.step_down("shutting down");
            if let Err(e) = self
                .store
                .lease_release(LEADER, &self.opts.node, epoch)
                .await
            {
                tracing::warn!(error = %e, "cannot release the leader lease; the others wait for it to expire");
            }
        }
        for (name, (epoch, _)) in std::mem::take(&mut self.held_lines) {
            let _ = self
                .store
                .lease_release(&name, &self.opts.node, epoch)
                .await;
        }
        self.publish_lines();
    }

    async fn heartbeat(&self) {
        let beat = self
            .store
            .node_heartbeat(&self.opts.node, &self.opts.http, self.opts.started);
        match tokio::time::timeout(self.opts.lease, beat).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.stats
                    .heartbeat_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cluster heartbeat failed");
            }
            Err(_) => {
                self.stats
                    .heartbeat_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("cluster heartbeat timed out");
            }
        }
    }

    fn step_down(&mut self, why: &str) {
        self.belief.drop_lease();
        self.held = None;
        self.stats.leader.store(false, Ordering::Relaxed);
        self.stats.losses.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(node = %self.opts.node, why, "no longer the leader");
        self.role.send_replace(Role::Follower);
    }

    async fn leader_round(&mut self) {
        // Paused past the lease (or the database was slow): whatever the
        // database says now, this term is over.
        if self.held.is_some() && self.belief.lapsed() {
            self.step_down("the lease ran out before it was renewed");
        }
        let sent = Instant::now();
        let attempt = self
            .store
            .lease_acquire(LEADER, &self.opts.node, self.lease_ms(), self.held);
        match tokio::time::timeout(self.opts.lease, attempt).await {
            Ok(Ok(Some(h))) => {
                self.belief.hold(h.epoch, sent, self.opts.lease);
                if self.held == Some(h.epoch) {
                    self.stats.renewals.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if self.held.is_some() {
                    self.step_down("the lease was taken again under a new epoch");
                    self.belief.hold(h.epoch, sent, self.opts.lease);
                }
                self.held = Some(h.epoch);
                self.stats.acquisitions.fetch_add(1, Ordering::Relaxed);
                self.stats.leader.store(true, Ordering::Relaxed);
                tracing::info!(node = %self.opts.node, epoch = h.epoch, since = %h.since, "this node is the leader");
                self.role.send_replace(Role::Leader {
                    epoch: h.epoch,
                    since: h.since,
                });
            }
            Ok(Ok(None)) => {
                if self.held.is_some() {
                    self.step_down("another node holds the lease");
                }
            }
            Ok(Err(e)) => {
                self.stats.renew_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "leader lease round failed");
            }
            Err(_) => {
                self.stats.renew_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("leader lease round timed out");
            }
        }
        if self.held.is_some() && self.belief.lapsed() {
            self.step_down("the lease could not be renewed in time");
        }
    }

    async fn lines_round(&mut self, wanted: &[String]) {
        let now = Instant::now();
        // Lines that are no longer configured, or whose lease ran out here.
        self.held_lines
            .retain(|name, (_, until)| wanted.contains(name) && *until > now);
        if wanted.is_empty() {
            self.publish_lines();
            return;
        }
        let nodes = match self.store.live_nodes(self.lease_ms()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot count live nodes; keeping the lines held");
                self.publish_lines();
                return;
            }
        };
        let share = fair_share(wanted.len(), nodes);
        // Renew what is held.
        let held: Vec<(String, i64)> = self
            .held_lines
            .iter()
            .map(|(n, (e, _))| (n.clone(), *e))
            .collect();
        for (name, epoch) in held {
            let sent = Instant::now();
            match self
                .store
                .lease_acquire(&name, &self.opts.node, self.lease_ms(), Some(epoch))
                .await
            {
                Ok(Some(h)) => {
                    self.held_lines
                        .insert(name, (h.epoch, sent + self.opts.lease));
                }
                Ok(None) => {
                    tracing::warn!(line = %name, "line lease lost to another node");
                    self.held_lines.remove(&name);
                }
                Err(e) => tracing::warn!(line = %name, error = %e, "line lease renewal failed"),
            }
        }
        // Hand one back while holding more than the fair share.
        if self.held_lines.len() > share {
            if let Some((name, (epoch, _))) = self.held_lines.pop_last() {
                tracing::info!(line = %name, share, "handing a line to another node");
                let _ = self
                    .store
                    .lease_release(&name, &self.opts.node, epoch)
                    .await;
            }
        }
        // Take free ones up to the share.
        for name in wanted {
            if self.held_lines.len() >= share {
                break;
            }
            if self.held_lines.contains_key(name) {
                continue;
            }
            let sent = Instant::now();
            match self
                .store
                .lease_acquire(name, &self.opts.node, self.lease_ms(), None)
                .await
            {
                Ok(Some(h)) => {
                    tracing::info!(line = %name, epoch = h.epoch, "polling this line");
                    self.held_lines
                        .insert(name.clone(), (h.epoch, sent + self.opts.lease));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(line = %name, error = %e, "taking a line lease failed"),
            }
        }
        self.publish_lines();
    }

    fn publish_lines(&self) {
        let now: BTreeSet<String> = self.held_lines.keys().cloned().collect();
        self.stats
            .lines_held
            .store(now.len() as u64, Ordering::Relaxed);
        self.lines.send_if_modified(|old| {
            if *old == now {
                false
            } else {
                *old = now;
                true
            }
        });
    }
}
