//! The console's script and style sheet, compiled into the binary so the daemon
//! serves them with no files to install and no build step.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::api::ApiState;

pub const SCRIPT: &str = include_str!("assets/console.js");
pub const STYLE: &str = include_str!("assets/console.css");

pub fn routes() -> Router<ApiState> {
    // Short caching: a daemon upgrade should reach the desks within minutes.
    Router::new()
        .route(
            "/console/console.js",
            get(|| async {
                (
                    [
                        (CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (CACHE_CONTROL, "max-age=300"),
                    ],
                    SCRIPT,
                )
                    .into_response()
            }),
        )
        .route(
            "/console/console.css",
            get(|| async {
                (
                    [
                        (CONTENT_TYPE, "text/css; charset=utf-8"),
                        (CACHE_CONTROL, "max-age=300"),
                    ],
                    // The monthly report's tables and charts (`/reports`) are
                    // styled by the report module itself.
                    format!("{STYLE}\n{}\n", crate::report::html::style()),
                )
                    .into_response()
            }),
        )
}
