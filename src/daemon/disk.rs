//! The `disk_low` alert: when free space on the store's file system falls below
//! `[storage] min_free`, the writer stops accepting data (see `store::space`) —
//! every logger in the city goes unanswered — so somebody must be told at once,
//! not when the first offline findings arrive. The daemon stores a `disk_low`
//! finding (enterprise `pollwatch`, factor `disk`, the free bytes against
//! `min_free`) and hands it to the alerts engine like any other finding; duty.toml
//! sends it to the sysadmins with a route on the rule:
//!
//! ```toml
//! [[routes]]
//! rules = ["disk_low"]
//! team = "sysadmin"
//! channels = ["wecom-it", "email"]
//! ```
//!
//! Storing the finding works although the writer holds: the writer stops at
//! `min_free` precisely so that there is still room for this. One finding per
//! episode (each time space falls below the line); the alert resolves after
//! `[alerts] hold` without a new episode, like any alert.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::model::Id;
use crate::rules::{Finding, RuleName, Severity};
use crate::store::{Space, SpaceWatch, Store, StoredFinding};

/// The finding for one episode of low disk space starting at `now`.
pub fn disk_low_finding(space: &Space, now: chrono::DateTime<Utc>) -> Finding {
    Finding {
        rule: RuleName::DiskLow,
        severity: Severity::Violation,
        enterprise: Id::from("pollwatch"),
        location: None,
        factor: Id::from("disk"),
        window_start: now,
        window_end: now,
        at: now,
        value: Some(space.free as f64),
        threshold: Some(space.min_free as f64),
        detail: "storage.min_free".into(),
        message: format!(
            "存储磁盘剩余空间不足：{}，低于 min_free {}；数据暂停接收，请清理磁盘。 ({})",
            crate::store::space::human_bytes(space.free),
            crate::store::space::human_bytes(space.min_free),
            space.reason()
        ),
        evidence: Default::default(),
    }
}

/// Raises `disk_low` on every fall below `min_free` until `stop`.
pub async fn watch(
    store: Store,
    mut space: SpaceWatch,
    findings: mpsc::Sender<Vec<StoredFinding>>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = space.wait_until_low() => {}
        }
        if let Some(now) = space.current().filter(|s| s.low()) {
            raise(&store, &now, &findings, clock.now()).await;
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = space.wait_until_ok() => {}
        }
    }
}

async fn raise(
    store: &Store,
    space: &Space,
    findings: &mpsc::Sender<Vec<StoredFinding>>,
    now: chrono::DateTime<Utc>,
) {
    store_and_send(store, disk_low_finding(space, now), findings, now).await;
}

/// Stores a finding the daemon raises itself and hands it to the alerts engine.
pub(super) async fn store_and_send(
    store: &Store,
    finding: Finding,
    findings: &mpsc::Sender<Vec<StoredFinding>>,
    now: chrono::DateTime<Utc>,
) {
    let rule = finding.rule;
    // Retried a few times: the disk is nearly full, not full.
    for attempt in 1..=5u32 {
        match store
            .insert_findings(std::slice::from_ref(&finding), now)
            .await
        {
            Ok(ids) => {
                if let Some(id) = ids.first().copied().flatten() {
                    let stored = StoredFinding {
                        id,
                        created: now,
                        finding,
                    };
                    if findings.send(vec![stored]).await.is_err() {
                        tracing::warn!(%rule, "alerts engine stopped; the finding is stored and alerted at the next start");
                    }
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, attempt, %rule, "cannot store the finding");
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
            }
        }
    }
}
