//! `/healthz`: the process answers. `/readyz`: it can do its job — the store
//! writer completed a round trip recently (see [`crate::daemon::systemd`]) and the
//! listeners are bound, and free disk space is above `[storage] min_free`. When
//! it is not ready, `reason` says why in words a sysadmin can act on.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::ApiState;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<ApiState>) -> Response {
    let alive = s.live.liveness.alive_within(s.live.heartbeat_window);
    let space = s.store.space().and_then(|w| w.current());
    let low = space.filter(|sp| sp.low());
    let store = alive && low.is_none();
    let reason = match low {
        Some(sp) => Some(sp.reason()),
        None if !alive => Some(format!(
            "the store writer has not completed a round trip within {:?}",
            s.live.heartbeat_window
        )),
        None => None,
    };
    let listeners: Vec<serde_json::Value> = s
        .live
        .listeners
        .iter()
        .map(|(name, addr)| serde_json::json!({ "name": name, "addr": addr.to_string() }))
        .collect();
    let status = if store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "ready": store,
        "store_writable": store,
        "listeners": listeners,
        "config_hash": s.config.borrow().hash,
        "reason": reason,
        "storage_free_bytes": space.map(|sp| sp.free),
        "storage_min_free_bytes": space.map(|sp| sp.min_free),
    });
    (status, Json(body)).into_response()
}
