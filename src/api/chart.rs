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
use crate::evidence::{self, ChartWindow, EvidenceError, Fonts};

/// PNG pixels per SVG pixel: 1920 × 960, sharp when printed on A4.
pub const PNG_SCALE: f32 = 2.0;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/alerts/{id}/chart.svg", get(svg))
        .route("/api/v1/alerts/{id}/chart.png", get(png))
}

async fn chart_svg(s: &ApiState, id: i64) -> Result<String, Response> {
    let config = s.config.borrow().clone();
    match evidence::alert_chart(&s.store, &config, id, s.clock.now(), ChartWindow::default()).await
    {
        Ok(Some(data)) => Ok(evidence::render_svg(&data)),
        Ok(None) => Err(error(StatusCode::NOT_FOUND, format!("no alert {id}"))),
        Err(e @ EvidenceError::NotChartable { .. }) => {
            Err(error(StatusCode::UNPROCESSABLE_ENTITY, e))
        }
        Err(e) => {
            tracing::warn!(alert = id, error = %e, "evidence chart failed");
            Err(error(StatusCode::SERVICE_UNAVAILABLE, e))
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
    match chart_svg(&s, id).await {
        Ok(svg) => file("image/svg+xml", format!("alert-{id}.svg"), svg),
        Err(r) => r,
    }
}

async fn png(_: Viewer, State(s): State<ApiState>, Path(id): Path<i64>) -> Response {
    let svg = match chart_svg(&s, id).await {
        Ok(svg) => svg,
        Err(r) => return r,
    };
    // Rasterising takes tens of milliseconds of CPU: off the async workers.
    let rendered = tokio::task::spawn_blocking(move || {
        evidence::render_png(&svg, &Fonts::shared(), PNG_SCALE)
    })
    .await;
    match rendered {
        Ok(Ok(bytes)) => file("image/png", format!("alert-{id}.png"), bytes),
        Ok(Err(e)) => {
            tracing::warn!(alert = id, error = %e, "evidence chart PNG failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
