//! `GET /api/v1/cluster` (viewer): the nodes of a cluster (issue 22), their
//! last heartbeat, the leader and since when, and who polls which line; and
//! the cluster's metrics. Read from the database every node shares, so any
//! node answers the same; `node` says which one answered. A single-node
//! daemon answers `{"cluster": false}` (200: the console asks on every page,
//! and a single node is not an error).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::auth::Viewer;
use super::metrics::Metrics;
use super::{error, ApiState};
use crate::cluster::feed::FeedStats;
use crate::cluster::{ClusterStats, LEADER};

/// This node in the cluster, for the API and the console.
#[derive(Clone)]
pub struct ClusterInfo {
    pub node: String,
    pub lease: Duration,
    pub stats: Arc<ClusterStats>,
}

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/cluster", get(view))
}

async fn view(_: Viewer, State(s): State<ApiState>) -> Response {
    let Some(info) = &s.cluster else {
        return Json(serde_json::json!({ "cluster": false })).into_response();
    };
    let (nodes, leases, now) = match s.store.cluster_view().await {
        Ok(v) => v,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let lease = chrono::Duration::from_std(info.lease).unwrap_or_default();
    let leader = leases
        .iter()
        .find(|l| l.name == LEADER && l.expires > now)
        .map(|l| {
            serde_json::json!({
                "node": l.holder, "epoch": l.epoch, "since": l.since, "expires": l.expires,
                "renewals": l.renewals,
            })
        });
    let nodes: Vec<serde_json::Value> = nodes
        .iter()
        .map(|n| {
            serde_json::json!({
                "node": n.node_id, "started": n.started, "last_heartbeat": n.heartbeat,
                "alive": now - n.heartbeat < lease, "http": n.http,
            })
        })
        .collect();
    let lines: Vec<serde_json::Value> = leases
        .iter()
        .filter_map(|l| {
            let line = l.name.strip_prefix("line:")?;
            Some(serde_json::json!({
                "line": line, "node": (l.expires > now).then_some(&l.holder),
                "epoch": l.epoch, "expires": l.expires,
            }))
        })
        .collect();
    Json(serde_json::json!({
        "cluster": true,
        "node": info.node,
        "lease_ms": info.lease.as_millis() as u64,
        "leader": leader,
        "nodes": nodes,
        "lines": lines,
        "database_time": now,
    }))
    .into_response()
}

/// `pollwatch_cluster_*`.
pub fn register_metrics(metrics: &Metrics, info: &ClusterInfo, feed: Arc<FeedStats>) {
    let stats = info.stats.clone();
    let node = info.node.clone();
    metrics.collect(move |out| {
        let labels = [("node", node.as_str())];
        out.gauge(
            "pollwatch_cluster_leader",
            "1 while this node holds the leader lease (runs rules, alerts, dispatch).",
            &labels,
            if stats.leader.load(Ordering::Relaxed) {
                1.0
            } else {
                0.0
            },
        );
        out.gauge(
            "pollwatch_cluster_lines_held",
            "Polled lines this node holds the lease of.",
            &labels,
            stats.lines_held.load(Ordering::Relaxed) as f64,
        );
        for (name, help, v) in [
            (
                "pollwatch_cluster_lease_renewals_total",
                "Leader lease renewals by this node.",
                &stats.renewals,
            ),
            (
                "pollwatch_cluster_lease_renewal_failures_total",
                "Leader lease rounds that failed or timed out (database unreachable).",
                &stats.renew_failures,
            ),
            (
                "pollwatch_cluster_leader_acquisitions_total",
                "Times this node became the leader.",
                &stats.acquisitions,
            ),
            (
                "pollwatch_cluster_leader_losses_total",
                "Times this node stopped being the leader.",
                &stats.losses,
            ),
            (
                "pollwatch_cluster_heartbeat_failures_total",
                "Heartbeats this node could not write.",
                &stats.heartbeat_failures,
            ),
            (
                "pollwatch_cluster_feed_readings_total",
                "Readings the leader's rules engine was fed from the store.",
                &feed.readings,
            ),
        ] {
            out.counter(name, help, &labels, v.load(Ordering::Relaxed));
        }
    });
}
