//! The alert timeline's chain (issue 18).
//!
//! Version 2 rows carry `hash = HMAC-SHA256(key, "v2" | key_id | prev_hash |
//! alert | seq | at | kind | actor | on_behalf_of | detail | facts |
//! readings_digest)` with the fields separated by 0x1f, where
//!
//! - `facts` is the alert's own record right after the change (enterprise,
//!   location, factor, rule, severity, state, value, limit, message, window
//!   facts, who acknowledged or resolved it and when), as canonical JSON;
//! - `readings_digest` is SHA-256 of `readings`, the list of the readings the
//!   finding was judged on (every series of the finding's factor at its
//!   location, inside its window), for rows that record a finding.
//!
//! `key_id` `""` means no key was configured: the same fields under plain
//! SHA-256, which anyone who can write the database can recompute, so verify
//! reports such rows as "not keyed". Version 1 rows are the plain chain written
//! before this existed.

use chrono::{DateTime, Utc};

use super::{AlertEvent, AlertRow};
use crate::seal::{sha256_hex, Keyring};
use crate::store::to_ms;

/// The version new rows are written with.
pub const CHAIN_VERSION: i64 = 2;

/// The readings a finding was judged on.
#[derive(Debug, Clone)]
pub struct Window {
    pub enterprise: String,
    pub location: String,
    pub factor: String,
    pub from: DateTime<Utc>,
    /// Inclusive.
    pub to: DateTime<Utc>,
}

/// One reading of a window: series label (`factor:kind:stat:converted`), time
/// (ms), value, flag.
pub type WindowReading = (String, i64, f64, String);

/// The stored list of a window's readings, and its digest.
pub fn readings_manifest(w: &Window, rows: &[WindowReading]) -> (String, String) {
    let m = serde_json::json!({
        "enterprise": w.enterprise,
        "location": w.location,
        "factor": w.factor,
        "from": to_ms(w.from),
        "to": to_ms(w.to),
        "readings": rows,
    })
    .to_string();
    let d = sha256_hex(m.as_bytes());
    (m, d)
}

/// The SQL reading a window on the store's reading tables (`$1` enterprise,
/// `$2` location kind, `$3` location, `$4` factor, `$5` from, `$6` to).
pub fn window_sql(tables: &[&str]) -> String {
    let mut sql = String::new();
    for (i, table) in tables.iter().enumerate() {
        if i > 0 {
            sql.push_str(" UNION ALL ");
        }
        sql.push_str(&format!(
            "SELECT s.factor || ':' || s.kind || ':' || s.stat || ':' || (CASE WHEN s.converted THEN '1' ELSE '0' END) AS label, r.ts, r.value, r.flag, r.received \
             FROM {table} r JOIN series s ON s.id = r.series_id \
             WHERE s.enterprise = $1 AND s.location_kind = $2 AND s.location = $3 AND s.factor = $4 AND r.ts >= $5 AND r.ts <= $6"
        ));
        for earlier in &tables[..i] {
            sql.push_str(&format!(
                " AND NOT EXISTS (SELECT 1 FROM {earlier} e WHERE e.series_id = r.series_id AND e.ts = r.ts)"
            ));
        }
    }
    sql.push_str(" ORDER BY 1, 2");
    sql
}

/// `outlet:DA001` → (`outlet`, `DA001`).
pub fn split_location(loc: &str) -> (&str, &str) {
    loc.split_once(':').unwrap_or(("", loc))
}

/// The alert's own record as the chain covers it.
pub fn alert_facts(a: &AlertRow) -> String {
    serde_json::json!({
        "enterprise": a.enterprise,
        "location": a.location,
        "factor": a.factor,
        "rule": a.rule,
        "severity": a.severity,
        "state": a.state.as_str(),
        "opened_at": to_ms(a.opened_at),
        "count": a.count,
        "value": a.value,
        "limit": a.limit,
        "message": a.message,
        "facts": a.facts,
        "flapping": a.flapping,
        "acked_by": a.acked_by,
        "acked_at": a.acked_at.map(to_ms),
        "resolved_by": a.resolved_by,
        "resolved_at": a.resolved_at.map(to_ms),
        "cycle_started_at": a.cycle_started_at.map(to_ms),
        "reopens": a.reopens,
    })
    .to_string()
}

/// What a version 2 row's hash covers.
pub struct Fields<'a> {
    pub key_id: &'a str,
    pub prev: &'a str,
    pub alert: i64,
    pub seq: i64,
    pub at: i64,
    pub kind: &'a str,
    pub actor: &'a str,
    pub on_behalf_of: Option<&'a str>,
    pub detail: &'a str,
    pub facts: &'a str,
    pub readings_digest: &'a str,
}

/// The row's hash, or `None` when its key is not in the ring.
pub fn hash_v2(keys: &Keyring, f: &Fields<'_>) -> Option<String> {
    let alert = f.alert.to_string();
    let seq = f.seq.to_string();
    let at = f.at.to_string();
    // "\u{0}" for no on_behalf_of keeps "none" and "" apart.
    let obo = f.on_behalf_of.unwrap_or("\u{0}");
    keys.mac(
        f.key_id,
        &[
            b"v2",
            f.key_id.as_bytes(),
            f.prev.as_bytes(),
            alert.as_bytes(),
            seq.as_bytes(),
            at.as_bytes(),
            f.kind.as_bytes(),
            f.actor.as_bytes(),
            obo.as_bytes(),
            f.detail.as_bytes(),
            f.facts.as_bytes(),
            f.readings_digest.as_bytes(),
        ],
    )
}

/// The plain SHA-256 chain of version 1 rows.
pub fn hash_v1(e: &AlertEvent) -> String {
    let parts = [
        e.prev_hash.clone(),
        e.alert_id.to_string(),
        e.seq.to_string(),
        to_ms(e.at).to_string(),
        e.kind.clone(),
        e.actor.clone(),
        e.detail.clone(),
    ];
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    Keyring::default().mac("", &refs).unwrap_or_default()
}

/// How one row's hash stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowCheck {
    /// Keyed and matching.
    Keyed,
    /// Matching, but under no key (version 1, or no key configured).
    Unkeyed,
    /// Chained under a key that is not configured here.
    UnknownKey(String),
    /// Does not follow from its content and the rows before it.
    Broken(String),
}

/// Checks one row against the previous row's hash.
pub fn check_row(keys: &Keyring, e: &AlertEvent, prev: &str, expect_seq: i64) -> RowCheck {
    if e.seq != expect_seq {
        return RowCheck::Broken(format!(
            "sequence number {} where {expect_seq} was expected (a row was deleted or inserted)",
            e.seq
        ));
    }
    if e.prev_hash != prev {
        return RowCheck::Broken(
            "its prev_hash is not the previous row's hash (a row before it was changed, deleted or inserted)".into(),
        );
    }
    if e.version == 1 {
        return if e.hash == hash_v1(e) {
            RowCheck::Unkeyed
        } else {
            RowCheck::Broken("its hash does not follow from its content".into())
        };
    }
    if e.version != CHAIN_VERSION {
        return RowCheck::Broken(format!("unknown chain version {}", e.version));
    }
    let digest_ok = if e.readings.is_empty() {
        e.readings_digest.is_empty()
    } else {
        sha256_hex(e.readings.as_bytes()) == e.readings_digest
    };
    if !digest_ok {
        return RowCheck::Broken("the readings recorded with it do not match their digest".into());
    }
    let fields = Fields {
        key_id: &e.key_id,
        prev: &e.prev_hash,
        alert: e.alert_id,
        seq: e.seq,
        at: to_ms(e.at),
        kind: &e.kind,
        actor: &e.actor,
        on_behalf_of: e.on_behalf_of.as_deref(),
        detail: &e.detail,
        facts: &e.facts,
        readings_digest: &e.readings_digest,
    };
    match hash_v2(keys, &fields) {
        None => RowCheck::UnknownKey(e.key_id.clone()),
        Some(h) if h != e.hash => RowCheck::Broken(if e.key_id.is_empty() {
            "its hash does not follow from its content".into()
        } else {
            format!(
                "its HMAC under key {} does not follow from its content (changed by someone without the key)",
                e.key_id
            )
        }),
        Some(_) if e.key_id.is_empty() => RowCheck::Unkeyed,
        Some(_) => RowCheck::Keyed,
    }
}

/// The names of the top-level fields two JSON objects disagree on.
pub fn differing_fields(recorded: &str, now: &str) -> Vec<String> {
    let (Ok(a), Ok(b)) = (
        serde_json::from_str::<serde_json::Value>(recorded),
        serde_json::from_str::<serde_json::Value>(now),
    ) else {
        return vec!["(unreadable)".into()];
    };
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec!["(not an object)".into()];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            format!(
                "{k}: recorded {} , now {}",
                a.get(k).map_or("absent".into(), |v| v.to_string()),
                b.get(k).map_or("absent".into(), |v| v.to_string())
            )
        })
        .collect()
}

/// What changed between the readings recorded with a row and those stored now:
/// (problems, notes: late arrivals and readings removed by retention before
/// `retained_before`). A reading present now but not then counts as late
/// when it was received after the row was written.
pub fn diff_readings(
    recorded: &[WindowReading],
    now: &[(WindowReading, i64)],
    written: i64,
    retained_before: Option<i64>,
) -> (Vec<String>, Vec<String>) {
    use std::collections::BTreeMap;
    let then: BTreeMap<(&str, i64), (f64, &str)> = recorded
        .iter()
        .map(|(s, t, v, f)| ((s.as_str(), *t), (*v, f.as_str())))
        .collect();
    let cur: BTreeMap<(&str, i64), (f64, &str, i64)> = now
        .iter()
        .map(|((s, t, v, f), rx)| ((s.as_str(), *t), (*v, f.as_str(), *rx)))
        .collect();
    let ts = |t: i64| {
        DateTime::<Utc>::from_timestamp_millis(t).map_or_else(|| t.to_string(), |d| d.to_rfc3339())
    };
    let mut problems = Vec::new();
    let mut late = Vec::new();
    for ((s, t), (v, f)) in &then {
        match cur.get(&(*s, *t)) {
            None if retained_before.is_some_and(|b| *t < b) => late.push(format!(
                "reading {s} at {} (was {v} {f}) removed by retention (pollwatch evidence retain; see retention_log)",
                ts(*t)
            )),
            None => problems.push(format!(
                "reading DELETED: {s} at {} (was {v} {f})",
                ts(*t)
            )),
            Some((v2, f2, _)) if v2.to_bits() != v.to_bits() || f2 != f => problems.push(format!(
                "reading EDITED: {s} at {}: recorded {v} {f}, now {v2} {f2}",
                ts(*t)
            )),
            Some(_) => {}
        }
    }
    for ((s, t), (v, f, rx)) in &cur {
        if !then.contains_key(&(*s, *t)) {
            let line = format!("reading ADDED: {s} at {} ({v} {f})", ts(*t));
            if *rx > written {
                late.push(format!(
                    "{line}, received {} after this row: late data",
                    ts(*rx)
                ));
            } else {
                problems.push(format!(
                    "{line}, received {} before this row yet not recorded with it",
                    ts(*rx)
                ));
            }
        }
    }
    (problems, late)
}

/// Parses a stored manifest's readings.
pub fn manifest_readings(manifest: &str) -> Option<(Window, Vec<WindowReading>)> {
    let v: serde_json::Value = serde_json::from_str(manifest).ok()?;
    let ms = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_i64())
            .and_then(DateTime::<Utc>::from_timestamp_millis)
    };
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let w = Window {
        enterprise: s("enterprise")?,
        location: s("location")?,
        factor: s("factor")?,
        from: ms("from")?,
        to: ms("to")?,
    };
    let rows: Vec<WindowReading> = serde_json::from_value(v.get("readings")?.clone()).ok()?;
    Some((w, rows))
}

/// A row's public digest: plain SHA-256 over every stored field, the hash
/// included. Anyone can recompute it from an exported row without the key; the
/// day's anchor commits to it, so an anchored row cannot change unseen.
pub fn row_digest(e: &AlertEvent) -> String {
    let parts = [
        "row".to_string(),
        e.alert_id.to_string(),
        e.seq.to_string(),
        to_ms(e.at).to_string(),
        e.kind.clone(),
        e.actor.clone(),
        e.on_behalf_of.clone().unwrap_or_else(|| "\u{0}".into()),
        e.detail.clone(),
        e.facts.clone(),
        e.readings_digest.clone(),
        e.version.to_string(),
        e.key_id.clone(),
        e.prev_hash.clone(),
        e.hash.clone(),
    ];
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    Keyring::default().mac("", &refs).unwrap_or_default()
}
