//! Data completeness on either backend (issue #20): the persisted daily
//! transmission figures and the record of every backfill request.
//!
//! Daily figures are keyed by (enterprise, outlet, factor, local day) and rewritten
//! in place while the repair window is open — a figure is a derived number, not
//! evidence; the readings it counts are. Each rewrite that changes a number raises
//! `revision`, so a report can say a day was revised.

use chrono::{DateTime, NaiveDate, Utc};

use super::tx::WriteTx;
use super::{from_ms, to_ms, Store, StoreError};

/// One outlet's, factor's, local day's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayFigures {
    pub enterprise: String,
    pub outlet: String,
    pub factor: String,
    pub day: NaiveDate,
    pub expected: u32,
    pub received: u32,
    pub valid: u32,
    /// Local hours (0–23) expected and not received.
    pub missing_hours: Vec<u8>,
    /// Local hours received with a flag that is not valid (M, C, D, B).
    pub invalid_hours: Vec<u8>,
}

/// A stored day: the figures, when they were last computed and how often revised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDay {
    pub figures: DayFigures,
    pub computed_at: DateTime<Utc>,
    /// 1 when first written; +1 each time a number changed.
    pub revision: i64,
}

/// What storing a day did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayWrite {
    New,
    Revised,
    Unchanged,
}

/// The state of a backfill request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackfillState {
    Sent,
    /// 9011 with QnRtn ≠ 1: not asked again for this period.
    Refused,
    Done,
    /// 9012 ExeRtn 100: the logger has nothing for the period; the hours are
    /// confirmed missing and not asked again.
    NoData,
    /// 9012 with another ExeRtn: asked again later.
    Failed,
    /// No 9011/9012 in time (or the connection ended): asked again later.
    Timeout,
}

impl BackfillState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillState::Sent => "sent",
            BackfillState::Refused => "refused",
            BackfillState::Done => "done",
            BackfillState::NoData => "no_data",
            BackfillState::Failed => "failed",
            BackfillState::Timeout => "timeout",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sent" => BackfillState::Sent,
            "refused" => BackfillState::Refused,
            "done" => BackfillState::Done,
            "no_data" => BackfillState::NoData,
            "failed" => BackfillState::Failed,
            "timeout" => BackfillState::Timeout,
            _ => return None,
        })
    }

    /// The period is settled: the logger will not be asked for it again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            BackfillState::Refused | BackfillState::Done | BackfillState::NoData
        )
    }
}

/// A backfill request about to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBackfill {
    pub enterprise: String,
    pub outlet: String,
    pub mn: String,
    pub cn: String,
    pub begin: DateTime<Utc>,
    /// Exclusive.
    pub end: DateTime<Utc>,
    pub qn: String,
    pub attempt: u32,
    pub requested_at: DateTime<Utc>,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillOutcome {
    pub state: BackfillState,
    pub qn_rtn: Option<i64>,
    pub exe_rtn: Option<i64>,
    pub readings: u64,
    pub finished_at: DateTime<Utc>,
    pub detail: String,
}

/// A stored request with its outcome so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillRow {
    pub id: i64,
    pub request: NewBackfill,
    pub state: BackfillState,
    pub qn_rtn: Option<i64>,
    pub exe_rtn: Option<i64>,
    pub readings: u64,
    pub finished_at: Option<DateTime<Utc>>,
    pub detail: String,
}

fn hours_text(h: &[u8]) -> String {
    h.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn hours_parse(s: &str) -> Result<Vec<u8>, StoreError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|x| {
            x.parse::<u8>()
                .map_err(|_| StoreError::Corrupt(format!("hour list {s:?}")))
        })
        .collect()
}

const DAY_COLUMNS: &str = "enterprise, outlet, factor, day, expected, received, valid, missing_hours, invalid_hours, computed_at, revision";
const BACKFILL_COLUMNS: &str = "id, enterprise, outlet, mn, cn, begin_at, end_at, qn, attempt, requested_at, state, qn_rtn, exe_rtn, readings, finished_at, detail";

impl Store {
    /// Stores one day's figures: new, rewritten with `revision + 1` when a number
    /// changed, or left alone.
    pub async fn put_transmission_day(
        &self,
        d: &DayFigures,
        at: DateTime<Utc>,
    ) -> Result<DayWrite, StoreError> {
        let old = self
            .transmission_days(
                d.day,
                d.day.succ_opt().unwrap_or(d.day),
                Some(&d.enterprise),
            )
            .await?
            .into_iter()
            .find(|s| s.figures.outlet == d.outlet && s.figures.factor == d.factor);
        let (write, revision) = match &old {
            None => (DayWrite::New, 1),
            Some(o) if o.figures == *d => return Ok(DayWrite::Unchanged),
            Some(o) => (DayWrite::Revised, o.revision + 1),
        };
        let day = d.day.to_string();
        let missing = hours_text(&d.missing_hours);
        let invalid = hours_text(&d.invalid_hours);
        on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new(format!(
                "INSERT INTO transmission_days ({DAY_COLUMNS}) "
            ));
            b.push_values([d], |mut row, d| {
                row.push_bind(d.enterprise.as_str())
                    .push_bind(d.outlet.as_str())
                    .push_bind(d.factor.as_str())
                    .push_bind(day.as_str())
                    .push_bind(i64::from(d.expected))
                    .push_bind(i64::from(d.received))
                    .push_bind(i64::from(d.valid))
                    .push_bind(missing.as_str())
                    .push_bind(invalid.as_str())
                    .push_bind(to_ms(at))
                    .push_bind(revision);
            });
            b.push(
                " ON CONFLICT (enterprise, outlet, factor, day) DO UPDATE SET \
                 expected = excluded.expected, received = excluded.received, valid = excluded.valid, \
                 missing_hours = excluded.missing_hours, invalid_hours = excluded.invalid_hours, \
                 computed_at = excluded.computed_at, revision = excluded.revision",
            );
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            b.build()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("store transmission day"))?;
            tx.commit("commit transmission day").await?;
        });
        Ok(write)
    }

    /// Persisted daily figures for local days `from..to` (exclusive), optionally of
    /// one enterprise, ordered by enterprise, outlet, factor, day. What a monthly
    /// report reads.
    pub async fn transmission_days(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        enterprise: Option<&str>,
    ) -> Result<Vec<StoredDay>, StoreError> {
        let (from, to) = (from.to_string(), to.to_string());
        on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new(format!(
                "SELECT {DAY_COLUMNS} FROM transmission_days WHERE day >= "
            ));
            b.push_bind(from.as_str())
                .push(" AND day < ")
                .push_bind(to.as_str());
            if let Some(e) = enterprise {
                b.push(" AND enterprise = ").push_bind(e);
            }
            b.push(" ORDER BY enterprise, outlet, factor, day");
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("query transmission days"))?;
            rows.iter().map(stored_day).collect()
        })
    }

    /// Records a request as sent; returns its id.
    pub async fn insert_backfill(&self, r: &NewBackfill) -> Result<i64, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO backfill_requests (enterprise, outlet, mn, cn, begin_at, end_at, qn, attempt, requested_at, state, readings, detail) ",
            );
            b.push_values([r], |mut row, r| {
                row.push_bind(r.enterprise.as_str())
                    .push_bind(r.outlet.as_str())
                    .push_bind(r.mn.as_str())
                    .push_bind(r.cn.as_str())
                    .push_bind(to_ms(r.begin))
                    .push_bind(to_ms(r.end))
                    .push_bind(r.qn.as_str())
                    .push_bind(i64::from(r.attempt))
                    .push_bind(to_ms(r.requested_at))
                    .push_bind(BackfillState::Sent.as_str())
                    .push_bind(0i64)
                    .push_bind("");
            });
            b.push(" RETURNING id");
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            let row = b
                .build()
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::db("insert backfill request"))?;
            let id: i64 = sqlx::Row::try_get(&row, 0usize)
                .map_err(StoreError::db("read backfill request id"))?;
            tx.commit("commit backfill request").await?;
            Ok(id)
        })
    }

    /// Records how a request ended.
    pub async fn finish_backfill(&self, id: i64, o: &BackfillOutcome) -> Result<(), StoreError> {
        let readings = i64::try_from(o.readings).unwrap_or(i64::MAX);
        on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new("UPDATE backfill_requests SET state = ");
            b.push_bind(o.state.as_str())
                .push(", qn_rtn = ")
                .push_bind(o.qn_rtn)
                .push(", exe_rtn = ")
                .push_bind(o.exe_rtn)
                .push(", readings = ")
                .push_bind(readings)
                .push(", finished_at = ")
                .push_bind(to_ms(o.finished_at))
                .push(", detail = ")
                .push_bind(o.detail.as_str())
                .push(" WHERE id = ")
                .push_bind(id);
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            b.build()
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("finish backfill request"))?;
            tx.commit("commit backfill outcome").await?;
            Ok(())
        })
    }

    /// Backfill requests, newest first: of one logger (`mn`) or one enterprise, or
    /// all; those requested at or after `since`.
    pub async fn backfill_requests(
        &self,
        enterprise: Option<&str>,
        mn: Option<&str>,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<BackfillRow>, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut b = sqlx::QueryBuilder::<Db>::new(format!(
                "SELECT {BACKFILL_COLUMNS} FROM backfill_requests WHERE 1 = 1"
            ));
            if let Some(e) = enterprise {
                b.push(" AND enterprise = ").push_bind(e);
            }
            if let Some(m) = mn {
                b.push(" AND mn = ").push_bind(m);
            }
            if let Some(t) = since {
                b.push(" AND requested_at >= ").push_bind(to_ms(t));
            }
            b.push(" ORDER BY id DESC LIMIT ")
                .push_bind(i64::from(limit));
            let rows = b
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::db("query backfill requests"))?;
            rows.iter().map(backfill_row).collect()
        })
    }
}

fn stored_day<R>(r: &R) -> Result<StoredDay, StoreError>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let get_i = |c: &str| {
        r.try_get::<i64, _>(c)
            .map_err(StoreError::db("read transmission day"))
    };
    let get_s = |c: &str| {
        r.try_get::<String, _>(c)
            .map_err(StoreError::db("read transmission day"))
    };
    let count = |c: &str| -> Result<u32, StoreError> {
        let v = get_i(c)?;
        u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{c} = {v}")))
    };
    let day = get_s("day")?;
    Ok(StoredDay {
        figures: DayFigures {
            enterprise: get_s("enterprise")?,
            outlet: get_s("outlet")?,
            factor: get_s("factor")?,
            day: day
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("day {day:?}")))?,
            expected: count("expected")?,
            received: count("received")?,
            valid: count("valid")?,
            missing_hours: hours_parse(&get_s("missing_hours")?)?,
            invalid_hours: hours_parse(&get_s("invalid_hours")?)?,
        },
        computed_at: from_ms(get_i("computed_at")?)?,
        revision: get_i("revision")?,
    })
}

fn backfill_row<R>(r: &R) -> Result<BackfillRow, StoreError>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let get_i = |c: &str| {
        r.try_get::<i64, _>(c)
            .map_err(StoreError::db("read backfill request"))
    };
    let get_o = |c: &str| {
        r.try_get::<Option<i64>, _>(c)
            .map_err(StoreError::db("read backfill request"))
    };
    let get_s = |c: &str| {
        r.try_get::<String, _>(c)
            .map_err(StoreError::db("read backfill request"))
    };
    let state = get_s("state")?;
    Ok(BackfillRow {
        id: get_i("id")?,
        request: NewBackfill {
            enterprise: get_s("enterprise")?,
            outlet: get_s("outlet")?,
            mn: get_s("mn")?,
            cn: get_s("cn")?,
            begin: from_ms(get_i("begin_at")?)?,
            end: from_ms(get_i("end_at")?)?,
            qn: get_s("qn")?,
            attempt: u32::try_from(get_i("attempt")?).unwrap_or(u32::MAX),
            requested_at: from_ms(get_i("requested_at")?)?,
        },
        state: BackfillState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("backfill state {state:?}")))?,
        qn_rtn: get_o("qn_rtn")?,
        exe_rtn: get_o("exe_rtn")?,
        readings: u64::try_from(get_i("readings")?).unwrap_or(0),
        finished_at: get_o("finished_at")?.map(from_ms).transpose()?,
        detail: get_s("detail")?,
    })
}
