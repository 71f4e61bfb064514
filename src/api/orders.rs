//! `/api/v1/orders`: production orders (停产 / 限产) issued at runtime. During a
//! heavy-pollution-weather response officers order enterprises to stop or limit
//! production for a window; the rules engine then checks the enterprise's power
//! meters against the order (`order_violation`). Orders written in enterprise
//! files (`[[orders]]`) are listed too, read-only.
//!
//! | route | who |
//! |---|---|
//! | `GET /api/v1/orders?enterprise=&all=true` — in force and scheduled; `all`: ended and cancelled too | viewer |
//! | `POST /api/v1/orders` — body below; 201 with the order | operator |
//! | `DELETE /api/v1/orders/{id}` — cancels (the row stays, with who and when) | operator |
//!
//! ```json
//! {"enterprise": "xinghe-dyeing", "id": "2026-11-orange", "kind": "limit",
//!  "start": "2026-11-28 00:00", "end": "2026-11-30T00:00:00+08:00",
//!  "allowed_share": 0.6, "meters": ["M-DYE1"], "baseline_kw": 900, "grace": "15m",
//!  "reason": "橙色预警 重污染天气应急响应", "by": "zhangwei"}
//! ```
//!
//! The order is recorded as issued (or cancelled) by the authenticated token's
//! name; `by` is the client's word for whom, kept as `on_behalf_of`.
//!
//! Times without an offset are local to `[daemon] timezone`. The order is checked
//! exactly as a config `[[orders]]` entry is (meters exist, a baseline is known, a
//! limit order has a share, ids are unique in the enterprise); every problem is
//! returned at once with status 422.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::json;

use super::auth::{Operator, Viewer};
use super::{error, ApiState};
use crate::config::{Config, HumanDuration, Order, OrderKind};
use crate::store::{CancelOutcome, StoredOrder};
use crate::timefmt::{parse_user_time, rfc3339_local};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/orders", get(list).post(issue))
        .route("/api/v1/orders/{id}", delete(cancel))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    enterprise: Option<String>,
    #[serde(default)]
    all: bool,
}

fn state(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    cancelled: bool,
    now: DateTime<Utc>,
) -> &'static str {
    if cancelled && end <= now {
        "cancelled"
    } else if end <= now {
        "ended"
    } else if start > now {
        "scheduled"
    } else {
        "in_force"
    }
}

fn order_fields(o: &Order, tz: Tz) -> serde_json::Value {
    json!({
        "name": o.id,
        "kind": o.kind.as_str(),
        "start": rfc3339_local(o.start.with_timezone(&Utc), tz),
        "end": rfc3339_local(o.end.with_timezone(&Utc), tz),
        "allowed_share": o.allowed_share,
        "meters": o.meters,
        "baseline_kw": o.baseline_kw,
        "grace": o.grace.map(|g| g.to_string()),
    })
}

fn merge(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

pub fn stored_json(o: &StoredOrder, tz: Tz, now: DateTime<Utc>) -> serde_json::Value {
    merge(
        order_fields(&o.order, tz),
        json!({
            "source": "api",
            "id": o.id,
            "enterprise": o.enterprise,
            "state": state(o.order.start.with_timezone(&Utc), o.effective_end(), o.cancelled.is_some(), now),
            "reason": o.reason,
            "issued_by": o.issued_by,
            "on_behalf_of": o.on_behalf_of,
            "issued_at": rfc3339_local(o.issued_at, tz),
            "cancelled": o.cancelled.as_ref().map(|c| json!({"by": c.by, "on_behalf_of": c.on_behalf_of, "at": rfc3339_local(c.at, tz)})),
        }),
    )
}

/// Every order, config and runtime, as the API lists them.
pub fn all_orders(
    config: &Config,
    runtime: &[StoredOrder],
    now: DateTime<Utc>,
) -> Vec<serde_json::Value> {
    let tz = config.timezone;
    let mut out: Vec<serde_json::Value> = config
        .enterprises
        .iter()
        .zip(&config.enterprise_files)
        .flat_map(|(e, file)| {
            e.orders.iter().map(move |o| {
                merge(
                    order_fields(o, tz),
                    json!({
                        "source": "config",
                        "id": null,
                        "file": file,
                        "enterprise": e.id,
                        "state": state(o.start.with_timezone(&Utc), o.end.with_timezone(&Utc), false, now),
                    }),
                )
            })
        })
        .collect();
    out.extend(runtime.iter().map(|o| stored_json(o, tz, now)));
    out
}

async fn list(_: Viewer, State(s): State<ApiState>, Query(p): Query<ListParams>) -> Response {
    let config = s.config.borrow().clone();
    let now = s.clock.now();
    let runtime = match s.store.orders(if p.all { None } else { Some(now) }).await {
        Ok(o) => o,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let rows: Vec<serde_json::Value> = all_orders(&config, &runtime, now)
        .into_iter()
        .filter(|o| p.all || matches!(o["state"].as_str(), Some("in_force" | "scheduled")))
        .filter(|o| p.enterprise.as_deref().is_none_or(|e| o["enterprise"] == e))
        .collect();
    Json(rows).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    enterprise: String,
    id: String,
    kind: OrderKind,
    start: String,
    end: String,
    allowed_share: Option<f64>,
    #[serde(default)]
    meters: Vec<String>,
    baseline_kw: Option<f64>,
    grace: Option<String>,
    reason: String,
    by: String,
}

fn unprocessable(problems: Vec<String>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "error": problems.join("; "), "problems": problems })),
    )
        .into_response()
}

/// The order in the body, or every problem with it.
fn parse(b: &IssueBody, tz: Tz) -> Result<Order, Vec<String>> {
    let mut problems = Vec::new();
    let mut time = |key: &str, v: &str| match parse_user_time(v, tz) {
        Ok(t) => Some(t.with_timezone(&tz).fixed_offset()),
        Err(e) => {
            problems.push(format!("{key}: {e}"));
            None
        }
    };
    let start = time("start", &b.start);
    let end = time("end", &b.end);
    let grace = match b.grace.as_deref().map(HumanDuration::parse).transpose() {
        Ok(g) => g,
        Err(e) => {
            problems.push(format!("grace: {e}"));
            None
        }
    };
    for (key, v) in [("reason", &b.reason), ("by", &b.by)] {
        if v.trim().is_empty() {
            problems.push(format!("{key}: must not be empty"));
        } else if key == "by" && (v.len() > 200 || v.chars().any(char::is_control)) {
            problems.push("by: at most 200 bytes, no control characters".into());
        }
    }
    match (start, end, problems.is_empty()) {
        (Some(start), Some(end), true) => Ok(Order {
            id: b.id.clone(),
            kind: b.kind,
            start,
            end,
            allowed_share: b.allowed_share,
            meters: b.meters.clone(),
            baseline_kw: b.baseline_kw,
            grace,
        }),
        _ => Err(problems),
    }
}

async fn issue(
    Operator(token): Operator,
    State(s): State<ApiState>,
    Json(b): Json<IssueBody>,
) -> Response {
    let Some(plans) = s.plans.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no rules engine runs here to judge orders",
        );
    };
    let config = s.config.borrow().clone();
    let Some(enterprise) = config.enterprise(&b.enterprise) else {
        return unprocessable(vec![format!(
            "enterprise: no enterprise {:?} in config",
            b.enterprise
        )]);
    };
    let order = match parse(&b, config.timezone) {
        Ok(o) => o,
        Err(p) => return unprocessable(p),
    };
    // Checking against the orders in force, storing and publishing the plan are
    // one step (see PlanFeed).
    let mut inputs = plans.lock().await;
    let now = s.clock.now();
    let taken: Vec<&str> = inputs
        .orders
        .iter()
        .filter(|o| o.enterprise == enterprise.id && o.active(now))
        .map(|o| o.order.id.as_str())
        .collect();
    let problems = crate::config::validate::runtime_order(enterprise, &taken, &order);
    if !problems.is_empty() {
        return unprocessable(problems);
    }
    let stored = match s
        .store
        .insert_order_for(
            &enterprise.id,
            &order,
            b.reason.trim(),
            &token,
            Some(b.by.trim()),
            now,
        )
        .await
    {
        Ok(o) => o,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    tracing::info!(order = stored.id, enterprise = %stored.enterprise, name = %order.id, kind = order.kind.as_str(), by = %stored.issued_by, token = %token, "production order issued");
    if let Err(e) = plans.publish_orders(&mut inputs, &s.store, now).await {
        // Stored, so the next reload or restart judges it; say so rather than hide it.
        tracing::error!(order = stored.id, error = %e, "order stored but the rules plan was not updated");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "order {} stored, but the rules engine has not taken it yet: {e}",
                stored.id
            ),
        );
    }
    (
        StatusCode::CREATED,
        Json(stored_json(&stored, config.timezone, now)),
    )
        .into_response()
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelParams {
    by: Option<String>,
}

async fn cancel(
    Operator(token): Operator,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(p): Query<CancelParams>,
) -> Response {
    let config = s.config.borrow().clone();
    let Ok(num) = id.parse::<i64>() else {
        if let Some((e, file)) = config
            .enterprises
            .iter()
            .zip(&config.enterprise_files)
            .find(|(e, _)| e.orders.iter().any(|o| o.id == id))
        {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "order {id:?} of {} is written in {file}; remove it there and reload",
                    e.id
                ),
            );
        }
        return error(StatusCode::NOT_FOUND, format!("no order {id:?}"));
    };
    let Some(plans) = s.plans.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no rules engine runs here to judge orders",
        );
    };
    // The recorded actor is the token; what the client names is kept apart.
    let by = token.clone();
    let on_behalf_of =
        p.by.as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(str::to_string);
    let mut inputs = plans.lock().await;
    let now = s.clock.now();
    let tz = config.timezone;
    match s
        .store
        .cancel_order_for(num, &by, on_behalf_of.as_deref(), now)
        .await
    {
        Ok(CancelOutcome::NotFound) => error(StatusCode::NOT_FOUND, format!("no order {num}")),
        Ok(CancelOutcome::AlreadyCancelled(o)) => error(
            StatusCode::CONFLICT,
            format!(
                "order {num} was cancelled already, by {}",
                o.cancelled.map(|c| c.by).unwrap_or_default()
            ),
        ),
        Ok(CancelOutcome::Cancelled(o)) => {
            tracing::info!(order = num, enterprise = %o.enterprise, by = %by, token = %token, "production order cancelled");
            if let Err(e) = plans.publish_orders(&mut inputs, &s.store, now).await {
                tracing::error!(order = num, error = %e, "order cancelled but the rules plan was not updated");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "order {num} cancelled, but the rules engine has not taken it yet: {e}"
                    ),
                );
            }
            Json(stored_json(&o, tz, now)).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}
