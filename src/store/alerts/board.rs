//! The alert board's query: live alerts and those resolved recently, most severe
//! then newest first, one page at a time with the counts per state, so a page
//! stays small however many alerts are open (the console shows 1,000 open alerts
//! as counts plus a page, not as 1,000 rows).
//!
//! Severity order is [`crate::alerts::rank`] turned into a SQL `CASE`, so the board
//! and the engine cannot disagree on what is worse.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::{alert_row, AlertRow, ALERT_COLUMNS};
use crate::store::{to_ms, Store, StoreError};

/// What the board shows. `enterprises` (the enterprises of a district) and
/// `enterprise` narrow together; `None` means no narrowing.
#[derive(Debug, Clone, Default)]
pub struct BoardQuery {
    pub enterprises: Option<Vec<String>>,
    pub enterprise: Option<String>,
    pub severity: Option<String>,
    pub rule: Option<String>,
    /// Resolved alerts are shown when resolved at or after this.
    pub resolved_since: DateTime<Utc>,
    pub offset: u32,
    pub limit: u32,
}

/// One page of the board and how many alerts match in all.
#[derive(Debug, Clone, Default)]
pub struct BoardPage {
    pub rows: Vec<AlertRow>,
    pub open: u64,
    pub acknowledged: u64,
    pub resolved: u64,
}

impl BoardPage {
    pub fn total(&self) -> u64 {
        self.open + self.acknowledged + self.resolved
    }
}

/// Changes whenever an alert is opened, updated, acknowledged or resolved: every
/// one of those writes `updated_at`, and opening adds a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct BoardMark {
    pub alerts: i64,
    pub last_id: i64,
    pub last_update_ms: i64,
}

fn severity_case() -> String {
    let mut s = String::from("CASE severity");
    for sev in ["critical", "major", "minor", "warning"] {
        s.push_str(&format!(" WHEN '{sev}' THEN {}", crate::alerts::rank(sev)));
    }
    s.push_str(" ELSE 0 END");
    s
}

/// Appends the board's `WHERE` conditions (shared by the page and its counts).
macro_rules! push_filters {
    ($b:expr, $q:expr) => {{
        let q: &BoardQuery = $q;
        $b.push(" WHERE (state <> 'resolved' OR resolved_at >= ")
            .push_bind(to_ms(q.resolved_since))
            .push(")");
        if let Some(list) = &q.enterprises {
            if list.is_empty() {
                $b.push(" AND 1 = 0");
            } else {
                $b.push(" AND enterprise IN (");
                let mut sep = $b.separated(", ");
                for e in list {
                    sep.push_bind(e.clone());
                }
                $b.push(")");
            }
        }
        if let Some(e) = &q.enterprise {
            $b.push(" AND enterprise = ").push_bind(e.clone());
        }
        if let Some(s) = &q.severity {
            $b.push(" AND severity = ").push_bind(s.clone());
        }
        if let Some(r) = &q.rule {
            $b.push(" AND rule = ").push_bind(r.clone());
        }
    }};
}

impl Store {
    /// One page of the board: live alerts before resolved ones, then most severe,
    /// then newest.
    pub async fn board(&self, q: &BoardQuery) -> Result<BoardPage, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut b =
                sqlx::QueryBuilder::<Db>::new(format!("SELECT {ALERT_COLUMNS} FROM alerts"));
            push_filters!(b, q);
            b.push(format!(
                " ORDER BY CASE state WHEN 'resolved' THEN 1 ELSE 0 END, {} DESC, opened_at DESC, id DESC LIMIT ",
                severity_case()
            ))
            .push_bind(i64::from(q.limit.max(1)))
            .push(" OFFSET ")
            .push_bind(i64::from(q.offset));
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("read alert board"))?;
            let mut page = BoardPage {
                rows: rows.iter().map(alert_row).collect::<Result<_, _>>()?,
                ..Default::default()
            };
            let mut c = sqlx::QueryBuilder::<Db>::new("SELECT state, count(*) AS n FROM alerts");
            push_filters!(c, q);
            c.push(" GROUP BY state");
            let counts = c
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("count alert board"))?;
            for r in &counts {
                let state: String = r.try_get("state").map_err(StoreError::db("board count"))?;
                let n: i64 = r.try_get("n").map_err(StoreError::db("board count"))?;
                let n = u64::try_from(n).unwrap_or(0);
                match state.as_str() {
                    "open" => page.open = n,
                    "acknowledged" => page.acknowledged = n,
                    "resolved" => page.resolved = n,
                    other => return Err(StoreError::Corrupt(format!("alert state {other:?}"))),
                }
            }
            Ok(page)
        })
    }

    /// The board's change mark (see [`BoardMark`]); one cheap aggregate query.
    pub async fn board_mark(&self) -> Result<BoardMark, StoreError> {
        on_pool!(self, |pool, _Db| {
            let (alerts, last_id, last_update_ms): (i64, Option<i64>, Option<i64>) =
                sqlx::query_as("SELECT count(*), max(id), max(updated_at) FROM alerts")
                    .fetch_one(pool)
                    .await
                    .map_err(StoreError::db("read alert board mark"))?;
            Ok(BoardMark {
                alerts,
                last_id: last_id.unwrap_or(0),
                last_update_ms: last_update_ms.unwrap_or(0),
            })
        })
    }

    /// Open and acknowledged alerts per (enterprise, location), counted by the
    /// database (the status pages ask on every request).
    pub async fn open_alert_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        on_pool!(self, |pool, _Db| {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT enterprise, location, count(*) FROM alerts WHERE state IN ('open', 'acknowledged') GROUP BY enterprise, location",
            )
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("count open alerts"))?;
            Ok(rows
                .into_iter()
                .map(|(e, l, n)| (e, l, u64::try_from(n).unwrap_or(0)))
                .collect())
        })
    }

    /// Distinct rules with alerts, for the board's filter.
    pub async fn alert_rules(&self) -> Result<Vec<String>, StoreError> {
        on_pool!(self, |pool, _Db| {
            sqlx::query_scalar("SELECT DISTINCT rule FROM alerts ORDER BY rule")
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("read alert rules"))
        })
    }
}
