//! Closes days for the transmission rates ([`crate::completeness::daily`]): a pass
//! shortly after start and then every `PERIOD`, following config reloads. Findings
//! (`low_transmission`) are stored and handed to the alerts engine like any other.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::completeness::daily::close_days;
use crate::config::Config;
use crate::store::{Store, StoredFinding};

/// Between passes: a day closes at most this long before its figures are stored.
const PERIOD: Duration = Duration::from_secs(15 * 60);
/// The first pass waits this long after start (the daemon has more urgent work).
const FIRST: Duration = Duration::from_secs(60);

pub async fn run(
    store: Store,
    config: watch::Receiver<Arc<Config>>,
    findings: mpsc::Sender<Vec<StoredFinding>>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let mut wait = FIRST;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = PERIOD;
        let cfg = config.borrow().clone();
        let now = clock.now();
        let closed = match close_days(&cfg, &store, now).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "transmission figures: pass failed; retried next period");
                continue;
            }
        };
        if closed.new + closed.revised > 0 {
            tracing::info!(
                new = closed.new,
                revised = closed.revised,
                findings = closed.findings.len(),
                "transmission figures stored"
            );
        }
        if closed.findings.is_empty() {
            continue;
        }
        match store.insert_findings(&closed.findings, now).await {
            Ok(ids) => {
                let stored: Vec<StoredFinding> = ids
                    .into_iter()
                    .zip(closed.findings)
                    .filter_map(|(id, finding)| {
                        id.map(|id| StoredFinding {
                            id,
                            created: now,
                            finding,
                        })
                    })
                    .collect();
                if !stored.is_empty() && findings.send(stored).await.is_err() {
                    tracing::warn!("alerts engine stopped; low_transmission findings are stored");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot store low_transmission findings"),
        }
    }
}
