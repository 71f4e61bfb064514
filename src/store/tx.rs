//! The one way into a write transaction, on both backends.
//!
//! Why not sqlx's `Pool::begin`: sqlx counts a connection's transaction depth
//! itself and trusts that count over the database. SQLite rolls a whole transaction
//! back by itself when a statement or the COMMIT fails with `SQLITE_FULL` (also
//! `SQLITE_IOERR`, `SQLITE_NOMEM`); sqlx's rollback then fails with "no
//! transaction is active", its count stays at 1, and the connection goes back to
//! the pool looking healthy. The next `begin` on it becomes `SAVEPOINT`, a
//! `ROLLBACK TO` after a failure leaves a real transaction open, and a later
//! "commit" only `RELEASE`s a savepoint inside it: the writer answered 9014 for
//! readings that were never committed, and `BEGIN IMMEDIATE` failed for good with
//! "attempted to call begin_with at non-zero transaction depth" (issue 16).
//!
//! So a [`WriteTx`] issues `BEGIN`/`COMMIT`/`ROLLBACK` itself (sqlx's count stays
//! at 0) and trusts nothing after an error: if anything inside the transaction
//! fails, if COMMIT or ROLLBACK fails, or if the transaction is dropped unfinished
//! (an error returned with `?`, a timed-out future), the connection is closed
//! instead of going back to the pool. Closing rolls back whatever the database
//! still holds (SQLite on `sqlite3_close`, PostgreSQL when the session ends), and
//! the pool opens a fresh connection for the next caller. A connection therefore
//! returns to the pool only after a COMMIT or ROLLBACK that the database
//! confirmed, and an acknowledgement can only follow a real COMMIT.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::{Database, Executor, Pool};

use super::StoreError;

/// How a write transaction begins. On SQLite it takes the write lock at once
/// (`IMMEDIATE`), so a busy database is waited for (busy_timeout) instead of
/// failing with SQLITE_BUSY when a read inside the transaction later upgrades to
/// a write while the writer is committing.
pub(crate) trait WriteBegin {
    const BEGIN: &'static str;
}

impl WriteBegin for sqlx::Sqlite {
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
}

impl WriteBegin for sqlx::Postgres {
    const BEGIN: &'static str = "BEGIN";
}

/// A write transaction on a pooled connection; see the module docs.
pub(crate) struct WriteTx<DB: Database> {
    conn: PoolConnection<DB>,
    /// COMMIT or ROLLBACK succeeded: the connection may go back to the pool.
    clean: bool,
}

impl<DB> WriteTx<DB>
where
    DB: Database + WriteBegin,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// Takes a connection and begins (`BEGIN IMMEDIATE` on SQLite).
    pub(crate) async fn begin(pool: &Pool<DB>) -> Result<Self, StoreError> {
        let conn = pool.acquire().await.map_err(StoreError::db("begin"))?;
        let mut tx = WriteTx { conn, clean: false };
        // On failure `tx` drops unclean: a connection whose BEGIN failed is closed.
        (&mut *tx.conn)
            .execute(DB::BEGIN)
            .await
            .map_err(StoreError::db("begin"))?;
        Ok(tx)
    }

    /// Commits. On failure the connection is rolled back and closed, and the error
    /// says what `op` was committing.
    pub(crate) async fn commit(self, op: &'static str) -> Result<(), StoreError> {
        self.finish("COMMIT", op).await
    }

    /// Rolls back (a transaction that found nothing to do). On failure the
    /// connection is closed.
    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        self.finish("ROLLBACK", "rollback").await
    }

    async fn finish(mut self, sql: &'static str, op: &'static str) -> Result<(), StoreError> {
        match (&mut *self.conn).execute(sql).await {
            Ok(_) => {
                self.clean = true;
                Ok(())
            }
            Err(source) => {
                self.discard().await;
                Err(StoreError::Db { op, source })
            }
        }
    }

    /// Best-effort ROLLBACK (it fails when the database already rolled back), then
    /// the drop closes the connection.
    async fn discard(&mut self) {
        if let Err(e) = (&mut *self.conn).execute("ROLLBACK").await {
            tracing::debug!(error = %e, "rollback after a failed commit (expected when the database rolled back itself)");
        }
    }
}

impl<DB: Database> Drop for WriteTx<DB> {
    fn drop(&mut self) {
        if !self.clean {
            tracing::debug!("write transaction ended without a confirmed COMMIT or ROLLBACK; closing its connection");
            self.conn.close_on_drop();
        }
    }
}

impl<DB: Database> Deref for WriteTx<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<DB: Database> DerefMut for WriteTx<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}
