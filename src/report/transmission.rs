//! 数据传输有效率 for the month: the completeness figures of
//! [`crate::completeness`] (persisted daily per outlet and limited factor,
//! counted from the stored hourly values for days nobody closed), pooled per
//! outlet over its limited factors — an outlet's expected hours are the sum over
//! its factors, and so are its received and valid ones, as the national
//! platform counts an outlet — and ranked from the lowest effective rate, so the
//! outlets to follow up come first. An outlet that expected nothing (a month in
//! the future, or one entirely declared stopped) has no rate: it is listed last,
//! with a dash, never as zero.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use super::{RateRow, ReportError, Transmission};
use crate::completeness::{transmission_report, Counts};
use crate::config::Config;
use crate::store::Store;

/// The month `[first, next)` of local dates.
pub async fn month(
    cfg: &Config,
    store: &Store,
    first: NaiveDate,
    next: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Transmission, ReportError> {
    let report = transmission_report(cfg, store, first, next, None, now).await?;
    let mut pooled: BTreeMap<(String, String), (Counts, u32)> = BTreeMap::new();
    for r in &report.rows {
        let e = pooled
            .entry((r.enterprise.clone(), r.outlet.clone()))
            .or_default();
        e.0.add(r.counts);
        e.1 += 1;
    }
    let mut rows: Vec<RateRow> = pooled
        .into_iter()
        .map(|((enterprise, outlet), (c, factors))| RateRow {
            enterprise_name: cfg
                .enterprise(&enterprise)
                .map(|e| e.name.clone())
                .unwrap_or_default(),
            enterprise,
            outlet,
            factors,
            expected: u64::from(c.expected),
            received: u64::from(c.received),
            valid: u64::from(c.valid),
            transmission_rate: c.transmission_rate(),
            validity_rate: c.validity_rate(),
            effective_rate: c.effective_rate(),
        })
        .collect();
    rows.sort_by(|a, b| rank(a.effective_rate, b.effective_rate));
    let below = rows
        .iter()
        .filter(|r| {
            r.effective_rate
                .is_some_and(|v| v < super::MIN_EFFECTIVE_RATE)
        })
        .count();
    Ok(Transmission {
        available: true,
        note: Some(format!(
            "按排口统计（各限值因子小时值合计），自低到高排列；有效传输率低于90%的{below}个排口已标红。"
        )),
        rows,
    })
}

/// Lowest rate first; no rate last.
fn rank(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_first_and_no_rate_last() {
        let mut v = vec![None, Some(0.95), Some(0.5), None, Some(1.0)];
        v.sort_by(|a, b| rank(*a, *b));
        assert_eq!(v, [Some(0.5), Some(0.95), Some(1.0), None, None]);
    }
}
