//! Where the lines put their readings: one queue for every line, emptied into the
//! store writer in batches.
//!
//! Why not one writer request per poll: nobody waits for a polled reading's
//! commit (there is no logger to acknowledge), so a commit per poll — or even per
//! line tick — only multiplies transactions, fsyncs and writer wake-ups. At 5,000
//! meters polled every second that was hundreds of commits a second holding a
//! handful of readings each. Here the first burst after a quiet spell starts a
//! short timer ([`LINGER`]); when it fires, everything queued by then goes to the
//! writer as one request. An idle line never wakes the flusher; a busy city costs
//! a few commits a second.
//!
//! Backpressure is kept: the queue is bounded, and while the writer cannot take a
//! batch (the database is away, the disk is low) the flusher waits in
//! [`Writer::submit`], the queue fills and the lines wait in [`Sink::put`] —
//! polling pauses instead of readings piling up in memory. When every line has
//! stopped, what is queued is flushed and the flusher ends.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::model::Reading;
use crate::store::{Batch, WriteError, Writer};

/// How long the first readings after a quiet spell wait for company.
pub const LINGER: Duration = Duration::from_millis(200);
/// Line bursts queued before the lines wait.
const QUEUE: usize = 1024;
/// Readings per writer request at most (the writer's default batch limit).
const MAX_READINGS: usize = 20_000;

/// The lines' handle; cloned into every line task.
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::Sender<Vec<Reading>>,
}

impl Sink {
    /// Starts the flusher; it ends once every `Sink` is dropped and the queue is
    /// written.
    pub fn spawn(writer: Writer, linger: Duration) -> (Sink, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Sink { tx }, tokio::spawn(flush(rx, writer, linger)))
    }

    /// Queues one line tick's readings; waits while the queue is full.
    pub async fn put(&self, readings: Vec<Reading>) -> Result<(), WriteError> {
        if readings.is_empty() {
            return Ok(());
        }
        self.tx.send(readings).await.map_err(|_| WriteError::Closed)
    }
}

async fn flush(mut rx: mpsc::Receiver<Vec<Reading>>, writer: Writer, linger: Duration) {
    let mut carry: Option<Vec<Reading>> = None;
    loop {
        let mut batch = match carry.take() {
            Some(b) => b,
            None => match rx.recv().await {
                Some(b) => b,
                None => return,
            },
        };
        // Company for the first burst; lines that put meanwhile do not wake us.
        tokio::time::sleep(linger).await;
        while batch.len() < MAX_READINGS {
            let Ok(more) = rx.try_recv() else { break };
            if batch.len() + more.len() > MAX_READINGS {
                carry = Some(more);
                break;
            }
            batch.extend(more);
        }
        let n = batch.len();
        if let Err(e) = writer.submit(Batch::readings(batch)).await {
            tracing::error!(readings = n, error = %e, "field: cannot queue polled readings");
        }
    }
}
