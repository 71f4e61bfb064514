//! An alert's state changes made by people and by time: acknowledge, resolve,
//! and re-open when an acknowledgement timed out. Each change, its timeline row
//! and the cancellation of what is still queued are one transaction.

use chrono::{DateTime, Utc};

use super::{alert_row, AlertRow, AlertState, ALERT_COLUMNS};
use crate::store::tx::WriteTx;
use crate::store::{from_ms, to_ms, Store, StoreError};

impl Store {
    /// An acknowledgement that timed out (the policy's `ack_timeout`, reached at
    /// `since`): the alert is open again, its escalation restarts from `since`,
    /// and the timeline says who had acknowledged it and when. `None` if the alert
    /// is no longer acknowledged (resolved meanwhile).
    pub async fn reopen_alert(
        &self,
        id: i64,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<AlertRow>, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            let before: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
                "SELECT acked_by, acked_at FROM alerts WHERE id = $1 AND state = 'acknowledged'",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db("read alert"))?;
            let Some((acked_by, acked_at)) = before else {
                tx.rollback().await?;
                return Ok(None);
            };
            sqlx::query("UPDATE alerts SET state = 'open', acked_by = NULL, acked_at = NULL, cycle_started_at = $1, reopens = reopens + 1, updated_at = $2 WHERE id = $3")
                .bind(to_ms(since))
                .bind(to_ms(now))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("reopen alert"))?;
            let acked_at = acked_at.map(from_ms).transpose()?;
            let detail = serde_json::json!({
                "note": "acknowledged but not resolved within the ack timeout",
                "acked_by": acked_by,
                "acked_at": acked_at,
                "since": since,
            })
            .to_string();
            append_event!(
                tx,
                self,
                id,
                now,
                "reopened",
                "pollwatch",
                None,
                &detail,
                None
            );
            let row = sqlx::query(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::db("read alert"))?;
            tx.commit("commit reopen").await?;
            Ok(Some(alert_row(&row)?))
        })
    }

    /// Moves an alert to `to` (acknowledged or resolved) by `by` (who did it:
    /// the authenticated token's or session's name); notifications still
    /// waiting are cancelled in the same transaction, which is what stops
    /// escalation.
    pub async fn transition_alert(
        &self,
        id: i64,
        to: AlertState,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<AlertRow>, StoreError> {
        self.transition_alert_for(id, to, by, None, note, now).await
    }

    /// [`transition_alert`](Self::transition_alert), recording whom `by` says
    /// it acted for (what an API client sent as `by`) in the timeline row's
    /// `on_behalf_of`.
    pub async fn transition_alert_for(
        &self,
        id: i64,
        to: AlertState,
        by: &str,
        on_behalf_of: Option<&str>,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<AlertRow>, StoreError> {
        let (col_by, col_at, from) = match to {
            AlertState::Acknowledged => ("acked_by", "acked_at", "state = 'open'"),
            AlertState::Resolved => ("resolved_by", "resolved_at", "state <> 'resolved'"),
            AlertState::Open => {
                return Err(StoreError::Corrupt(
                    "an alert re-opens only by a finding".into(),
                ))
            }
        };
        let sql = format!("UPDATE alerts SET state = $1, {col_by} = $2, {col_at} = $3, updated_at = $3 WHERE id = $4 AND {from}");
        on_pool!(self, |pool, Db| {
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            let r = sqlx::query(&sql)
                .bind(to.as_str())
                .bind(by)
                .bind(to_ms(now))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("transition alert"))?;
            if r.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(None);
            }
            sqlx::query("UPDATE outbox SET state = 'cancelled' WHERE alert_id = $1 AND state IN ('pending', 'queued', 'held')")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("cancel notifications"))?;
            let detail = serde_json::json!({ "note": note }).to_string();
            append_event!(
                tx,
                self,
                id,
                now,
                to.as_str(),
                by,
                on_behalf_of,
                &detail,
                None
            );
            let row = sqlx::query(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::db("read alert"))?;
            tx.commit("commit transition").await?;
            Ok(Some(alert_row(&row)?))
        })
    }
}
