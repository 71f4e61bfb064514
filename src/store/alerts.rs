//! Alert state, its hash-chained timeline and the notification outbox (invariant
//! 3): every change to an alert and the notifications it causes are written in one
//! transaction, and a notification is marked sent only after a channel took it.
//!
//! Each timeline row carries a keyed hash over its content, the previous row's
//! hash, the alert's own facts after the change and a digest of the readings a
//! finding was judged on (see [`chain`]), so editing, inserting or deleting a row
//! afterwards — or editing the alert or a reading behind it — breaks the chain;
//! `pollwatch alerts verify` recomputes it (see [`verify`]).

use chrono::{DateTime, Utc};

use super::{from_ms, to_ms, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Open,
    Acknowledged,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<AlertState> {
        match s {
            "open" => Some(AlertState::Open),
            "acknowledged" => Some(AlertState::Acknowledged),
            "resolved" => Some(AlertState::Resolved),
            _ => None,
        }
    }
}

/// What a finding contributes to its alert.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// enterprise|location|factor|rule: one live alert per key.
    pub key: String,
    pub enterprise: String,
    pub location: String,
    pub factor: String,
    pub rule: String,
    pub severity: String,
    /// Severity order, higher is worse: an update may only raise it.
    pub rank: u8,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: String,
    /// The numbers a message is built from (JSON), kept with the alert.
    pub facts: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub enterprise: String,
    pub location: String,
    pub factor: String,
    pub rule: String,
    pub severity: String,
    pub state: AlertState,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub count: i64,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    pub message: String,
    #[serde(skip)]
    pub facts: String,
    pub flapping: bool,
    pub acked_by: Option<String>,
    pub acked_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// When the current escalation cycle began: set when an acknowledgement
    /// timed out and the alert re-opened; `None` = `opened_at`.
    pub cycle_started_at: Option<DateTime<Utc>>,
    /// Times the alert re-opened after an acknowledgement timed out.
    pub reopens: i64,
}

impl AlertRow {
    /// Escalation runs from here.
    pub fn cycle_start(&self) -> DateTime<Utc> {
        self.cycle_started_at.unwrap_or(self.opened_at)
    }

    /// An escalation step's outbox key in the current cycle: `L1R0` in the
    /// first, `L1R0@2` after the second re-open.
    pub fn step_key(&self, step: &str) -> String {
        match self.reopens {
            0 => step.to_string(),
            n => format!("{step}@{n}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlertEvent {
    pub alert_id: i64,
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub actor: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
    /// 1: the plain SHA-256 chain of before; 2: see [`chain`].
    pub version: i64,
    /// The evidence key the row was chained under; `""` = none (not keyed).
    pub key_id: String,
    /// Whom the actor said they acted for (the API's `by`), as the client sent it.
    pub on_behalf_of: Option<String>,
    /// The alert's own facts right after this row (canonical JSON).
    pub facts: String,
    /// SHA-256 of `readings`; empty when the row records no finding.
    pub readings_digest: String,
    /// The readings the finding was judged on, as recorded with the row.
    pub readings: String,
}

/// Checks a timeline's chain without a key (rows chained under a key count as
/// broken here); `Err(seq)` names the first row that does not hold. See
/// [`Store::verify_alert`] for the full check.
pub fn verify_chain(events: &[AlertEvent]) -> Result<(), i64> {
    verify_chain_with(&crate::seal::Keyring::default(), events)
}

/// Checks a timeline's chain under `keys`; `Err(seq)` names the first row that
/// does not hold or whose key is missing.
pub fn verify_chain_with(keys: &crate::seal::Keyring, events: &[AlertEvent]) -> Result<(), i64> {
    let mut prev = String::new();
    for (i, e) in events.iter().enumerate() {
        match chain::check_row(keys, e, &prev, i as i64 + 1) {
            chain::RowCheck::Keyed | chain::RowCheck::Unkeyed => {}
            _ => return Err(e.seq),
        }
        prev = e.hash.clone();
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    pub state: Option<AlertState>,
    pub enterprise: Option<String>,
    pub severity: Option<String>,
    pub rule: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub alert_id: i64,
    pub step: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub channel: Option<String>,
}

/// One try at a channel, as evidence.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attempt {
    pub outbox_id: i64,
    pub at: DateTime<Utc>,
    pub channel: String,
    pub recipients: String,
    pub alert_ids: String,
    pub result: String,
    pub code: Option<String>,
    pub reason: Option<String>,
    pub provider_id: Option<String>,
}

/// What recording a finding did to its alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub alert_id: i64,
    pub opened: bool,
    pub flapping: bool,
    /// Absorbed by an inhibiting alert (recorded on its timeline).
    pub inhibited: bool,
}

/// The timeline columns read back, in [`event_row`]'s order.
const EVENT_COLUMNS: &str = "alert_id, seq, at, kind, actor, detail, prev_hash, hash, version, key_id, on_behalf_of, facts, readings_digest, readings";

fn event_row<R: sqlx::Row>(r: &R) -> Result<AlertEvent, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let g = |e: sqlx::Error| StoreError::Corrupt(format!("timeline row: {e}"));
    Ok(AlertEvent {
        alert_id: r.try_get("alert_id").map_err(g)?,
        seq: r.try_get("seq").map_err(g)?,
        at: from_ms(r.try_get("at").map_err(g)?)?,
        kind: r.try_get("kind").map_err(g)?,
        actor: r.try_get("actor").map_err(g)?,
        detail: r.try_get("detail").map_err(g)?,
        prev_hash: r.try_get("prev_hash").map_err(g)?,
        hash: r.try_get("hash").map_err(g)?,
        version: r.try_get("version").map_err(g)?,
        key_id: r.try_get("key_id").map_err(g)?,
        on_behalf_of: r.try_get("on_behalf_of").map_err(g)?,
        facts: r.try_get("facts").map_err(g)?,
        readings_digest: r.try_get("readings_digest").map_err(g)?,
        readings: r.try_get("readings").map_err(g)?,
    })
}

pub(crate) const ALERT_COLUMNS: &str = "id, enterprise, location, factor, rule, severity, state, opened_at, updated_at, count, value, threshold, message, facts, flapping, acked_by, acked_at, resolved_by, resolved_at, cycle_started_at, reopens";

pub(crate) fn alert_row<R: sqlx::Row>(r: &R) -> Result<AlertRow, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<f64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let g = |e: sqlx::Error| StoreError::Corrupt(format!("alert row: {e}"));
    let opt_ms = |v: Option<i64>| v.map(from_ms).transpose();
    let state: String = r.try_get("state").map_err(g)?;
    Ok(AlertRow {
        id: r.try_get("id").map_err(g)?,
        enterprise: r.try_get("enterprise").map_err(g)?,
        location: r.try_get("location").map_err(g)?,
        factor: r.try_get("factor").map_err(g)?,
        rule: r.try_get("rule").map_err(g)?,
        severity: r.try_get("severity").map_err(g)?,
        state: AlertState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("alert state {state:?}")))?,
        opened_at: from_ms(r.try_get("opened_at").map_err(g)?)?,
        updated_at: from_ms(r.try_get("updated_at").map_err(g)?)?,
        count: r.try_get("count").map_err(g)?,
        value: r.try_get("value").map_err(g)?,
        limit: r.try_get("threshold").map_err(g)?,
        message: r.try_get("message").map_err(g)?,
        facts: r.try_get("facts").map_err(g)?,
        flapping: r.try_get::<i64, _>("flapping").map_err(g)? != 0,
        acked_by: r.try_get("acked_by").map_err(g)?,
        acked_at: opt_ms(r.try_get("acked_at").map_err(g)?)?,
        resolved_by: r.try_get("resolved_by").map_err(g)?,
        resolved_at: opt_ms(r.try_get("resolved_at").map_err(g)?)?,
        cycle_started_at: opt_ms(r.try_get("cycle_started_at").map_err(g)?)?,
        reopens: r.try_get("reopens").map_err(g)?,
    })
}

/// The readings of a window (`chain::Window`) with when each was received, on
/// `$exec` (a pool or a transaction).
macro_rules! window_rows {
    ($exec:expr, $store:expr, $w:expr) => {{
        let w: &$crate::store::alerts::chain::Window = $w;
        let (lk, loc) = $crate::store::alerts::chain::split_location(&w.location);
        let sql = $crate::store::alerts::chain::window_sql($store.reading_tables());
        let rows: Vec<(String, i64, f64, String, i64)> = sqlx::query_as(&sql)
            .bind(w.enterprise.as_str())
            .bind(lk)
            .bind(loc)
            .bind(w.factor.as_str())
            .bind($crate::store::to_ms(w.from))
            .bind($crate::store::to_ms(w.to))
            .fetch_all($exec)
            .await
            .map_err(StoreError::db("read the finding's readings"))?;
        rows
    }};
}

/// Appends one timeline row inside `$tx`, continuing the chain under the
/// store's evidence key: reads the alert as it now stands (its facts are
/// chained) and, for a row that records a finding, the readings of `$window`.
macro_rules! append_event {
    ($tx:expr, $store:expr, $alert:expr, $at:expr, $kind:expr, $actor:expr, $obo:expr, $detail:expr, $window:expr) => {{
        let last: Option<(i64, String)> = sqlx::query_as(
            "SELECT seq, hash FROM alert_events WHERE alert_id = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind($alert)
        .fetch_optional(&mut *$tx)
        .await
        .map_err(StoreError::db("read alert timeline"))?;
        let (seq, prev) = match last {
            Some((s, h)) => (s + 1, h),
            None => (1, String::new()),
        };
        let row = sqlx::query(&format!(
            "SELECT {} FROM alerts WHERE id = $1",
            $crate::store::alerts::ALERT_COLUMNS
        ))
        .bind($alert)
        .fetch_one(&mut *$tx)
        .await
        .map_err(StoreError::db("read alert"))?;
        let facts = $crate::store::alerts::chain::alert_facts(
            &$crate::store::alerts::alert_row(&row)?,
        );
        let window: Option<&$crate::store::alerts::chain::Window> = $window;
        let (readings, digest) = match window {
            Some(w) => {
                let rows = window_rows!(&mut *$tx, $store, w);
                let rows: Vec<$crate::store::alerts::chain::WindowReading> =
                    rows.into_iter().map(|(s, t, v, f, _)| (s, t, v, f)).collect();
                $crate::store::alerts::chain::readings_manifest(w, &rows)
            }
            None => (String::new(), String::new()),
        };
        let at = to_ms($at);
        let (kind, actor, detail): (&str, &str, &str) = ($kind, $actor, $detail);
        let obo: Option<&str> = $obo;
        let keys = $store.keys();
        let key_id = keys.current_id();
        let hash = $crate::store::alerts::chain::hash_v2(
            keys,
            &$crate::store::alerts::chain::Fields {
                key_id,
                prev: &prev,
                alert: $alert,
                seq,
                at,
                kind,
                actor,
                on_behalf_of: obo,
                detail,
                facts: &facts,
                readings_digest: &digest,
            },
        )
        .ok_or_else(|| StoreError::Corrupt("the evidence key is not in its own ring".into()))?;
        sqlx::query("INSERT INTO alert_events (alert_id, seq, at, kind, actor, detail, prev_hash, hash, version, key_id, on_behalf_of, facts, readings_digest, readings) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")
            .bind($alert)
            .bind(seq)
            .bind(at)
            .bind(kind)
            .bind(actor)
            .bind(detail)
            .bind(prev)
            .bind(hash)
            .bind($crate::store::alerts::chain::CHAIN_VERSION)
            .bind(key_id)
            .bind(obo)
            .bind(facts)
            .bind(digest)
            .bind(readings)
            .execute(&mut *$tx)
            .await
            .map_err(StoreError::db("append alert timeline"))?;
    }};
}

/// Inserts outbox rows for `steps` not yet queued; returns how many were new.
macro_rules! queue_steps {
    ($tx:expr, $alert:expr, $steps:expr, $now:expr) => {{
        let mut queued = Vec::new();
        for step in $steps {
            let r = sqlx::query("INSERT INTO outbox (alert_id, step, state, created_at) VALUES ($1, $2, 'pending', $3) ON CONFLICT (alert_id, step) DO NOTHING")
                .bind($alert)
                .bind(step.as_str())
                .bind(to_ms($now))
                .execute(&mut *$tx)
                .await
                .map_err(StoreError::db("queue notification"))?;
            if r.rows_affected() > 0 {
                queued.push(step.clone());
            }
        }
        queued
    }};
}

impl Store {
    pub async fn alerts(&self, q: &AlertQuery) -> Result<Vec<AlertRow>, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new(format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE 1=1"
            ));
            if let Some(s) = q.state {
                b.push(" AND state = ").push_bind(s.as_str());
            }
            if let Some(e) = &q.enterprise {
                b.push(" AND enterprise = ").push_bind(e.clone());
            }
            if let Some(s) = &q.severity {
                b.push(" AND severity = ").push_bind(s.clone());
            }
            if let Some(r) = &q.rule {
                b.push(" AND rule = ").push_bind(r.clone());
            }
            b.push(" ORDER BY id DESC LIMIT ")
                .push_bind(i64::from(q.limit.max(1)));
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("list alerts"))?;
            rows.iter().map(alert_row).collect()
        })
    }

    pub async fn alert(&self, id: i64) -> Result<Option<AlertRow>, StoreError> {
        on_pool!(self, |pool, _Db| {
            let row = sqlx::query(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::db("read alert"))?;
            row.as_ref().map(alert_row).transpose()
        })
    }

    /// Live alerts not updated since `before`: candidates for resolving by themselves.
    pub async fn stale_alerts(&self, before: DateTime<Utc>) -> Result<Vec<i64>, StoreError> {
        on_pool!(self, |pool, _Db| {
            sqlx::query_scalar(
                "SELECT id FROM alerts WHERE state <> 'resolved' AND updated_at < $1 ORDER BY id",
            )
            .bind(to_ms(before))
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("find stale alerts"))
        })
    }

    pub async fn alert_events(&self, id: i64) -> Result<Vec<AlertEvent>, StoreError> {
        on_pool!(self, |pool, _Db| {
            let rows = sqlx::query(&format!(
                "SELECT {EVENT_COLUMNS} FROM alert_events WHERE alert_id = $1 ORDER BY seq"
            ))
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("read alert timeline"))?;
            rows.iter().map(event_row).collect()
        })
    }

    pub async fn alert_finding_ids(&self, id: i64) -> Result<Vec<i64>, StoreError> {
        on_pool!(self, |pool, _Db| {
            sqlx::query_scalar(
                "SELECT finding_id FROM alert_findings WHERE alert_id = $1 ORDER BY finding_id",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("read alert findings"))
        })
    }
}

mod board;
pub mod chain;
mod outbox;
mod record;
mod revise;
mod transition;
mod verify;
pub use board::{BoardMark, BoardPage, BoardQuery};
pub use record::{AlertPolicy, FindingOnAlert};
pub use revise::{FindingHistory, FindingRevision, Revised};
pub use verify::{anchor_leaves, AnchorRow, Verdict, VerifyReport};
