//! Data completeness (issue #20): the rates a bureau is judged on and fetching what
//! is missing from the loggers.
//!
//! - [`rates`]: the counting, pure — hourly values in, a day's expected, received
//!   and valid hours out (F leaves both counts; M, C, D, B are received, not valid);
//! - [`report`]: the transmission report over a date range (`pollwatch report
//!   transmission`, `GET /api/v1/reports/transmission`), from persisted daily
//!   figures where the daemon has closed the day, from hourly values otherwise;
//! - [`daily`]: closing days — persisting the figures, revising them while the
//!   repair window is open, and the `low_transmission` finding.

pub mod daily;
pub mod rates;
pub mod report;

pub use rates::Counts;
pub use report::{transmission_report, Report, ReportError, ReportRow};
