//! `/healthz`: the process answers. `/readyz`: it can do its job — the store
//! writer completed a round trip recently (see [`crate::daemon::systemd`]) and the
//! listeners are bound.

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
    let store = s.live.liveness.alive_within(s.live.heartbeat_window);
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
    });
    (status, Json(body)).into_response()
}
