//! The embedded SQLite backend: one file in the state directory, WAL mode so that
//! readers (the API, the CLI) never block the writer.
//!
//! Throughput comes from multi-row INSERTs inside one transaction per batch. The
//! statements are prepared once per row count; counts are powers of two up to
//! [`CHUNK`], so a batch of any size reuses at most ten cached statements.

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite};

use super::series::{IdCache, Row};
use super::{
    dead_letter, status_event, stored_reading, to_ms, CommitStats, DeadLetter, ReadingQuery,
    Received, StatusEvent, StoreError, StoreOptions, StoredReading,
};
use crate::config::SqliteSync;

/// Rows per INSERT statement at most: 6 parameters each stays far below SQLite's
/// 32,766-parameter limit.
const CHUNK: usize = 512;

/// `INSERT … VALUES (…),(…)…` for 1, 2, 4, … CHUNK rows.
static INSERT_SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut out = Vec::new();
    let mut n = 1;
    while n <= CHUNK {
        let mut sql = String::from(
            "INSERT INTO readings (series_id, ts, value, flag, source_id, received) VALUES ",
        );
        for i in 0..n {
            sql.push_str(if i == 0 {
                "(?,?,?,?,?,?)"
            } else {
                ",(?,?,?,?,?,?)"
            });
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        out.push(sql);
        n *= 2;
    }
    out
});

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    ids: Arc<IdCache>,
}

impl SqliteStore {
    pub async fn open(path: &Path, opts: &StoreOptions) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let url = format!("sqlite://{}", path.display());
        let connect = SqliteConnectOptions::from_str(&url)
            .map_err(|source| StoreError::Open {
                url: url.clone(),
                source,
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match opts.sqlite_synchronous {
                SqliteSync::Full => SqliteSynchronous::Full,
                SqliteSync::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(opts.connect_timeout)
            // Inserts land all over the (series, ts) index; a page cache that holds
            // the hot pages keeps SQLite from spilling mid-transaction, and an
            // in-memory statement journal keeps multi-row INSERTs off the disk until
            // the commit.
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory")
            .statement_cache_capacity(64);
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.connect_timeout)
            .connect_with(connect)
            .await
            .map_err(|source| StoreError::Open { url, source })?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                backend: "sqlite",
                source,
            })?;
        Ok(SqliteStore {
            pool,
            ids: Arc::default(),
        })
    }

    pub async fn commit(&self, parts: &[Received]) -> Result<CommitStats, StoreError> {
        let mut res = self.ids.resolve(parts);
        let mut tx = self.pool.begin().await.map_err(StoreError::db("begin"))?;
        for (key, (unit, id)) in res.missing.series.iter_mut() {
            super::insert_series::<Sqlite>(key, unit)
                .build()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("insert series"))?;
            let row = super::select_series::<Sqlite>(key)
                .build()
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::db("select series"))?;
            *id = Some(row.get(0));
        }
        for (src, id) in res.missing.sources.iter_mut() {
            super::insert_source::<Sqlite>(src)
                .build()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("insert source"))?;
            let row = super::select_source::<Sqlite>(src)
                .build()
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::db("select source"))?;
            *id = Some(row.get(0));
        }
        let rows = res.rows(parts)?;
        let mut stats = CommitStats::default();
        let mut rest: &[Row] = &rows;
        while !rest.is_empty() {
            // Largest power of two that fits.
            let k = (usize::BITS - 1 - rest.len().min(CHUNK).leading_zeros()) as usize;
            let (chunk, tail) = rest.split_at(1 << k);
            let mut q = sqlx::query(&INSERT_SQL[k]);
            for r in chunk {
                q = q
                    .bind(r.series)
                    .bind(r.ts)
                    .bind(r.value)
                    .bind(r.flag)
                    .bind(r.source)
                    .bind(r.received);
            }
            let done = q
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("insert readings"))?;
            stats.readings += done.rows_affected();
            rest = tail;
        }
        stats.duplicates = rows.len() as u64 - stats.readings;
        for p in parts {
            for d in &p.batch.dead_letters {
                sqlx::query(
                    "INSERT INTO dead_letters (at, protocol, peer, reason, detail, raw) VALUES (?,?,?,?,?,?)",
                )
                .bind(to_ms(d.at))
                .bind(d.protocol.as_str())
                .bind(&d.peer)
                .bind(&d.reason)
                .bind(&d.detail)
                .bind(&d.raw)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("insert dead letter"))?;
                stats.dead_letters += 1;
            }
            for e in &p.batch.status_events {
                sqlx::query(
                    "INSERT INTO device_status (at, enterprise, device, status, detail) VALUES (?,?,?,?,?)",
                )
                .bind(to_ms(e.at))
                .bind(&e.enterprise)
                .bind(&e.device)
                .bind(&e.status)
                .bind(&e.detail)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("insert status event"))?;
                stats.status_events += 1;
            }
        }
        tx.commit().await.map_err(StoreError::db("commit"))?;
        self.ids.learn(res.missing);
        Ok(stats)
    }

    pub async fn readings(&self, q: &ReadingQuery) -> Result<Vec<StoredReading>, StoreError> {
        let mut b = super::readings_query::<Sqlite>(q);
        let rows = b
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
                )
            })
            .collect()
    }

    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, protocol, peer, reason, detail, raw FROM dead_letters ORDER BY id DESC LIMIT ?",
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
            "SELECT at, enterprise, device, status, detail FROM device_status ORDER BY id DESC LIMIT ?",
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
