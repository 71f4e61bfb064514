//! The PostgreSQL backend, for a city-wide store shared by several instances.
//!
//! A batch goes in as one `INSERT … SELECT FROM UNNEST(arrays)`: six array
//! parameters whatever the batch size, so PostgreSQL's 65,535-parameter limit never
//! splits a batch and the statement is prepared once.

use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row as _};

use super::series::IdCache;
use super::tx::WriteTx;
use super::{
    dead_letter, status_event, storable, stored_reading, to_ms, CommitStats, DeadLetter,
    ReadingQuery, Received, StatusEvent, StoreError, StoreOptions, StoredReading,
};

#[derive(Debug, Clone)]
pub struct PgStore {
    pub(super) keys: crate::seal::Keyring,
    pub(super) pool: PgPool,
    ids: Arc<IdCache>,
}

/// Binds rows as the six arrays `$1…$6` of an `UNNEST`.
fn bind_rows<'q>(
    q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    rows: &[super::series::Row],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    q.bind(rows.iter().map(|r| r.series).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.ts).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.value).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.flag).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.source).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.received).collect::<Vec<_>>())
}

impl PgStore {
    pub async fn open(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let redacted = super::StoreUrl::redacted(url);
        let mut connect: PgConnectOptions = url.parse().map_err(|source| StoreError::Open {
            url: redacted.clone(),
            source,
        })?;
        if let Some(t) = opts.pg_idle_in_transaction {
            connect = connect.options([(
                "idle_in_transaction_session_timeout",
                t.as_millis().max(1).to_string(),
            )]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.connect_timeout)
            .connect_with(connect)
            .await
            .map_err(|source| StoreError::Open {
                url: redacted,
                source,
            })?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                backend: "postgres",
                source,
            })?;
        Ok(PgStore {
            keys: opts.keys.clone(),
            pool,
            ids: Arc::default(),
        })
    }

    /// The same store on another pool (the fenced pool of `Store::fenced`).
    pub(super) fn with_pool(&self, pool: PgPool) -> PgStore {
        PgStore {
            keys: self.keys.clone(),
            pool,
            ids: Arc::default(),
        }
    }

    pub async fn commit(&self, parts: &[Received]) -> Result<CommitStats, StoreError> {
        let mut res = self.ids.resolve(parts);
        let mut tx = WriteTx::<Postgres>::begin(&self.pool).await?;
        for (key, (unit, id)) in res.missing.series.iter_mut() {
            super::insert_series::<Postgres>(key, unit)
                .build()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("insert series"))?;
            let row = super::select_series::<Postgres>(key)
                .build()
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::db("select series"))?;
            *id = Some(row.get(0));
        }
        for (src, id) in res.missing.sources.iter_mut() {
            super::insert_source::<Postgres>(src)
                .build()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("insert source"))?;
            let row = super::select_source::<Postgres>(src)
                .build()
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::db("select source"))?;
            *id = Some(row.get(0));
        }
        let rows = res.rows(parts)?;
        let mut stats = CommitStats::default();
        if !rows.is_empty() {
            let done = bind_rows(
                sqlx::query(
                    "INSERT INTO readings (series_id, ts, value, flag, source_id, received)
                     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::float8[], $4::text[], $5::bigint[], $6::bigint[])
                     ON CONFLICT DO NOTHING",
                ),
                &rows,
            )
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("insert readings"))?;
            stats.readings = done.rows_affected();
        }
        stats.duplicates = rows.len() as u64 - stats.readings;
        if stats.duplicates > 0 {
            // Some were resends: those whose value differs from the stored one
            // (stored before, or earlier in this very batch) are evidence.
            let done = bind_rows(sqlx::query(
                "INSERT INTO reading_conflicts (series_id, ts, first_value, first_flag, first_source_id,
                                                first_received, value, flag, source_id, received)
                 SELECT r.series_id, r.ts, r.value, r.flag, r.source_id, r.received,
                        n.value, n.flag, n.source_id, n.received
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::float8[], $4::text[], $5::bigint[], $6::bigint[])
                      AS n(series_id, ts, value, flag, source_id, received)
                 JOIN readings r ON r.series_id = n.series_id AND r.ts = n.ts
                 WHERE r.value <> n.value",
            ), &rows)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("record conflicting resends"))?;
            stats.conflicts = done.rows_affected();
        }
        for p in parts {
            for d in &p.batch.dead_letters {
                sqlx::query(
                    "INSERT INTO dead_letters (at, protocol, peer, reason, detail, raw) VALUES ($1,$2,$3,$4,$5,$6)",
                )
                .bind(to_ms(d.at))
                .bind(d.protocol.as_str())
                .bind(storable(&d.peer))
                .bind(storable(&d.reason))
                .bind(storable(&d.detail))
                .bind(&d.raw)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("insert dead letter"))?;
                stats.dead_letters += 1;
            }
            for e in &p.batch.status_events {
                sqlx::query(
                    "INSERT INTO device_status (at, enterprise, device, status, detail) VALUES ($1,$2,$3,$4,$5)",
                )
                .bind(to_ms(e.at))
                .bind(storable(&e.enterprise))
                .bind(storable(&e.device))
                .bind(storable(&e.status))
                .bind(storable(&e.detail))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("insert status event"))?;
                stats.status_events += 1;
            }
        }
        tx.commit("commit").await?;
        self.ids.learn(res.missing);
        Ok(stats)
    }

    pub async fn readings(&self, q: &ReadingQuery) -> Result<Vec<StoredReading>, StoreError> {
        let rows = super::readings_query::<Postgres>(q, &["readings"])
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::db("query readings"))?;
        rows.iter()
            .map(|r| {
                stored_reading(
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                    r.get(8),
                    r.get(9),
                    r.get(10),
                    r.get(11),
                )
            })
            .collect()
    }

    pub async fn count_readings(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM readings")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::db("count readings"))?;
        Ok(n as u64)
    }

    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, protocol, peer, reason, detail, raw FROM dead_letters ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::db("query dead letters"))?;
        rows.iter()
            .map(|r| dead_letter(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect()
    }

    pub async fn status_events(&self, limit: u32) -> Result<Vec<StatusEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, enterprise, device, status, detail FROM device_status ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::db("query status events"))?;
        rows.iter()
            .map(|r| status_event(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
