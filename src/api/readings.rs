//! `GET /api/v1/readings`: stored readings of one outlet or meter, as the
//! `pollwatch readings --json` command prints them.
//!
//! `?enterprise=E1&outlet=DA001&factor=a21026&kind=min&stat=avg&from=2026-11-27&to=2026-11-28T00:00:00%2B08:00&limit=500`
//! — exactly one of `outlet` or `meter`; times as RFC 3339 or local
//! `YYYY-MM-DD[ HH:MM[:SS]]` in the configured time zone; `limit` defaults to 1000
//! and is capped at 10 000.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono_tz::Tz;
use serde::Deserialize;

use super::auth::Viewer;
use super::{error, ApiState};
use crate::model::{DataKind, LocationKind, Stat};
use crate::store::{ReadingQuery, StoredReading};
use crate::timefmt::{parse_user_time, rfc3339_local};

pub const DEFAULT_LIMIT: u32 = 1000;
pub const MAX_LIMIT: u32 = 10_000;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/readings", get(readings))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    enterprise: String,
    outlet: Option<String>,
    meter: Option<String>,
    factor: Option<String>,
    kind: Option<String>,
    stat: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
}

/// One stored reading as JSON (shared with the CLI's `readings --json`).
pub fn reading_json(r: &StoredReading, tz: Tz) -> serde_json::Value {
    serde_json::json!({
        "ts": rfc3339_local(r.ts, tz),
        "factor": r.factor,
        "unit": r.unit,
        "kind": r.kind.as_str(),
        "stat": r.stat.as_str(),
        "converted": r.converted,
        "value": r.value,
        "flag": r.flag.as_str(),
        "source": { "protocol": r.protocol.as_str(), "device": r.device, "resend": r.resend },
        "received": rfc3339_local(r.received, tz),
    })
}

async fn readings(
    _: Viewer,
    State(s): State<ApiState>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(p) = match params {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let tz = s.config.borrow().timezone;
    let (location_kind, location) = match (p.outlet, p.meter) {
        (Some(o), None) => (LocationKind::Outlet, o),
        (None, Some(m)) => (LocationKind::Meter, m),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give exactly one of outlet or meter",
            )
        }
    };
    let kind = match p.kind.as_deref().map(str::parse::<DataKind>).transpose() {
        Ok(k) => k,
        Err(_) => return error(StatusCode::BAD_REQUEST, "kind: one of rtd, min, hour, day"),
    };
    let stat = match p.stat.as_deref().map(str::parse::<Stat>).transpose() {
        Ok(k) => k,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "stat: one of rtd, avg, min, max, cou",
            )
        }
    };
    let time = |v: Option<String>| v.map(|t| parse_user_time(&t, tz)).transpose();
    let from = match time(p.from) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("from: {e}")),
    };
    let to = match time(p.to) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("to: {e}")),
    };
    let q = ReadingQuery {
        enterprise: p.enterprise,
        location_kind,
        location,
        factor: p.factor,
        kind,
        stat,
        from,
        to,
        limit: Some(p.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)),
    };
    match s.store.readings(&q).await {
        Ok(rows) => {
            let out: Vec<serde_json::Value> = rows.iter().map(|r| reading_json(r, tz)).collect();
            Json(serde_json::json!({ "readings": out, "count": out.len() })).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "readings query failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "the store did not answer")
        }
    }
}
