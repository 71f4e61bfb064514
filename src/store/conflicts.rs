//! Conflicting resends: a reading sent again for the same series and time with a
//! different value. The first value stands (readings are never updated); the
//! second is kept here, with both sources and when each was received, because a
//! logger that rewrites history is itself evidence.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::{from_ms, ReadingQuery, Store, StoreError};
use crate::model::{DataKind, Flag, Protocol, Stat};

/// One conflicting resend, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub factor: String,
    pub kind: DataKind,
    pub stat: Stat,
    pub converted: bool,
    pub ts: DateTime<Utc>,
    /// The value that stands (received first).
    pub first_value: f64,
    pub first_flag: Flag,
    pub first_protocol: Protocol,
    pub first_device: String,
    pub first_received: DateTime<Utc>,
    /// The value sent later, not stored as a reading.
    pub value: f64,
    pub flag: Flag,
    pub protocol: Protocol,
    pub device: String,
    pub received: DateTime<Utc>,
}

impl Store {
    /// Conflicting resends of one outlet or meter in the query's window (by data
    /// time), oldest first; `limit` applies.
    pub async fn conflicts(&self, q: &ReadingQuery) -> Result<Vec<Conflict>, StoreError> {
        on_pool!(self, |pool, Db| {
            let rows = conflicts_query::<Db>(q)
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("query conflicting resends"))?;
            rows.iter()
                .map(|r| {
                    let corrupt =
                        |e: crate::model::UnknownVariant| StoreError::Corrupt(e.to_string());
                    Ok(Conflict {
                        factor: r.try_get(0).map_err(StoreError::db("read conflict"))?,
                        kind: r
                            .try_get::<String, _>(1)
                            .map_err(StoreError::db("read conflict"))?
                            .parse()
                            .map_err(corrupt)?,
                        stat: r
                            .try_get::<String, _>(2)
                            .map_err(StoreError::db("read conflict"))?
                            .parse()
                            .map_err(corrupt)?,
                        converted: r.try_get(3).map_err(StoreError::db("read conflict"))?,
                        ts: from_ms(r.try_get(4).map_err(StoreError::db("read conflict"))?)?,
                        first_value: r.try_get(5).map_err(StoreError::db("read conflict"))?,
                        first_flag: r
                            .try_get::<String, _>(6)
                            .map_err(StoreError::db("read conflict"))?
                            .parse()
                            .map_err(corrupt)?,
                        first_protocol: r
                            .try_get::<String, _>(7)
                            .map_err(StoreError::db("read conflict"))?
                            .parse()
                            .map_err(corrupt)?,
                        first_device: r.try_get(8).map_err(StoreError::db("read conflict"))?,
                        first_received: from_ms(
                            r.try_get(9).map_err(StoreError::db("read conflict"))?,
                        )?,
                        value: r.try_get(10).map_err(StoreError::db("read conflict"))?,
                        flag: r
                            .try_get::<String, _>(11)
                            .map_err(StoreError::db("read conflict"))?
                            .parse()
                            .map_err(corrupt)?,
                        protocol: r
                            .try_get::<String, _>(12)
                            .map_err(StoreError::db("read conflict"))?
                            .parse()
                            .map_err(corrupt)?,
                        device: r.try_get(13).map_err(StoreError::db("read conflict"))?,
                        received: from_ms(r.try_get(14).map_err(StoreError::db("read conflict"))?)?,
                    })
                })
                .collect()
        })
    }
}

fn conflicts_query<'a, DB>(q: &'a ReadingQuery) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut b = sqlx::QueryBuilder::<DB>::new(
        "SELECT s.factor, s.kind, s.stat, s.converted, c.ts,
                c.first_value, c.first_flag, fs.protocol, fs.device, c.first_received,
                c.value, c.flag, ns.protocol, ns.device, c.received
         FROM reading_conflicts c
         JOIN series s ON s.id = c.series_id
         JOIN sources fs ON fs.id = c.first_source_id
         JOIN sources ns ON ns.id = c.source_id",
    );
    super::push_filters(&mut b, q, "c");
    b.push(" ORDER BY c.ts, s.factor, c.id");
    if let Some(l) = q.limit {
        b.push(" LIMIT ").push_bind(i64::from(l));
    }
    b
}
