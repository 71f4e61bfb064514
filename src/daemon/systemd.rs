//! Talking to systemd (`Type=notify`): READY=1 once the store, the listeners and
//! the sources are up, RELOADING=1 … READY=1 around a reload, STOPPING=1 at
//! shutdown, and WATCHDOG=1 from a task that proves the pipeline is alive.
//!
//! The watchdog does not ping on a timer alone: every half watchdog interval it
//! sends an empty batch through the store writer and waits for the answer. That
//! answer comes only after the writer has worked through everything queued before
//! it and the store has opened and committed a transaction, so a writer stuck
//! behind an unreachable database, or a wedged runtime, stops the pings and lets
//! systemd restart us. The same round trip backs `/readyz`. The exception is a
//! writer holding data because free disk space is below `min_free`: a restart
//! would free no disk, so the watchdog stays fed while `/readyz` reports it.
//!
//! Without `$NOTIFY_SOCKET` (a terminal, a test) every call is a no-op.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::store::{Batch, Writer};

/// Sends one notification; failures are logged, never fatal (a daemon that
/// cannot reach systemd still stores readings).
pub fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// RELOADING=1 with MONOTONIC_USEC, as systemd ≥ 253 expects for `Type=notify-reload`
/// and accepts for `Type=notify`.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: flushing the store"),
    ]);
}

/// When the pipeline last proved itself alive by a writer round trip.
#[derive(Clone, Default)]
pub struct Liveness {
    last: Arc<Mutex<Option<Instant>>>,
}

impl Liveness {
    fn mark(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Whether a round trip completed within `within`.
    pub fn alive_within(&self, within: Duration) -> bool {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() <= within)
    }
}

/// How often the heartbeat runs when systemd asks for no watchdog: often enough
/// for `/readyz` to notice a stuck writer within a scrape interval or two.
pub const HEARTBEAT_DEFAULT: Duration = Duration::from_secs(5);

/// The heartbeat period: half of `WATCHDOG_USEC` when systemd set one for us.
pub fn heartbeat_period() -> (Duration, bool) {
    match sd_notify::watchdog_enabled() {
        Some(d) if !d.is_zero() => ((d / 2).max(Duration::from_millis(50)), true),
        _ => (HEARTBEAT_DEFAULT, false),
    }
}

/// Runs the heartbeat until `stop` turns true. Each round trip that completes
/// within one period marks `liveness` and, under a systemd watchdog, sends
/// WATCHDOG=1.
pub async fn heartbeat(
    writer: Writer,
    liveness: Liveness,
    period: Duration,
    watchdog: bool,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let probe = writer.write(Batch {
            readings: Vec::new(),
            dead_letters: Vec::new(),
            status_events: Vec::new(),
        });
        match tokio::time::timeout(period, probe).await {
            Ok(Ok(_)) => {
                liveness.mark();
                if watchdog {
                    notify(&[NotifyState::Watchdog]);
                }
                if failing {
                    tracing::info!("store writer answers again");
                    failing = false;
                }
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(error = %e, "heartbeat through the store writer failed");
                }
                failing = true;
            }
            // Holding for disk space is deliberate, and a restart frees no disk:
            // the watchdog stays fed; /readyz says what is wrong.
            Err(_) if writer.stats().holding_for_space.load(Ordering::Relaxed) => {
                if watchdog {
                    notify(&[NotifyState::Watchdog]);
                }
                failing = true;
            }
            Err(_) => {
                if !failing {
                    tracing::warn!(
                        waited_ms = period.as_millis() as u64,
                        queued = writer.queue_depth(),
                        "heartbeat through the store writer did not come back; withholding WATCHDOG=1"
                    );
                }
                failing = true;
            }
        }
    }
}
