//! Evidence for the case file: an alert's chart, as SVG and PNG.
//!
//! An officer (and later a court) should see at a glance what the alert is
//! about: the readings around it, the permit limit and early-warning line, the
//! hourly means that were judged (measured and, for flue gas, O2-corrected), the
//! values the rules excluded (F M D C B) or kept but marked (T S), and the alert's
//! span. [`data`] gathers that from the store and config, [`chart`] draws it as
//! deterministic SVG, [`png`] rasterises the same SVG.

pub mod chart;
pub mod data;
pub mod png;
pub mod scale;

pub use chart::{render_svg, ChartData, ChartPoint, HourMean};
pub use data::{alert_chart, ChartWindow};
pub use png::{render_png, Fonts};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("alert {id} has no chart: {reason}")]
    NotChartable { id: i64, reason: String },
    #[error("cannot render the chart as PNG: {0}")]
    Png(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
