//! The HJ 212 server, the store writer and the rules task on a manual clock, as
//! in the daemon: a logger uploads, the rules judge what was stored.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use pollwatch::clock::ManualClock;
use pollwatch::config::Config;
use pollwatch::rules::task::{RulesTask, TaskOptions};
use pollwatch::rules::{Finding, Plan};
use pollwatch::sim::LoggerSim;
use pollwatch::sources::hj212::codec::time::LocalDateTime;
use pollwatch::sources::hj212::{Hj212Server, Registry, ServerConfig};
use pollwatch::store::{FindingQuery, Store, StoreOptions, StoredFinding, Writer};
use tokio::sync::watch;

/// A local (Asia/Shanghai) time of November 2026, for the logger and in UTC.
pub fn local(day: u8, hour: u8, minute: u8) -> (LocalDateTime, DateTime<Utc>) {
    let lt = LocalDateTime {
        year: 2026,
        month: 11,
        day,
        hour,
        minute,
        second: 0,
    };
    let utc = Utc
        .with_ymd_and_hms(
            2026,
            11,
            u32::from(day),
            u32::from(hour),
            u32::from(minute),
            0,
        )
        .unwrap()
        - Duration::hours(8);
    (lt, utc)
}

pub struct Rig {
    pub store: Store,
    pub clock: Arc<ManualClock>,
    server: Option<Hj212Server>,
    stop: watch::Sender<bool>,
    writer: Option<(Writer, pollwatch::store::WriterTask)>,
    rules: Option<RulesTask>,
    pub logger: LoggerSim,
    _dir: Option<tempfile::TempDir>,
}

impl Rig {
    /// Starts on `url` with `cfg` (written in `dir`, kept while the rig lives), the
    /// clock at `now`, and a logger speaking for `mn`.
    pub async fn start(
        url: &str,
        cfg: &Config,
        dir: Option<tempfile::TempDir>,
        now: DateTime<Utc>,
        (mn, pw, st): (&str, &str, &str),
    ) -> Rig {
        let store = Store::open(url, &StoreOptions::default()).await.unwrap();
        let clock = Arc::new(ManualClock::new(now));
        let (writer, wtask, rules) = super::rules_pipeline(
            &store,
            &clock,
            watch::channel(Arc::new(Plan::new(cfg))).1,
            TaskOptions {
                tick: StdDuration::from_millis(20),
                rejudge_quiet: StdDuration::from_millis(300),
                ..TaskOptions::default()
            },
            None,
        );
        let (stop, stop_rx) = watch::channel(false);
        let (_tx, registry) = watch::channel(Arc::new(Registry::from_config(cfg)));
        let mut scfg = ServerConfig::from_config(cfg);
        scfg.quiet = StdDuration::from_millis(200);
        let server = Hj212Server::start(scfg, registry, writer.clone(), clock.clone(), stop_rx)
            .await
            .unwrap();
        let mut logger = LoggerSim::new(server.local_addr(), mn, pw);
        logger.st = st.into();
        Rig {
            store,
            clock,
            server: Some(server),
            stop,
            writer: Some((writer, wtask)),
            rules: Some(rules),
            logger,
            _dir: dir,
        }
    }

    /// Uploads `cn` for the period starting at local `day hour:minute`, on a
    /// clock set to when a logger sends it: two minutes after the period ends.
    pub async fn upload(&mut self, cn: &str, (day, hour, minute): (u8, u8, u8), cp: &str) {
        let (lt, utc) = local(day, hour, minute);
        let span = match cn {
            "2011" => Duration::zero(),
            "2051" => Duration::minutes(1),
            "2111" => Duration::minutes(5),
            "2061" => Duration::hours(1),
            _ => Duration::days(1),
        };
        self.at(utc + span + Duration::minutes(2));
        self.upload_now(cn, lt, cp).await;
    }

    /// Uploads on the clock as it is (a late upload).
    pub async fn upload_now(&mut self, cn: &str, lt: LocalDateTime, cp: &str) {
        self.logger
            .upload(cn, lt, cp)
            .await
            .unwrap_or_else(|e| panic!("upload {cn} {lt}: {e:?}"));
    }

    /// Moves the clock forward to `t` (never back).
    pub fn at(&self, t: DateTime<Utc>) {
        let now = pollwatch::clock::Clock::now(&*self.clock);
        if t > now {
            self.clock.set(t);
        }
    }

    pub async fn findings(&self) -> Vec<StoredFinding> {
        self.store
            .findings(&FindingQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// Waits until a finding matching `want` is stored.
    pub async fn wait_for(&self, want: impl Fn(&Finding) -> bool) -> StoredFinding {
        for _ in 0..500 {
            if let Some(f) = self.findings().await.into_iter().find(|f| want(&f.finding)) {
                return f;
            }
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
        panic!("not found within 10 s: {:#?}", self.findings().await);
    }

    /// Stops the server, the writer and the rules task (which judges what is
    /// left), and returns every stored finding.
    pub async fn finish(mut self) -> (Store, Vec<StoredFinding>) {
        let _ = self.stop.send(true);
        if let Some(s) = self.server.take() {
            s.join().await;
        }
        if let Some((w, t)) = self.writer.take() {
            drop(w);
            t.finish(StdDuration::from_secs(5)).await;
        }
        if let Some(r) = self.rules.take() {
            r.join(StdDuration::from_secs(20)).await;
        }
        let found = self.findings().await;
        (self.store.clone(), found)
    }
}
