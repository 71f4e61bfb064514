//! The daily anchor (issue 18): once the local day is over and `[evidence]
//! anchor_time` has passed, the previous day's anchor is written to
//! `<state_dir>/anchors/YYYY-MM-DD.json` (see `crate::evidence::anchor`). Checked
//! once a minute, so a daemon that was down at that time writes it when it comes
//! back; a day already anchored is left alone. A failure is logged with why and
//! tried again the next minute; it never touches readings or alerts.

use std::sync::Arc;
use std::time::Duration;

use chrono::Timelike;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::Config;
use crate::evidence::anchor;
use crate::store::Store;

pub async fn daily(
    store: Store,
    config: watch::Receiver<Arc<Config>>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let mut done: Option<chrono::NaiveDate> = None;
    loop {
        let cfg = config.borrow().clone();
        let now = clock.now();
        let local = now.with_timezone(&cfg.timezone);
        let (h, m) = cfg.daemon.evidence.anchor_at().unwrap_or((0, 10));
        let due = (local.hour(), local.minute()) >= (h, m);
        let day = local.date_naive().pred_opt();
        if let (true, Some(day)) = (due, day) {
            if done != Some(day) {
                let dir = anchor::anchor_dir(&cfg.state_dir);
                match anchor::write(&store, &dir, day, cfg.timezone, now).await {
                    Ok((path, a)) => {
                        tracing::info!(date = %day, root = %a.root, leaves = a.leaves.len(), path = %path.display(), "evidence anchor written");
                        done = Some(day);
                    }
                    Err(e @ crate::evidence::EvidenceError::AnchorConflict { .. }) => {
                        // Said once: the file stays as it is, for an investigation.
                        tracing::error!(date = %day, error = %e, "evidence anchor CONFLICT");
                        done = Some(day);
                    }
                    Err(e) => {
                        tracing::error!(date = %day, error = %e, "evidence anchor not written; trying again in a minute")
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}
