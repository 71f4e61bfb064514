//! The notification outbox and the attempts made for it; part of the alert
//! record, and written with the same timeline chain.

use chrono::{DateTime, Utc};

use super::{Attempt, OutboxRow};
use crate::store::tx::WriteTx;
use crate::store::{from_ms, to_ms, Store, StoreError};

/// An attempt as read back: outbox, time, channel, recipients, alerts, result,
/// code, reason, provider id.
type AttemptTuple = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn outbox_row<R: sqlx::Row>(r: &R) -> Result<OutboxRow, StoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let g = |e: sqlx::Error| StoreError::Corrupt(format!("outbox row: {e}"));
    Ok(OutboxRow {
        id: r.try_get("id").map_err(g)?,
        alert_id: r.try_get("alert_id").map_err(g)?,
        step: r.try_get("step").map_err(g)?,
        state: r.try_get("state").map_err(g)?,
        created_at: from_ms(r.try_get("created_at").map_err(g)?)?,
        sent_at: r
            .try_get::<Option<i64>, _>("sent_at")
            .map_err(g)?
            .map(from_ms)
            .transpose()?,
        channel: r.try_get("channel").map_err(g)?,
    })
}

impl Store {
    /// Outbox rows in `state`, oldest first; `alert` narrows to one alert.
    pub async fn outbox(
        &self,
        state: Option<&str>,
        alert: Option<i64>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new("SELECT id, alert_id, step, state, created_at, sent_at, channel FROM outbox WHERE 1=1");
            if let Some(s) = state {
                b.push(" AND state = ").push_bind(s.to_string());
            }
            if let Some(a) = alert {
                b.push(" AND alert_id = ").push_bind(a);
            }
            b.push(" ORDER BY id LIMIT ")
                .push_bind(i64::from(limit.max(1)));
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("read outbox"))?;
            rows.iter().map(outbox_row).collect()
        })
    }

    /// Pending rows after `after` (an outbox id), oldest first: what the
    /// dispatcher has not started yet.
    pub async fn outbox_pending_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.outbox_rows(Some(after), None, limit).await
    }

    /// One row, whatever its state.
    pub async fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        Ok(self.outbox_rows(None, Some(id), 1).await?.pop())
    }

    async fn outbox_rows(
        &self,
        pending_after: Option<i64>,
        id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new("SELECT id, alert_id, step, state, created_at, sent_at, channel FROM outbox WHERE 1=1");
            if let Some(after) = pending_after {
                b.push(" AND state = 'pending' AND id > ").push_bind(after);
            }
            if let Some(id) = id {
                b.push(" AND id = ").push_bind(id);
            }
            b.push(" ORDER BY id LIMIT ")
                .push_bind(i64::from(limit.max(1)));
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("read outbox"))?;
            rows.iter().map(outbox_row).collect()
        })
    }

    /// At start-up and after a reload: messages that were waiting in an
    /// in-memory digest queue when the process stopped, and those held because
    /// every channel of their route was unavailable, are pending again.
    pub async fn requeue_outbox(&self) -> Result<u64, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            let r = sqlx::query(
                "UPDATE outbox SET state = 'pending' WHERE state IN ('queued', 'held')",
            )
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("requeue outbox"))?;
            tx.commit("commit requeue").await?;
            Ok(r.rows_affected())
        })
    }

    /// Records a delivery's attempts and moves its outbox row to `state` (`sent`,
    /// `queued`, `held` or `failed`), with a timeline row on the alert — one transaction.
    pub async fn finish_outbox(
        &self,
        outbox_id: i64,
        state: &str,
        channel: Option<&str>,
        attempts: &[Attempt],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, Db| {
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            let alert: Option<(i64, String)> =
                sqlx::query_as("SELECT alert_id, step FROM outbox WHERE id = $1")
                    .bind(outbox_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::db("read outbox"))?;
            let Some((alert_id, step)) = alert else {
                return Err(StoreError::Corrupt(format!(
                    "outbox row {outbox_id} is gone"
                )));
            };
            for a in attempts {
                sqlx::query("INSERT INTO notification_attempts (outbox_id, at, channel, recipients, alert_ids, result, code, reason, provider_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                    .bind(a.outbox_id)
                    .bind(to_ms(a.at))
                    .bind(&a.channel)
                    .bind(&a.recipients)
                    .bind(&a.alert_ids)
                    .bind(&a.result)
                    .bind(&a.code)
                    .bind(&a.reason)
                    .bind(&a.provider_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db("record attempt"))?;
            }
            sqlx::query("UPDATE outbox SET state = $1, channel = $2, sent_at = $3 WHERE id = $4")
                .bind(state)
                .bind(channel)
                .bind(if state == "sent" {
                    Some(to_ms(now))
                } else {
                    None
                })
                .bind(outbox_id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("update outbox"))?;
            if state != "queued" {
                let recipients: Vec<&str> =
                    attempts.iter().map(|a| a.recipients.as_str()).collect();
                let detail = serde_json::json!({
                    "step": step,
                    "channel": channel,
                    "recipients": recipients.last(),
                    "attempts": attempts.len(),
                })
                .to_string();
                let kind = match state {
                    "sent" => "notified",
                    "held" => "notification_held",
                    _ => "notification_failed",
                };
                append_event!(
                    tx,
                    self,
                    alert_id,
                    now,
                    kind,
                    "pollwatch",
                    None,
                    &detail,
                    None
                );
            }
            tx.commit("commit outbox").await?;
            Ok(())
        })
    }

    /// Every attempt made for an alert's notifications, oldest first.
    pub async fn alert_attempts(&self, alert_id: i64) -> Result<Vec<Attempt>, StoreError> {
        on_pool!(self, |pool, _Db| {
            let rows: Vec<AttemptTuple> = sqlx::query_as(
                "SELECT a.outbox_id, a.at, a.channel, a.recipients, a.alert_ids, a.result, a.code, a.reason, a.provider_id \
                 FROM notification_attempts a JOIN outbox o ON o.id = a.outbox_id WHERE o.alert_id = $1 ORDER BY a.id",
            )
            .bind(alert_id)
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("read attempts"))?;
            rows.into_iter()
                .map(
                    |(
                        outbox_id,
                        at,
                        channel,
                        recipients,
                        alert_ids,
                        result,
                        code,
                        reason,
                        provider_id,
                    )| {
                        Ok(Attempt {
                            outbox_id,
                            at: from_ms(at)?,
                            channel,
                            recipients,
                            alert_ids,
                            result,
                            code,
                            reason,
                            provider_id,
                        })
                    },
                )
                .collect()
        })
    }
}
