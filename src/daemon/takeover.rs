//! The `dtu_takeover` alert: the DTU listener refused a registration of a DTU id
//! that is connected from another address (someone who knows the id tried to
//! take the meter's line). The daemon stores a finding for the DTU's enterprise
//! (factor `dtu`, detail `dtu:<id>`, both addresses in the message) and hands it
//! to the alerts engine; the listener reports each id and address at most once
//! an hour. Route it like any rule:
//!
//! ```toml
//! [[routes]]
//! rules = ["dtu_takeover"]
//! team = "sysadmin"
//! ```

use chrono::Utc;
use tokio::sync::{mpsc, watch};

use crate::model::Id;
use crate::rules::{Finding, RuleName, Severity};
use crate::sources::field::dtu::Takeover;
use crate::store::{Store, StoredFinding};

pub fn takeover_finding(t: &Takeover) -> Finding {
    Finding {
        rule: RuleName::DtuTakeover,
        severity: Severity::Warning,
        enterprise: Id::from(t.enterprise.as_str()),
        location: None,
        factor: Id::from("dtu"),
        window_start: t.at,
        window_end: t.at,
        at: t.at,
        value: None,
        threshold: None,
        detail: format!("dtu:{}", t.dtu),
        message: format!(
            "DTU {} 已从 {} 连接，{} 以同一编号注册被拒绝（疑似冒用），请核查。",
            t.dtu,
            t.holder.ip(),
            t.peer.ip()
        ),
        evidence: Default::default(),
    }
}

/// Turns refused takeovers into findings until `stop`.
pub async fn watch(
    store: Store,
    mut takeovers: mpsc::Receiver<Takeover>,
    findings: mpsc::Sender<Vec<StoredFinding>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let t = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            t = takeovers.recv() => match t {
                Some(t) => t,
                None => return,
            },
        };
        let now: chrono::DateTime<Utc> = t.at;
        super::disk::store_and_send(&store, takeover_finding(&t), &findings, now).await;
    }
}
