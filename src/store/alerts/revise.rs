//! Findings revised by late data (see `rules::rejudge`), and what that does to
//! their alerts — in one transaction, so a revision is never recorded on the
//! finding without its alert's timeline, or the reverse.
//!
//! A finding keeps its row and natural key; its row is never changed (the table
//! is append-only, issue 18). The new verdict goes to `finding_revisions` with
//! what it said before, and `findings_current` (a view) shows the latest. A
//! verdict no longer found gets a revision marked superseded. Each alert the finding is recorded on gets a
//! timeline row ("revised after late data, from … to …"), and an alert whose
//! findings are all superseded — a day judged missing whose hours came late — is
//! resolved with that reason and its waiting notifications cancelled.

use chrono::{DateTime, Utc};

use super::chain::Window;
use crate::rules::rejudge::{Period, REVISABLE};
use crate::rules::{Finding, RuleName};
use crate::store::tx::WriteTx;
use crate::store::{from_ms, to_ms, Store, StoreError};

/// What a revision changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Revised {
    /// Findings that now say something else.
    pub revised: Vec<i64>,
    /// Findings no longer found.
    pub superseded: Vec<i64>,
    /// Alerts resolved because all their findings were superseded.
    pub resolved_alerts: Vec<i64>,
}

/// A finding's revisions, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingHistory {
    pub revision: i64,
    /// When and why it was superseded.
    pub superseded: Option<(DateTime<Utc>, String)>,
    pub revisions: Vec<FindingRevision>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FindingRevision {
    pub at: DateTime<Utc>,
    pub reason: String,
    pub from_value: Option<f64>,
    pub to_value: Option<f64>,
    pub from_message: String,
}

/// A revision as read back.
type RevisionRow = (i64, String, Option<f64>, Option<f64>, String);

/// A stored verdict on a period.
type StoredRow = (
    i64,
    String,
    Option<f64>,
    Option<f64>,
    String,
    String,
    Option<i64>,
);

/// Whether the new verdict says something else than the stored one.
fn differs(row: &StoredRow, f: &Finding) -> bool {
    let (_, _, value, threshold, _, evidence, superseded) = row;
    let num = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() > 1e-9 * a.abs().max(b.abs()).max(1.0),
        (a, b) => a.is_some() != b.is_some(),
    };
    let counts = serde_json::from_str::<crate::rules::Evidence>(evidence)
        .map(|e| e.counts)
        .ok();
    superseded.is_some()
        || num(*value, f.value)
        || num(*threshold, f.threshold)
        || counts.as_ref() != Some(&f.evidence.counts)
}

fn text(v: Option<f64>) -> String {
    v.map_or_else(|| "none".to_string(), |v| format!("{v:.3}"))
}

impl Store {
    /// Replaces the stored [`REVISABLE`] verdicts on `periods` by `verdicts`
    /// (stored already with [`Store::insert_findings`], which adds the new ones):
    /// a stored one that differs is revised, one not among them is superseded.
    pub async fn revise_findings(
        &self,
        periods: &[Period],
        verdicts: &[Finding],
        now: DateTime<Utc>,
    ) -> Result<Revised, StoreError> {
        self.revise_findings_of(REVISABLE, periods, verdicts, now)
            .await
    }

    /// As [`Store::revise_findings`], for the stored verdicts of `rules` (a day's
    /// `low_transmission` when backfill revised its figures).
    pub async fn revise_findings_of(
        &self,
        rules: &[RuleName],
        periods: &[Period],
        verdicts: &[Finding],
        now: DateTime<Utc>,
    ) -> Result<Revised, StoreError> {
        let mut out = Revised::default();
        if periods.is_empty() || rules.is_empty() {
            return Ok(out);
        }
        let keys: Vec<(String, &Finding)> = verdicts.iter().map(|f| (f.natural_key(), f)).collect();
        let rules: Vec<&str> = rules.iter().map(|r| r.as_str()).collect();
        on_pool!(self, |pool, Db| {
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            for p in periods {
                let mut b = sqlx::QueryBuilder::<Db>::new(
                    "SELECT id, natural_key, value, threshold, message, evidence, superseded_at FROM findings_current WHERE enterprise = ",
                );
                b.push_bind(&*p.enterprise)
                    .push(" AND location = ")
                    .push_bind(p.location.to_string())
                    .push(" AND factor = ")
                    .push_bind(&*p.factor)
                    .push(" AND window_start = ")
                    .push_bind(to_ms(p.start))
                    .push(" AND window_end = ")
                    .push_bind(to_ms(p.end))
                    .push(" AND rule IN (");
                let mut sep = b.separated(", ");
                for r in &rules {
                    sep.push_bind(*r);
                }
                b.push(")");
                let rows: Vec<StoredRow> = b
                    .build_query_as()
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(StoreError::db("read period findings"))?;
                for row in rows {
                    let (id, key, value, _, message, evidence, superseded) = &row;
                    let new = keys.iter().find(|(k, _)| k == key).map(|(_, f)| *f);
                    let (reason, to_value) = match new {
                        Some(f) if differs(&row, f) => ("revised after late data", f.value),
                        Some(_) => continue,
                        None if superseded.is_some() => continue,
                        None => ("superseded after late data", None),
                    };
                    // Append-only: the finding's row keeps its first verdict; the
                    // new one (or "superseded") is a revision row.
                    let (to_threshold, to_message, to_evidence, superseded, note) = match new {
                        Some(f) => {
                            let ev = serde_json::to_string(&f.evidence).map_err(|e| {
                                StoreError::Corrupt(format!("finding evidence: {e}"))
                            })?;
                            out.revised.push(*id);
                            (
                                f.threshold,
                                Some(f.message.clone()),
                                Some(ev),
                                0i64,
                                format!(
                                    "revised after late data, from {} to {}",
                                    text(*value),
                                    text(f.value)
                                ),
                            )
                        }
                        None => {
                            out.superseded.push(*id);
                            (
                                None,
                                None,
                                None,
                                1i64,
                                format!("superseded after late data (was {})", text(*value)),
                            )
                        }
                    };
                    let reason = if new.is_some() {
                        reason.to_string()
                    } else {
                        "superseded after late data: the period was judged again with it, and this is no longer found".to_string()
                    };
                    sqlx::query("INSERT INTO finding_revisions (finding_id, at, reason, from_value, to_value, from_message, from_evidence, to_threshold, to_message, to_evidence, superseded) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
                        .bind(id)
                        .bind(to_ms(now))
                        .bind(reason)
                        .bind(value)
                        .bind(to_value)
                        .bind(message)
                        .bind(evidence)
                        .bind(to_threshold)
                        .bind(to_message)
                        .bind(to_evidence)
                        .bind(superseded)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::db("record finding revision"))?;
                    let window = Window {
                        enterprise: p.enterprise.to_string(),
                        location: p.location.to_string(),
                        factor: p.factor.to_string(),
                        from: p.start,
                        to: p.end.max(p.start),
                    };
                    let alerts: Vec<(i64, String)> = sqlx::query_as(
                        "SELECT a.id, a.state FROM alerts a JOIN alert_findings af ON af.alert_id = a.id WHERE af.finding_id = $1",
                    )
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(StoreError::db("read finding alerts"))?;
                    for (alert, state) in alerts {
                        let detail = serde_json::json!({ "note": note, "finding": id }).to_string();
                        append_event!(
                            tx,
                            self,
                            alert,
                            now,
                            "revised",
                            "pollwatch",
                            None,
                            &detail,
                            Some(&window)
                        );
                        if new.is_some() || state == "resolved" {
                            continue;
                        }
                        let (live,): (i64,) = sqlx::query_as(
                            "SELECT count(*) FROM alert_findings af JOIN findings_current f ON f.id = af.finding_id WHERE af.alert_id = $1 AND f.superseded_at IS NULL",
                        )
                        .bind(alert)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(StoreError::db("count live findings"))?;
                        if live > 0 {
                            continue;
                        }
                        sqlx::query("UPDATE alerts SET state = 'resolved', resolved_by = 'pollwatch', resolved_at = $1, updated_at = $1 WHERE id = $2")
                            .bind(to_ms(now))
                            .bind(alert)
                            .execute(&mut *tx)
                            .await
                            .map_err(StoreError::db("resolve alert"))?;
                        sqlx::query("UPDATE outbox SET state = 'cancelled' WHERE alert_id = $1 AND state IN ('pending', 'queued', 'held')")
                            .bind(alert)
                            .execute(&mut *tx)
                            .await
                            .map_err(StoreError::db("cancel notifications"))?;
                        let detail = serde_json::json!({
                            "note": "superseded: the data came late and the period is judged again; its findings no longer stand",
                        })
                        .to_string();
                        append_event!(
                            tx,
                            self,
                            alert,
                            now,
                            "resolved",
                            "pollwatch",
                            None,
                            &detail,
                            None
                        );
                        out.resolved_alerts.push(alert);
                    }
                }
            }
            tx.commit("commit revisions").await?;
            Ok(out)
        })
    }

    /// A finding's revision count, whether it is superseded, and what it said
    /// before each revision.
    pub async fn finding_history(&self, id: i64) -> Result<FindingHistory, StoreError> {
        on_pool!(self, |pool, _Db| {
            let head: Option<(i64, Option<i64>, Option<String>)> = sqlx::query_as(
                "SELECT revision, superseded_at, superseded_reason FROM findings_current WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(StoreError::db("read finding"))?;
            let Some((revision, at, reason)) = head else {
                return Err(StoreError::Corrupt(format!("no finding {id}")));
            };
            let rows: Vec<RevisionRow> = sqlx::query_as(
                "SELECT at, reason, from_value, to_value, from_message FROM finding_revisions WHERE finding_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("read finding revisions"))?;
            let revisions = rows
                .into_iter()
                .map(|(at, reason, from_value, to_value, from_message)| {
                    Ok(FindingRevision {
                        at: from_ms(at)?,
                        reason,
                        from_value,
                        to_value,
                        from_message,
                    })
                })
                .collect::<Result<_, StoreError>>()?;
            let superseded = match at {
                Some(at) => Some((from_ms(at)?, reason.unwrap_or_default())),
                None => None,
            };
            Ok(FindingHistory {
                revision,
                superseded,
                revisions,
            })
        })
    }
}
