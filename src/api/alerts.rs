//! `/api/v1/alerts`: the alert board's data, one alert's record, and the two
//! things an officer does to an alert (acknowledge, resolve).
//!
//! | route | who |
//! |---|---|
//! | `GET /api/v1/alerts?state=&enterprise=&severity=&rule=&limit=` | viewer |
//! | `GET /api/v1/alerts/{id}` — with timeline, evidence, notifications, attempts | viewer |
//! | `POST /api/v1/alerts/{id}/ack` `{"by": "zhangwei", "note": "…"}` | operator |
//! | `POST /api/v1/alerts/{id}/resolve` `{"by": "…", "note": "…"}` | operator |
//!
//! The recorded actor is always the authenticated token's name (the console's:
//! the session's officer). `by`, if sent, names whom the token acted for and is
//! kept apart in the timeline row as `on_behalf_of` — it is the client's word,
//! not an identity (issue 18).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::auth::{Operator, Viewer};
use super::{error, ApiState, OpenAlertCounts, OpenAlertsHook};
use crate::store::{AlertQuery, AlertRow, AlertState, Store};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/alerts", get(list))
        .route("/api/v1/alerts/{id}", get(show))
        .route("/api/v1/alerts/{id}/ack", post(ack))
        .route("/api/v1/alerts/{id}/resolve", post(resolve))
}

/// Open (and acknowledged) alerts per location, for `/api/v1/enterprises`.
pub fn open_alerts_hook() -> OpenAlertsHook {
    std::sync::Arc::new(|store: Store| {
        Box::pin(async move {
            Ok(store
                .open_alert_counts()
                .await?
                .into_iter()
                .map(|(e, l, n)| ((e, l), n))
                .collect::<OpenAlertCounts>())
        })
    })
}

/// An alert as the API shows it: `outlet` or `meter` instead of the stored
/// `outlet:ID` text.
pub fn alert_json(a: &AlertRow) -> serde_json::Value {
    let mut v = serde_json::to_value(a).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("location");
        match a.location.split_once(':') {
            Some(("outlet", id)) => {
                o.insert("outlet".into(), id.into());
            }
            Some(("meter", id)) => {
                o.insert("meter".into(), id.into());
            }
            _ => {}
        }
    }
    v
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    state: Option<String>,
    enterprise: Option<String>,
    severity: Option<String>,
    rule: Option<String>,
    limit: Option<u32>,
}

async fn list(_: Viewer, State(s): State<ApiState>, Query(p): Query<ListParams>) -> Response {
    let state = match p.state.as_deref().map(|x| (x, AlertState::parse(x))) {
        Some((x, None)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("state {x:?}: expected open, acknowledged or resolved"),
            )
        }
        Some((_, st)) => st,
        None => None,
    };
    let q = AlertQuery {
        state,
        enterprise: p.enterprise,
        severity: p.severity,
        rule: p.rule,
        limit: p.limit.unwrap_or(500).min(10_000),
    };
    match s.store.alerts(&q).await {
        Ok(rows) => Json(rows.iter().map(alert_json).collect::<Vec<_>>()).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn show(_: Viewer, State(s): State<ApiState>, Path(id): Path<i64>) -> Response {
    let record = async {
        let Some(alert) = s.store.alert(id).await? else {
            return Ok(None);
        };
        let timeline = s.store.alert_events(id).await?;
        // The evidence of each finding is in the timeline row that recorded it.
        let evidence: Vec<serde_json::Value> = timeline
            .iter()
            .filter(|e| e.kind == "opened" || e.kind == "finding")
            .filter_map(|e| serde_json::from_str(&e.detail).ok())
            .collect();
        let chain_intact = crate::store::verify_chain_with(s.store.keys(), &timeline).is_ok();
        Ok::<_, crate::store::StoreError>(Some(serde_json::json!({
            "alert": alert_json(&alert),
            "evidence": evidence,
            "timeline": timeline,
            "timeline_intact": chain_intact,
            "timeline_keyed": !timeline.is_empty() && timeline.iter().all(|e| !e.key_id.is_empty()),
            "notifications": s.store.outbox(None, Some(id), 1000).await?,
            "attempts": s.store.alert_attempts(id).await?,
        })))
    };
    match record.await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no alert {id}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActBody {
    #[serde(default)]
    by: String,
    #[serde(default)]
    note: String,
}

async fn act(s: ApiState, token: String, id: i64, to: AlertState, body: ActBody) -> Response {
    let on_behalf_of = Some(body.by.trim()).filter(|b| !b.is_empty());
    if on_behalf_of.is_some_and(|b| b.len() > 200 || b.chars().any(char::is_control)) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "by: at most 200 bytes, no control characters",
        );
    }
    tracing::info!(alert = id, token = %token, on_behalf_of = ?on_behalf_of, to = to.as_str(), "alert transition requested");
    match s
        .store
        .transition_alert_for(id, to, &token, on_behalf_of, &body.note, s.clock.now())
        .await
    {
        Ok(Some(a)) => Json(alert_json(&a)).into_response(),
        Ok(None) => match s.store.alert(id).await {
            Ok(Some(a)) => error(
                StatusCode::CONFLICT,
                format!(
                    "alert {id} is {} and cannot become {}",
                    a.state.as_str(),
                    to.as_str()
                ),
            ),
            Ok(None) => error(StatusCode::NOT_FOUND, format!("no alert {id}")),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        },
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn ack(
    Operator(t): Operator,
    State(s): State<ApiState>,
    Path(id): Path<i64>,
    Json(b): Json<ActBody>,
) -> Response {
    act(s, t, id, AlertState::Acknowledged, b).await
}

async fn resolve(
    Operator(t): Operator,
    State(s): State<ApiState>,
    Path(id): Path<i64>,
    Json(b): Json<ActBody>,
) -> Response {
    act(s, t, id, AlertState::Resolved, b).await
}
