//! Backfill by kind (issue #20), with the logger simulator over a real socket,
//! the store writer and the rules engine as in the daemon, on SQLite and
//! PostgreSQL:
//! - an outlet that judges computed aggregates is asked for hourly (2061) and
//!   minute (2051) data after a 3-hour outage; the hours are stored, the
//!   `missing_data` findings of those hours are superseded once the minutes are
//!   judged, the rates are back to 100 %, and real-time uploads sent while a
//!   request is in flight are answered and stored;
//! - the same outage on an outlet judging the logger's own (supplied) hourly
//!   values is asked for hourly data only; those alone supersede the hours'
//!   `missing_data`, and a backfilled hour over the limit is found once;
//! - a connected logger is asked for the daily value (2031) of a closed day it
//!   lacks, and, without reconnecting, for the minutes of an hour the rules
//!   engine closed short ([`Backfill::wanted`]).

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use pollwatch::clock::ManualClock;
use pollwatch::completeness::rates::{floor_hour, local_day};
use pollwatch::config::Config;
use pollwatch::model::{DataKind, Flag, Location, LocationKind, Stat};
use pollwatch::rules::task::{RulesTask, TaskOptions};
use pollwatch::rules::{Plan, RuleName};
use pollwatch::sim::{Backlog, HistoryMode, LoggerSim};
use pollwatch::sources::hj212::backfill::local;
use pollwatch::sources::hj212::codec::time::LocalDateTime;
use pollwatch::sources::hj212::{Backfill, BackfillSettings, Hj212Server, Registry, ServerConfig};
use pollwatch::store::{
    BackfillRow, BackfillState, Batch, FindingQuery, ReadingQuery, Store, StoredFinding, Writer,
    WriterTask,
};
use tokio::sync::watch;

both_backends!(
    computed_outage_is_backfilled_with_minutes_and_missing_data_superseded,
    supplied_outage_is_backfilled_with_hours_and_missing_data_superseded,
    an_unanswered_request_is_asked_again_on_the_same_connection,
    a_failed_request_is_asked_again_on_the_same_connection,
    connected_logger_is_asked_for_missing_days_and_short_hours
);

/// E1 with outlet DW001 judging computed aggregates, DW002 never backfilled and
/// DW003 judging the logger's (supplied) aggregates; `limits` their limit tables.
fn enterprise(limits: &str) -> String {
    format!(
        "id = \"E1\"\nname = \"测试污水厂\"\ndistrict = \"吴中区\"\nindustry = \"污水处理\"\n\n\
         [[outlets]]\nid = \"DW001\"\nname = \"排口\"\nkind = \"wastewater\"\naggregates = \"computed\"\n\
         hj212 = {{ mn = \"MN-WW-0001\", password = \"123456\" }}\n\n{limits}\n\n\
         [[outlets]]\nid = \"DW002\"\nname = \"排口二\"\nkind = \"wastewater\"\nbackfill = false\n\
         hj212 = {{ mn = \"MN-WW-0002\", password = \"123456\" }}\n\n{limits}\n\n\
         [[outlets]]\nid = \"DW003\"\nname = \"排口三\"\nkind = \"wastewater\"\n\
         hj212 = {{ mn = \"MN-WW-0003\", password = \"123456\" }}\n\n{limits}\n"
    )
}

struct Rig {
    cfg: Config,
    store: Store,
    backfill: Arc<Backfill>,
    writer: Option<(Writer, WriterTask)>,
    rules: Option<RulesTask>,
    server: Option<Hj212Server>,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(url: &str, limits: &str, max_age: &str, now: DateTime<Utc>) -> Rig {
        Rig::start_with_timeout(url, limits, max_age, "5s", now).await
    }

    /// With `timeout` as `backfill_timeout`.
    async fn start_with_timeout(
        url: &str,
        limits: &str,
        max_age: &str,
        timeout: &str,
        now: DateTime<Utc>,
    ) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let cfg = common::backfill::config(dir.path(), url, max_age, timeout, &enterprise(limits));
        let store = Store::open(url, &Default::default()).await.unwrap();
        let clock = Arc::new(ManualClock::new(now));
        let (writer, wtask, rules) = common::rules_pipeline(
            &store,
            &clock,
            watch::channel(Arc::new(Plan::new(&cfg))).1,
            TaskOptions {
                tick: Duration::from_millis(20),
                rejudge_quiet: Duration::from_millis(300),
                ..TaskOptions::default()
            },
            None,
        );
        let (stop, stop_rx) = watch::channel(false);
        let (_tx, registry) = watch::channel(Arc::new(Registry::from_config(&cfg)));
        let mut scfg = ServerConfig::from_config(&cfg);
        scfg.quiet = Duration::from_millis(200);
        let backfill = Backfill::start(store.clone(), BackfillSettings::from_config(&cfg));
        let server = Hj212Server::start_with_backfill(
            scfg,
            registry,
            writer.clone(),
            clock.clone(),
            stop_rx,
            Some(backfill.clone()),
        )
        .await
        .unwrap();
        Rig {
            cfg,
            store,
            backfill,
            writer: Some((writer, wtask)),
            rules: Some(rules),
            server: Some(server),
            stop,
            _dir: dir,
        }
    }

    fn tz(&self) -> Tz {
        self.cfg.timezone
    }

    fn sim(&self, mn: &str) -> LoggerSim {
        LoggerSim::new(self.server.as_ref().unwrap().local_addr(), mn, "123456")
    }

    /// COD values of `outlet` of `kind` at `times`, as its logger sent them.
    async fn write(&self, outlet: &str, kind: DataKind, times: &[DateTime<Utc>]) {
        let rows = times
            .iter()
            .map(|t| {
                let mut r = common::reading(outlet, "w01018", 0, 20.0);
                r.ts = *t;
                r.kind = kind;
                r.stat = Stat::Avg;
                r.flag = Flag::N;
                r.source.device = "MN-WW-0001".into();
                r
            })
            .collect();
        let (w, _) = self.writer.as_ref().unwrap();
        w.write(Batch::readings(rows)).await.unwrap();
    }

    async fn requests(&self, n: usize) -> Vec<BackfillRow> {
        common::backfill::requests(&self.store, None, n).await
    }

    /// Every hour of today so far was received and valid at `outlet`.
    async fn assert_day_complete(&self, outlet: &str, now: DateTime<Utc>) {
        let day = local_day(now, self.tz());
        let report = pollwatch::completeness::transmission_report(
            &self.cfg,
            &self.store,
            day,
            day.succ_opt().unwrap(),
            Some("E1"),
            now,
        )
        .await
        .unwrap();
        let row = report.rows.iter().find(|r| r.outlet == outlet).unwrap();
        assert!(row.counts.expected >= 10, "{row:?}");
        assert_eq!(row.counts.received, row.counts.expected, "{row:?}");
        assert_eq!(row.counts.effective_rate(), Some(1.0), "{row:?}");
    }

    /// Waits for each of `found` to be superseded.
    async fn assert_superseded(&self, found: &[StoredFinding]) {
        for m in found {
            let mut superseded = false;
            for _ in 0..200 {
                let h = self.store.finding_history(m.id).await.unwrap();
                if h.superseded.is_some() {
                    superseded = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                superseded,
                "{} of {} not superseded",
                m.finding.rule.as_str(),
                m.finding.window_start
            );
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(s) = self.server.take() {
            s.join().await;
        }
        if let Some((w, t)) = self.writer.take() {
            drop(w);
            t.finish(Duration::from_secs(5)).await;
        }
        if let Some(r) = self.rules.take() {
            r.join(Duration::from_secs(20)).await;
        }
        self.store.close().await;
    }
}

const HOURLY_50: &str = "[[outlets.limits]]\nfactor = \"w01018\"\nmax = 50.0\nbasis = \"hour\"";

/// The current findings of `rule` on the hours `gap` of `outlet` (missing_data:
/// those about hours, not days).
async fn hour_findings(
    rig: &Rig,
    outlet: &str,
    gap: &[DateTime<Utc>],
    rule: RuleName,
) -> Vec<StoredFinding> {
    rig.store
        .findings(&FindingQuery {
            rule: Some(rule.as_str().into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|s| {
            (rule != RuleName::MissingData || s.finding.detail == "hour")
                && gap.contains(&s.finding.window_start)
                && s.finding.location == Some(Location::Outlet(outlet.into()))
        })
        .collect()
}

/// A 3-hour outage at `outlet` and the logger's return.
struct Outage {
    gap: [DateTime<Utc>; 3],
    /// What the logger kept: each gap hour's hourly value (`hourly`) and its
    /// minutes (31.0).
    backlog: Backlog,
    sim: LoggerSim,
    /// The `missing_data` of the gap hours, raised before the logger returned.
    missing: Vec<StoredFinding>,
}

/// Hourly values 00–06 and minute values 04:00–06:59 of `outlet` arrived, the
/// link was down 07:00–09:59 (the 3 hours before `now`'s); once the rules
/// engine has closed those hours as missing, the logger comes back with one
/// real-time upload and answers the first request, which must be for the hourly
/// values of the gap (2061).
async fn outage(rig: &Rig, outlet: &str, now: DateTime<Utc>, hourly: [&str; 3]) -> Outage {
    let tz = rig.tz();
    let f = floor_hour(now);
    let day0 = hour(f, -10); // 00:00 local
    let gap = [hour(f, -3), hour(f, -2), hour(f, -1)];
    let hours: Vec<_> = (0..7).map(|k| hour(day0, k)).collect();
    rig.write(outlet, DataKind::Hour, &hours).await;
    rig.write(outlet, DataKind::Min, &minutes(hour(f, -6), gap[0]))
        .await;
    let mut missing = Vec::new();
    for _ in 0..200 {
        missing = hour_findings(rig, outlet, &gap, RuleName::MissingData).await;
        if missing.len() == gap.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(missing.len(), 3, "missing_data for each hour of the outage");

    let mut backlog = Backlog::default();
    for (g, v) in gap.iter().zip(hourly) {
        backlog.keep("2061", lt(*g, tz), &format!("w01018-Avg={v},w01018-Flag=N"));
        for m in minutes(*g, hour(*g, 1)) {
            backlog.keep("2051", lt(m, tz), "w01018-Avg=31.0,w01018-Flag=N");
        }
    }
    let mn = rig.cfg.enterprises[0]
        .outlets
        .iter()
        .find(|o| o.id == outlet)
        .and_then(|o| o.hj212.as_ref())
        .map(|h| h.mn.to_string())
        .unwrap();
    let mut sim = rig.sim(&mn);
    sim.upload("2011", lt(now, tz), "w01018-Rtd=31.5,w01018-Flag=N")
        .await
        .unwrap();
    let first = sim
        .answer_history(&backlog, HistoryMode::Answer, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a history request");
    assert_eq!(first.cn, "2061");
    assert_eq!((first.begin, first.end), (lt(gap[0], tz), lt(gap[2], tz)));
    assert_eq!(first.uploaded, 3);
    Outage {
        gap,
        backlog,
        sim,
        missing,
    }
}

fn hour(h: DateTime<Utc>, k: i64) -> DateTime<Utc> {
    h + chrono::Duration::hours(k)
}

fn minutes(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        out.push(t);
        t += chrono::Duration::minutes(1);
    }
    out
}

fn lt(t: DateTime<Utc>, tz: Tz) -> LocalDateTime {
    local(t, tz)
}

/// 2026-11-27 10:20 in Asia/Shanghai.
fn morning() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 2, 20, 0).unwrap()
}

async fn computed_outage_is_backfilled_with_minutes_and_missing_data_superseded(url: &str) {
    let now = morning();
    let rig = Rig::start(url, HOURLY_50, "6h", now).await;
    let tz = rig.tz();
    let o = outage(&rig, "DW001", now, ["31.0", "31.0", "31.0"]).await;
    let (gap, backlog, mut sim, missing) = (o.gap, o.backlog, o.sim, o.missing);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        let seg = sim.next_segment(deadline).await.expect("a minute request");
        if seg.contains("CN=2051") {
            break seg;
        }
    };
    let last_minute = hour(gap[2], 1) - chrono::Duration::minutes(1);
    assert!(
        second.contains(&format!(
            "BeginTime={};EndTime={}",
            lt(gap[0], tz),
            lt(last_minute, tz)
        )),
        "{second}"
    );
    // While the request waits for its answer, real-time uploads are answered
    // at once and stored.
    for k in 1..=3 {
        let at = now + chrono::Duration::seconds(10 * k);
        let d = sim
            .upload("2011", lt(at, tz), "w01018-Rtd=33.0,w01018-Flag=N")
            .await
            .unwrap();
        assert_eq!(d.attempts, 1, "real-time upload answered during a backfill");
        let q = ReadingQuery {
            kind: Some(DataKind::Rtd),
            from: Some(at),
            to: Some(at + chrono::Duration::seconds(1)),
            ..ReadingQuery::new("E1", LocationKind::Outlet, "DW001")
        };
        assert_eq!(
            rig.store.readings(&q).await.unwrap().len(),
            1,
            "stored before its 9014"
        );
    }
    let req = sim
        .answer_request(&second, &backlog, HistoryMode::Answer)
        .await
        .unwrap()
        .expect("answered");
    assert_eq!(req.uploaded, 180);

    let reqs = rig.requests(2).await;
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    for r in &reqs {
        assert_eq!(r.state, BackfillState::Done, "{r:#?}");
        assert_eq!((r.request.begin, r.request.end), (gap[0], hour(gap[2], 1)));
    }
    let mut cns: Vec<&str> = reqs.iter().map(|r| r.request.cn.as_str()).collect();
    cns.sort();
    assert_eq!(cns, ["2051", "2061"]);
    assert_eq!(
        reqs.iter().map(|r| r.readings).sum::<u64>(),
        183,
        "3 hours and 180 minutes"
    );

    // The minutes are judged late: each hour's missing_data is superseded.
    rig.assert_superseded(&missing).await;
    assert!(
        !rig.store
            .findings(&FindingQuery {
                rule: Some(RuleName::Exceedance.as_str().into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .iter()
            .any(|s| gap.contains(&s.finding.window_start)),
        "31 mg/L is below the limit"
    );

    // Every hour of the day so far was received and valid.
    rig.assert_day_complete("DW001", now).await;
    rig.stop().await;
}

/// The outage of the test above on an outlet judging the logger's own hourly
/// values: the hourly values alone make the hours valid again, so 2061 is all
/// that is asked, each hour's `missing_data` is superseded, and the hour whose
/// backfilled value is over the limit is found once.
async fn supplied_outage_is_backfilled_with_hours_and_missing_data_superseded(url: &str) {
    let now = morning();
    let rig = Rig::start(url, HOURLY_50, "6h", now).await;
    // The logger kept its hourly values; the middle hour was over the limit.
    let o = outage(&rig, "DW003", now, ["31.0", "80.0", "31.0"]).await;
    let (gap, backlog, mut sim, missing) = (o.gap, o.backlog, o.sim, o.missing);
    rig.assert_superseded(&missing).await;
    let over = hour_findings(&rig, "DW003", &gap, RuleName::Exceedance).await;
    assert_eq!(
        over.iter()
            .map(|s| (s.finding.window_start, s.finding.value))
            .collect::<Vec<_>>(),
        [(gap[1], Some(80.0))],
        "the backfilled hour over the limit, found once: {over:#?}"
    );
    // The hourly values are enough: no minutes are asked for.
    let again = sim
        .answer_history(&backlog, HistoryMode::Answer, Duration::from_millis(1500))
        .await
        .unwrap();
    assert_eq!(again, None, "no 2051 for an outlet judging supplied hours");

    rig.assert_day_complete("DW003", now).await;
    rig.stop().await;
}

/// A logger that stays connected but lets a request time out is asked again
/// after the backoff (twice `backfill_timeout`), with the next attempt number,
/// and the answer to the retry fills the gap.
async fn an_unanswered_request_is_asked_again_on_the_same_connection(url: &str) {
    retried_on_the_same_connection(url, None, BackfillState::Timeout).await;
}

/// The same with a logger that accepts the request (QnRtn=1) and then reports
/// that executing it failed (ExeRtn=2).
async fn a_failed_request_is_asked_again_on_the_same_connection(url: &str) {
    retried_on_the_same_connection(url, Some(HistoryMode::Fail(2)), BackfillState::Failed).await;
}

/// The logger's first history request is left unanswered (`first: None`) or
/// answered with `first`; the retry is answered in full.
async fn retried_on_the_same_connection(
    url: &str,
    first: Option<HistoryMode>,
    first_state: BackfillState,
) {
    let now = morning();
    let rig = Rig::start_with_timeout(url, HOURLY_50, "6h", "1s", now).await;
    let tz = rig.tz();
    let f = floor_hour(now);
    let day0 = hour(f, -10);
    let gap = [hour(f, -3), hour(f, -2), hour(f, -1)];
    let hours: Vec<_> = (0..7).map(|k| hour(day0, k)).collect();
    rig.write("DW003", DataKind::Hour, &hours).await;
    let mut backlog = Backlog::default();
    for g in gap {
        backlog.keep("2061", lt(g, tz), "w01018-Avg=31.0,w01018-Flag=N");
    }
    let mut sim = rig.sim("MN-WW-0003");
    sim.upload("2011", lt(now, tz), "w01018-Rtd=31.5,w01018-Flag=N")
        .await
        .unwrap();
    // The first request is read, and left unanswered or answered with `first`.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let ignored = loop {
        let seg = sim.next_segment(deadline).await.expect("a request");
        if seg.contains("CN=2061") {
            break seg;
        }
    };
    if let Some(mode) = first {
        sim.answer_request(&ignored, &backlog, mode)
            .await
            .unwrap()
            .expect("answered");
    }
    let retry = sim
        .answer_history(&backlog, HistoryMode::Answer, Duration::from_secs(15))
        .await
        .unwrap()
        .expect("the request asked again");
    assert_eq!(retry.cn, "2061");
    assert_eq!((retry.begin, retry.end), (lt(gap[0], tz), lt(gap[2], tz)));
    assert_eq!(retry.uploaded, 3);
    assert!(
        !ignored.contains(&format!("QN={}", retry.qn)),
        "a new QN: {ignored} / {retry:?}"
    );

    let reqs = common::backfill::requests(&rig.store, Some("MN-WW-0003"), 2).await;
    let mut seen: Vec<_> = reqs
        .iter()
        .map(|r| (r.request.attempt, r.state, r.readings))
        .collect();
    seen.sort_by_key(|s| s.0);
    assert_eq!(
        seen,
        [(1, first_state, 0), (2, BackfillState::Done, 3)],
        "{reqs:#?}"
    );
    rig.stop().await;
}

async fn connected_logger_is_asked_for_missing_days_and_short_hours(url: &str) {
    let now = morning();
    let rig = Rig::start(
        url,
        "[[outlets.limits]]\nfactor = \"w01018\"\nmax = 50.0\nbasis = \"day\"",
        "3d",
        now,
    )
    .await;
    let tz = rig.tz();
    let f = floor_hour(now);
    // Every hour of the window has its hourly value; the logger sent the daily
    // value of the day before yesterday, not yesterday's.
    let hours: Vec<_> = (1..=80).map(|k| hour(f, -k)).collect();
    rig.write("DW001", DataKind::Hour, &hours).await;
    let today = hour(f, -10);
    let (d2, d1) = (hour(today, -48), hour(today, -24));
    rig.write("DW001", DataKind::Day, &[d2]).await;

    let mut backlog = Backlog::default();
    backlog.keep("2031", lt(d1, tz), "w01018-Avg=25.0,w01018-Flag=N");
    let short = hour(f, -2);
    for m in minutes(short, hour(short, 1)) {
        backlog.keep("2051", lt(m, tz), "w01018-Avg=25.0,w01018-Flag=N");
    }

    // Nobody to ask yet.
    assert!(!rig.backfill.wanted("E1", "DW001", &[short], now));
    let mut sim = rig.sim("MN-WW-0001");
    sim.upload("2011", lt(now, tz), "w01018-Rtd=31.5,w01018-Flag=N")
        .await
        .unwrap();
    let req = sim
        .answer_history(&backlog, HistoryMode::Answer, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a request for the missing day");
    assert_eq!(req.cn, "2031");
    assert_eq!((req.begin, req.end), (lt(d1, tz), lt(d1, tz)));
    assert_eq!(req.uploaded, 1);
    let reqs = rig.requests(1).await;
    assert_eq!(reqs.len(), 1, "only the day is missing: {reqs:#?}");
    assert_eq!(reqs[0].state, BackfillState::Done);
    assert_eq!((reqs[0].request.begin, reqs[0].request.end), (d1, today));
    let q = ReadingQuery {
        kind: Some(DataKind::Day),
        ..ReadingQuery::new("E1", LocationKind::Outlet, "DW001")
    };
    assert_eq!(rig.store.readings(&q).await.unwrap().len(), 2);

    // Connected, the rules engine closes an hour short: its minutes are asked
    // for without a reconnect. An outlet with backfill = false is not asked.
    assert!(rig.backfill.wanted("E1", "DW001", &[short], now));
    assert!(!rig.backfill.wanted("E1", "DW002", &[short], now));
    let req = sim
        .answer_history(&backlog, HistoryMode::Answer, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a request for the short hour");
    assert_eq!(req.cn, "2051");
    assert_eq!(
        (req.begin, req.end),
        (
            lt(short, tz),
            lt(hour(short, 1) - chrono::Duration::minutes(1), tz)
        )
    );
    assert_eq!(req.uploaded, 60);
    let reqs = rig.requests(2).await;
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert!(
        reqs.iter().all(|r| r.state == BackfillState::Done),
        "{reqs:#?}"
    );

    // Settled: asking again for the same hour sends nothing.
    assert!(rig.backfill.wanted("E1", "DW001", &[short], now));
    let again = sim
        .answer_history(&backlog, HistoryMode::Answer, Duration::from_millis(1500))
        .await
        .unwrap();
    assert_eq!(again, None, "a settled hour is not asked again");
    rig.stop().await;
}
