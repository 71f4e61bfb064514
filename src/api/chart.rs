//! An alert's evidence chart ([`crate::evidence`]) for the console and the case
//! file.
//!
//! | route | who |
//! |---|---|
//! | `GET /api/v1/alerts/{id}/chart.svg` | viewer |
//! | `GET /api/v1/alerts/{id}/chart.png` — the same chart, 2× for print | viewer |
//!
//! Both answer `inline` with a file name (`alert-{id}.svg`), so a browser shows
//! the chart and "save as" names it for the case file. 404 for an unknown alert,
//! 422 for an alert with nothing to chart (an offline outlet, an order).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::auth::Viewer;
use super::{error, ApiState};
use crate::evidence::{self, ChartWindow, EvidenceError};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/alerts/{id}/chart.svg", get(svg))
        .route("/api/v1/alerts/{id}/chart.png", get(png))
}

/// `ok` of the chart, or the error's answer.
fn respond<T>(
    id: i64,
    r: Result<Option<T>, EvidenceError>,
    ok: impl FnOnce(T) -> Response,
) -> Response {
    match r {
        Ok(Some(v)) => ok(v),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no alert {id}")),
        Err(e @ EvidenceError::NotChartable { .. }) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => {
            tracing::warn!(alert = id, error = %e, "evidence chart failed");
            error(StatusCode::SERVICE_UNAVAILABLE, e)
        }
    }
}

fn file(content_type: &'static str, name: String, body: impl IntoResponse) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

async fn svg(_: Viewer, State(s): State<ApiState>, Path(id): Path<i64>) -> Response {
    let config = s.config.borrow().clone();
    let data =
        evidence::alert_chart(&s.store, &config, id, s.clock.now(), ChartWindow::default()).await;
    respond(id, data, |data| {
        file(
            "image/svg+xml",
            format!("alert-{id}.svg"),
            evidence::render_svg(&data),
        )
    })
}

async fn png(_: Viewer, State(s): State<ApiState>, Path(id): Path<i64>) -> Response {
    let config = s.config.borrow().clone();
    let png = evidence::alert_png(&s.store, &config, id, s.clock.now()).await;
    respond(id, png, |bytes| {
        file("image/png", format!("alert-{id}.png"), bytes)
    })
}
