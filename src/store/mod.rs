//! Durable storage of readings, dead letters and device status (sqlx).
//!
//! SQLite is the embedded default — one file, nothing to install, WAL mode — and
//! PostgreSQL is the choice for a city-wide or multi-instance deployment. Both
//! backends share one schema shape and one test-suite, and are reached through the
//! [`Store`] enum rather than a trait object: there are exactly two, and a `match`
//! keeps the async code free of boxing.
//!
//! Sources never write directly. They hand batches to the [`writer`], which groups
//! them into transactions and tells each sender when its readings are durable — the
//! moment a source may acknowledge (invariant 1).
//!
//! Every write transaction, on both backends, goes through [`tx::WriteTx`], which
//! closes a connection after any failure inside a transaction instead of handing
//! it back to the pool (why: `tx.rs`). Free disk space under SQLite is watched by
//! [`space`]: below `[storage] min_free` the writer holds new data.

/// Runs `$body` with `$pool` bound to the backend's pool and `$db` to its type.
macro_rules! on_pool {
    ($store:expr, |$pool:ident, $db:ident| $body:expr) => {
        match $store {
            Store::Sqlite(s) => {
                type $db = sqlx::Sqlite;
                let $pool = &s.pool;
                $body
            }
            Store::Postgres(s) => {
                type $db = sqlx::Postgres;
                let $pool = &s.pool;
                $body
            }
        }
    };
}

mod alerts;
pub mod cluster;
mod completeness;
mod conflicts;
mod events;
mod findings;
mod orders;
mod postgres;
mod refusal;
mod report;
mod retention;
mod series;
mod sessions;
pub mod space;
mod sqlite;
mod tx;
mod url;
pub mod writer;

pub use alerts::{
    anchor_leaves, chain, verify_chain, verify_chain_with, AlertEvent, AlertPolicy, AlertQuery,
    AlertRow, AlertState, AnchorRow, Attempt, BoardMark, BoardPage, BoardQuery, FindingHistory,
    FindingOnAlert, FindingRevision, NewAlert, OutboxRow, Recorded, Revised, Verdict, VerifyReport,
};
pub use completeness::{
    BackfillOutcome, BackfillRow, BackfillState, DayFigures, DayWrite, NewBackfill, StoredDay,
};
pub use conflicts::Conflict;
pub use findings::{EmissionSum, FindingQuery, StoredFinding};
pub use orders::{CancelOutcome, Cancelled, StoredOrder};
pub(crate) use refusal::storable;
pub use report::{LastSeen, ReportAlert, ReportFinding};
pub use retention::RetentionRun;
pub use sessions::SessionRow;
pub use space::{Space, SpaceWatch};
pub use url::{StoreUrl, UrlError};
pub use writer::{Committed, Durable, WriteError, Writer, WriterOptions, WriterStats, WriterTask};

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crate::config::SqliteSync;
use crate::model::{DataKind, Flag, LocationKind, Protocol, Reading, SeriesKey, SourceRef, Stat};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create directory {path} for the SQLite file: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("migrating the {backend} schema failed: {source}")]
    Migrate {
        backend: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("{op}: {source}")]
    Db {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("{0}")]
    DiskLow(String),
    #[error("commit did not finish within {0:?}")]
    Timeout(Duration),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    /// A request the store will not carry out, with why.
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Url(#[from] UrlError),
}

impl StoreError {
    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Db { op, source }
    }

    /// A unique key was taken by a concurrent writer (PostgreSQL 23505): the
    /// same write, re-read and retried, may well succeed.
    pub fn is_conflict(&self) -> bool {
        match self {
            StoreError::Db {
                source: sqlx::Error::Database(e),
                ..
            } => {
                e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                    && e.code().as_deref() == Some("23505")
            }
            _ => false,
        }
    }

    /// Worth trying again as it is: the database was busy, locked, out of
    /// connections or unreachable — not a refusal of the data itself.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Timeout(_) => true,
            StoreError::Db { source, .. } => match source {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(e) => {
                    let code = e.code().unwrap_or_default();
                    // SQLite: BUSY (5), LOCKED (6), FULL (13), IOERR (10) and their
                    // extended codes; PostgreSQL: connection (08), resources (53),
                    // operator intervention (57), serialization/deadlock (40).
                    // PostgreSQL's SQLSTATE is often all digits ("22021", a NUL
                    // byte: 22021 & 0xff = 5, SQLite's BUSY): ask the backend.
                    if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                        code.parse::<i32>()
                            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13))
                    } else {
                        ["08", "53", "57", "40"].iter().any(|p| code.starts_with(p))
                    }
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// Tuning that is not part of the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub sqlite_synchronous: SqliteSync,
    /// How long to wait for a connection before calling the database unreachable.
    pub connect_timeout: Duration,
    pub max_connections: u32,
    pub tiers: TierOptions,
    /// Free space to keep on the SQLite store's file system (see [`space`]).
    pub min_free: crate::config::MinFree,
    /// How often that space is sampled.
    pub space_every: Duration,
    /// Drill and test hook (SQLite only): when set and nonzero, every connection
    /// caps the database at this many pages (`PRAGMA max_page_count`, re-applied
    /// each time a connection is taken from the pool), which fails writes with
    /// `SQLITE_FULL` exactly as a full disk does. Raise it (or set 0) to "free"
    /// space. Not a config key.
    #[doc(hidden)]
    pub sqlite_page_limit: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// The evidence key timeline rows are chained under (`[evidence]`; none:
    /// rows are written unkeyed). See [`crate::seal`].
    pub keys: crate::seal::Keyring,
    /// PostgreSQL only: `idle_in_transaction_session_timeout` on every
    /// connection. Cluster mode sets it to the lease: a node paused in the
    /// middle of a transaction (SIGSTOP, a frozen VM) would otherwise hold the
    /// snapshot horizon the leader's feed waits for (`crate::cluster::feed`).
    pub pg_idle_in_transaction: Option<Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sqlite_synchronous: SqliteSync::Full,
            connect_timeout: Duration::from_secs(5),
            max_connections: 4,
            tiers: TierOptions::default(),
            min_free: crate::config::MinFree::default(),
            space_every: Duration::from_secs(1),
            sqlite_page_limit: None,
            keys: crate::seal::Keyring::default(),
            pg_idle_in_transaction: None,
        }
    }
}

/// When SQLite moves recent readings into the archive (see `sqlite.rs`).
#[derive(Debug, Clone, Copy)]
pub struct TierOptions {
    /// Rows in the recent tier that start a round of moves.
    pub compact_rows: u64,
    /// Rows per slice of a round; one slice runs after each commit.
    pub slice_rows: u64,
}

impl Default for TierOptions {
    fn default() -> Self {
        TierOptions {
            compact_rows: 200_000,
            slice_rows: 20_000,
        }
    }
}

/// Input that could not be accepted, kept with its raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub at: DateTime<Utc>,
    pub protocol: Protocol,
    /// Remote address, topic or port the input came from.
    pub peer: String,
    /// Stable machine-readable reason (`bad_crc`, `unknown_mn`, `bad_password`, …).
    pub reason: String,
    /// Human-readable detail.
    pub detail: String,
    pub raw: Vec<u8>,
}

/// A device went online, offline, or changed state; the offline rule reads these.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEvent {
    pub at: DateTime<Utc>,
    pub enterprise: String,
    pub device: String,
    pub status: String,
    pub detail: String,
}

/// What one sender hands to the writer: committed together or not at all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub readings: Vec<Reading>,
    pub dead_letters: Vec<DeadLetter>,
    pub status_events: Vec<StatusEvent>,
}

impl Batch {
    pub fn readings(readings: Vec<Reading>) -> Self {
        Batch {
            readings,
            ..Batch::default()
        }
    }

    pub fn dead_letter(d: DeadLetter) -> Self {
        Batch {
            dead_letters: vec![d],
            ..Batch::default()
        }
    }

    pub fn status_event(e: StatusEvent) -> Self {
        Batch {
            status_events: vec![e],
            ..Batch::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.readings.is_empty() && self.dead_letters.is_empty() && self.status_events.is_empty()
    }
}

/// A batch plus the time it was handed over (stored as `received`).
#[derive(Debug, Clone)]
pub struct Received {
    pub at: DateTime<Utc>,
    pub batch: Batch,
}

/// How many rows one commit wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub readings: u64,
    /// Readings already stored (a logger's resend): absorbed, not written twice.
    pub duplicates: u64,
    pub dead_letters: u64,
    pub status_events: u64,
    /// Resent readings whose value differed from the stored one: recorded in
    /// `reading_conflicts`, the first value stands.
    pub conflicts: u64,
}

/// Which stored readings to return.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingQuery {
    pub enterprise: String,
    pub location_kind: LocationKind,
    pub location: String,
    pub factor: Option<String>,
    pub kind: Option<DataKind>,
    pub stat: Option<Stat>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

impl ReadingQuery {
    /// Every reading of one outlet or meter; narrow it with the other fields or
    /// [`ReadingQuery::factor`].
    pub fn new(
        enterprise: impl Into<String>,
        location_kind: LocationKind,
        location: impl Into<String>,
    ) -> Self {
        ReadingQuery {
            enterprise: enterprise.into(),
            location_kind,
            location: location.into(),
            factor: None,
            kind: None,
            stat: None,
            from: None,
            to: None,
            limit: None,
        }
    }

    pub fn factor(mut self, factor: impl Into<String>) -> Self {
        self.factor = Some(factor.into());
        self
    }
}

/// A reading as stored, with its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReading {
    pub factor: String,
    pub unit: String,
    pub kind: DataKind,
    pub stat: Stat,
    pub converted: bool,
    pub ts: DateTime<Utc>,
    pub value: f64,
    pub flag: Flag,
    pub protocol: Protocol,
    pub device: String,
    pub received: DateTime<Utc>,
    /// Sent from the logger's backlog (HJ 212-2025 `RF=1`).
    pub resend: bool,
}

#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens (creating if needed) and migrates the store at `url`.
    pub async fn open(url: &str, opts: &StoreOptions) -> Result<Store, StoreError> {
        match StoreUrl::parse(url)? {
            StoreUrl::Sqlite(path) => {
                Ok(Store::Sqlite(sqlite::SqliteStore::open(&path, opts).await?))
            }
            StoreUrl::Postgres(url) => {
                Ok(Store::Postgres(postgres::PgStore::open(&url, opts).await?))
            }
        }
    }

    /// The free space of the store's file system (SQLite; `None` on PostgreSQL,
    /// whose disk is the database server's).
    pub fn space(&self) -> Option<&SpaceWatch> {
        match self {
            Store::Sqlite(s) => Some(&s.space),
            Store::Postgres(_) => None,
        }
    }

    /// The evidence keys timeline rows are chained and checked with.
    pub fn keys(&self) -> &crate::seal::Keyring {
        match self {
            Store::Sqlite(s) => &s.keys,
            Store::Postgres(s) => &s.keys,
        }
    }

    /// The tables readings live in, the authoritative one first.
    pub(crate) fn reading_tables(&self) -> &'static [&'static str] {
        match self {
            Store::Sqlite(_) => &["readings", "readings_recent"],
            Store::Postgres(_) => &["readings"],
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Writes every part in one transaction. Re-writing a stored reading is a no-op.
    pub async fn commit(&self, parts: &[Received]) -> Result<CommitStats, StoreError> {
        match self {
            Store::Sqlite(s) => s.commit(parts).await,
            Store::Postgres(s) => s.commit(parts).await,
        }
    }

    /// Readings ordered by time, then factor, kind, statistic.
    pub async fn readings(&self, q: &ReadingQuery) -> Result<Vec<StoredReading>, StoreError> {
        match self {
            Store::Sqlite(s) => s.readings(q).await,
            Store::Postgres(s) => s.readings(q).await,
        }
    }

    /// How many distinct readings are stored.
    pub async fn count_readings(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.count_readings().await,
            Store::Postgres(s) => s.count_readings().await,
        }
    }

    /// The newest dead letters first.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        match self {
            Store::Sqlite(s) => s.dead_letters(limit).await,
            Store::Postgres(s) => s.dead_letters(limit).await,
        }
    }

    /// The newest status events first.
    pub async fn status_events(&self, limit: u32) -> Result<Vec<StatusEvent>, StoreError> {
        match self {
            Store::Sqlite(s) => s.status_events(limit).await,
            Store::Postgres(s) => s.status_events(limit).await,
        }
    }

    /// Moves recently written readings into long-term layout (SQLite; PostgreSQL
    /// keeps one table). Commits do this by themselves when due; exposed for tests,
    /// benchmarks and maintenance. Returns the rows moved.
    pub async fn compact(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.compact().await,
            Store::Postgres(_) => Ok(0),
        }
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }
}

pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} ms is out of range")))
}

/// Turns the text columns of a stored reading back into typed values.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stored_reading(
    factor: String,
    unit: String,
    kind: &str,
    stat: &str,
    converted: bool,
    ts: i64,
    value: f64,
    flag: &str,
    protocol: &str,
    device: String,
    received: i64,
    resend: bool,
) -> Result<StoredReading, StoreError> {
    let corrupt = |e: crate::model::UnknownVariant| StoreError::Corrupt(e.to_string());
    Ok(StoredReading {
        factor,
        unit,
        kind: kind.parse().map_err(corrupt)?,
        stat: stat.parse().map_err(corrupt)?,
        converted,
        ts: from_ms(ts)?,
        value,
        flag: flag.parse().map_err(corrupt)?,
        protocol: protocol.parse().map_err(corrupt)?,
        device,
        received: from_ms(received)?,
        resend,
    })
}

pub(crate) fn dead_letter(
    at: i64,
    protocol: &str,
    peer: String,
    reason: String,
    detail: String,
    raw: Vec<u8>,
) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        at: from_ms(at)?,
        protocol: protocol
            .parse()
            .map_err(|e: crate::model::UnknownVariant| StoreError::Corrupt(e.to_string()))?,
        peer,
        reason,
        detail,
        raw,
    })
}

pub(crate) fn status_event(
    at: i64,
    enterprise: String,
    device: String,
    status: String,
    detail: String,
) -> Result<StatusEvent, StoreError> {
    Ok(StatusEvent {
        at: from_ms(at)?,
        enterprise,
        device,
        status,
        detail,
    })
}

/// The readings query for either backend; only the placeholder syntax differs, and
/// the query builder writes that. `tables` are the tables holding readings: the first
/// is authoritative, and a row in a later one is shown only if no earlier table holds
/// the same (series, time) — the first value received stands.
pub(crate) fn readings_query<'a, DB>(
    q: &'a ReadingQuery,
    tables: &[&str],
) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut b = sqlx::QueryBuilder::<DB>::new("");
    for (i, table) in tables.iter().enumerate() {
        if i > 0 {
            b.push(" UNION ALL ");
        }
        b.push(format!(
            "SELECT s.factor, s.unit, s.kind, s.stat, s.converted, r.ts, r.value, r.flag,
                    src.protocol, src.device, r.received, src.resend
             FROM {table} r
             JOIN series s ON s.id = r.series_id
             JOIN sources src ON src.id = r.source_id"
        ));
        push_filters(&mut b, q, "r");
        for earlier in &tables[..i] {
            b.push(format!(
                " AND NOT EXISTS (SELECT 1 FROM {earlier} e WHERE e.series_id = r.series_id AND e.ts = r.ts)"
            ));
        }
    }
    // Column positions: a compound SELECT orders by result columns.
    b.push(" ORDER BY 6, 1, 3, 4, 5");
    if let Some(l) = q.limit {
        b.push(" LIMIT ").push_bind(i64::from(l));
    }
    b
}

/// ` WHERE …` of a [`ReadingQuery`] over `series s` joined to a table aliased
/// `alias` whose time column is `ts` (readings, conflicts).
pub(crate) fn push_filters<'a, DB>(
    b: &mut sqlx::QueryBuilder<'a, DB>,
    q: &'a ReadingQuery,
    alias: &str,
) where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    b.push(" WHERE s.enterprise = ")
        .push_bind(q.enterprise.as_str());
    b.push(" AND s.location_kind = ")
        .push_bind(q.location_kind.as_str());
    b.push(" AND s.location = ").push_bind(q.location.as_str());
    if let Some(f) = &q.factor {
        b.push(" AND s.factor = ").push_bind(f.as_str());
    }
    if let Some(k) = q.kind {
        b.push(" AND s.kind = ").push_bind(k.as_str());
    }
    if let Some(s) = q.stat {
        b.push(" AND s.stat = ").push_bind(s.as_str());
    }
    if let Some(t) = q.from {
        b.push(format!(" AND {alias}.ts >= ")).push_bind(to_ms(t));
    }
    if let Some(t) = q.to {
        b.push(format!(" AND {alias}.ts < ")).push_bind(to_ms(t));
    }
}

/// `INSERT INTO series … ON CONFLICT DO NOTHING` for one key, either backend.
pub(crate) fn insert_series<'a, DB>(key: &'a SeriesKey, unit: &'a str) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut b = sqlx::QueryBuilder::<DB>::new(
        "INSERT INTO series (enterprise, location_kind, location, factor, kind, stat, converted, unit) ",
    );
    b.push_values([key], |mut row, k| {
        row.push_bind(&*k.enterprise)
            .push_bind(k.location.kind().as_str())
            .push_bind(k.location.id())
            .push_bind(&*k.factor)
            .push_bind(k.kind.as_str())
            .push_bind(k.stat.as_str())
            .push_bind(k.converted)
            .push_bind(unit);
    });
    b.push(" ON CONFLICT DO NOTHING");
    b
}

/// The id of one series, either backend.
pub(crate) fn select_series<'a, DB>(key: &'a SeriesKey) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut b = sqlx::QueryBuilder::<DB>::new("SELECT id FROM series WHERE enterprise = ");
    b.push_bind(&*key.enterprise);
    b.push(" AND location_kind = ")
        .push_bind(key.location.kind().as_str());
    b.push(" AND location = ").push_bind(key.location.id());
    b.push(" AND factor = ").push_bind(&*key.factor);
    b.push(" AND kind = ").push_bind(key.kind.as_str());
    b.push(" AND stat = ").push_bind(key.stat.as_str());
    b.push(" AND converted = ").push_bind(key.converted);
    b
}

pub(crate) fn insert_source<'a, DB>(src: &'a SourceRef) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut b = sqlx::QueryBuilder::<DB>::new("INSERT INTO sources (protocol, device, resend) ");
    b.push_values([src], |mut row, s| {
        row.push_bind(s.protocol.as_str())
            .push_bind(&*s.device)
            .push_bind(s.resend);
    });
    b.push(" ON CONFLICT DO NOTHING");
    b
}

pub(crate) fn select_source<'a, DB>(src: &'a SourceRef) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut b = sqlx::QueryBuilder::<DB>::new("SELECT id FROM sources WHERE protocol = ");
    b.push_bind(src.protocol.as_str());
    b.push(" AND device = ").push_bind(&*src.device);
    b.push(" AND resend = ").push_bind(src.resend);
    b
}
