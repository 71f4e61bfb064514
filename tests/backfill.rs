//! Backfill (issue #20) with the logger simulator over a real socket, on SQLite
//! and PostgreSQL: a 3-hour outage is asked for and filled after reconnect (and
//! the rates are back to 100 %), real-time uploads are answered while a request
//! is in flight, and a logger that refuses (QnRtn=2) or has nothing (ExeRtn=100)
//! is recorded and not asked again for that period.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use pollwatch::clock::SystemClock;
use pollwatch::completeness::rates::{floor_hour, local_day};
use pollwatch::config::Config;
use pollwatch::model::{DataKind, Flag, Stat};
use pollwatch::sim::{Backlog, HistoryMode, HistoryRequest, LoggerSim};
use pollwatch::sources::hj212::backfill::local;
use pollwatch::sources::hj212::codec::time::LocalDateTime;
use pollwatch::sources::hj212::{Backfill, BackfillSettings, Hj212Server, Registry, ServerConfig};
use pollwatch::store::{BackfillState, Batch, Store, Writer, WriterTask};
use tokio::sync::watch;

both_backends!(
    outage_is_backfilled_after_reconnect,
    refused_and_empty_periods_are_not_asked_again
);

struct Rig {
    cfg: Config,
    store: Store,
    writer: Option<(Writer, WriterTask)>,
    server: Option<Hj212Server>,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(url: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let cfg = common::backfill::config(
            dir.path(),
            url,
            "6h",
            "3s",
            &common::completeness::enterprise(&[
                ("DW001", "MN-WW-0001"),
                ("DW002", "MN-WW-0002"),
                ("DW003", "MN-WW-0003"),
            ]),
        );
        let (store, writer, task) = common::store_and_writer(url).await;
        let (stop, stop_rx) = watch::channel(false);
        let (_tx, registry) = watch::channel(Arc::new(Registry::from_config(&cfg)));
        let mut scfg = ServerConfig::from_config(&cfg);
        scfg.quiet = Duration::from_millis(200);
        let backfill = Backfill::start(store.clone(), BackfillSettings::from_config(&cfg));
        let server = Hj212Server::start_with_backfill(
            scfg,
            registry,
            writer.clone(),
            Arc::new(SystemClock),
            stop_rx,
            Some(backfill),
        )
        .await
        .unwrap();
        Rig {
            cfg,
            store,
            writer: Some((writer, task)),
            server: Some(server),
            stop,
            _dir: dir,
        }
    }

    fn tz(&self) -> Tz {
        self.cfg.timezone
    }

    fn sim(&self, mn: &str) -> LoggerSim {
        let mut s = LoggerSim::new(self.server.as_ref().unwrap().local_addr(), mn, "123456");
        s.answer_timeout = Duration::from_millis(1500);
        s
    }

    /// Hourly COD of `outlet` (as the logger uploaded them before the outage).
    async fn hours(&self, outlet: &str, mn: &str, hours: &[DateTime<Utc>]) {
        let rows = hours
            .iter()
            .map(|h| {
                let mut r = common::reading(outlet, "w01018", 0, 20.0);
                r.ts = *h;
                r.kind = DataKind::Hour;
                r.stat = Stat::Avg;
                r.flag = Flag::N;
                r.source.device = mn.into();
                r
            })
            .collect();
        let (w, _) = self.writer.as_ref().unwrap();
        w.write(Batch::readings(rows)).await.unwrap();
    }

    async fn requests(&self, mn: &str) -> Vec<pollwatch::store::BackfillRow> {
        common::backfill::requests(&self.store, Some(mn), 1).await
    }

    /// A logger connects again and uploads; what it is asked for within 1.5 s.
    async fn reconnect(&self, mn: &str, now: DateTime<Utc>) -> Option<HistoryRequest> {
        let mut sim = self.sim(mn);
        sim.upload("2011", lt(now, self.tz()), "w01018-Rtd=31.5,w01018-Flag=N")
            .await
            .unwrap();
        sim.answer_history(
            &Backlog::default(),
            HistoryMode::Answer,
            Duration::from_millis(1500),
        )
        .await
        .unwrap()
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
        self.store.close().await;
    }
}

fn hour(h: DateTime<Utc>, k: i64) -> DateTime<Utc> {
    h + chrono::Duration::hours(k)
}

fn lt(t: DateTime<Utc>, tz: Tz) -> LocalDateTime {
    local(t, tz)
}

async fn outage_is_backfilled_after_reconnect(url: &str) {
    let rig = Rig::start(url).await;
    let tz = rig.tz();
    let now = Utc::now();
    let f = floor_hour(now);
    // Every hour since the start of yesterday (local) is stored, except the three
    // hours of the outage: F-5h, F-4h, F-3h.
    let first = pollwatch::completeness::rates::day_start(local_day(hour(f, -30), tz), tz).unwrap();
    let gap = [hour(f, -5), hour(f, -4), hour(f, -3)];
    let mut stored = Vec::new();
    let mut h = first;
    while h < f {
        if !gap.contains(&h) {
            stored.push(h);
        }
        h = hour(h, 1);
    }
    rig.hours("DW001", "MN-WW-0001", &stored).await;
    let mut backlog = Backlog::default();
    for (i, g) in gap.iter().enumerate() {
        backlog.keep(
            "2061",
            lt(*g, tz),
            &format!("w01018-Avg={},w01018-Flag=N", 30 + i),
        );
    }

    // The logger comes back: a real-time upload, then the platform asks.
    let mut sim = rig.sim("MN-WW-0001");
    sim.upload("2011", lt(now, tz), "w01018-Rtd=31.5,w01018-Flag=N")
        .await
        .unwrap();
    // Real-time uploads are answered while the request waits for its answer: the
    // request came in, we delay our answer and upload real-time data first.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let req_text = loop {
        let seg = sim.next_segment(deadline).await.expect("a history request");
        if seg.contains("CN=2061") {
            break seg;
        }
    };
    assert!(
        req_text.contains(&format!("BeginTime={}", lt(gap[0], tz))),
        "{req_text}"
    );
    assert!(
        req_text.contains(&format!("EndTime={}", lt(gap[2], tz))),
        "{req_text}"
    );
    for i in 0..3 {
        let d = sim
            .upload(
                "2011",
                lt(now, tz),
                &format!("w01018-Rtd={}.0,w01018-Flag=N", 40 + i),
            )
            .await
            .unwrap();
        assert_eq!(
            d.attempts, 1,
            "real-time upload answered while a backfill runs"
        );
    }
    // Now answer the request as a logger does (the sim re-reads it: push it back).
    let qn = req_text
        .split(';')
        .find_map(|f| f.strip_prefix("QN="))
        .unwrap()
        .to_string();
    let answer = |cn: &str, cp: &str| {
        format!("QN={qn};ST=91;CN={cn};PW=123456;MN=MN-WW-0001;Flag=4;CP=&&{cp}&&")
    };
    let frame = sim.encode(&answer("9011", "QnRtn=1")).unwrap();
    sim.send_raw(&frame).await.unwrap();
    for ((_, at), cp) in &backlog.periods {
        sim.upload("2061", *at, cp).await.unwrap();
    }
    let frame = sim.encode(&answer("9012", "ExeRtn=1")).unwrap();
    sim.send_raw(&frame).await.unwrap();

    let reqs = rig.requests("MN-WW-0001").await;
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let r = &reqs[0];
    assert_eq!(r.state, BackfillState::Done, "{r:#?}");
    assert_eq!((r.qn_rtn, r.exe_rtn, r.readings), (Some(1), Some(1), 3));
    assert_eq!((r.request.begin, r.request.end), (gap[0], hour(gap[2], 1)));
    assert_eq!(r.request.cn, "2061");

    // The hours are stored, and the rates are back to 100 %.
    let report = pollwatch::completeness::transmission_report(
        &rig.cfg,
        &rig.store,
        local_day(first, tz),
        local_day(f, tz).succ_opt().unwrap(),
        Some("E1"),
        Utc::now(),
    )
    .await
    .unwrap();
    let row = report.rows.iter().find(|r| r.outlet == "DW001").unwrap();
    assert!(row.counts.expected >= 24, "{row:?}");
    assert_eq!(row.counts.received, row.counts.expected, "{row:?}");
    assert_eq!(row.counts.effective_rate(), Some(1.0), "{row:?}");

    // Reconnecting asks for nothing more.
    sim.disconnect();
    let req = rig.reconnect("MN-WW-0001", now).await;
    assert_eq!(req, None, "the gap is filled: nothing to ask for");
    rig.stop().await;
}

async fn refused_and_empty_periods_are_not_asked_again(url: &str) {
    let rig = Rig::start(url).await;
    let tz = rig.tz();
    let now = Utc::now();
    let f = floor_hour(now);
    // DW002 and DW003 each lack F-3h and F-2h in the window.
    let mut stored = Vec::new();
    for k in -8..0 {
        if k != -3 && k != -2 {
            stored.push(hour(f, k));
        }
    }
    rig.hours("DW002", "MN-WW-0002", &stored).await;
    rig.hours("DW003", "MN-WW-0003", &stored).await;

    for (mn, mode, state) in [
        ("MN-WW-0002", HistoryMode::Refuse(2), BackfillState::Refused),
        ("MN-WW-0003", HistoryMode::NoData, BackfillState::NoData),
    ] {
        let mut sim = rig.sim(mn);
        sim.upload("2011", lt(now, tz), "w01018-Rtd=31.5,w01018-Flag=N")
            .await
            .unwrap();
        let req = sim
            .answer_history(&Backlog::default(), mode, Duration::from_secs(10))
            .await
            .unwrap()
            .expect("a history request");
        assert_eq!(
            (req.begin, req.end),
            (lt(hour(f, -3), tz), lt(hour(f, -2), tz))
        );
        let reqs = rig.requests(mn).await;
        assert_eq!(reqs.len(), 1, "{reqs:#?}");
        assert_eq!(reqs[0].state, state, "{:#?}", reqs[0]);
        match mode {
            HistoryMode::Refuse(_) => assert_eq!(reqs[0].qn_rtn, Some(2)),
            _ => assert_eq!((reqs[0].qn_rtn, reqs[0].exe_rtn), (Some(1), Some(100))),
        }
        // Back again: the period is settled and not asked for.
        sim.disconnect();
        let again = rig.reconnect(mn, now).await;
        assert_eq!(again, None, "{mn}: asked again for a settled period");
        assert_eq!(rig.requests(mn).await.len(), 1);
    }
    rig.stop().await;
}
