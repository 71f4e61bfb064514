//! `GET /api/v1/reports/monthly?month=YYYY-MM[&format=json|xlsx|html]` (viewer):
//! the monthly report of [`crate::report`] — the same numbers as `pollwatch report
//! monthly` — as JSON (default), the xlsx workbook or the printable page. The
//! console's `/reports` links here for the download.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::auth::Viewer;
use super::{error, ApiState};
use crate::report::{self, ReportError};

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/reports/monthly", get(monthly))
}

#[derive(Debug, Deserialize)]
pub struct MonthlyQuery {
    pub month: Option<String>,
    pub format: Option<String>,
}

async fn monthly(_: Viewer, State(s): State<ApiState>, Query(q): Query<MonthlyQuery>) -> Response {
    let Some(month) = q.month else {
        return error(StatusCode::BAD_REQUEST, "month=YYYY-MM is required");
    };
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "xlsx" | "html") {
        return error(
            StatusCode::BAD_REQUEST,
            format!("format {format:?}: expected json, xlsx or html"),
        );
    }
    let cfg = s.config.borrow().clone();
    let r = match report::monthly(&s.store, &cfg, &month, s.clock.now()).await {
        Ok(r) => r,
        Err(e @ ReportError::Month(_)) => return error(StatusCode::BAD_REQUEST, e),
        Err(e) => {
            tracing::warn!(error = %e, month, "monthly report failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "the store did not answer");
        }
    };
    match format {
        "xlsx" => match report::xlsx::write(&r) {
            Ok(bytes) => (
                [
                    (
                        header::CONTENT_TYPE,
                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
                            .to_string(),
                    ),
                    (header::CONTENT_DISPOSITION, disposition(&month, "xlsx")),
                ],
                bytes,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, month, "monthly report workbook failed");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot write the workbook",
                )
            }
        },
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            report::html::page(&r, true),
        )
            .into_response(),
        _ => axum::Json(r).into_response(),
    }
}

/// `attachment` with the Chinese file name (RFC 6266 `filename*`) and an ASCII
/// fallback.
fn disposition(month: &str, ext: &str) -> String {
    let stem = report::file_stem(month);
    let encoded: String = format!("{stem}.{ext}")
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"report-{month}.{ext}\"; filename*=UTF-8''{encoded}")
}
