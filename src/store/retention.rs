//! Retention (issue 18): the one way readings leave the store. `readings` is
//! append-only — its triggers refuse UPDATE, and DELETE unless the latest
//! `retention_log` row is a 'start' covering the reading — so a retention run
//! appends 'start', deletes, and appends 'done' with the count, in one
//! transaction. The log is append-only too: what was removed, when, by whom,
//! stays on record, and `alerts verify` explains readings missing from an
//! evidence window by it.

use chrono::{DateTime, Utc};

use super::tx::WriteTx;
use super::{from_ms, to_ms, Store, StoreError};

/// One run, as logged.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RetentionRun {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub before: DateTime<Utc>,
    pub actor: String,
    pub rows: Option<i64>,
}

impl Store {
    /// Deletes readings older than `before`, logged as done by `actor`.
    /// Refuses a cutoff later than `now` minus `min_age` (a typo in the date must
    /// not wipe the evidence of open cases).
    pub async fn retain_readings(
        &self,
        before: DateTime<Utc>,
        actor: &str,
        now: DateTime<Utc>,
        min_age: chrono::Duration,
    ) -> Result<u64, StoreError> {
        if before > now - min_age {
            return Err(StoreError::Refused(format!(
                "retention cutoff {before} is less than {} days ago; readings that recent are kept",
                min_age.num_days()
            )));
        }
        if actor.trim().is_empty() || actor.chars().any(char::is_control) {
            return Err(StoreError::Refused(
                "retention needs the name of whoever runs it (--by), without control characters"
                    .into(),
            ));
        }
        let tables = self.reading_tables();
        on_pool!(self, |pool, Db| {
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            sqlx::query("INSERT INTO retention_log (at, kind, before_ms, actor) VALUES ($1, 'start', $2, $3)")
                .bind(to_ms(now))
                .bind(to_ms(before))
                .bind(actor)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("log retention"))?;
            let mut rows = 0u64;
            for t in tables {
                rows += sqlx::query(&format!("DELETE FROM {t} WHERE ts < $1"))
                    .bind(to_ms(before))
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db("delete old readings"))?
                    .rows_affected();
            }
            sqlx::query("INSERT INTO retention_log (at, kind, before_ms, actor, rows) VALUES ($1, 'done', $2, $3, $4)")
                .bind(to_ms(now))
                .bind(to_ms(before))
                .bind(actor)
                .bind(i64::try_from(rows).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("log retention"))?;
            tx.commit("commit retention").await?;
            Ok(rows)
        })
    }

    /// Every retention run, oldest first.
    pub async fn retention_runs(&self) -> Result<Vec<RetentionRun>, StoreError> {
        let rows: Vec<(i64, i64, i64, String, Option<i64>)> = on_pool!(self, |pool, _Db| {
            sqlx::query_as(
                "SELECT id, at, before_ms, actor, rows FROM retention_log WHERE kind = 'done' ORDER BY id",
            )
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("read retention log"))?
        });
        rows.into_iter()
            .map(|(id, at, before, actor, rows)| {
                Ok(RetentionRun {
                    id,
                    at: from_ms(at)?,
                    before: from_ms(before)?,
                    actor,
                    rows,
                })
            })
            .collect()
    }
}
