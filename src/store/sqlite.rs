//! The embedded SQLite backend: one file in the state directory, WAL mode so that
//! readers (the API, the CLI) never block the writer.
//!
//! Throughput comes from multi-row INSERTs inside one transaction per batch. The
//! statements are prepared once per row count; counts are powers of two up to
//! [`CHUNK`], so a batch of any size reuses at most ten cached statements.
//!
//! Readings are stored in two tiers. A commit holds about one reading per series
//! (every outlet reports every 30–60 s), so inserting straight into a table
//! clustered by series dirties one page per series per commit: at 10,000 series
//! that is 40 MB of WAL for 10,000 rows. New readings therefore go to
//! `readings_recent`, clustered by time, where a commit appends; every
//! `compact_rows` rows (default 200,000) they move to `readings`, clustered by series, in sorted
//! slices of a series range that touch each archive page once. One slice runs
//! after each commit, so the move never stalls ingestion for long. Queries read both tiers; a reading already in
//! `readings` hides a later copy in `readings_recent`, so the first value received
//! stands even when a logger re-sends history that was already compacted. Since
//! migration 0012 a trigger skips such a resend before it reaches
//! `readings_recent` (and records it in `reading_conflicts` when its value
//! differs); the hiding still covers copies written before.
//! The move waits while free disk space is short (see `space.rs`).

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite};

use super::series::{IdCache, Row};
use super::tx::WriteTx;
use super::{
    dead_letter, status_event, storable, stored_reading, to_ms, CommitStats, DeadLetter,
    ReadingQuery, Received, StatusEvent, StoreError, StoreOptions, StoredReading,
};
use crate::config::SqliteSync;

/// Rows per INSERT statement at most: 6 parameters each stays far below SQLite's
/// 32,766-parameter limit.
const CHUNK: usize = 512;

/// A round of moves in progress: series ids `next..=last`, `step` ids per slice.
#[derive(Debug, Clone, Copy)]
struct Round {
    next: i64,
    last: i64,
    step: i64,
}

/// Batches of at most this many rows get a statement of their exact size (an
/// HJ 212 frame carries 10–30 readings: one statement, not 8 + 2).
const SMALL: usize = 32;

/// `INSERT … VALUES (…),(…)…` for `n` rows.
fn insert_sql(n: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO readings_recent (series_id, ts, value, flag, source_id, received) VALUES ",
    );
    for i in 0..n {
        sql.push_str(if i == 0 {
            "(?,?,?,?,?,?)"
        } else {
            ",(?,?,?,?,?,?)"
        });
    }
    sql.push_str(" ON CONFLICT DO NOTHING");
    sql
}

/// The INSERT statements: index `n - 1` for 1 ≤ n ≤ [`SMALL`] rows, then
/// [`SMALL`] + k for 2^k rows above it up to [`CHUNK`] — at most 37 cached
/// statements, whatever the batch sizes.
static INSERT_SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut out: Vec<String> = (1..=SMALL).map(insert_sql).collect();
    let mut n = 1;
    while n <= CHUNK {
        out.push(insert_sql(n));
        n *= 2;
    }
    out
});

/// The statement (its index in [`INSERT_SQL`]) and row count of the next chunk
/// of a batch with `left` rows to go.
fn next_chunk(left: usize) -> (usize, usize) {
    if left <= SMALL {
        return (left.max(1) - 1, left);
    }
    // Largest power of two that fits.
    let k = (usize::BITS - 1 - left.min(CHUNK).leading_zeros()) as usize;
    (SMALL + k, 1 << k)
}

/// The drill hook of [`StoreOptions::sqlite_page_limit`]; 0 lifts the cap.
async fn apply_page_limit(
    conn: &mut sqlx::SqliteConnection,
    pages: u64,
) -> Result<(), sqlx::Error> {
    use sqlx::Executor as _;
    let pages = if pages == 0 { 4_294_967_294 } else { pages };
    conn.execute(format!("PRAGMA max_page_count = {pages}").as_str())
        .await
        .map(|_| ())
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) keys: crate::seal::Keyring,
    pub(super) pool: SqlitePool,
    ids: Arc<IdCache>,
    /// Rows in `readings_recent` (approximate: resends count until compaction).
    recent: Arc<AtomicU64>,
    /// The last `reading_conflicts` id after the last commit; -1 until read.
    conflict_mark: Arc<AtomicI64>,
    round: Arc<std::sync::Mutex<Option<Round>>>,
    tiers: super::TierOptions,
    pub(super) space: super::SpaceWatch,
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
            .statement_cache_capacity(128);
        let mut pool_opts = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.connect_timeout)
            // A ping before every acquire is a round trip to the connection's
            // worker thread per transaction; a local file has no link to test
            // (a failing statement is an error like any other).
            .test_before_acquire(false);
        if let Some(limit) = opts.sqlite_page_limit.clone() {
            let on_acquire = limit.clone();
            pool_opts = pool_opts
                .after_connect(move |conn, _| {
                    let pages = limit.load(Ordering::Relaxed);
                    Box::pin(async move { apply_page_limit(conn, pages).await })
                })
                .before_acquire(move |conn, _| {
                    let pages = on_acquire.load(Ordering::Relaxed);
                    Box::pin(async move { apply_page_limit(conn, pages).await.map(|()| true) })
                });
        }
        let pool = pool_opts
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
        let recent: i64 = sqlx::query_scalar("SELECT count(*) FROM readings_recent")
            .fetch_one(&pool)
            .await
            .map_err(StoreError::db("count recent readings"))?;
        Ok(SqliteStore {
            keys: opts.keys.clone(),
            pool,
            ids: Arc::default(),
            recent: Arc::new(AtomicU64::new(recent.max(0) as u64)),
            conflict_mark: Arc::new(AtomicI64::new(-1)),
            round: Arc::default(),
            tiers: opts.tiers,
            space: super::SpaceWatch::spawn(
                path.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf(),
                opts.min_free,
                opts.space_every,
            ),
        })
    }

    pub async fn commit(&self, parts: &[Received]) -> Result<CommitStats, StoreError> {
        let mut res = self.ids.resolve(parts);
        let mut tx = WriteTx::<Sqlite>::begin(&self.pool).await?;
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
        // The resend trigger (migration 0012) records conflicting resends; rows
        // after the last id before this commit are this commit's. The writer is
        // the only one to insert readings, so that id is kept in memory after
        // the first read, sparing every commit a round trip.
        let conflicts_before = match self.conflict_mark.load(Ordering::Relaxed) {
            mark if mark >= 0 || rows.is_empty() => mark,
            _ => sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM reading_conflicts")
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::db("last conflict id"))?,
        };
        let mut rest: &[Row] = &rows;
        while !rest.is_empty() {
            let (statement, n) = next_chunk(rest.len());
            let (chunk, tail) = rest.split_at(n);
            let mut q = sqlx::query(&INSERT_SQL[statement]);
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
        let mut mark_after = conflicts_before;
        if stats.duplicates > 0 {
            let (n, last): (i64, Option<i64>) =
                sqlx::query_as("SELECT count(*), max(id) FROM reading_conflicts WHERE id > ?")
                    .bind(conflicts_before)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(StoreError::db("count conflicts"))?;
            stats.conflicts = n.max(0) as u64;
            mark_after = last.unwrap_or(conflicts_before);
        }
        for p in parts {
            for d in &p.batch.dead_letters {
                sqlx::query(
                    "INSERT INTO dead_letters (at, protocol, peer, reason, detail, raw) VALUES (?,?,?,?,?,?)",
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
                    "INSERT INTO device_status (at, enterprise, device, status, detail) VALUES (?,?,?,?,?)",
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
        if !rows.is_empty() {
            self.conflict_mark.store(mark_after, Ordering::Relaxed);
        }
        self.ids.learn(res.missing);
        self.recent.fetch_add(stats.readings, Ordering::Relaxed);
        // The batch is durable already; a failed move is retried after the next one.
        if let Err(e) = self.compact_step().await {
            tracing::warn!(error = %e, "moving recent readings into the archive failed");
        }
        Ok(stats)
    }

    /// Moves one slice of `readings_recent` into `readings` when a round is due or
    /// under way. A round is cut into slices of about `slice_rows` rows by series
    /// range, one slice after each commit, so no commit waits for a whole round.
    async fn compact_step(&self) -> Result<(), StoreError> {
        // The move copies a slice before deleting it: it needs room the writer
        // may need more. It stops below twice min_free, before the writer does.
        if self.space.archive_paused() {
            return Ok(());
        }
        let slice = {
            let mut round = self.round.lock().unwrap_or_else(|e| e.into_inner());
            if round.is_none() && self.recent.load(Ordering::Relaxed) < self.tiers.compact_rows {
                return Ok(());
            }
            round.take()
        };
        let mut round = match slice {
            Some(r) => r,
            None => match self.plan_round().await? {
                Some(r) => r,
                None => return Ok(()),
            },
        };
        let hi = round.next.saturating_add(round.step - 1).min(round.last);
        self.move_series(round.next, hi).await?;
        round.next = hi.saturating_add(1);
        if round.next > round.last {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM readings_recent")
                .fetch_one(&self.pool)
                .await
                .map_err(StoreError::db("count recent readings"))?;
            self.recent.store(left.max(0) as u64, Ordering::Relaxed);
        } else {
            *self.round.lock().unwrap_or_else(|e| e.into_inner()) = Some(round);
        }
        Ok(())
    }

    async fn plan_round(&self) -> Result<Option<Round>, StoreError> {
        let (first, last, rows): (Option<i64>, Option<i64>, i64) =
            sqlx::query_as("SELECT min(series_id), max(series_id), count(*) FROM readings_recent")
                .fetch_one(&self.pool)
                .await
                .map_err(StoreError::db("plan archive round"))?;
        let (Some(first), Some(last)) = (first, last) else {
            self.recent.store(0, Ordering::Relaxed);
            return Ok(None);
        };
        let slices = (rows.max(1) as u64)
            .div_ceil(self.tiers.slice_rows.max(1))
            .max(1) as i64;
        let step = ((last - first + 1) + slices - 1) / slices;
        Ok(Some(Round {
            next: first,
            last,
            step: step.max(1),
        }))
    }

    /// Moves the recent rows of series `lo..=hi`, in series order so that each
    /// archive page is written once. A row whose (series, time) is already
    /// archived is a late resend and is dropped: the first value stands.
    async fn move_series(&self, lo: i64, hi: i64) -> Result<u64, StoreError> {
        let mut tx = WriteTx::<Sqlite>::begin(&self.pool).await?;
        let moved = sqlx::query(
            "INSERT OR IGNORE INTO readings (series_id, ts, value, flag, source_id, received)
             SELECT series_id, ts, value, flag, source_id, received FROM readings_recent
             WHERE series_id BETWEEN ? AND ? ORDER BY series_id, ts",
        )
        .bind(lo)
        .bind(hi)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("archive recent readings"))?
        .rows_affected();
        sqlx::query("DELETE FROM readings_recent WHERE series_id BETWEEN ? AND ?")
            .bind(lo)
            .bind(hi)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("clear recent readings"))?;
        tx.commit("commit archive").await?;
        Ok(moved)
    }

    /// Moves everything now (maintenance, tests, benchmarks).
    pub async fn compact(&self) -> Result<u64, StoreError> {
        *self.round.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let moved = self.move_series(i64::MIN, i64::MAX).await?;
        self.recent.store(0, Ordering::Relaxed);
        Ok(moved)
    }

    pub async fn readings(&self, q: &ReadingQuery) -> Result<Vec<StoredReading>, StoreError> {
        let mut b = super::readings_query::<Sqlite>(q, &["readings", "readings_recent"]);
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
                    r.get(11),
                )
            })
            .collect()
    }

    /// Distinct readings stored: a resend waiting in the recent tier for a
    /// reading already archived is not counted twice.
    pub async fn count_readings(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM readings) + (SELECT count(*) FROM readings_recent r \
             WHERE NOT EXISTS (SELECT 1 FROM readings a WHERE a.series_id = r.series_id AND a.ts = r.ts))",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::db("count readings"))?;
        Ok(n as u64)
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

#[cfg(test)]
mod chunk_tests {
    use super::*;

    #[test]
    fn small_batches_are_one_statement_and_large_ones_powers_of_two() {
        assert_eq!(next_chunk(1), (0, 1));
        assert_eq!(next_chunk(10), (9, 10));
        assert_eq!(next_chunk(SMALL), (SMALL - 1, SMALL));
        assert_eq!(next_chunk(SMALL + 1), (SMALL + 5, 32));
        assert_eq!(next_chunk(100), (SMALL + 6, 64));
        assert_eq!(next_chunk(100_000), (SMALL + 9, CHUNK));
        for (i, sql) in INSERT_SQL.iter().enumerate() {
            let rows = sql.matches("(?,?,?,?,?,?)").count();
            let want = if i < SMALL { i + 1 } else { 1 << (i - SMALL) };
            assert_eq!(rows, want, "statement {i}");
        }
        // Every chunk of every size is a statement with that many rows.
        for left in 1..=2 * CHUNK {
            let (i, n) = next_chunk(left);
            assert!(n >= 1 && n <= left);
            assert_eq!(INSERT_SQL[i].matches("(?,?,?,?,?,?)").count(), n);
        }
    }
}
