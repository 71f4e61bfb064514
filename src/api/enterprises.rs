//! `GET /api/v1/enterprises`: the configured enterprises with each outlet's and
//! meter's live status — last reading time, online, open alerts.
//!
//! "Online" for an HJ 212 outlet means an authenticated frame within
//! [`ONLINE_WINDOW`] (loggers upload at least every few minutes); for a polled
//! device it is the poller's own verdict ([`crate::sources::field::health`]).
//! A location fed only by MQTT has no live status here (`online: null`) until it
//! shows up in the store.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};

use super::auth::Viewer;
use super::{error, ApiState};
use crate::config::{Enterprise, Meter, Outlet};
use crate::timefmt::rfc3339_local;

/// An HJ 212 outlet silent for longer is reported offline.
pub const ONLINE_WINDOW: Duration = Duration::from_secs(600);

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/enterprises", get(list))
}

/// Online status and last reading of outlets and meters, from what the sources
/// report live (shared with the console's enterprise pages).
pub struct LiveStatus {
    health: crate::sources::field::HealthTable,
    hj212: std::sync::Arc<crate::sources::hj212::Hj212Stats>,
    now: DateTime<Utc>,
    window: chrono::Duration,
}

/// Last reading time and online verdict (`None`: no live source to judge by).
pub type Status = (Option<DateTime<Utc>>, Option<bool>);

impl LiveStatus {
    pub fn new(s: &ApiState, now: DateTime<Utc>) -> LiveStatus {
        LiveStatus {
            health: s
                .live
                .field
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            hj212: s.live.hj212.clone(),
            now,
            window: chrono::Duration::from_std(ONLINE_WINDOW).unwrap_or_default(),
        }
    }

    fn device(&self, enterprise: &str, id: &str) -> Option<(bool, Option<DateTime<Utc>>)> {
        self.health
            .get(&(enterprise.to_string(), id.to_string()))
            .map(|h| (h.online, h.last_ok))
    }

    pub fn outlet(&self, e: &Enterprise, o: &Outlet) -> Status {
        let mut last: Option<DateTime<Utc>> = None;
        let mut online: Option<bool> = None;
        if let Some(h) = &o.hj212 {
            let seen = self.hj212.mn(&h.mn).and_then(|m| m.last_seen);
            last = seen;
            online = Some(seen.is_some_and(|t| self.now - t <= self.window));
        }
        for (n, d) in o.devices.iter().enumerate() {
            let id =
                d.id.clone()
                    .unwrap_or_else(|| format!("{}-{}", o.id, n + 1));
            if let Some((on, ok)) = self.device(&e.id, &id) {
                online = Some(online.unwrap_or(false) || on);
                last = last.max(ok);
            }
        }
        (last, online)
    }

    pub fn meter(&self, e: &Enterprise, m: &Meter) -> Status {
        let status = m
            .device
            .as_ref()
            .and_then(|d| self.device(&e.id, d.id.as_deref().unwrap_or(m.id.as_str())));
        (status.and_then(|s| s.1), status.map(|s| s.0))
    }
}

async fn list(_: Viewer, State(s): State<ApiState>) -> Response {
    let cfg = s.config.borrow().clone();
    let alerts = match (s.open_alerts)(s.store.clone()).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "open alert counts failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "the store did not answer");
        }
    };
    let live = LiveStatus::new(&s, Utc::now());
    let tz = cfg.timezone;
    let time = |t: Option<DateTime<Utc>>| t.map(|t| rfc3339_local(t, tz));
    let out: Vec<serde_json::Value> = cfg
        .enterprises
        .iter()
        .map(|e| {
            let outlets: Vec<serde_json::Value> = e
                .outlets
                .iter()
                .map(|o| {
                    let (last, online) = live.outlet(e, o);
                    let key = (e.id.clone(), format!("outlet:{}", o.id));
                    serde_json::json!({
                        "id": o.id,
                        "name": o.name,
                        "kind": o.kind.as_str(),
                        "mn": o.hj212.as_ref().map(|h| h.mn.as_str()),
                        "last_reading": time(last),
                        "online": online,
                        "open_alerts": alerts.get(&key).copied().unwrap_or(0),
                    })
                })
                .collect();
            let meters: Vec<serde_json::Value> = e
                .meters
                .iter()
                .map(|m| {
                    let (last, online) = live.meter(e, m);
                    let key = (e.id.clone(), format!("meter:{}", m.id));
                    serde_json::json!({
                        "id": m.id,
                        "name": m.name,
                        "last_reading": time(last),
                        "online": online,
                        "open_alerts": alerts.get(&key).copied().unwrap_or(0),
                    })
                })
                .collect();
            serde_json::json!({
                "id": e.id,
                "name": e.name,
                "district": e.district,
                "industry": e.industry,
                "outlets": outlets,
                "meters": meters,
            })
        })
        .collect();
    Json(serde_json::json!({ "enterprises": out, "config_hash": cfg.hash })).into_response()
}
