//! Sends what the outbox holds, off the alert path.
//!
//! A row is marked `sent` only after a channel accepted it, in the same
//! transaction as its attempts and the timeline row saying so; a row whose
//! message waits in a channel's digest queue is `queued`, and turns `pending`
//! again after a restart (the queue was in memory). So a restart resends what was
//! not accepted, and never what was.
//!
//! Why it runs the way it does: the providers are the least reliable thing the
//! daemon talks to, and they fail exactly when officers need them (the unit's
//! internet link is down, a robot API hangs). So
//!
//! - **recording an alert never waits on delivery**: the alerts engine commits
//!   the alert and its outbox rows and wakes the dispatcher ([`DispatchTask`]);
//!   it never sends anything itself;
//! - **each channel is a lane** with its own small pool of concurrent sends
//!   ([`DEFAULT_CONCURRENCY`]). A delivery waits only in the lane of the channel
//!   it is trying: a channel that hangs holds its own queue while its attempts
//!   time out and retry, then the delivery falls back to the route's next
//!   channel, in that channel's lane. Other channels' deliveries go past it;
//! - **digests are flushed per channel**, so a hanging channel's digest does not
//!   hold another channel's.
//!
//! A delivery that may go by e-mail carries the alert's evidence chart as PNG
//! ([`crate::evidence`]); drawing it costs tens of milliseconds, so it is done
//! only for such deliveries, inside the delivery's own task.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::{parse_facts, AlertError};
use crate::clock::Clock;
use crate::notify::UNAVAILABLE;
use crate::notify::{
    AttemptRecord, AttemptResult, ChannelResult, Delivery, DeliveryReport, DeliveryStatus, Message,
    Notifier,
};
use crate::store::{AlertState, Attempt, OutboxRow, Store};

/// Sends in flight at once per channel. Providers rate-limit per robot anyway;
/// a few concurrent requests keep a slow one's queue moving without hammering it.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Whether this node may send now. In cluster mode (issue 22) it says whether
/// the leader lease is still held by this node's own reckoning (a monotonic
/// deadline): a leader paused past its lease (SIGSTOP, a VM frozen) sees it
/// lapsed the moment it runs again, before it sends anything. Single-node
/// daemons have none.
pub type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

/// Rows read from the outbox per scan.
const SCAN: u32 = 500;

pub struct Dispatcher {
    store: Store,
    pub(super) notifier: Arc<Notifier>,
    pub(super) clock: Arc<dyn Clock>,
    metrics: Option<crate::api::metrics::Metrics>,
    concurrency: usize,
    lanes: Arc<Lanes>,
    /// Outbox rows a delivery task is working on; never launched twice.
    inflight: Arc<Mutex<HashSet<i64>>>,
    /// Channels whose digest is being flushed.
    flushing: Arc<Mutex<HashSet<String>>>,
    /// Rows up to here were launched once; later scans start after it.
    high_water: i64,
    /// Rows whose settling failed (the store was down): launched again.
    retry: Arc<Mutex<BTreeSet<i64>>>,
    gate: Option<Gate>,
}

/// One semaphore per channel.
struct Lanes(HashMap<String, Arc<Semaphore>>);

impl Lanes {
    fn new(notifier: &Notifier, concurrency: usize) -> Lanes {
        Lanes(
            notifier
                .channel_ids()
                .map(|id| (id.to_string(), Arc::new(Semaphore::new(concurrency.max(1)))))
                .collect(),
        )
    }

    /// A place in the channel's lane (FIFO); `None` for an unknown channel,
    /// which fails at once without sending anything.
    async fn enter(&self, channel: &str) -> Option<OwnedSemaphorePermit> {
        let sem = self.0.get(channel)?.clone();
        sem.acquire_owned().await.ok()
    }
}

fn attempt(outbox_id: i64, a: &AttemptRecord) -> Attempt {
    Attempt {
        outbox_id,
        at: a.at,
        channel: a.channel.clone(),
        recipients: a.recipients.join(","),
        alert_ids: a.alert_ids.join(","),
        result: match a.result {
            AttemptResult::Accepted => "accepted",
            AttemptResult::Retryable => "retryable",
            AttemptResult::Permanent => "permanent",
            AttemptResult::Deferred => "deferred",
        }
        .to_string(),
        code: a.code.clone(),
        reason: a.reason.clone(),
        provider_id: a.provider_id.clone(),
    }
}

/// What a delivery task needs; cloned into each.
#[derive(Clone)]
struct Ctx {
    store: Store,
    notifier: Arc<Notifier>,
    clock: Arc<dyn Clock>,
    metrics: Option<crate::api::metrics::Metrics>,
    lanes: Arc<Lanes>,
    gate: Option<Gate>,
}

impl Ctx {
    /// False when a gate says this node must not send any more.
    fn may_send(&self) -> bool {
        self.gate.as_ref().is_none_or(|g| g())
    }
}

impl Dispatcher {
    pub fn new(store: Store, notifier: Arc<Notifier>, clock: Arc<dyn Clock>) -> Dispatcher {
        let lanes = Arc::new(Lanes::new(&notifier, DEFAULT_CONCURRENCY));
        Dispatcher {
            store,
            notifier,
            clock,
            metrics: None,
            concurrency: DEFAULT_CONCURRENCY,
            lanes,
            inflight: Default::default(),
            flushing: Default::default(),
            high_water: 0,
            retry: Default::default(),
            gate: None,
        }
    }

    /// Sends only while `gate` says so (cluster mode: while this node leads).
    pub fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Counts notification attempts by channel and result.
    pub fn with_metrics(mut self, metrics: crate::api::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sends in flight at once per channel.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self.lanes = Arc::new(Lanes::new(&self.notifier, self.concurrency));
        self
    }

    /// A reload's channels. Deliveries under way finish with the notifier they
    /// started with; new ones use this one.
    pub fn set_notifier(&mut self, notifier: Arc<Notifier>) {
        self.lanes = Arc::new(Lanes::new(&notifier, self.concurrency));
        self.notifier = notifier;
        // Rows that waited in the old channels' digest queues turn pending
        // again (see [`recover`](Self::recover)); the next scan starts over.
        self.high_water = 0;
    }

    /// At start-up: what waited in memory is pending again.
    pub async fn recover(&self) -> Result<u64, AlertError> {
        Ok(self.store.requeue_outbox().await?)
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            store: self.store.clone(),
            notifier: self.notifier.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            lanes: self.lanes.clone(),
            gate: self.gate.clone(),
        }
    }

    /// Starts a delivery task for every pending row not yet under way: rows
    /// after the high-water mark (or all of them with `full`), and rows whose
    /// settling failed. Returns how many it started.
    async fn launch(&mut self, jobs: &mut JoinSet<usize>, full: bool) -> Result<usize, AlertError> {
        if !self.ctx().may_send() {
            return Ok(0);
        }
        let mut rows: Vec<OutboxRow> = Vec::new();
        let after = if full { 0 } else { self.high_water };
        loop {
            let batch = self
                .store
                .outbox_pending_after(after.max(rows.last().map_or(0, |r| r.id)), SCAN)
                .await?;
            let n = batch.len();
            rows.extend(batch);
            if n < SCAN as usize {
                break;
            }
        }
        let retry: Vec<i64> = std::mem::take(&mut *lock(&self.retry))
            .into_iter()
            .collect();
        if !retry.is_empty() {
            for id in retry {
                if !rows.iter().any(|r| r.id == id) {
                    rows.extend(
                        self.store
                            .outbox_row(id)
                            .await?
                            .filter(|r| r.state == "pending"),
                    );
                }
            }
        }
        let mut started = 0;
        for row in rows {
            self.high_water = self.high_water.max(row.id);
            if !lock(&self.inflight).insert(row.id) {
                continue;
            }
            let ctx = self.ctx();
            let inflight = self.inflight.clone();
            let retry = self.retry.clone();
            jobs.spawn(async move {
                let id = row.id;
                let settled = match deliver_row(&ctx, row).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!(outbox_id = id, error = %e, "notification not settled; tried again");
                        lock(&retry).insert(id);
                        0
                    }
                };
                lock(&inflight).remove(&id);
                settled
            });
            started += 1;
        }
        Ok(started)
    }

    /// Starts a digest flush for each channel that has one due and none under way.
    fn launch_flushes(&self, jobs: &mut JoinSet<usize>) {
        if !self.ctx().may_send() {
            return;
        }
        let now = self.clock.now();
        let due: Vec<String> = self
            .notifier
            .channel_ids()
            .filter(|id| {
                self.notifier
                    .next_flush_at_for(id)
                    .is_some_and(|t| t <= now)
            })
            .map(str::to_string)
            .collect();
        for channel in due {
            if !lock(&self.flushing).insert(channel.clone()) {
                continue;
            }
            let ctx = self.ctx();
            let flushing = self.flushing.clone();
            jobs.spawn(async move {
                let settled = flush(&ctx, &channel).await;
                lock(&flushing).remove(&channel);
                settled
            });
        }
    }

    /// Sends every pending notification, each in its channel's lane, waits for
    /// all of them, then sends any digest that is due. Returns how many outbox
    /// rows it settled. The daemon runs [`DispatchTask`] instead; this is for
    /// tests, benchmarks and tools that want one synchronous round.
    pub async fn run_once(&mut self) -> Result<usize, AlertError> {
        let mut jobs = JoinSet::new();
        self.launch(&mut jobs, true).await?;
        let mut settled = join_all(&mut jobs).await;
        self.launch_flushes(&mut jobs);
        settled += join_all(&mut jobs).await;
        Ok(settled)
    }
}

async fn join_all(jobs: &mut JoinSet<usize>) -> usize {
    let mut n = 0;
    while let Some(r) = jobs.join_next().await {
        match r {
            Ok(k) => n += k,
            Err(e) => tracing::error!(error = %e, "a delivery task failed"),
        }
    }
    n
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A row settled without any attempt.
fn not_sent() -> DeliveryReport {
    DeliveryReport {
        status: DeliveryStatus::Failed,
        attempts: Vec::new(),
    }
}

/// One outbox row, from reading its alert to recording what the channels said.
/// Returns 1 when it settled the row, 0 when the row is not due.
async fn deliver_row(ctx: &Ctx, row: OutboxRow) -> Result<usize, AlertError> {
    let Some(alert) = ctx.store.alert(row.alert_id).await? else {
        return Ok(0);
    };
    // The opening message goes out even if the alert was resolved meanwhile;
    // escalations only while it is open.
    if alert.state != AlertState::Open && row.step != alert.step_key("L0R0") {
        return Ok(0);
    }
    let facts = match parse_facts(&alert) {
        Ok(f) => f,
        // One unreadable alert must not hold up every row behind it.
        Err(e) => {
            tracing::error!(alert = alert.id, outbox_id = row.id, error = %e, "notification cannot be rendered; marked failed");
            finish(ctx, row.id, &not_sent()).await?;
            return Ok(1);
        }
    };
    let now = ctx.clock.now();
    // Planned as if unacknowledged: a queued step is still delivered
    // (acknowledging cancels what is queued, so none waits for such an alert).
    let summary = super::summary(alert.id, &facts, alert.cycle_start());
    let plan = ctx.notifier.plan(&summary, now);
    if let Err(e) = &plan {
        tracing::error!(alert = alert.id, outbox_id = row.id, error = %e, "queued notification has no route any more (duty.toml changed)");
    }
    let Some(delivery) = plan
        .iter()
        .flat_map(|p| &p.deliveries)
        .find(|d| alert.step_key(&d.step.key()) == row.step)
    else {
        // The route or policy changed under a queued step: say so on record.
        finish(ctx, row.id, &not_sent()).await?;
        return Ok(1);
    };
    let mut msg = ctx.notifier.message(&facts);
    msg.refs = vec![row.id.to_string()];
    if let Some(cfg) = ctx.notifier.evidence_config(delivery) {
        msg.attachments
            .extend(chart_attachment(&ctx.store, cfg, alert.id, now).await);
    }
    // Checked last, right before the provider is called: what is not sent
    // stays pending for the node that leads now.
    if !ctx.may_send() {
        return Ok(0);
    }
    let report = deliver_in_lanes(ctx, delivery, &msg).await;
    finish(ctx, row.id, &report).await?;
    Ok(1)
}

/// The delivery's channels in fall-back order, each tried in its own lane.
async fn deliver_in_lanes(ctx: &Ctx, delivery: &Delivery, msg: &Message) -> DeliveryReport {
    let mut attempts = Vec::new();
    let channels = &delivery.channels;
    for (i, id) in channels.iter().enumerate() {
        let _place = ctx.lanes.enter(id).await;
        let r = ctx
            .notifier
            .try_channel(
                id,
                msg,
                &delivery.recipients,
                &channels[i + 1..],
                &mut attempts,
            )
            .await;
        let status = match r {
            ChannelResult::Accepted => DeliveryStatus::Sent {
                channel: id.clone(),
            },
            ChannelResult::Queued => DeliveryStatus::Queued {
                channel: id.clone(),
            },
            ChannelResult::Failed => continue,
        };
        return DeliveryReport { status, attempts };
    }
    DeliveryReport {
        status: DeliveryStatus::Failed,
        attempts,
    }
}

/// Sends the channel's due digests and settles the rows they carried.
async fn flush(ctx: &Ctx, channel: &str) -> usize {
    let mut settled = 0;
    for digest in ctx.notifier.flush_channel(channel).await {
        let report = DeliveryReport {
            status: digest.status.clone(),
            attempts: digest.attempts.clone(),
        };
        let mut settle: Vec<(&String, &DeliveryReport)> =
            digest.refs.iter().map(|r| (r, &report)).collect();
        for (refs, rep) in &digest.rerouted {
            settle.extend(refs.iter().map(|r| (r, rep)));
        }
        for (r, rep) in settle {
            let Ok(id) = r.parse::<i64>() else { continue };
            match finish(ctx, id, rep).await {
                Ok(()) => settled += 1,
                Err(e) => {
                    tracing::error!(outbox_id = id, error = %e, "digest sent but not recorded")
                }
            }
        }
    }
    settled
}

/// Records the attempts and the row's state. A busy or briefly unreachable
/// store is retried: the provider may already have accepted the message, and a
/// row left pending would be sent again.
async fn finish(ctx: &Ctx, outbox_id: i64, report: &DeliveryReport) -> Result<(), AlertError> {
    let attempts: Vec<Attempt> = report
        .attempts
        .iter()
        .map(|a| attempt(outbox_id, a))
        .collect();
    // Every channel of the route is unavailable (not refused: never built):
    // the row waits for a reload that brings one back, instead of failing.
    let held = !attempts.is_empty()
        && attempts
            .iter()
            .all(|a| a.code.as_deref() == Some(UNAVAILABLE));
    let (state, channel) = match &report.status {
        DeliveryStatus::Sent { channel } => ("sent", Some(channel.as_str())),
        DeliveryStatus::Queued { channel } => ("queued", Some(channel.as_str())),
        DeliveryStatus::Failed if held => ("held", None),
        DeliveryStatus::Failed => ("failed", None),
    };
    if let Some(m) = &ctx.metrics {
        for a in &attempts {
            m.counter(
                "pollwatch_notification_attempts_total",
                "Notification attempts by channel and result (accepted, retryable, permanent, deferred).",
                &[("channel", &a.channel), ("result", &a.result)],
            )
            .inc();
        }
    }
    match state {
        "failed" => tracing::error!(outbox_id, "notification failed on every channel of its route"),
        "held" => tracing::error!(outbox_id, "NOBODY NOTIFIED: every channel of the route is unavailable; the notification is sent when a reload brings one back"),
        _ => {}
    }
    let mut delay = Duration::from_millis(50);
    for tries in 1.. {
        match ctx
            .store
            .finish_outbox(outbox_id, state, channel, &attempts, ctx.clock.now())
            .await
        {
            Ok(()) => return Ok(()),
            // A conflict: the alerts engine appended to the same timeline at
            // the same moment. The provider accepted the message; recording
            // it must not give up on that, or the row is sent again.
            Err(e) if tries < 6 && (e.is_transient() || e.is_conflict()) => {
                tracing::warn!(outbox_id, error = %e, "recording a delivery failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The dispatcher as the daemon runs it: woken by new outbox rows (and once a
/// second for digests), it starts delivery tasks and never waits for them.
pub struct DispatchTask {
    handle: tokio::task::JoinHandle<()>,
}

/// How long a shutdown lets deliveries under way finish; what is cut off stays
/// pending and is sent after the restart.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

impl DispatchTask {
    pub fn spawn(
        mut dispatcher: Dispatcher,
        wake: Arc<Notify>,
        mut notifiers: watch::Receiver<Arc<Notifier>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> DispatchTask {
        let handle = tokio::spawn(async move {
            let mut jobs = JoinSet::new();
            loop {
                if let Err(e) = dispatcher.launch(&mut jobs, false).await {
                    tracing::error!(error = %e, "cannot read the outbox; tried again in a second");
                }
                dispatcher.launch_flushes(&mut jobs);
                while let Some(r) = jobs.try_join_next() {
                    if let Err(e) = r {
                        tracing::error!(error = %e, "a delivery task failed");
                    }
                }
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    changed = notifiers.changed() => {
                        if changed.is_err() { break }
                        let n = notifiers.borrow_and_update().clone();
                        dispatcher.set_notifier(n);
                        // What waited in the old channels' digest queues (in
                        // memory) is pending again, so the new channels send it;
                        // nothing accepted is sent twice.
                        match dispatcher.recover().await {
                            Ok(requeued) => tracing::info!(requeued, "alerts follow the reloaded config (roster, routes, channels)"),
                            Err(e) => tracing::error!(error = %e, "cannot requeue digest-held notifications after a reload; they are requeued at the next start"),
                        }
                    }
                }
            }
            let cut = tokio::time::timeout(SHUTDOWN_GRACE, join_all(&mut jobs)).await;
            if cut.is_err() {
                tracing::warn!(
                    left = jobs.len(),
                    "deliveries still under way at shutdown; they stay pending and are sent after the restart"
                );
                jobs.shutdown().await;
            }
        });
        DispatchTask { handle }
    }

    pub async fn join(self) {
        let _ = self.handle.await;
    }
}

/// The alert's evidence chart for channels that carry files. A chart that cannot
/// be drawn must not hold up the alert: the message goes without it, and the log
/// says why.
async fn chart_attachment(
    store: &Store,
    cfg: &crate::config::Config,
    alert: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<crate::notify::Attachment> {
    match crate::evidence::alert_png(store, cfg, alert, now).await {
        Ok(Some(png)) => Some(crate::notify::Attachment {
            filename: format!("alert-{alert}.png"),
            content_type: "image/png".to_string(),
            data: png.into(),
        }),
        // Offline, linkage and order alerts have no single series to draw.
        Ok(None) | Err(crate::evidence::EvidenceError::NotChartable { .. }) => None,
        Err(e) => {
            tracing::warn!(alert, error = %e, "notification sent without its evidence chart");
            None
        }
    }
}
