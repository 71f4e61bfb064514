//! Evidence for the case file: an alert's chart, as SVG and PNG.
//!
//! An officer (and later a court) should see at a glance what the alert is
//! about: the readings around it, the permit limit and early-warning line, the
//! hourly means that were judged (measured and, for flue gas, O2-corrected), the
//! values the rules excluded (F M D C B) or kept but marked (T S), and the alert's
//! span. [`data`] gathers that from the store and config, [`chart`] draws it as
//! deterministic SVG, [`png`] rasterises the same SVG.

pub mod anchor;
pub mod chart;
pub mod data;
pub mod png;
pub mod report;
pub mod scale;
pub mod trend;

pub use chart::{render_svg, ChartConflict, ChartData, ChartPoint, HourMean};
pub use data::{alert_chart, ChartWindow};
pub use png::{render_png, Fonts};

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::store::{Store, StoreError};

/// Print resolution of the PNG: 2 × the SVG's pixels (1920 × 960).
pub const PNG_SCALE: f32 = 2.0;

/// Alert `id`'s chart as PNG (`None`: no such alert). Rasterising takes tens of
/// milliseconds of CPU, so it runs off the async workers.
pub async fn alert_png(
    store: &Store,
    config: &Config,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Option<Vec<u8>>, EvidenceError> {
    let Some(data) = alert_chart(store, config, id, now, ChartWindow::default()).await? else {
        return Ok(None);
    };
    let svg = render_svg(&data);
    tokio::task::spawn_blocking(move || render_png(&svg, &Fonts::shared(), PNG_SCALE))
        .await
        .map_err(|e| EvidenceError::Png(e.to_string()))?
        .map(Some)
}

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("alert {id} has no chart: {reason}")]
    NotChartable { id: i64, reason: String },
    #[error("cannot render the chart as PNG: {0}")]
    Png(String),
    #[error("{path} exists with root {old}, but the store now gives root {new}: the day's record changed after it was anchored (the old file is kept; investigate with pollwatch alerts verify)")]
    AnchorConflict {
        path: std::path::PathBuf,
        old: String,
        new: String,
    },
    #[error("anchor: {0}")]
    Anchor(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
