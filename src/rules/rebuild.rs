//! Rebuilding evaluation state from the store at start-up (invariant 4).
//!
//! The evaluator's state is a function of the readings it saw, so it is rebuilt by
//! replaying them: everything of the current local day (daily means, maintenance
//! share) and at least the last [`REPLAY_AT_LEAST`] (constant values, O2 pairing,
//! linkage episodes), enterprise by enterprise in time order. Findings the replay
//! raises again are the same findings (same natural key), which the store keeps
//! once. The year-to-date emission before the replay comes from `emission_hours`.
//!
//! The replay calls no `tick`: a tick would close other enterprises' hours before
//! their readings were replayed, and — in the daemon — hours whose last values
//! are committed but still queued on the writer's tap. Hours close as later
//! readings arrive; the caller ticks once what was queued meanwhile is judged,
//! and reaches the same verdicts an uninterrupted run does.

use chrono::{DateTime, Duration, Utc};

use super::eval::{Evaluator, Options, Output};
use super::plan::Plan;
use super::window::{day_start, year_bounds};
use crate::model::Id;
use crate::store::{Store, StoreError};

/// History replayed even right after midnight: the default constant-value window
/// (4 h) plus an hour.
pub const REPLAY_AT_LEAST: Duration = Duration::hours(5);

/// Counts of a rebuild, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildStats {
    pub readings: u64,
    pub enterprises: usize,
}

/// Where a replay starts for `now`.
pub fn replay_from(plan: &Plan, now: DateTime<Utc>) -> DateTime<Utc> {
    let longest_constant = plan
        .enterprises
        .iter()
        .flat_map(|e| &e.outlets)
        .map(|o| o.constant_for + Duration::hours(1))
        .max()
        .unwrap_or(REPLAY_AT_LEAST)
        .max(REPLAY_AT_LEAST);
    day_start(now, plan.tz).min(now - longest_constant)
}

/// A fresh evaluator with every reading the store holds for the replay window
/// (see [`replay`]; the caller ticks), and what the replay found.
pub async fn rebuild(
    store: &Store,
    plan: Plan,
    opts: Options,
    now: DateTime<Utc>,
) -> Result<(Evaluator, Output, RebuildStats), StoreError> {
    let ids: Vec<Id> = plan.enterprises.iter().map(|e| e.id.clone()).collect();
    let mut ev = Evaluator::new(plan, opts);
    let (out, stats) = replay(store, &mut ev, &ids, now).await?;
    Ok((ev, out, stats))
}

/// Replays the readings of `enterprises` (whose state is empty: a rebuild, or
/// enterprises new or changed in a plan swap) into `ev`; `now` only bounds what is
/// read. Other enterprises' state is untouched. The caller ticks.
pub async fn replay(
    store: &Store,
    ev: &mut Evaluator,
    enterprises: &[Id],
    now: DateTime<Utc>,
) -> Result<(Output, RebuildStats), StoreError> {
    let plan = ev.plan();
    let from = replay_from(plan, now);
    let (year_start, _) = year_bounds(now, plan.tz);
    if from > year_start {
        for s in store.emission_sums(year_start, from).await? {
            if enterprises.iter().any(|e| **e == *s.enterprise) {
                ev.seed_emissions(&s.enterprise, &s.outlet, &s.factor, year_start, s.tonnes);
            }
        }
    }
    let mut out = Output::default();
    let mut stats = RebuildStats::default();
    // Readings stamped slightly ahead of our clock (a logger's clock) are replayed
    // too: the live feed would have judged them.
    let to = now + Duration::days(1);
    for id in enterprises {
        let readings = store.enterprise_readings(id, from, to).await?;
        stats.readings += readings.len() as u64;
        stats.enterprises += 1;
        ev.ingest(&readings, &mut out);
    }
    Ok((out, stats))
}
