//! Production orders issued at runtime (`/api/v1/orders`), on either backend.
//!
//! An order is never deleted: cancelling records who and when, and the rules judge
//! a cancelled order up to its cancellation only. A penalty case may cite an order
//! weeks later; the row that proves it was in force must still be there.

use chrono::{DateTime, FixedOffset, Utc};

use super::tx::WriteTx;
use super::{from_ms, to_ms, Store, StoreError};
use crate::config::{HumanDuration, Order, OrderKind};

/// An order as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOrder {
    /// The store's number; the API's `/api/v1/orders/{id}`.
    pub id: i64,
    pub enterprise: String,
    /// `order.id` is the officer's reference (e.g. `2026-11-orange`).
    pub order: Order,
    pub reason: String,
    /// Who issued it: the authenticated token's name.
    pub issued_by: String,
    /// Whom the client said it issued it for (the API's `by`).
    pub on_behalf_of: Option<String>,
    pub issued_at: DateTime<Utc>,
    pub cancelled: Option<Cancelled>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cancelled {
    pub by: String,
    /// Whom the client said it cancelled for (the API's `by`).
    pub on_behalf_of: Option<String>,
    pub at: DateTime<Utc>,
}

impl StoredOrder {
    /// The window the rules judge: a cancelled order ends at its cancellation.
    pub fn effective_end(&self) -> DateTime<Utc> {
        let end = self.order.end.with_timezone(&Utc);
        match &self.cancelled {
            Some(c) => end.min(c.at),
            None => end,
        }
    }

    /// The order as the rules judge it: ending at its cancellation, if any.
    pub fn effective_order(&self) -> Order {
        let mut o = self.order.clone();
        o.end = self.effective_end().with_timezone(o.end.offset());
        o
    }

    /// In force (or still to come) at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.effective_end() > now
    }
}

/// What a cancellation did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    Cancelled(StoredOrder),
    AlreadyCancelled(StoredOrder),
    NotFound,
}

const COLUMNS: &str = "id, enterprise, name, kind, start_at, start_offset, end_at, allowed_share, meters, baseline_kw, grace_ms, reason, issued_by, issued_at, cancelled_by, cancelled_at, on_behalf_of, cancelled_for";

impl Store {
    /// Stores a new order; the caller has validated it against the enterprise.
    pub async fn insert_order(
        &self,
        enterprise: &str,
        order: &Order,
        reason: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredOrder, StoreError> {
        self.insert_order_for(enterprise, order, reason, by, None, at)
            .await
    }

    /// [`insert_order`](Self::insert_order) issued by `by` (the token) for
    /// `on_behalf_of` (what the client named).
    pub async fn insert_order_for(
        &self,
        enterprise: &str,
        order: &Order,
        reason: &str,
        by: &str,
        on_behalf_of: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<StoredOrder, StoreError> {
        let meters = serde_json::to_string(&order.meters)
            .map_err(|e| StoreError::Corrupt(format!("order meters: {e}")))?;
        let grace_ms = order
            .grace
            .map(|g| i64::try_from(g.0.as_millis()).unwrap_or(i64::MAX));
        on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO orders (enterprise, name, kind, start_at, start_offset, end_at, allowed_share, meters, baseline_kw, grace_ms, reason, issued_by, issued_at, on_behalf_of) ",
            );
            b.push_values([order], |mut row, o| {
                row.push_bind(enterprise)
                    .push_bind(o.id.as_str())
                    .push_bind(o.kind.as_str())
                    .push_bind(to_ms(o.start.with_timezone(&Utc)))
                    .push_bind(i64::from(o.start.offset().local_minus_utc()))
                    .push_bind(to_ms(o.end.with_timezone(&Utc)))
                    .push_bind(o.allowed_share)
                    .push_bind(meters.as_str())
                    .push_bind(o.baseline_kw)
                    .push_bind(grace_ms)
                    .push_bind(reason)
                    .push_bind(by)
                    .push_bind(to_ms(at))
                    .push_bind(on_behalf_of);
            });
            b.push(format!(" RETURNING {COLUMNS}"));
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            let row = b
                .build()
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::db("insert order"))?;
            let stored = stored_order(&row)?;
            tx.commit("commit order").await?;
            Ok(stored)
        })
    }

    pub async fn order(&self, id: i64) -> Result<Option<StoredOrder>, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut b =
                sqlx::QueryBuilder::<Db>::new(format!("SELECT {COLUMNS} FROM orders WHERE id = "));
            b.push_bind(id);
            let row = b
                .build()
                .fetch_optional(pool)
                .await
                .map_err(StoreError::db("query order"))?;
            row.map(|r| stored_order(&r)).transpose()
        })
    }

    /// Orders whose window (up to a cancellation) ends after `ends_after`, oldest
    /// first; `None`: all of them.
    pub async fn orders(
        &self,
        ends_after: Option<DateTime<Utc>>,
    ) -> Result<Vec<StoredOrder>, StoreError> {
        let rows: Vec<StoredOrder> = on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new(format!("SELECT {COLUMNS} FROM orders"));
            if let Some(t) = ends_after {
                b.push(" WHERE end_at > ").push_bind(to_ms(t));
            }
            b.push(" ORDER BY id");
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("query orders"))?;
            rows.iter().map(stored_order).collect::<Result<_, _>>()?
        });
        Ok(match ends_after {
            Some(t) => rows.into_iter().filter(|o| o.effective_end() > t).collect(),
            None => rows,
        })
    }

    /// Cancels an order (idempotent for the evidence: a second cancel changes
    /// nothing and says so).
    pub async fn cancel_order(
        &self,
        id: i64,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<CancelOutcome, StoreError> {
        self.cancel_order_for(id, by, None, at).await
    }

    /// [`cancel_order`](Self::cancel_order) by `by` (the token) for
    /// `on_behalf_of` (what the client named).
    pub async fn cancel_order_for(
        &self,
        id: i64,
        by: &str,
        on_behalf_of: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<CancelOutcome, StoreError> {
        let changed = on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new("UPDATE orders SET cancelled_by = ");
            b.push_bind(by)
                .push(", cancelled_for = ")
                .push_bind(on_behalf_of)
                .push(", cancelled_at = ")
                .push_bind(to_ms(at))
                .push(" WHERE cancelled_at IS NULL AND id = ")
                .push_bind(id);
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            let n = b
                .build()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("cancel order"))?
                .rows_affected();
            tx.commit("commit cancellation").await?;
            n
        });
        Ok(match (changed, self.order(id).await?) {
            (_, None) => CancelOutcome::NotFound,
            (0, Some(o)) => CancelOutcome::AlreadyCancelled(o),
            (_, Some(o)) => CancelOutcome::Cancelled(o),
        })
    }
}

fn stored_order<R>(r: &R) -> Result<StoredOrder, StoreError>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<f64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let get_i = |c: &str| r.try_get::<i64, _>(c).map_err(StoreError::db("read order"));
    let get_s = |c: &str| {
        r.try_get::<String, _>(c)
            .map_err(StoreError::db("read order"))
    };
    let offset_s = get_i("start_offset")?;
    let offset = i32::try_from(offset_s)
        .ok()
        .and_then(FixedOffset::east_opt)
        .ok_or_else(|| StoreError::Corrupt(format!("order offset {offset_s} s")))?;
    let kind = match get_s("kind")?.as_str() {
        "stop" => OrderKind::Stop,
        "limit" => OrderKind::Limit,
        other => return Err(StoreError::Corrupt(format!("order kind {other:?}"))),
    };
    let meters: Vec<String> = serde_json::from_str(&get_s("meters")?)
        .map_err(|e| StoreError::Corrupt(format!("order meters: {e}")))?;
    let grace = r
        .try_get::<Option<i64>, _>("grace_ms")
        .map_err(StoreError::db("read order"))?
        .map(|ms| HumanDuration(std::time::Duration::from_millis(ms.max(0) as u64)));
    let f64_col = |c: &str| {
        r.try_get::<Option<f64>, _>(c)
            .map_err(StoreError::db("read order"))
    };
    let cancelled = match (
        r.try_get::<Option<String>, _>("cancelled_by")
            .map_err(StoreError::db("read order"))?,
        r.try_get::<Option<i64>, _>("cancelled_at")
            .map_err(StoreError::db("read order"))?,
    ) {
        (Some(by), Some(at)) => Some(Cancelled {
            by,
            on_behalf_of: r
                .try_get::<Option<String>, _>("cancelled_for")
                .map_err(StoreError::db("read order"))?,
            at: from_ms(at)?,
        }),
        _ => None,
    };
    Ok(StoredOrder {
        id: get_i("id")?,
        enterprise: get_s("enterprise")?,
        order: Order {
            id: get_s("name")?,
            kind,
            start: from_ms(get_i("start_at")?)?.with_timezone(&offset),
            end: from_ms(get_i("end_at")?)?.with_timezone(&offset),
            allowed_share: f64_col("allowed_share")?,
            meters,
            baseline_kw: f64_col("baseline_kw")?,
            grace,
        },
        reason: get_s("reason")?,
        issued_by: get_s("issued_by")?,
        on_behalf_of: r
            .try_get::<Option<String>, _>("on_behalf_of")
            .map_err(StoreError::db("read order"))?,
        issued_at: from_ms(get_i("issued_at")?)?,
        cancelled,
    })
}
