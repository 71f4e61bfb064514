//! Console sessions ([`crate::console::session`]): one row per login, read on
//! every console request, so any node of a cluster — and the daemon after a
//! restart — knows the session. Rows hold hashes, never the cookie's value.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_ms, to_ms, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 of the session id, hex.
    pub key: String,
    pub name: String,
    /// SHA-256 of the id and the token's fingerprint, hex.
    pub seal: String,
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Stores a new session and drops the expired ones.
    pub async fn put_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        on_pool!(self, |pool, _Db| {
            sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
                .bind(to_ms(s.created_at))
                .execute(pool)
                .await
                .map_err(StoreError::db("sweep console sessions"))?;
            sqlx::query("INSERT INTO console_sessions (key, name, seal, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&s.key)
                .bind(&s.name)
                .bind(&s.seal)
                .bind(&s.csrf)
                .bind(to_ms(s.created_at))
                .bind(to_ms(s.expires_at))
                .execute(pool)
                .await
                .map_err(StoreError::db("store console session"))?;
            Ok(())
        })
    }

    pub async fn session(&self, key: &str) -> Result<Option<SessionRow>, StoreError> {
        on_pool!(self, |pool, _Db| {
            let row = sqlx::query("SELECT key, name, seal, csrf, created_at, expires_at FROM console_sessions WHERE key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::db("read console session"))?;
            row.map(|r| {
                Ok(SessionRow {
                    key: r.get(0),
                    name: r.get(1),
                    seal: r.get(2),
                    csrf: r.get(3),
                    created_at: from_ms(r.get(4))?,
                    expires_at: from_ms(r.get(5))?,
                })
            })
            .transpose()
        })
    }

    /// Logout, expiry or a removed token.
    pub async fn delete_session(&self, key: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool, _Db| {
            sqlx::query("DELETE FROM console_sessions WHERE key = $1")
                .bind(key)
                .execute(pool)
                .await
                .map_err(StoreError::db("delete console session"))?;
            Ok(())
        })
    }
}
