//! What to ask a logger for ([`super::backfill`]): the periods of its outlet that
//! are missing, by request kind.
//!
//! - **Hourly data (CN 2061)** for every hour of the repair window that some
//!   limited factor lacks an hourly value for: the transmission rates count
//!   hourly values, so these are always asked for.
//! - **Minute data (CN 2051)** where the outlet judges its own aggregates
//!   (`aggregates = "computed"`): our hourly means are built from minute and
//!   real-time values, so a missing hour needs its minutes back to be judged.
//!   Asked for the same missing hours, and for the hours the rules engine closed
//!   short of their valid minutes because data never arrived (`short`).
//! - **Daily data (CN 2031)** where the outlet has a daily limit and its logger
//!   is known to upload daily values (one is stored in the window): each closed
//!   day of the window that lacks a daily value of a day-limited factor.
//!
//! A period an earlier request settled (refused, done, or confirmed missing by
//! ExeRtn 100) is never asked again for the same kind, and one tried
//! [`MAX_ATTEMPTS`] times is given up. Hours are grouped into requests of at most
//! a day; daily data is asked one day per request.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::backfill::BackfillSettings;
use super::registry::Endpoint;
use crate::completeness::rates::{day_start, floor_hour, local_day};
use crate::model::{DataKind, LocationKind, Stat};
use crate::store::{ReadingQuery, Store, StoreError};

/// Tries per period and kind before a logger is no longer asked for it.
pub const MAX_ATTEMPTS: u32 = 3;
/// Hours per request at most.
const MAX_PERIOD_HOURS: i64 = 24;
/// Request kinds.
pub const HOURLY: &str = "2061";
pub const MINUTE: &str = "2051";
pub const DAILY: &str = "2031";

/// One period to ask a logger for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub cn: &'static str,
    pub begin: DateTime<Utc>,
    /// Exclusive.
    pub end: DateTime<Utc>,
    pub attempt: u32,
}

impl Period {
    /// The start of the last data period the request covers (its `EndTime`):
    /// the last hour, minute or day.
    pub fn last(&self, tz: Tz) -> DateTime<Utc> {
        match self.cn {
            MINUTE => self.end - Duration::minutes(1),
            DAILY => {
                day_start(local_day(self.end - Duration::hours(1), tz), tz).unwrap_or(self.begin)
            }
            _ => self.end - Duration::hours(1),
        }
    }

    /// Whether `other` asks for nothing this one does not.
    pub fn covers(&self, other: &Period) -> bool {
        self.cn == other.cn && self.begin <= other.begin && other.end <= self.end
    }
}

/// What the logger's earlier requests of one kind say about each period start.
#[derive(Default)]
struct Earlier {
    settled: BTreeSet<DateTime<Utc>>,
    tries: HashMap<DateTime<Utc>, u32>,
}

impl Earlier {
    fn wanted(&self, at: DateTime<Utc>) -> Option<u32> {
        let attempts = self.tries.get(&at).copied().unwrap_or(0);
        (!self.settled.contains(&at) && attempts < MAX_ATTEMPTS).then_some(attempts + 1)
    }
}

/// The periods of `ep`'s outlet to ask for, as of `now` (the hours the rules
/// engine found short are passed as `short`; empty on reconnect).
pub async fn plan(
    store: &Store,
    ep: &Endpoint,
    settings: &BackfillSettings,
    tz: Tz,
    now: DateTime<Utc>,
    short: &BTreeSet<DateTime<Utc>>,
) -> Result<Vec<Period>, StoreError> {
    let max_age = Duration::from_std(settings.max_age).unwrap_or(Duration::days(10));
    let settle = Duration::from_std(settings.settle).unwrap_or_default();
    let start = floor_hour(now - max_age) + Duration::hours(1);
    let end = floor_hour(now - settle);
    if end <= start {
        return Ok(Vec::new());
    }
    let o = &ep.origin;
    let q = ReadingQuery {
        kind: Some(DataKind::Hour),
        stat: Some(Stat::Avg),
        from: Some(start),
        to: Some(end),
        ..ReadingQuery::new(&*o.enterprise, LocationKind::Outlet, &*o.outlet)
    };
    let mut have: HashMap<&str, BTreeSet<DateTime<Utc>>> = HashMap::new();
    let rows = store.readings(&q).await?;
    for r in &rows {
        have.entry(r.factor.as_str())
            .or_default()
            .insert(floor_hour(r.ts));
    }
    let any: BTreeSet<DateTime<Utc>> = have.values().flatten().copied().collect();
    let complete = |h: &DateTime<Utc>| {
        if ep.factors.is_empty() {
            any.contains(h)
        } else {
            ep.factors
                .iter()
                .all(|f| have.get(f.as_str()).is_some_and(|s| s.contains(h)))
        }
    };
    let earlier = earlier(store, &o.mn, start - max_age).await?;
    let none = Earlier::default();
    let of = |cn: &str| earlier.get(cn).unwrap_or(&none);

    let mut missing = Vec::new();
    let mut h = start;
    while h < end {
        if !complete(&h) {
            missing.push(h);
        }
        h += Duration::hours(1);
    }
    let mut periods = hours(HOURLY, &missing, of(HOURLY));
    if ep.kinds.minutes {
        let mut minutes: BTreeSet<DateTime<Utc>> = missing.iter().copied().collect();
        minutes.extend(
            short
                .iter()
                .map(|h| floor_hour(*h))
                .filter(|h| *h >= start && *h < end),
        );
        let minutes: Vec<_> = minutes.into_iter().collect();
        periods.extend(hours(MINUTE, &minutes, of(MINUTE)));
    }
    if !ep.kinds.day_factors.is_empty() {
        periods.extend(days(store, ep, tz, now, start, settle, of(DAILY)).await?);
    }
    Ok(periods)
}

/// Earlier requests of `mn` since `since`, by kind.
async fn earlier(
    store: &Store,
    mn: &str,
    since: DateTime<Utc>,
) -> Result<HashMap<String, Earlier>, StoreError> {
    let rows = store
        .backfill_requests(None, Some(mn), Some(since), 10_000)
        .await?;
    let mut by_cn: HashMap<String, Earlier> = HashMap::new();
    for r in &rows {
        let e = by_cn.entry(r.request.cn.clone()).or_default();
        let step = if r.request.cn == DAILY {
            // Daily requests are one day each: keyed by their start.
            r.request.end - r.request.begin
        } else {
            Duration::hours(1)
        };
        let mut at = r.request.begin;
        while at < r.request.end && step > Duration::zero() {
            if r.state.is_final() {
                e.settled.insert(at);
            } else {
                *e.tries.entry(at).or_default() += 1;
            }
            at += step;
        }
    }
    Ok(by_cn)
}

/// Contiguous `wanted` hours (sorted) as requests of kind `cn`, each of hours
/// with the same attempt number and at most [`MAX_PERIOD_HOURS`] long.
fn hours(cn: &'static str, wanted: &[DateTime<Utc>], earlier: &Earlier) -> Vec<Period> {
    let mut periods: Vec<Period> = Vec::new();
    for &h in wanted {
        let Some(attempt) = earlier.wanted(h) else {
            continue;
        };
        match periods.last_mut() {
            Some(p)
                if p.end == h
                    && p.attempt == attempt
                    && (p.end - p.begin).num_hours() < MAX_PERIOD_HOURS =>
            {
                p.end = h + Duration::hours(1);
            }
            _ => periods.push(Period {
                cn,
                begin: h,
                end: h + Duration::hours(1),
                attempt,
            }),
        }
    }
    periods
}

/// Closed local days of the window lacking a daily value of a day-limited
/// factor, when the logger is known to send daily values.
async fn days(
    store: &Store,
    ep: &Endpoint,
    tz: Tz,
    now: DateTime<Utc>,
    start: DateTime<Utc>,
    settle: Duration,
    earlier: &Earlier,
) -> Result<Vec<Period>, StoreError> {
    let o = &ep.origin;
    // A logger sends a day's 2031 after the day: an hour's grace, as the rules
    // engine gives it.
    let until = now - settle - Duration::hours(1);
    let Ok(first) = day_start(local_day(start, tz), tz) else {
        return Ok(Vec::new());
    };
    let q = ReadingQuery {
        kind: Some(DataKind::Day),
        stat: Some(Stat::Avg),
        from: Some(first),
        to: Some(now),
        ..ReadingQuery::new(&*o.enterprise, LocationKind::Outlet, &*o.outlet)
    };
    let rows = store.readings(&q).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let have: BTreeSet<(&str, DateTime<Utc>)> =
        rows.iter().map(|r| (r.factor.as_str(), r.ts)).collect();
    let mut out = Vec::new();
    let mut day = local_day(start, tz);
    while let (Ok(begin), Some(next)) = (day_start(day, tz), day.succ_opt()) {
        let Ok(end) = day_start(next, tz) else { break };
        if end > until {
            break;
        }
        let lacking = ep
            .kinds
            .day_factors
            .iter()
            .any(|f| !have.contains(&(f.as_str(), begin)));
        if begin >= start && lacking {
            if let Some(attempt) = earlier.wanted(begin) {
                out.push(Period {
                    cn: DAILY,
                    begin,
                    end,
                    attempt,
                });
            }
        }
        day = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn h(k: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap() + Duration::hours(k)
    }

    #[test]
    fn hours_group_by_attempt_and_skip_settled() {
        let mut e = Earlier::default();
        e.settled.insert(h(3));
        e.tries.insert(h(5), 1);
        e.tries.insert(h(6), MAX_ATTEMPTS);
        let p = hours(MINUTE, &[h(1), h(2), h(3), h(4), h(5), h(6)], &e);
        let spans: Vec<_> = p.iter().map(|p| (p.begin, p.end, p.attempt)).collect();
        assert_eq!(
            spans,
            vec![(h(1), h(3), 1), (h(4), h(5), 1), (h(5), h(6), 2)]
        );
        assert!(p.iter().all(|p| p.cn == MINUTE));
    }

    #[test]
    fn end_time_is_the_last_period_start() {
        let tz = chrono_tz::Asia::Shanghai;
        let p = |cn, begin, end| Period {
            cn,
            begin,
            end,
            attempt: 1,
        };
        assert_eq!(p(HOURLY, h(1), h(4)).last(tz), h(3));
        assert_eq!(p(MINUTE, h(1), h(2)).last(tz), h(2) - Duration::minutes(1));
        // Local day 2026-11-27 starts 2026-11-26 16:00 UTC.
        let d0 = h(-8);
        assert_eq!(p(DAILY, d0, d0 + Duration::days(1)).last(tz), d0);
        assert!(p(HOURLY, h(0), h(5)).covers(&p(HOURLY, h(1), h(3))));
        assert!(!p(HOURLY, h(0), h(5)).covers(&p(MINUTE, h(1), h(3))));
        assert!(!p(HOURLY, h(0), h(5)).covers(&p(HOURLY, h(4), h(6))));
    }
}
