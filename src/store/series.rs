//! Series and source ids, shared by both backends.
//!
//! Every reading names its series (enterprise, location, factor, kind, statistic)
//! and its source (protocol, device) by a small integer. The ids are cached in
//! memory: new series are rare (a new device or factor), so after warm-up a commit
//! never looks them up in the database. Ids learnt inside a transaction join the
//! cache only after it committed — a rolled-back insert must not leave an id behind
//! that does not exist.

use std::collections::HashMap;

/// Per-process seeded, fast hashing for the id maps (see Cargo.toml).
type Fast = foldhash::fast::RandomState;
use std::sync::Mutex;

use crate::model::{SeriesKey, SourceRef};

use super::{to_ms, Received};

#[derive(Debug, Default)]
pub struct IdCache {
    series: Mutex<HashMap<SeriesKey, i64, Fast>>,
    sources: Mutex<HashMap<SourceRef, i64, Fast>>,
}

/// One row of the readings table, ready to bind.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub series: i64,
    pub ts: i64,
    pub value: f64,
    pub flag: &'static str,
    pub source: i64,
    pub received: i64,
}

/// What a commit still has to look up or create before it can write rows.
#[derive(Debug, Default)]
pub struct Missing {
    /// Series key and the unit to record if the series is new.
    pub series: HashMap<SeriesKey, (String, Option<i64>)>,
    pub sources: HashMap<SourceRef, Option<i64>>,
}

/// Cached ids per reading (`None` where the cache had none yet).
pub struct Resolution {
    ids: Vec<(Option<i64>, Option<i64>)>,
    pub missing: Missing,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold only committed ids; a panic elsewhere cannot leave them wrong.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl IdCache {
    pub fn resolve(&self, parts: &[Received]) -> Resolution {
        let series = lock(&self.series);
        let sources = lock(&self.sources);
        let mut missing = Missing::default();
        let mut ids = Vec::with_capacity(parts.iter().map(|p| p.batch.readings.len()).sum());
        for r in parts.iter().flat_map(|p| &p.batch.readings) {
            let key = r.series_key();
            let s = series.get(&key).copied();
            if s.is_none() {
                missing
                    .series
                    .entry(key)
                    .or_insert_with(|| (r.unit.to_string(), None));
            }
            let src = sources.get(&r.source).copied();
            if src.is_none() {
                missing.sources.entry(r.source.clone()).or_insert(None);
            }
            ids.push((s, src));
        }
        Resolution { ids, missing }
    }

    /// Records ids learnt in a transaction that has now committed.
    pub fn learn(&self, missing: Missing) {
        let mut series = lock(&self.series);
        series.extend(
            missing
                .series
                .into_iter()
                .filter_map(|(k, (_, id))| Some((k, id?))),
        );
        drop(series);
        let mut sources = lock(&self.sources);
        sources.extend(
            missing
                .sources
                .into_iter()
                .filter_map(|(k, id)| Some((k, id?))),
        );
    }
}

impl Resolution {
    /// The rows to insert, once every missing id has been filled in.
    pub fn rows(&self, parts: &[Received]) -> Result<Vec<Row>, super::StoreError> {
        let mut out = Vec::with_capacity(self.ids.len());
        let readings = parts
            .iter()
            .flat_map(|p| p.batch.readings.iter().map(move |r| (to_ms(p.at), r)));
        for ((received, r), (s, src)) in readings.zip(&self.ids) {
            let series = match s {
                Some(id) => *id,
                None => self
                    .missing
                    .series
                    .get(&r.series_key())
                    .and_then(|(_, id)| *id)
                    .ok_or_else(|| super::StoreError::Corrupt("series id not resolved".into()))?,
            };
            let source = match src {
                Some(id) => *id,
                None => self
                    .missing
                    .sources
                    .get(&r.source)
                    .and_then(|id| *id)
                    .ok_or_else(|| super::StoreError::Corrupt("source id not resolved".into()))?,
            };
            out.push(Row {
                series,
                ts: to_ms(r.ts),
                value: r.value,
                flag: r.flag.as_str(),
                source,
                received,
            });
        }
        Ok(out)
    }
}
