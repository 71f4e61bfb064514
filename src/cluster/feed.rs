//! The leader's feed of committed readings, from the store, in commit order.
//!
//! A single daemon hands the rules engine each commit through the writer's
//! in-process tap. In a cluster the readings are committed by every node, so
//! the leader reads them back from PostgreSQL — and must see each exactly once
//! and never skip one, whichever node and transaction wrote it.
//!
//! Why not a sequence column: a sequence value is taken when a row is inserted,
//! not when its transaction commits. Writer A takes 100, writer B takes 101 and
//! commits first; a reader that saw 101 and moved its cursor past it never sees
//! 100 when A commits a moment later. So the feed orders by *transaction*:
//! every reading carries the id of the transaction that inserted it (`txid`,
//! an `xid8` filled by `pg_current_xact_id()`, migration 0015), and the feed
//! reads only transactions below `pg_snapshot_xmin(pg_current_snapshot())` —
//! the oldest transaction still running when the statement's snapshot was
//! taken. Every transaction below that horizon has ended: committed (its rows
//! are visible in that snapshot) or rolled back (it has none), and none can be
//! added below it later. The cursor `(txid, series, ts)` therefore only moves
//! over settled ground; a reading is delivered once, and none is skipped.
//!
//! The price: the feed waits for the oldest running *writing* transaction. The
//! writer's batches commit in milliseconds; a long one (a bulk import, a
//! retention run, a transaction left open by hand) holds judging back until it
//! ends, and `pollwatch_cluster_feed_lag_seconds` shows it. Read-only queries
//! take no transaction id and hold nothing back. Rows written before the
//! upgrade have no `txid` and are never fed (they were judged when they came).
//!
//! Where a new leader starts: from the cursor the previous leader saved
//! (`cluster_feed`, written through the fenced store, so a deposed leader cannot
//! move it); the cluster's very first leader starts at the first transaction
//! that stored a reading received in the last hour, so what nodes stored
//! before anyone led is judged too. The cursor is saved
//! only for batches the rules engine has taken off the channel, one poll after
//! they were sent; batches it held when it died are fed again and — like the
//! rebuild's replay of the same readings — count once (the windows keep one
//! value per series and instant).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::store::cluster::FeedCursor;
use crate::store::{Committed, Store};

/// Readings read per query.
pub const PAGE: u32 = 5_000;

/// How often the feed asks for new readings when it has caught up.
pub const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
pub struct FeedStats {
    pub readings: AtomicU64,
    pub batches: AtomicU64,
    pub failures: AtomicU64,
    /// Unix ms of the last time the feed had caught up (nothing more to read).
    pub caught_up_ms: AtomicI64,
}

/// Runs the feed until `stop` turns true or the receiver goes away. `tx` is
/// the rules engine's tap; `store` is the leader's fenced store (the cursor it
/// saves is refused once the term is over).
pub async fn run(
    store: Store,
    start: FeedCursor,
    tx: mpsc::Sender<Committed>,
    stats: Arc<FeedStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut cursor = start;
    let mut saved = start;
    // Sent, but not yet known to be taken by the rules engine.
    let mut unconfirmed: Option<FeedCursor> = None;
    let mut seq = 0u64;
    let mut delay = POLL;
    loop {
        if *stop.borrow() {
            return;
        }
        // Everything sent before is off the channel once it is empty again.
        if tx.capacity() == tx.max_capacity() {
            if let Some(c) = unconfirmed.take() {
                if c != saved {
                    match store.feed_save(c).await {
                        Ok(()) => saved = c,
                        Err(e) => tracing::warn!(error = %e, "cannot save the feed cursor"),
                    }
                }
            }
        }
        match store.committed_readings(cursor, PAGE).await {
            Ok((readings, next)) => {
                delay = POLL;
                let n = readings.len();
                if n > 0 {
                    seq += 1;
                    stats.readings.fetch_add(n as u64, Ordering::Relaxed);
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    let batch = Committed {
                        seq,
                        readings: readings.into(),
                    };
                    tokio::select! {
                        sent = tx.send(batch) => if sent.is_err() { return },
                        _ = stop.changed() => return,
                    }
                    cursor = next;
                    unconfirmed = Some(next);
                }
                if n < PAGE as usize {
                    stats
                        .caught_up_ms
                        .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
                } else {
                    continue;
                }
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "reading committed readings failed");
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

/// How far back a cluster's first leader (no saved cursor) feeds readings
/// by the time they were received: what nodes stored before any of them led.
pub const FIRST_TERM_LOOKBACK: chrono::Duration = chrono::Duration::hours(1);

/// Where a new term's feed starts: the saved cursor; else (the cluster's first
/// term) the first transaction that stored a reading received within
/// [`FIRST_TERM_LOOKBACK`] of `now`, else the horizon.
pub async fn start_cursor(
    store: &Store,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<FeedCursor, crate::store::StoreError> {
    if let Some(c) = store.feed_load().await? {
        return Ok(c);
    }
    match store.first_txid_since(now - FIRST_TERM_LOOKBACK).await? {
        Some(t) => Ok(FeedCursor::at(t)),
        None => Ok(FeedCursor::at(store.feed_horizon().await?)),
    }
}
