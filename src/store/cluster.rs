//! What cluster mode (issue 22, `crate::cluster`) keeps in PostgreSQL: node
//! heartbeats, leases with their fencing epoch, the fenced connection pool a
//! leader's engines write through, and the feed of committed readings in commit
//! order. PostgreSQL only: on SQLite every call is refused (config validation
//! already refuses `[cluster]` with SQLite).
//!
//! Every time here is the database's (`clock_timestamp()`), the one clock all
//! nodes agree on; a node's own clock only bounds how long it *believes* it
//! still holds a lease (see `crate::cluster::lease`).

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPoolOptions;
use sqlx::Row as _;

use super::findings::{reading_of, ReplayCols};
use super::postgres::PgStore;
use super::{from_ms, to_ms, Store, StoreError};
use crate::model::Reading;

/// A lease this node holds after a successful acquire or renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseHeld {
    pub epoch: i64,
    pub since: DateTime<Utc>,
}

/// One row of `cluster_leases`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseRow {
    pub name: String,
    pub holder: String,
    pub epoch: i64,
    pub since: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub renewals: i64,
}

/// One row of `cluster_nodes`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRow {
    pub node_id: String,
    pub started: DateTime<Utc>,
    pub heartbeat: DateTime<Utc>,
    pub http: String,
}

/// Where the feed of committed readings stands: every reading of a
/// transaction below `txid`, and those of `txid` itself up to `(series, ts)`,
/// were delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedCursor {
    pub txid: i64,
    pub series: i64,
    pub ts: i64,
}

impl FeedCursor {
    /// Before every reading of transaction `txid` and later ones.
    pub fn at(txid: i64) -> FeedCursor {
        FeedCursor {
            txid,
            series: i64::MIN,
            ts: i64::MIN,
        }
    }
}

fn pg(store: &Store) -> Result<&PgStore, StoreError> {
    match store {
        Store::Postgres(s) => Ok(s),
        Store::Sqlite(_) => Err(StoreError::Refused(
            "cluster mode needs the PostgreSQL store".into(),
        )),
    }
}

impl Store {
    /// A store whose connections carry this node's leader epoch: every write
    /// to a judged table through it is refused by the database once the lease
    /// at `epoch` is lost (`pollwatch_fence`, migration 0015). Connections open
    /// lazily; close it when the term ends.
    pub fn fenced(&self, node: &str, epoch: i64) -> Result<Store, StoreError> {
        let s = pg(self)?;
        let opts = (*s.pool.connect_options())
            .clone()
            .options([("pollwatch.fence_node", node.to_string())])
            .options([("pollwatch.fence_epoch", epoch.to_string())]);
        let pool = PgPoolOptions::new()
            .max_connections(s.pool.options().get_max_connections())
            .acquire_timeout(s.pool.options().get_acquire_timeout())
            .connect_lazy_with(opts);
        Ok(Store::Postgres(s.with_pool(pool)))
    }

    /// Takes the lease `name` if it is free or expired, or renews it if this
    /// node holds it at `held` (the epoch it believes it holds). A new holder —
    /// or this node coming back after its lease expired — gets the next epoch.
    /// `None`: another node holds it.
    pub async fn lease_acquire(
        &self,
        name: &str,
        node: &str,
        lease_ms: i64,
        held: Option<i64>,
    ) -> Result<Option<LeaseHeld>, StoreError> {
        let s = pg(self)?;
        let row = sqlx::query(
            "INSERT INTO cluster_leases AS l (name, holder, epoch, since, expires)
             VALUES ($1, $2, 1, clock_timestamp(), clock_timestamp() + $3 * interval '1 millisecond')
             ON CONFLICT (name) DO UPDATE SET
               epoch = CASE WHEN l.holder = $2 AND l.epoch = $4 AND l.expires > clock_timestamp()
                            THEN l.epoch ELSE l.epoch + 1 END,
               since = CASE WHEN l.holder = $2 AND l.epoch = $4 AND l.expires > clock_timestamp()
                            THEN l.since ELSE clock_timestamp() END,
               holder = $2,
               expires = clock_timestamp() + $3 * interval '1 millisecond',
               renewals = l.renewals + 1
             WHERE l.holder = $2 OR l.expires <= clock_timestamp()
             RETURNING epoch, (extract(epoch FROM since) * 1000)::bigint",
        )
        .bind(name)
        .bind(node)
        .bind(lease_ms as f64)
        .bind(held)
        .fetch_optional(&s.pool)
        .await
        .map_err(StoreError::db("acquire lease"))?;
        row.map(|r| {
            Ok(LeaseHeld {
                epoch: r.get(0),
                since: from_ms(r.get(1))?,
            })
        })
        .transpose()
    }

    /// Lets go of a lease this node holds at `epoch` (a clean shutdown, a line
    /// handed over): it expires now, and the next node takes it at once.
    pub async fn lease_release(
        &self,
        name: &str,
        node: &str,
        epoch: i64,
    ) -> Result<(), StoreError> {
        let s = pg(self)?;
        sqlx::query(
            "UPDATE cluster_leases SET expires = clock_timestamp()
             WHERE name = $1 AND holder = $2 AND epoch = $3",
        )
        .bind(name)
        .bind(node)
        .bind(epoch)
        .execute(&s.pool)
        .await
        .map_err(StoreError::db("release lease"))?;
        Ok(())
    }

    /// This node is alive; `http` is where its API listens (for the console).
    pub async fn node_heartbeat(
        &self,
        node: &str,
        http: &str,
        started: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let s = pg(self)?;
        sqlx::query(
            "INSERT INTO cluster_nodes (node_id, started, heartbeat, http)
             VALUES ($1, to_timestamp($2::bigint / 1000.0), clock_timestamp(), $3)
             ON CONFLICT (node_id) DO UPDATE
               SET heartbeat = clock_timestamp(), http = $3, started = EXCLUDED.started",
        )
        .bind(node)
        .bind(to_ms(started))
        .bind(http)
        .execute(&s.pool)
        .await
        .map_err(StoreError::db("node heartbeat"))?;
        Ok(())
    }

    /// Every node and lease, and the database's clock now (to judge them by).
    pub async fn cluster_view(
        &self,
    ) -> Result<(Vec<NodeRow>, Vec<LeaseRow>, DateTime<Utc>), StoreError> {
        let s = pg(self)?;
        let nodes = sqlx::query(
            "SELECT node_id, (extract(epoch FROM started) * 1000)::bigint,
                    (extract(epoch FROM heartbeat) * 1000)::bigint, http
             FROM cluster_nodes ORDER BY node_id",
        )
        .fetch_all(&s.pool)
        .await
        .map_err(StoreError::db("list nodes"))?
        .iter()
        .map(|r| {
            Ok(NodeRow {
                node_id: r.get(0),
                started: from_ms(r.get(1))?,
                heartbeat: from_ms(r.get(2))?,
                http: r.get(3),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let leases = sqlx::query(
            "SELECT name, holder, epoch, (extract(epoch FROM since) * 1000)::bigint,
                    (extract(epoch FROM expires) * 1000)::bigint, renewals
             FROM cluster_leases ORDER BY name",
        )
        .fetch_all(&s.pool)
        .await
        .map_err(StoreError::db("list leases"))?
        .iter()
        .map(|r| {
            Ok(LeaseRow {
                name: r.get(0),
                holder: r.get(1),
                epoch: r.get(2),
                since: from_ms(r.get(3))?,
                expires: from_ms(r.get(4))?,
                renewals: r.get(5),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let now: i64 =
            sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
                .fetch_one(&s.pool)
                .await
                .map_err(StoreError::db("database clock"))?;
        Ok((nodes, leases, from_ms(now)?))
    }

    /// The oldest transaction still running: every transaction below it has
    /// ended, so every reading it committed is visible (see `crate::cluster::feed`).
    pub async fn feed_horizon(&self) -> Result<i64, StoreError> {
        let s = pg(self)?;
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(&s.pool)
            .await
            .map_err(StoreError::db("feed horizon"))
    }

    /// Committed readings after `after`, in commit-transaction order, from
    /// transactions that have all ended (below the horizon of this very
    /// statement's snapshot), at most `limit`. Returns them with the cursor
    /// after the last one (`after` when none).
    pub async fn committed_readings(
        &self,
        after: FeedCursor,
        limit: u32,
    ) -> Result<(Vec<Reading>, FeedCursor), StoreError> {
        let s = pg(self)?;
        let rows = sqlx::query(
            "SELECT s.enterprise, s.location_kind, s.location, s.factor, s.unit, s.kind, s.stat,
                    s.converted, r.ts, r.value, r.flag, src.protocol, src.device, src.resend,
                    r.txid::text::bigint, r.series_id
             FROM readings r
             JOIN series s ON s.id = r.series_id
             JOIN sources src ON src.id = r.source_id
             WHERE r.txid IS NOT NULL
               AND (r.txid, r.series_id, r.ts) > ($1::text::xid8, $2, $3)
               AND r.txid < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY r.txid, r.series_id, r.ts
             LIMIT $4",
        )
        .bind(after.txid.to_string())
        .bind(after.series)
        .bind(after.ts)
        .bind(i64::from(limit))
        .fetch_all(&s.pool)
        .await
        .map_err(StoreError::db("feed committed readings"))?;
        let mut cursor = after;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let ent: String = r.get(0);
            out.push(reading_of(ReplayCols {
                enterprise: ent.as_str().into(),
                location_kind: r.get(1),
                location: r.get(2),
                factor: r.get(3),
                unit: r.get(4),
                kind: r.get(5),
                stat: r.get(6),
                converted: r.get(7),
                ts: r.get(8),
                value: r.get(9),
                flag: r.get(10),
                protocol: r.get(11),
                device: r.get(12),
                resend: r.get(13),
            })?);
            cursor = FeedCursor {
                txid: r.get(14),
                series: r.get(15),
                ts: r.get(8),
            };
        }
        Ok((out, cursor))
    }

    /// Saves how far the rules engine has taken the feed (fenced: only the
    /// leader in office can).
    pub async fn feed_save(&self, c: FeedCursor) -> Result<(), StoreError> {
        let s = pg(self)?;
        sqlx::query(
            "INSERT INTO cluster_feed (name, txid, series, ts) VALUES ('rules', $1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET txid = $1, series = $2, ts = $3",
        )
        .bind(c.txid)
        .bind(c.series)
        .bind(c.ts)
        .execute(&s.pool)
        .await
        .map_err(StoreError::db("save feed cursor"))?;
        Ok(())
    }

    /// The cursor the last leader saved, if any.
    pub async fn feed_load(&self) -> Result<Option<FeedCursor>, StoreError> {
        let s = pg(self)?;
        let row = sqlx::query("SELECT txid, series, ts FROM cluster_feed WHERE name = 'rules'")
            .fetch_optional(&s.pool)
            .await
            .map_err(StoreError::db("load feed cursor"))?;
        Ok(row.map(|r| FeedCursor {
            txid: r.get(0),
            series: r.get(1),
            ts: r.get(2),
        }))
    }

    /// Nodes whose last heartbeat is younger than `within_ms`.
    pub async fn live_nodes(&self, within_ms: i64) -> Result<i64, StoreError> {
        let s = pg(self)?;
        sqlx::query_scalar(
            "SELECT count(*) FROM cluster_nodes
             WHERE heartbeat > clock_timestamp() - $1 * interval '1 millisecond'",
        )
        .bind(within_ms as f64)
        .fetch_one(&s.pool)
        .await
        .map_err(StoreError::db("count live nodes"))
    }

    /// The first transaction that committed a reading received at or after
    /// `since` (a scan of the readings received since: run once, when a
    /// cluster's first leader has no saved cursor).
    pub async fn first_txid_since(&self, since: DateTime<Utc>) -> Result<Option<i64>, StoreError> {
        let s = pg(self)?;
        sqlx::query_scalar(
            "SELECT min(txid)::text::bigint FROM readings WHERE txid IS NOT NULL AND received >= $1",
        )
        .bind(to_ms(since))
        .fetch_one(&s.pool)
        .await
        .map_err(StoreError::db("first feed transaction"))
    }
}
