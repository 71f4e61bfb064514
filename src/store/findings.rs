//! Findings, emission hours and replay reads for the rules engine, on either
//! backend. The SQL is the same for both; the query builder writes the
//! placeholders, and one macro runs the same code on either pool.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::tx::WriteTx;
use super::{from_ms, to_ms, Store, StoreError};
use crate::model::{Location, Reading, SourceRef};
use crate::rules::{EmissionHour, Finding};

/// Which findings to list, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindingQuery {
    pub enterprise: Option<String>,
    pub rule: Option<String>,
    /// Findings decided at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only findings with an id above this (for followers of the table).
    pub after_id: Option<i64>,
    /// Only the findings recorded on this alert (its evidence).
    pub alert: Option<i64>,
    /// Only findings recorded on no alert (the alerts engine missed them).
    pub unalerted: bool,
    pub limit: u32,
}

/// A finding as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFinding {
    pub id: i64,
    pub created: DateTime<Utc>,
    pub finding: Finding,
}

/// Year-to-date emission of one pollutant at one outlet.
#[derive(Debug, Clone, PartialEq)]
pub struct EmissionSum {
    pub enterprise: String,
    pub outlet: String,
    pub factor: String,
    pub tonnes: f64,
}

impl Store {
    /// Stores findings; a finding whose natural key is already stored is skipped.
    /// Returns, per finding, its new id, or `None` when it was already there.
    pub async fn insert_findings(
        &self,
        findings: &[Finding],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        if findings.is_empty() {
            return Ok(Vec::new());
        }
        let mut prepared = Vec::with_capacity(findings.len());
        for f in findings {
            let evidence = serde_json::to_string(&f.evidence)
                .map_err(|e| StoreError::Corrupt(format!("finding evidence: {e}")))?;
            prepared.push((f.natural_key(), f.location_text(), evidence));
        }
        on_pool!(self, |pool, Db| {
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            let mut ids = Vec::with_capacity(findings.len());
            for (f, (key, loc, evidence)) in findings.iter().zip(&prepared) {
                let mut b = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO findings (natural_key, rule, severity, enterprise, location, factor, window_start, window_end, at, value, threshold, detail, message, evidence, created) ",
                );
                b.push_values([f], |mut row, f| {
                    row.push_bind(key.as_str())
                        .push_bind(f.rule.as_str())
                        .push_bind(f.severity.as_str())
                        .push_bind(&*f.enterprise)
                        .push_bind(loc.as_str())
                        .push_bind(&*f.factor)
                        .push_bind(to_ms(f.window_start))
                        .push_bind(to_ms(f.window_end))
                        .push_bind(to_ms(f.at))
                        .push_bind(f.value)
                        .push_bind(f.threshold)
                        .push_bind(f.detail.as_str())
                        .push_bind(f.message.as_str())
                        .push_bind(evidence.as_str())
                        .push_bind(to_ms(now));
                });
                b.push(" ON CONFLICT (natural_key) DO NOTHING RETURNING id");
                let row = b
                    .build()
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::db("insert finding"))?;
                ids.push(row.map(|r| r.get::<i64, _>(0)));
            }
            tx.commit("commit findings").await?;
            Ok(ids)
        })
    }

    pub async fn findings(&self, q: &FindingQuery) -> Result<Vec<StoredFinding>, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new(
                "SELECT id, created, rule, severity, enterprise, location, factor, window_start, window_end, at, value, threshold, detail, message, evidence FROM findings_current WHERE 1=1",
            );
            if let Some(e) = &q.enterprise {
                b.push(" AND enterprise = ").push_bind(e.as_str());
            }
            if let Some(r) = &q.rule {
                b.push(" AND rule = ").push_bind(r.as_str());
            }
            if let Some(t) = q.since {
                b.push(" AND at >= ").push_bind(to_ms(t));
            }
            if let Some(id) = q.after_id {
                b.push(" AND id > ").push_bind(id);
            }
            if let Some(a) = q.alert {
                b.push(" AND id IN (SELECT finding_id FROM alert_findings WHERE alert_id = ")
                    .push_bind(a)
                    .push(")");
            }
            if q.unalerted {
                b.push(" AND id NOT IN (SELECT finding_id FROM alert_findings)");
            }
            b.push(" ORDER BY id DESC LIMIT ")
                .push_bind(i64::from(q.limit));
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("query findings"))?;
            rows.iter()
                .map(|r| {
                    stored_finding(
                        r.get(0),
                        r.get(1),
                        [r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)],
                        [r.get(7), r.get(8), r.get(9)],
                        [r.get(10), r.get(11)],
                        [r.get(12), r.get(13), r.get(14)],
                    )
                })
                .collect()
        })
    }

    /// Stores hourly emissions; `-Cou` values replace estimates, never the reverse.
    pub async fn upsert_emissions(&self, hours: &[EmissionHour]) -> Result<(), StoreError> {
        if hours.is_empty() {
            return Ok(());
        }
        on_pool!(self, |pool, Db| {
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            for h in hours {
                let mut b = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO emission_hours (enterprise, outlet, factor, hour, tonnes, source) ",
                );
                b.push_values([h], |mut row, h| {
                    row.push_bind(&*h.enterprise)
                        .push_bind(&*h.outlet)
                        .push_bind(&*h.factor)
                        .push_bind(to_ms(h.hour))
                        .push_bind(h.tonnes)
                        .push_bind(h.source);
                });
                b.push(
                    " ON CONFLICT (enterprise, outlet, factor, hour) DO UPDATE SET tonnes = excluded.tonnes, source = excluded.source
                      WHERE emission_hours.source <> 'cou' OR excluded.source = 'cou'",
                );
                b.build()
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db("upsert emission hour"))?;
            }
            tx.commit("commit emission hours").await?;
            Ok(())
        })
    }

    /// Emission per (enterprise, outlet, factor) over hours in `[from, to)`.
    pub async fn emission_sums(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EmissionSum>, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new(
                "SELECT enterprise, outlet, factor, SUM(tonnes) FROM emission_hours WHERE hour >= ",
            );
            b.push_bind(to_ms(from))
                .push(" AND hour < ")
                .push_bind(to_ms(to));
            b.push(" GROUP BY enterprise, outlet, factor");
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("sum emission hours"))?;
            Ok(rows
                .iter()
                .map(|r| EmissionSum {
                    enterprise: r.get(0),
                    outlet: r.get(1),
                    factor: r.get(2),
                    tonnes: r.get(3),
                })
                .collect())
        })
    }

    /// Every reading of one enterprise with a time in `[from, to)`, in time order:
    /// what the evaluator replays at start-up (invariant 4).
    pub async fn enterprise_readings(
        &self,
        enterprise: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Reading>, StoreError> {
        self.replay_readings(enterprise, None, from, to).await
    }

    /// Every reading of one outlet with a time in `[from, to)`, in time order:
    /// what a period judged again after late data is judged on.
    pub async fn outlet_readings(
        &self,
        enterprise: &str,
        outlet: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Reading>, StoreError> {
        self.replay_readings(enterprise, Some(outlet), from, to)
            .await
    }

    async fn replay_readings(
        &self,
        enterprise: &str,
        outlet: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Reading>, StoreError> {
        let tables: &[&str] = match self {
            Store::Sqlite(_) => &["readings", "readings_recent"],
            Store::Postgres(_) => &["readings"],
        };
        on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new("");
            for (i, table) in tables.iter().enumerate() {
                if i > 0 {
                    b.push(" UNION ALL ");
                }
                b.push(format!(
                    "SELECT s.location_kind, s.location, s.factor, s.unit, s.kind, s.stat, s.converted,
                            r.ts, r.value, r.flag, src.protocol, src.device, src.resend
                     FROM series s
                     JOIN {table} r ON r.series_id = s.id
                     JOIN sources src ON src.id = r.source_id
                     WHERE s.enterprise = "
                ));
                b.push_bind(enterprise);
                if let Some(o) = outlet {
                    b.push(" AND s.location_kind = 'outlet' AND s.location = ")
                        .push_bind(o);
                }
                b.push(" AND r.ts >= ").push_bind(to_ms(from));
                b.push(" AND r.ts < ").push_bind(to_ms(to));
                for earlier in &tables[..i] {
                    b.push(format!(
                        " AND NOT EXISTS (SELECT 1 FROM {earlier} e WHERE e.series_id = r.series_id AND e.ts = r.ts)"
                    ));
                }
            }
            b.push(" ORDER BY 8");
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("replay readings"))?;
            let ent: crate::model::Id = enterprise.into();
            rows.iter()
                .map(|r| {
                    reading_of(ReplayCols {
                        enterprise: ent.clone(),
                        location_kind: r.get(0),
                        location: r.get(1),
                        factor: r.get(2),
                        unit: r.get(3),
                        kind: r.get(4),
                        stat: r.get(5),
                        converted: r.get(6),
                        ts: r.get(7),
                        value: r.get(8),
                        flag: r.get(9),
                        protocol: r.get(10),
                        device: r.get(11),
                        resend: r.get(12),
                    })
                })
                .collect()
        })
    }
}

fn stored_finding(
    id: i64,
    created: i64,
    [rule, severity, enterprise, location, factor]: [String; 5],
    [start, end, at]: [i64; 3],
    [value, threshold]: [Option<f64>; 2],
    [detail, message, evidence]: [String; 3],
) -> Result<StoredFinding, StoreError> {
    let corrupt = |e: crate::model::UnknownVariant| StoreError::Corrupt(e.to_string());
    let location = if location.is_empty() {
        None
    } else {
        Some(
            crate::rules::finding::parse_location(&location)
                .ok_or_else(|| StoreError::Corrupt(format!("finding location {location:?}")))?,
        )
    };
    Ok(StoredFinding {
        id,
        created: from_ms(created)?,
        finding: Finding {
            rule: rule.parse().map_err(corrupt)?,
            severity: severity.parse().map_err(corrupt)?,
            enterprise: enterprise.into(),
            location,
            factor: factor.into(),
            window_start: from_ms(start)?,
            window_end: from_ms(end)?,
            at: from_ms(at)?,
            value,
            threshold,
            detail,
            message,
            evidence: serde_json::from_str(&evidence)
                .map_err(|e| StoreError::Corrupt(format!("finding {id} evidence: {e}")))?,
        },
    })
}

/// The columns a replayed reading is read back from (both backends, and the
/// cluster feed in `super::cluster`).
pub(super) struct ReplayCols {
    pub enterprise: crate::model::Id,
    pub location_kind: String,
    pub location: String,
    pub factor: String,
    pub unit: String,
    pub kind: String,
    pub stat: String,
    pub converted: bool,
    pub ts: i64,
    pub value: f64,
    pub flag: String,
    pub protocol: String,
    pub device: String,
    pub resend: bool,
}

/// A stored reading as the rules engine sees it.
pub(super) fn reading_of(c: ReplayCols) -> Result<Reading, StoreError> {
    let corrupt = |e: crate::model::UnknownVariant| StoreError::Corrupt(e.to_string());
    let location = match c.location_kind.as_str() {
        "outlet" => Location::Outlet(c.location.into()),
        "meter" => Location::Meter(c.location.into()),
        other => return Err(StoreError::Corrupt(format!("location kind {other:?}"))),
    };
    Ok(Reading {
        enterprise: c.enterprise,
        location,
        factor: c.factor.into(),
        unit: c.unit.into(),
        ts: from_ms(c.ts)?,
        value: c.value,
        kind: c.kind.parse().map_err(corrupt)?,
        stat: c.stat.parse().map_err(corrupt)?,
        converted: c.converted,
        flag: c.flag.parse().map_err(corrupt)?,
        source: SourceRef {
            protocol: c.protocol.parse().map_err(corrupt)?,
            device: c.device.into(),
            resend: c.resend,
        },
    })
}
