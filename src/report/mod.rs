//! The bureau's monthly report (非现场监管月报): the numbers an enforcement unit
//! files each month — enterprises under automatic and power-usage monitoring, data
//! transmission, warnings and how fast they were followed up, exceedances, linkage
//! findings, production orders and the positive list — computed from the store
//! for one calendar month in the daemon's time zone.
//!
//! One computation ([`monthly`]) feeds every form: the xlsx workbook
//! ([`xlsx::write`]), the printable HTML page ([`html::page`]), the API's JSON
//! (`GET /api/v1/reports/monthly?month=`) and the console's `/reports`. So the
//! sheet, the page and the API can never disagree.
//!
//! Definitions (also on the report's first sheet):
//! - An alert counts for the month it was **opened** in. "Acknowledged within
//!   15/30/60 min" and the median and 90th percentile of time to acknowledge are
//!   over those alerts (nearest rank); "resolved by an officer" or
//!   "automatically" (`pollwatch`) counts their resolution by the month's end;
//!   "open at month end" counts every alert opened before the end and not resolved
//!   by then, whatever month it was opened in.
//! - Findings count for the month their window starts in; superseded ones (late
//!   data showed otherwise) do not count.
//! - An outlet or meter is online at month end when it was heard from within its
//!   `offline_after` before the end.

mod compute;
pub mod html;
mod svg;
mod table;
mod transmission;
pub mod xlsx;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use compute::{month_bounds, monthly};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("month {0:?}: expected YYYY-MM")]
    Month(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("writing the workbook: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    #[error("drawing a chart: {0}")]
    Chart(String),
    #[error(transparent)]
    Transmission(#[from] crate::completeness::ReportError),
}

/// Outlets below this effective transmission rate are highlighted (the national
/// assessment threshold, 90 %).
pub const MIN_EFFECTIVE_RATE: f64 = 0.9;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MonthlyReport {
    /// `2026-11`.
    pub month: String,
    pub timezone: String,
    /// `[from, to)` in UTC: the month's local midnights.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    pub overview: Overview,
    pub transmission: Transmission,
    pub alerts: AlertStats,
    pub exceedances: Vec<ExceedanceRow>,
    pub power: Vec<PowerRow>,
    pub orders: Vec<OrderRow>,
    pub positive_list: Vec<PositiveRow>,
    /// Alerts opened per local day, by severity.
    pub alerts_per_day: Vec<DayCount>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Overview {
    pub enterprises: u32,
    /// With at least one outlet (automatic monitoring).
    pub automatic_monitoring: u32,
    /// With at least one power meter.
    pub power_monitoring: u32,
    pub positive_list: u32,
    /// `provincial`, `city`, `unset` → enterprises.
    pub by_platform: BTreeMap<String, u32>,
    pub by_district: Vec<DistrictRow>,
    pub outlets: u32,
    pub outlets_online: u32,
    pub meters: u32,
    pub meters_online: u32,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DistrictRow {
    pub district: String,
    pub enterprises: u32,
    pub automatic_monitoring: u32,
    pub power_monitoring: u32,
    pub positive_list: u32,
}

/// 数据传输有效率: per enterprise and outlet, ranked from the lowest rate.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Transmission {
    pub available: bool,
    /// Why not, when not available (never shown as zero).
    pub note: Option<String>,
    pub rows: Vec<RateRow>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RateRow {
    pub enterprise: String,
    pub enterprise_name: String,
    pub outlet: String,
    /// Limited factors pooled into the outlet's counts.
    pub factors: u32,
    pub expected: u64,
    pub received: u64,
    pub valid: u64,
    /// Fractions 0–1; `None` where the denominator is zero (never shown as 0).
    pub transmission_rate: Option<f64>,
    pub validity_rate: Option<f64>,
    pub effective_rate: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AlertStats {
    pub opened: u32,
    pub by_rule: BTreeMap<String, u32>,
    pub by_severity: BTreeMap<String, u32>,
    pub by_district: BTreeMap<String, u32>,
    pub acknowledged: u32,
    pub acked_within_15m: u32,
    pub acked_within_30m: u32,
    pub acked_within_60m: u32,
    pub median_ack_minutes: Option<f64>,
    pub p90_ack_minutes: Option<f64>,
    pub resolved_by_officer: u32,
    pub resolved_automatically: u32,
    pub open_at_month_end: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExceedanceRow {
    pub enterprise: String,
    pub enterprise_name: String,
    pub location: String,
    pub factor: String,
    /// Hours judged above the limit (hourly limits).
    pub hours: u32,
    /// Days judged above a daily limit.
    pub days: u32,
    /// Episodes of instant limits (pH).
    pub episodes: u32,
    /// The highest judged value (oxygen-corrected for flue gas).
    pub max_value: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PowerRow {
    pub enterprise: String,
    pub enterprise_name: String,
    pub not_running_hours: f64,
    pub underpowered_hours: f64,
    pub findings: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OrderRow {
    pub enterprise: String,
    pub enterprise_name: String,
    pub order: String,
    pub kind: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `config` (an enterprise file's `[[orders]]`) or `api` (issued at runtime).
    pub source: String,
    /// Hours of the order inside the month.
    pub hours_in_force: f64,
    pub violation_hours: f64,
    pub compliance_hours: f64,
    pub violations: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PositiveRow {
    pub enterprise: String,
    pub enterprise_name: String,
    pub district: String,
    pub findings: u32,
    pub violations: u32,
    pub by_rule: BTreeMap<String, u32>,
    /// `keep` (nothing against it) or `review` (a violation this month).
    pub assessment: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DayCount {
    /// Local date, `YYYY-MM-DD`.
    pub day: String,
    pub by_severity: BTreeMap<String, u32>,
}

/// Severity order for tables and charts, most urgent first.
pub const SEVERITIES: [&str; 4] = ["critical", "major", "minor", "warning"];

pub fn severity_label(s: &str) -> &str {
    match s {
        "critical" => "紧急",
        "major" => "重要",
        "minor" => "次要",
        "warning" => "提示",
        other => other,
    }
}

/// The file name the CLI and the console give the workbook.
pub fn file_stem(month: &str) -> String {
    format!("非现场监管月报-{month}")
}
