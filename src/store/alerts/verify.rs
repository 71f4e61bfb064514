//! `pollwatch alerts verify`: an alert's record checked against itself and the
//! store — the keyed chain row by row, the alert's own facts against the last
//! row's, each finding against the evidence its row recorded, and the readings
//! each finding was judged on against the digest recorded with it — naming
//! what changed. The anchors outside the database are checked on top of this
//! by `evidence::anchor`.

use chrono::{DateTime, Utc};

use super::chain::{self, RowCheck, WindowReading};
use super::AlertEvent;
use crate::store::{to_ms, Store, StoreError};

/// The outcome, overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every row keyed and every check held.
    Intact,
    /// Every check held, but some rows are not keyed (or their key is not
    /// configured here): whoever can write the database could have rewritten them.
    NotKeyed,
    /// Something changed: see the problems.
    Altered,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub alert_id: i64,
    pub rows: usize,
    pub keyed_rows: usize,
    pub unkeyed_rows: Vec<i64>,
    /// Rows chained under a key not configured here, with that key's id.
    pub unknown_key_rows: Vec<(i64, String)>,
    pub key_ids: Vec<String>,
    /// What changed, one line each, naming the row, field or reading.
    pub problems: Vec<String>,
    /// Readings that arrived after the row that recorded their window (late
    /// data, expected; not a problem).
    pub notes: Vec<String>,
    pub last_hash: String,
    pub verdict: Verdict,
}

impl VerifyReport {
    pub fn push(&mut self, problem: String) {
        self.problems.push(problem);
        self.verdict = Verdict::Altered;
    }
}

/// A finding row as first stored.
type FindingRow = (Option<f64>, Option<f64>, String, String);

fn same_num(a: Option<f64>, b: Option<&serde_json::Value>) -> bool {
    match (a, b.and_then(|v| v.as_f64())) {
        (Some(a), Some(b)) => a.to_bits() == b.to_bits(),
        (None, None) => true,
        _ => false,
    }
}

/// Compares a finding row with what a timeline row recorded of it.
fn finding_changes(id: i64, seq: i64, row: &FindingRow, rec: &serde_json::Value) -> Vec<String> {
    let (value, threshold, message, evidence) = row;
    let mut out = Vec::new();
    if !same_num(*value, rec.get("value")) {
        out.push(format!(
            "finding #{id} field value: recorded {} in row {seq}, now {value:?}",
            rec.get("value").cloned().unwrap_or_default()
        ));
    }
    if !same_num(*threshold, rec.get("threshold")) {
        out.push(format!(
            "finding #{id} field threshold: recorded {} in row {seq}, now {threshold:?}",
            rec.get("threshold").cloned().unwrap_or_default()
        ));
    }
    if rec.get("message").and_then(|m| m.as_str()) != Some(message.as_str()) {
        out.push(format!(
            "finding #{id} field message changed since row {seq}"
        ));
    }
    let ev: Option<serde_json::Value> = serde_json::from_str(evidence).ok();
    if rec.get("evidence") != ev.as_ref() {
        out.push(format!(
            "finding #{id} field evidence changed since row {seq}"
        ));
    }
    out
}

impl Store {
    /// Checks alert `id`'s record; `None` if there is no such alert.
    pub async fn verify_alert(&self, id: i64) -> Result<Option<VerifyReport>, StoreError> {
        let Some(alert) = self.alert(id).await? else {
            return Ok(None);
        };
        let events = self.alert_events(id).await?;
        let keys = self.keys();
        let mut r = VerifyReport {
            alert_id: id,
            rows: events.len(),
            keyed_rows: 0,
            unkeyed_rows: Vec::new(),
            unknown_key_rows: Vec::new(),
            key_ids: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
            last_hash: events.last().map(|e| e.hash.clone()).unwrap_or_default(),
            verdict: Verdict::Intact,
        };
        if events.is_empty() {
            r.push(format!(
                "alert #{id} has no timeline (its rows were deleted)"
            ));
        }
        let mut prev = String::new();
        let mut keyed_before: Option<i64> = None;
        for (i, e) in events.iter().enumerate() {
            if !e.key_id.is_empty() && !r.key_ids.contains(&e.key_id) {
                r.key_ids.push(e.key_id.clone());
            }
            match chain::check_row(keys, e, &prev, i as i64 + 1) {
                RowCheck::Keyed => {
                    r.keyed_rows += 1;
                    keyed_before.get_or_insert(e.seq);
                }
                // The daemon never goes back from keyed to unkeyed rows: one
                // that does was rewritten by someone without the key.
                RowCheck::Unkeyed if keyed_before.is_some() => r.push(format!(
                    "row {} ({}, actor {}): chained WITHOUT a key after row {} was keyed: rewritten by someone without the key",
                    e.seq,
                    e.kind,
                    e.actor,
                    keyed_before.unwrap_or_default()
                )),
                RowCheck::Unkeyed => r.unkeyed_rows.push(e.seq),
                RowCheck::UnknownKey(k) => {
                    keyed_before.get_or_insert(e.seq);
                    r.unknown_key_rows.push((e.seq, k))
                }
                RowCheck::Broken(why) => {
                    r.push(format!("row {} ({}, actor {}): {why}", e.seq, e.kind, e.actor))
                }
            }
            prev = e.hash.clone();
        }
        // The alert's own facts: the last row that recorded them must match the
        // alert as it stands.
        if let Some(last) = events.iter().rev().find(|e| e.version >= 2) {
            let now = chain::alert_facts(&alert);
            if last.facts != now {
                for f in chain::differing_fields(&last.facts, &now) {
                    r.push(format!(
                        "alert #{id} changed after row {} without a timeline row: {f}",
                        last.seq
                    ));
                }
            }
        }
        self.verify_findings(&events, &mut r).await?;
        self.verify_readings(&events, &mut r).await?;
        if r.verdict == Verdict::Intact
            && (!r.unkeyed_rows.is_empty() || !r.unknown_key_rows.is_empty())
        {
            r.verdict = Verdict::NotKeyed;
        }
        Ok(Some(r))
    }

    async fn verify_findings(
        &self,
        events: &[AlertEvent],
        r: &mut VerifyReport,
    ) -> Result<(), StoreError> {
        for e in events.iter().filter(|e| e.version >= 2) {
            let Ok(rec) = serde_json::from_str::<serde_json::Value>(&e.detail) else {
                continue;
            };
            let Some(fid) = rec.get("finding_id").and_then(|v| v.as_i64()) else {
                continue;
            };
            if !matches!(e.kind.as_str(), "opened" | "finding" | "inhibited") {
                continue;
            }
            let row: Option<FindingRow> = on_pool!(self, |pool, _Db| {
                sqlx::query_as(
                    "SELECT value, threshold, message, evidence FROM findings WHERE id = $1",
                )
                .bind(fid)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::db("read finding"))?
            });
            match row {
                None => r.push(format!(
                    "finding #{fid} recorded in row {} is DELETED from findings",
                    e.seq
                )),
                Some(row) => {
                    for p in finding_changes(fid, e.seq, &row, &rec) {
                        r.push(p);
                    }
                }
            }
        }
        Ok(())
    }

    async fn verify_readings(
        &self,
        events: &[AlertEvent],
        r: &mut VerifyReport,
    ) -> Result<(), StoreError> {
        let retained: Option<i64> = on_pool!(self, |pool, _Db| {
            sqlx::query_scalar("SELECT max(before_ms) FROM retention_log WHERE kind = 'done'")
                .fetch_one(pool)
                .await
                .map_err(StoreError::db("read retention log"))?
        });
        for e in events.iter().filter(|e| !e.readings.is_empty()) {
            let Some((w, then)) = chain::manifest_readings(&e.readings) else {
                r.push(format!(
                    "row {}: its recorded readings cannot be read",
                    e.seq
                ));
                continue;
            };
            let now = self.window_readings(&w).await?;
            let (problems, late) = chain::diff_readings(&then, &now, to_ms(e.at), retained);
            for p in problems {
                r.push(format!(
                    "row {} ({}), readings of {} {} {}: {p}",
                    e.seq, e.kind, w.enterprise, w.location, w.factor
                ));
            }
            for l in late {
                r.notes.push(format!("row {}: {l}", e.seq));
            }
        }
        Ok(())
    }

    /// The readings of a window as stored now, with when each was received.
    pub async fn window_readings(
        &self,
        w: &chain::Window,
    ) -> Result<Vec<(WindowReading, i64)>, StoreError> {
        let rows = on_pool!(self, |pool, _Db| window_rows!(pool, self, w));
        Ok(rows
            .into_iter()
            .map(|(s, t, v, f, rx)| ((s, t, v, f), rx))
            .collect())
    }

    /// The leaves of the anchor of `[from, to)`: every timeline row written in
    /// it (its public digest, see [`chain::row_digest`]), every readings digest
    /// written in it, and each alert's chain head (its last row in it).
    pub async fn anchor_rows(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<AnchorRow>, StoreError> {
        let events: Vec<AlertEvent> = on_pool!(self, |pool, _Db| {
            let rows = sqlx::query(&format!(
                "SELECT {} FROM alert_events WHERE at >= $1 AND at < $2 ORDER BY alert_id, seq",
                super::EVENT_COLUMNS
            ))
            .bind(to_ms(from))
            .bind(to_ms(to))
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("read the day's timeline rows"))?;
            rows.iter()
                .map(super::event_row)
                .collect::<Result<_, _>>()?
        });
        Ok(anchor_leaves(&events))
    }
}

/// The anchor leaves of some rows (sorted by alert and seq).
pub fn anchor_leaves(events: &[AlertEvent]) -> Vec<AnchorRow> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let leaf = |kind: &str, value: String| AnchorRow {
            kind: kind.into(),
            alert: e.alert_id,
            seq: e.seq,
            value,
        };
        out.push(leaf("row", chain::row_digest(e)));
        if !e.readings_digest.is_empty() {
            out.push(leaf("readings", e.readings_digest.clone()));
        }
        if events.get(i + 1).is_none_or(|n| n.alert_id != e.alert_id) {
            out.push(leaf("head", e.hash.clone()));
        }
    }
    out
}

/// One leaf of a day's anchor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnchorRow {
    /// `row` (`value`: the row's public digest), `readings` (its readings
    /// digest) or `head` (the alert's last row that day: its chain hash).
    pub kind: String,
    pub alert: i64,
    pub seq: i64,
    pub value: String,
}

impl AnchorRow {
    /// The leaf string the Merkle tree hashes: `kind|alert|seq|value`.
    pub fn leaf(&self) -> String {
        format!("{}|{}|{}|{}", self.kind, self.alert, self.seq, self.value)
    }
}
