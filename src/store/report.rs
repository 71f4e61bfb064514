//! What the monthly report reads (`crate::report`): alerts and findings of a
//! period, and when each outlet or meter was last heard from before an instant.
//! Each is one query, and none scans raw readings: "last heard from" is one
//! index seek per series. Alerts and findings are filtered by time over their
//! own (much smaller) tables; their cost at a city's scale is not yet measured.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_ms, to_ms, Store, StoreError};

/// An alert as the report counts it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportAlert {
    pub id: i64,
    pub enterprise: String,
    pub rule: String,
    pub severity: String,
    pub opened_at: DateTime<Utc>,
    pub acked_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A finding as the report counts it (superseded ones are left out).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFinding {
    pub rule: String,
    pub severity: String,
    pub enterprise: String,
    pub location: String,
    pub factor: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub value: Option<f64>,
    pub detail: String,
}

/// When a location was last heard from.
#[derive(Debug, Clone, PartialEq)]
pub struct LastSeen {
    pub enterprise: String,
    /// `outlet:DA001` / `meter:M01`.
    pub location: String,
    pub at: DateTime<Utc>,
}

impl Store {
    /// Alerts that were live at some time in `[from, to)`: opened before `to` and
    /// not resolved before `from`.
    pub async fn report_alerts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ReportAlert>, StoreError> {
        on_pool!(self, |pool, _Db| {
            let rows = sqlx::query(
                "SELECT id, enterprise, rule, severity, opened_at, acked_at, resolved_by, resolved_at FROM alerts \
                 WHERE opened_at < $1 AND (resolved_at IS NULL OR resolved_at >= $2) ORDER BY id",
            )
            .bind(to_ms(to))
            .bind(to_ms(from))
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("report: alerts"))?;
            rows.iter()
                .map(|r| {
                    Ok(ReportAlert {
                        id: r.get(0),
                        enterprise: r.get(1),
                        rule: r.get(2),
                        severity: r.get(3),
                        opened_at: from_ms(r.get(4))?,
                        acked_at: r.get::<Option<i64>, _>(5).map(from_ms).transpose()?,
                        resolved_by: r.get(6),
                        resolved_at: r.get::<Option<i64>, _>(7).map(from_ms).transpose()?,
                    })
                })
                .collect()
        })
    }

    /// Findings about a window starting in `[from, to)`, not superseded.
    pub async fn report_findings(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ReportFinding>, StoreError> {
        on_pool!(self, |pool, _Db| {
            let rows = sqlx::query(
                "SELECT rule, severity, enterprise, location, factor, window_start, window_end, value, detail FROM findings_current \
                 WHERE window_start >= $1 AND window_start < $2 AND superseded_at IS NULL ORDER BY id",
            )
            .bind(to_ms(from))
            .bind(to_ms(to))
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("report: findings"))?;
            rows.iter()
                .map(|r| {
                    Ok(ReportFinding {
                        rule: r.get(0),
                        severity: r.get(1),
                        enterprise: r.get(2),
                        location: r.get(3),
                        factor: r.get(4),
                        window_start: from_ms(r.get(5))?,
                        window_end: from_ms(r.get(6))?,
                        value: r.get(7),
                        detail: r.get(8),
                    })
                })
                .collect()
        })
    }

    /// For every outlet and meter with readings, the newest reading time before
    /// `before` (one index seek per series).
    pub async fn last_seen_before(
        &self,
        before: DateTime<Utc>,
    ) -> Result<Vec<LastSeen>, StoreError> {
        let latest = match self {
            Store::Sqlite(_) => {
                "SELECT s.enterprise, s.location_kind, s.location, max( \
                   coalesce((SELECT max(r.ts) FROM readings r WHERE r.series_id = s.id AND r.ts < $1), 0), \
                   coalesce((SELECT max(r.ts) FROM readings_recent r WHERE r.series_id = s.id AND r.ts < $1), 0)) \
                 FROM series s"
            }
            Store::Postgres(_) => {
                "SELECT s.enterprise, s.location_kind, s.location, \
                   coalesce((SELECT max(r.ts) FROM readings r WHERE r.series_id = s.id AND r.ts < $1), 0) \
                 FROM series s"
            }
        };
        let rows: Vec<(String, String, String, i64)> = on_pool!(self, |pool, _Db| {
            sqlx::query_as(latest)
                .bind(to_ms(before))
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("report: last seen"))?
        });
        let mut by_location: std::collections::BTreeMap<(String, String), i64> =
            std::collections::BTreeMap::new();
        for (enterprise, kind, location, at) in rows {
            if at <= 0 {
                continue;
            }
            let e = by_location
                .entry((enterprise, format!("{kind}:{location}")))
                .or_insert(at);
            *e = (*e).max(at);
        }
        by_location
            .into_iter()
            .map(|((enterprise, location), at)| {
                Ok(LastSeen {
                    enterprise,
                    location,
                    at: from_ms(at)?,
                })
            })
            .collect()
    }
}
