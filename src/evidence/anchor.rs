//! The daily anchor (issue 18): a Merkle root over every timeline row, readings
//! digest and chain head written on a (local) day, in
//! `<state_dir>/anchors/YYYY-MM-DD.json` — a copy outside the database, to be
//! copied where the database's owner cannot reach (README: "Evidence"). `alerts verify` checks the store against the
//! anchors; a third party checks an exported record against a published one
//! without the key (see [`check_export`]).
//!
//! Leaves are the strings `kind|alert|seq|value` (see
//! [`AnchorRow::leaf`](crate::store::AnchorRow::leaf)), in the file's order;
//! the tree is RFC 6962's (see [`crate::seal::merkle_root`]).

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::seal::{merkle_check, merkle_path, merkle_root};
use crate::store::chain::row_digest;
use crate::store::{AlertEvent, AnchorRow, Store};

use super::EvidenceError;

/// One day's anchor file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Anchor {
    pub version: u32,
    pub date: NaiveDate,
    pub timezone: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub leaves: Vec<AnchorRow>,
    pub root: String,
}

impl Anchor {
    pub fn leaf_strings(&self) -> Vec<String> {
        self.leaves.iter().map(AnchorRow::leaf).collect()
    }

    /// Whether the root follows from the leaves.
    pub fn consistent(&self) -> bool {
        merkle_root(&self.leaf_strings()) == self.root
    }
}

/// The UTC bounds of a local day.
pub fn day_bounds(date: NaiveDate, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = |d: NaiveDate| {
        let naive = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        tz.from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&naive))
    };
    let next = date.succ_opt().unwrap_or(date);
    (start(date), start(next))
}

pub fn anchor_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("anchors")
}

/// Builds the anchor of `date` from the store.
pub async fn build(
    store: &Store,
    date: NaiveDate,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Anchor, EvidenceError> {
    let (from, to) = day_bounds(date, tz);
    let leaves = store.anchor_rows(from, to).await?;
    let root = merkle_root(&leaves.iter().map(AnchorRow::leaf).collect::<Vec<_>>());
    Ok(Anchor {
        version: 1,
        date,
        timezone: tz.name().to_string(),
        from,
        to,
        created_at: now,
        leaves,
        root,
    })
}

/// Writes the anchor of `date` to `<dir>/YYYY-MM-DD.json` (atomically, mode
/// 0644). An existing file with the same root is left alone; one with another
/// root is never overwritten: that is an error naming both roots.
pub async fn write(
    store: &Store,
    dir: &Path,
    date: NaiveDate,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<(PathBuf, Anchor), EvidenceError> {
    let a = build(store, date, tz, now).await?;
    let path = dir.join(format!("{date}.json"));
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EvidenceError::Write { path, source }
    };
    if let Ok(old) = read(&path) {
        if old.root == a.root {
            return Ok((path, old));
        }
        return Err(EvidenceError::AnchorConflict {
            path,
            old: old.root,
            new: a.root,
        });
    }
    std::fs::create_dir_all(dir).map_err(werr(dir))?;
    let body = serde_json::to_vec_pretty(&a).map_err(|e| EvidenceError::Anchor(e.to_string()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(werr(dir))?;
    std::io::Write::write_all(&mut tmp, &body).map_err(werr(&path))?;
    tmp.as_file().sync_all().map_err(werr(&path))?;
    tmp.persist_noclobber(&path)
        .map_err(|e| EvidenceError::Write {
            path: path.clone(),
            source: e.error,
        })?;
    Ok((path, a))
}

pub fn read(path: &Path) -> Result<Anchor, String> {
    let b = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&b).map_err(|e| format!("{} is not an anchor: {e}", path.display()))
}

/// Every `*.json` anchor in `dir`, oldest first; unreadable ones with why.
pub fn read_dir(dir: &Path) -> Vec<(PathBuf, Result<Anchor, String>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths.into_iter().map(|p| (p.clone(), read(&p))).collect()
}

/// What the anchors say about one alert's timeline.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AnchorCheck {
    /// Dates of anchors that cover rows of the alert.
    pub days: Vec<NaiveDate>,
    pub problems: Vec<String>,
}

/// Checks an alert's rows against the anchors: every anchored row must still
/// be there with the same public digest, and each anchor's root must follow
/// from its leaves.
pub fn check(
    alert_id: i64,
    events: &[AlertEvent],
    anchors: &[(PathBuf, Result<Anchor, String>)],
) -> AnchorCheck {
    let mut out = AnchorCheck::default();
    for (path, a) in anchors {
        let a = match a {
            Ok(a) => a,
            Err(e) => {
                out.problems.push(format!("anchor {}: {e}", path.display()));
                continue;
            }
        };
        let mine: Vec<&AnchorRow> = a.leaves.iter().filter(|l| l.alert == alert_id).collect();
        if mine.is_empty() {
            continue;
        }
        out.days.push(a.date);
        if !a.consistent() {
            out.problems.push(format!(
                "anchor {} was altered: its root does not follow from its leaves",
                path.display()
            ));
        }
        for l in mine {
            let e = events.iter().find(|e| e.seq == l.seq);
            let why = match (l.kind.as_str(), e) {
                (_, None) => Some("is MISSING from the store (deleted)".to_string()),
                ("row", Some(e)) if row_digest(e) != l.value => {
                    Some("differs from what was anchored (changed)".to_string())
                }
                ("head", Some(e)) if e.hash != l.value => {
                    Some("is not the chain head that was anchored".to_string())
                }
                ("readings", Some(e)) if e.readings_digest != l.value => {
                    Some("carries another readings digest than was anchored".to_string())
                }
                _ => None,
            };
            if let Some(why) = why {
                out.problems.push(format!(
                    "row {} anchored on {} ({}) {why}",
                    l.seq,
                    a.date,
                    path.display()
                ));
            }
        }
    }
    out
}

/// The anchors an alert's rows fall under, each with the audit paths of its
/// leaves: what an export carries so that a third party can check it.
pub fn proofs(alert_id: i64, anchors: &[(PathBuf, Result<Anchor, String>)]) -> serde_json::Value {
    let mut out = Vec::new();
    for (_, a) in anchors {
        let Ok(a) = a else { continue };
        let leaves = a.leaf_strings();
        let mine: Vec<serde_json::Value> = a
            .leaves
            .iter()
            .enumerate()
            .filter(|(_, l)| l.alert == alert_id)
            .map(|(i, l)| {
                serde_json::json!({
                    "leaf": l.leaf(),
                    "path": merkle_path(&leaves, i).unwrap_or_default(),
                })
            })
            .collect();
        if mine.is_empty() {
            continue;
        }
        out.push(serde_json::json!({
            "date": a.date,
            "root": a.root,
            "file": format!("anchor-{}.json", a.date),
            "leaves": mine,
        }));
    }
    serde_json::Value::Array(out)
}

/// A third party's check of an exported record, without the key and without
/// the database: each exported row's public digest must be a leaf of its
/// anchor under the given audit path, and that path must lead to the anchor's
/// root — which the caller compares with the published one. Returns the lines
/// of the check and whether it held.
pub fn check_export(timeline: &[AlertEvent], proofs: &serde_json::Value) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut ok = true;
    let Some(days) = proofs.as_array() else {
        return (vec!["the export carries no anchor proofs".into()], false);
    };
    let mut anchored = std::collections::BTreeSet::new();
    for day in days {
        let root = day.get("root").and_then(|r| r.as_str()).unwrap_or("");
        let date = day.get("date").and_then(|r| r.as_str()).unwrap_or("?");
        for l in day
            .get("leaves")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            let leaf = l.get("leaf").and_then(|x| x.as_str()).unwrap_or("");
            let path: Vec<(String, String)> = l
                .get("path")
                .and_then(|p| serde_json::from_value(p.clone()).ok())
                .unwrap_or_default();
            let reaches = merkle_check(leaf, &path).as_deref() == Some(root);
            let parts: Vec<&str> = leaf.splitn(4, '|').collect();
            let (kind, seq, value) = match parts.as_slice() {
                [k, _, s, v] => (*k, s.parse::<i64>().unwrap_or(-1), *v),
                _ => ("?", -1, ""),
            };
            let row = timeline.iter().find(|e| e.seq == seq);
            let matches = match (kind, row) {
                ("row", Some(e)) => row_digest(e) == value,
                ("head", Some(e)) => e.hash == value,
                ("readings", Some(e)) => e.readings_digest == value,
                _ => false,
            };
            if reaches && matches {
                if kind == "row" {
                    anchored.insert(seq);
                }
            } else {
                ok = false;
                lines.push(format!(
                    "row {seq} ({kind}) does NOT match the anchor of {date}{}",
                    if reaches {
                        ""
                    } else {
                        " (its path does not reach the root)"
                    }
                ));
            }
        }
        lines.push(format!("anchor {date}: root {root}"));
    }
    let unanchored: Vec<i64> = timeline
        .iter()
        .map(|e| e.seq)
        .filter(|s| !anchored.contains(s))
        .collect();
    if !unanchored.is_empty() {
        lines.push(format!(
            "rows not yet under an anchor (written after the last one): {unanchored:?}"
        ));
    }
    (lines, ok)
}
