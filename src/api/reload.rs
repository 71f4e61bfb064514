//! `POST /-/reload` (operator): the same reload as SIGHUP, answered with its
//! outcome — the changes made, or every config error with file, line and key.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::auth::Operator;
use super::ApiState;
use crate::daemon::reload::ReloadError;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/-/reload", post(reload))
}

async fn reload(Operator(who): Operator, State(s): State<ApiState>) -> Response {
    tracing::info!(by = %who, "reload requested over HTTP");
    match s.reload.reload("http").await {
        Ok(report) => (
            StatusCode::OK,
            Json(serde_json::json!({
                "status": "ok",
                "config_hash": report.hash,
                "changes": report.diff,
            })),
        )
            .into_response(),
        Err(ReloadError::Invalid(errors)) => {
            let list: Vec<serde_json::Value> = errors
                .0
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "file": d.file,
                        "line": d.line,
                        "key": d.path,
                        "message": d.message,
                    })
                })
                .collect();
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(serde_json::json!({ "status": "error", "errors": list })),
            )
                .into_response()
        }
        Err(e) => super::error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}
