//! `GET /api/v1/reports/transmission?from=2026-11-01&to=2026-12-01&enterprise=E1`
//! (viewer): the transmission report, as `pollwatch report transmission --json`
//! prints it; and `GET /api/v1/backfill?enterprise=E1&limit=50` (viewer): the
//! history requests sent to loggers, newest first, as `pollwatch backfill status
//! --json`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono_tz::Tz;
use serde::Deserialize;

use super::auth::Viewer;
use super::{error, ApiState};
use crate::completeness::report::{parse_date, report_json, transmission_report, ReportError};
use crate::store::BackfillRow;
use crate::timefmt::rfc3339_local;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/reports/transmission", get(transmission))
        .route("/api/v1/backfill", get(backfill))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportParams {
    from: String,
    to: String,
    enterprise: Option<String>,
}

async fn transmission(
    _: Viewer,
    State(s): State<ApiState>,
    params: Result<Query<ReportParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let (from, to) = match (parse_date(&p.from), parse_date(&p.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) => return error(StatusCode::BAD_REQUEST, format!("from: {e}")),
        (_, Err(e)) => return error(StatusCode::BAD_REQUEST, format!("to: {e}")),
    };
    let cfg = s.config.borrow().clone();
    let now = s.clock.now();
    match transmission_report(&cfg, &s.store, from, to, p.enterprise.as_deref(), now).await {
        Ok(r) => Json(report_json(&r)).into_response(),
        Err(e @ (ReportError::Range(_) | ReportError::Time(_))) => {
            error(StatusCode::BAD_REQUEST, e)
        }
        Err(e @ ReportError::UnknownEnterprise(_)) => error(StatusCode::NOT_FOUND, e),
        Err(ReportError::Store(e)) => {
            tracing::warn!(error = %e, "transmission report failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "the store did not answer")
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillParams {
    enterprise: Option<String>,
    limit: Option<u32>,
}

/// One backfill request as JSON (shared with `pollwatch backfill status --json`).
pub fn backfill_json(r: &BackfillRow, tz: Tz) -> serde_json::Value {
    let q = &r.request;
    serde_json::json!({
        "id": r.id,
        "enterprise": q.enterprise,
        "outlet": q.outlet,
        "mn": q.mn,
        "cn": q.cn,
        "begin": rfc3339_local(q.begin, tz),
        "end": rfc3339_local(q.end, tz),
        "qn": q.qn,
        "attempt": q.attempt,
        "requested_at": rfc3339_local(q.requested_at, tz),
        "state": r.state.as_str(),
        "qn_rtn": r.qn_rtn,
        "exe_rtn": r.exe_rtn,
        "readings": r.readings,
        "finished_at": r.finished_at.map(|t| rfc3339_local(t, tz)),
        "detail": r.detail,
    })
}

async fn backfill(
    _: Viewer,
    State(s): State<ApiState>,
    params: Result<Query<BackfillParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let tz = s.config.borrow().timezone;
    let limit = p.limit.unwrap_or(100).min(1000);
    match s
        .store
        .backfill_requests(p.enterprise.as_deref(), None, None, limit)
        .await
    {
        Ok(rows) => {
            let out: Vec<serde_json::Value> = rows.iter().map(|r| backfill_json(r, tz)).collect();
            Json(serde_json::json!({ "requests": out, "count": out.len() })).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "backfill query failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "the store did not answer")
        }
    }
}
