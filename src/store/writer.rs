//! The batched writer: the one task that writes to the store.
//!
//! Sources hand it [`Batch`]es through a bounded channel and, when they must
//! acknowledge their sender (an HJ 212 9014, an MQTT PUBACK), wait for the answer:
//! it comes only after the transaction holding the batch has committed (invariant 1).
//!
//! Batching is *group commit*: the writer takes everything waiting in the channel (up
//! to `max_batch` readings) and commits it in one transaction; while that commit
//! runs, new requests queue up and form the next batch. Under light load a frame is
//! committed on its own, at once; under heavy load batches grow to thousands of
//! readings and the per-commit cost (an fsync) is shared. `linger` can add a wait for
//! more input, trading latency for fewer commits.
//!
//! When the database goes away (PostgreSQL restarting, a full disk), the writer keeps
//! the batch it holds and retries it with backoff; meanwhile the channel fills and
//! sources block, so loggers stop being acknowledged and resend later. An accepted
//! reading is never dropped for an outage. Only at shutdown, after the grace period,
//! does the writer give up — and then it says how many readings it could not write.
//!
//! Free disk space below `[storage] min_free` (see [`super::space`]) is treated
//! the same way, one step earlier: the writer holds the batch without trying to
//! commit it until space returns, so the disk never fills to the point where
//! SQLite cannot roll back or checkpoint. While it holds, `holding_for_space` is
//! set: the systemd heartbeat keeps the watchdog fed (a restart frees no disk)
//! and `/readyz` reports the reason.
//!
//! A commit that fails with a *permanent* error (the database refused the data:
//! a constraint, an invalid byte sequence — anything [`StoreError::is_transient`]
//! does not call transient) is never retried as it is: the batch is split in
//! halves and each half committed on its own, down to the one request the
//! database refuses. That request becomes a dead letter `store_refused` (its
//! contents rendered as text, the database's reason as detail) and its sender is
//! told [`WriteError::Refused`] — "not stored": an HJ 212 logger gets no 9014 for
//! it. Every other request of the batch is committed and answered as usual.
//!
//! The rules engine sees readings only after they are durable, through the optional
//! [`Tap`]: after each commit the writer offers the committed readings, numbered,
//! to a bounded channel. It never waits on it — ingestion must not stall because
//! evaluation is slow — so a full channel drops that batch from the tap (never from
//! the store), counts it in `tap_lagged`, and logs it; the receiver sees the gap in
//! the numbers and rebuilds its state from the store (invariant 4).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Batch, CommitStats, Received, Store, StoreError};
use crate::clock::Clock;
use crate::model::check::SkewSink;
use crate::model::Reading;

#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Readings per transaction at most (one request is never split).
    pub max_batch: usize,
    /// Extra wait for more input before a commit.
    pub linger: Duration,
    /// Requests waiting for the writer before senders block.
    pub queue: usize,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// A commit that has not finished by then counts as failed and is retried
    /// (harmless: re-writing is idempotent). Guards against a connection that died
    /// without telling us.
    pub commit_timeout: Duration,
    /// Where committed readings are offered (the rules engine), if anywhere.
    pub tap: Option<mpsc::Sender<Committed>>,
}

/// Readings of one commit, numbered so that a receiver can tell when it missed some.
#[derive(Debug, Clone)]
pub struct Committed {
    /// 1, 2, 3, … per writer; a gap means batches were dropped from the tap.
    pub seq: u64,
    pub readings: Arc<[Reading]>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            max_batch: 20_000,
            linger: Duration::ZERO,
            queue: 4096,
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
            commit_timeout: Duration::from_secs(30),
            tap: None,
        }
    }
}

/// The readings of one request are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    pub readings: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("the store writer has stopped")]
    Closed,
    #[error("reading rejected before storage: {0}")]
    Invalid(String),
    #[error("shut down before the store accepted the batch (last error: {0})")]
    Abandoned(String),
    /// The database refused this request's data (a permanent error); it was kept
    /// as a dead letter `store_refused` instead. Not stored: do not acknowledge.
    #[error("the store refused the data; kept as a dead letter: {0}")]
    Refused(String),
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub readings: AtomicU64,
    pub duplicates: AtomicU64,
    pub dead_letters: AtomicU64,
    pub status_events: AtomicU64,
    pub failed_commits: AtomicU64,
    pub last_commit_micros: AtomicU64,
    pub last_batch_readings: AtomicU64,
    /// Readings committed but not offered to the tap because it was full.
    pub tap_lagged: AtomicU64,
    /// Sum of commit durations, for the mean commit latency.
    pub commit_micros_total: AtomicU64,
    /// Times the writer held a batch because free disk space was below min_free.
    pub space_holds: AtomicU64,
    /// The writer is holding a batch for disk space right now.
    pub holding_for_space: std::sync::atomic::AtomicBool,
    /// Requests the database refused with a permanent error (kept as dead letters).
    pub refused: AtomicU64,
    /// Resent readings whose value differed from the stored one (the first stands).
    pub conflicts: AtomicU64,
    dead_letter_reasons: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl WriterStats {
    /// Dead letters committed, by reason.
    pub fn dead_letters_by_reason(&self) -> std::collections::BTreeMap<String, u64> {
        self.dead_letter_reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

struct Request {
    received: Received,
    done: Option<oneshot::Sender<Result<Durable, WriteError>>>,
}

/// A cloneable handle for sources. The writer ends once every handle is dropped and
/// everything sent has been committed.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
    clock: Arc<dyn Clock>,
    stats: Arc<WriterStats>,
    skew: SkewSink,
}

/// The running writer task; await [`WriterTask::finish`] at shutdown.
pub struct WriterTask {
    handle: JoinHandle<()>,
    give_up: watch::Sender<bool>,
}

impl Writer {
    pub fn spawn(store: Store, opts: WriterOptions, clock: Arc<dyn Clock>) -> (Writer, WriterTask) {
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let (give_up, give_up_rx) = watch::channel(false);
        let stats = Arc::new(WriterStats::default());
        let task = Task {
            store,
            opts,
            rx,
            give_up: give_up_rx,
            stats: stats.clone(),
            tap_seq: 0,
            tap_tail_dropped: false,
        };
        let handle = tokio::spawn(task.run());
        (
            Writer {
                tx,
                clock,
                stats,
                skew: SkewSink::default(),
            },
            WriterTask { handle, give_up },
        )
    }

    /// Queues a batch and waits until it is durable. Only then may the source
    /// acknowledge what it received.
    pub async fn write(&self, batch: Batch) -> Result<Durable, WriteError> {
        validate(&batch.readings)?;
        let (done, wait) = oneshot::channel();
        self.send(batch, Some(done)).await?;
        wait.await.map_err(|_| WriteError::Closed)?
    }

    /// Queues a batch without waiting for it (dead letters, status events: nobody
    /// acknowledges those).
    pub async fn submit(&self, batch: Batch) -> Result<(), WriteError> {
        validate(&batch.readings)?;
        self.send(batch, None).await
    }

    async fn send(
        &self,
        batch: Batch,
        done: Option<oneshot::Sender<Result<Durable, WriteError>>>,
    ) -> Result<(), WriteError> {
        let received = Received {
            at: self.clock.now(),
            batch,
        };
        self.tx
            .send(Request { received, done })
            .await
            .map_err(|_| WriteError::Closed)
    }

    /// Where sources report data refused for a logger's clock (every source holds
    /// a writer; the daemon connects the sink to its `clock_skew` findings).
    pub fn clock_skew(&self) -> &SkewSink {
        &self.skew
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// The counters, shared, for metrics that outlive this handle.
    pub fn stats_handle(&self) -> Arc<WriterStats> {
        self.stats.clone()
    }

    /// Reads the queue depth later without keeping the writer alive (a metrics
    /// collector must not stop the writer from finishing at shutdown).
    pub fn queue_probe(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let weak = self.tx.downgrade();
        move || {
            weak.upgrade()
                .map(|tx| tx.max_capacity() - tx.capacity())
                .unwrap_or(0)
        }
    }

    /// Requests waiting in the channel.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

impl WriterTask {
    /// Waits for the writer to commit everything its (now dropped) handles sent. If
    /// the store is unreachable for longer than `grace`, pending batches are
    /// abandoned and their senders told so.
    pub async fn finish(mut self, grace: Duration) {
        if tokio::time::timeout(grace, &mut self.handle).await.is_err() {
            let _ = self.give_up.send(true);
            let _ = self.handle.await;
        }
    }
}

/// A reading the store cannot hold faithfully is refused up front, so that one bad
/// value can never block a batch in a retry loop. Sources run the same checks per
/// message ([`crate::model::check`]) and keep a failing message as a dead letter;
/// this is the last line for a caller that did not.
fn validate(readings: &[Reading]) -> Result<(), WriteError> {
    crate::model::check::readings(readings).map_err(|e| {
        WriteError::Invalid(match readings.first() {
            Some(r) => format!("{} {}: {e}", r.enterprise, r.location),
            None => e.to_string(),
        })
    })
}

type Waiter = Option<oneshot::Sender<Result<Durable, WriteError>>>;

struct Task {
    store: Store,
    opts: WriterOptions,
    rx: mpsc::Receiver<Request>,
    give_up: watch::Receiver<bool>,
    stats: Arc<WriterStats>,
    tap_seq: u64,
    /// The last batch offered to the tap was dropped (it was full).
    tap_tail_dropped: bool,
}

impl Task {
    async fn run(mut self) {
        let mut carry: Option<Request> = None;
        loop {
            let first = match carry.take() {
                Some(r) => r,
                None => match self.rx.recv().await {
                    Some(r) => r,
                    None => break,
                },
            };
            let mut batch = vec![first];
            let mut n = batch[0].received.batch.readings.len();
            let deadline = Instant::now() + self.opts.linger;
            while n < self.opts.max_batch {
                let next = match self.rx.try_recv() {
                    Ok(r) => Some(r),
                    Err(_) if self.opts.linger.is_zero() => None,
                    Err(_) => tokio::time::timeout_at(deadline, self.rx.recv())
                        .await
                        .ok()
                        .flatten(),
                };
                let Some(next) = next else { break };
                let len = next.received.batch.readings.len();
                if n + len > self.opts.max_batch {
                    carry = Some(next);
                    break;
                }
                n += len;
                batch.push(next);
            }
            self.commit(batch).await;
        }
        self.mark_tail_gap().await;
        tracing::debug!("store writer: all handles dropped, everything committed");
    }

    /// Batches dropped from a full tap show as a gap when the next batch arrives;
    /// the last ones before shutdown have no next batch. An empty marker numbered
    /// after them shows the gap, so the rules engine judges them (from the store)
    /// before its final tick closes their hour. Ingest is over, so waiting for room
    /// on the tap holds up nothing — but never longer than a shutdown allows.
    async fn mark_tail_gap(&mut self) {
        let Some(tap) = self.opts.tap.clone().filter(|_| self.tap_tail_dropped) else {
            return;
        };
        self.tap_seq += 1;
        let marker = Committed {
            seq: self.tap_seq,
            readings: Arc::from(Vec::new()),
        };
        tokio::select! {
            sent = tap.send(marker) => if sent.is_err() {
                // The evaluator has stopped; it rebuilds from the store next time.
            },
            _ = self.give_up.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                tracing::warn!("rules engine did not take the end-of-stream marker; the last dropped batches are judged at the next start");
            }
        }
    }

    /// Commits one batch, retrying until it lands or shutdown gives up on it.
    async fn commit(&mut self, batch: Vec<Request>) {
        let (parts, waiters): (Vec<Received>, Vec<Waiter>) =
            batch.into_iter().map(|r| (r.received, r.done)).unzip();
        self.commit_parts(parts, waiters).await;
    }

    /// Commits `parts` together; on a data refusal splits them in halves until the
    /// one refused request is found (see the module docs).
    fn commit_parts(
        &mut self,
        mut parts: Vec<Received>,
        mut waiters: Vec<Waiter>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            match self.attempt(&parts).await {
                Attempt::Done => {
                    for (p, w) in parts.iter().zip(waiters) {
                        if let Some(w) = w {
                            // A sender that stopped waiting (its connection closed) is
                            // fine: the data is stored and its resend is a duplicate.
                            let _ = w.send(Ok(Durable {
                                readings: p.batch.readings.len(),
                            }));
                        }
                    }
                }
                Attempt::GaveUp(e) => {
                    let lost: usize = parts.iter().map(|p| p.batch.readings.len()).sum();
                    tracing::error!(error = %e, readings = lost, "store unreachable at shutdown: batch not written");
                    let msg = e.to_string();
                    for w in waiters.into_iter().flatten() {
                        let _ = w.send(Err(WriteError::Abandoned(msg.clone())));
                    }
                }
                Attempt::Refused(e) if parts.len() > 1 => {
                    tracing::warn!(error = %e, requests = parts.len(), "store refused a batch's data; committing it in halves to isolate the request");
                    let rest = parts.split_off(parts.len() / 2);
                    let rest_waiters = waiters.split_off(parts.len());
                    self.commit_parts(parts, waiters).await;
                    self.commit_parts(rest, rest_waiters).await;
                }
                Attempt::Refused(e) => {
                    let (Some(part), Some(waiter)) = (parts.pop(), waiters.pop()) else {
                        return;
                    };
                    self.refuse(part, waiter, e).await;
                }
            }
        })
    }

    /// One request the database refuses: kept as a dead letter `store_refused`,
    /// its sender told it was not stored.
    async fn refuse(&mut self, part: Received, waiter: Waiter, e: StoreError) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        let letter = super::refusal::refused_letter(&part, &e);
        tracing::error!(
            peer = %letter.peer,
            error = %e,
            readings = part.batch.readings.len(),
            "store refused a request's data: kept as a dead letter store_refused, sender told not stored"
        );
        let kept = vec![Received {
            at: part.at,
            batch: Batch::dead_letter(letter),
        }];
        let outcome = match self.attempt(&kept).await {
            Attempt::Done => WriteError::Refused(e.to_string()),
            Attempt::GaveUp(g) => WriteError::Abandoned(g.to_string()),
            Attempt::Refused(again) => {
                tracing::error!(error = %again, "the dead letter of a refused request was refused too; only this log line records it");
                WriteError::Refused(e.to_string())
            }
        };
        if let Some(w) = waiter {
            let _ = w.send(Err(outcome));
        }
    }

    /// Tries to commit until it lands, the database refuses the data, or shutdown
    /// gives up. Transient failures (and failures that are neither transient nor a
    /// refusal of the data, such as a missing table) are retried with backoff.
    async fn attempt(&mut self, parts: &[Received]) -> Attempt {
        let mut delay = self.opts.retry_min;
        loop {
            if let Err(e) = self.hold_while_space_is_low(parts).await {
                return Attempt::GaveUp(e);
            }
            let started = Instant::now();
            let attempt = tokio::time::timeout(self.opts.commit_timeout, self.store.commit(parts));
            match attempt
                .await
                .unwrap_or(Err(StoreError::Timeout(self.opts.commit_timeout)))
            {
                Ok(stats) => {
                    self.record(&stats, started.elapsed(), parts);
                    self.offer(parts);
                    return Attempt::Done;
                }
                Err(e) => {
                    self.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                    if e.is_data_refusal() {
                        return Attempt::Refused(e);
                    }
                    if *self.give_up.borrow() {
                        return Attempt::GaveUp(e);
                    }
                    let readings: usize = parts.iter().map(|p| p.batch.readings.len()).sum();
                    tracing::warn!(
                        error = %e,
                        readings,
                        retry_in_ms = delay.as_millis() as u64,
                        "store commit failed; holding the batch and retrying"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.give_up.changed() => {}
                    }
                    delay = (delay * 2).min(self.opts.retry_max);
                }
            }
        }
    }

    /// Waits, without committing, while free disk space is below min_free. Errs
    /// only when shutdown gives up on the batch meanwhile.
    async fn hold_while_space_is_low(&mut self, parts: &[Received]) -> Result<(), StoreError> {
        let Some(mut space) = self.store.space().cloned() else {
            return Ok(());
        };
        let Some(now) = space.current().filter(|s| s.low()) else {
            return Ok(());
        };
        let readings: usize = parts.iter().map(|p| p.batch.readings.len()).sum();
        tracing::warn!(readings, "{}; holding the batch", now.reason());
        self.stats.space_holds.fetch_add(1, Ordering::Relaxed);
        self.stats.holding_for_space.store(true, Ordering::Relaxed);
        tokio::select! {
            _ = space.wait_until_ok() => {}
            _ = self.give_up.wait_for(|g| *g) => {}
        }
        self.stats.holding_for_space.store(false, Ordering::Relaxed);
        match space.current().filter(|s| s.low()) {
            Some(s) if *self.give_up.borrow() => Err(StoreError::DiskLow(s.reason())),
            _ => Ok(()),
        }
    }

    /// Offers the committed readings to the tap without ever waiting for it.
    fn offer(&mut self, parts: &[Received]) {
        let Some(tap) = &self.opts.tap else { return };
        let n: usize = parts.iter().map(|p| p.batch.readings.len()).sum();
        if n == 0 {
            return;
        }
        self.tap_seq += 1;
        // Room first: the readings are copied only when they will be offered.
        match tap.try_reserve() {
            Ok(permit) => {
                let readings: Arc<[Reading]> = parts
                    .iter()
                    .flat_map(|p| p.batch.readings.iter().cloned())
                    .collect();
                permit.send(Committed {
                    seq: self.tap_seq,
                    readings,
                });
                self.tap_tail_dropped = false;
            }
            Err(mpsc::error::TrySendError::Full(())) => {
                self.tap_tail_dropped = true;
                let total = self.stats.tap_lagged.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                tracing::error!(
                    readings = n,
                    lagged_total = total,
                    "rules engine is behind: committed readings not offered to it; it will rebuild from the store"
                );
            }
            // The evaluator has stopped (shutdown); the store has the readings.
            Err(mpsc::error::TrySendError::Closed(())) => {}
        }
    }

    fn record(&self, stats: &CommitStats, took: Duration, parts: &[Received]) {
        let s = &self.stats;
        s.commits.fetch_add(1, Ordering::Relaxed);
        s.readings.fetch_add(stats.readings, Ordering::Relaxed);
        s.duplicates.fetch_add(stats.duplicates, Ordering::Relaxed);
        s.dead_letters
            .fetch_add(stats.dead_letters, Ordering::Relaxed);
        s.status_events
            .fetch_add(stats.status_events, Ordering::Relaxed);
        s.conflicts.fetch_add(stats.conflicts, Ordering::Relaxed);
        s.last_commit_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
        s.commit_micros_total
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        if parts.iter().any(|p| !p.batch.dead_letters.is_empty()) {
            let mut reasons = s
                .dead_letter_reasons
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for d in parts.iter().flat_map(|p| &p.batch.dead_letters) {
                *reasons.entry(d.reason.clone()).or_default() += 1;
            }
        }
        let n: usize = parts.iter().map(|p| p.batch.readings.len()).sum();
        s.last_batch_readings.store(n as u64, Ordering::Relaxed);
    }
}

/// How one commit attempt ended.
enum Attempt {
    Done,
    /// The database refused the data (permanent): do not retry it as it is.
    Refused(StoreError),
    /// Shutdown gave up while it was failing.
    GaveUp(StoreError),
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError::Abandoned(e.to_string())
    }
}
