//! Alerting never waits on a provider (issue: hanging providers stalled the
//! alert path). Real local peers: one that accepts TCP connections and never
//! answers, and a WeCom-shaped receiver that answers at once. The alerts task
//! runs as the daemon runs it ([`AlertsTask::spawn_from_config`]) on SQLite.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use pollwatch::alerts::{AlertEngine, AlertsSetup, AlertsTask, Dispatcher};
use pollwatch::clock::{Clock, ManualClock, SystemClock};
use pollwatch::config::Config;
use pollwatch::model::Location;
use pollwatch::notify::{HealthBoard, Notifier};
use pollwatch::rules::{Evidence, Finding, RuleName, Severity};
use pollwatch::store::{AlertQuery, AlertState, Store, StoreOptions, StoredFinding};
use tokio::sync::{mpsc, watch};

/// Accepts connections and never answers; keeps them open.
async fn hanging_peer() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    format!("http://{addr}/cgi-bin/webhook/send?key=k")
}

/// E1 (吴中区) is routed over `hang` then `fast`… as `routes` says; E2 (相城区)
/// over `fast` alone.
fn config(dir: &std::path::Path, hang: &str, fast: &str, e1_channels: &str) -> Config {
    config_with(dir, hang, "", fast, e1_channels)
}

fn config_with(
    dir: &std::path::Path,
    hang: &str,
    hang_extra: &str,
    fast: &str,
    e1_channels: &str,
) -> Config {
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\nstate_dir = {:?}\n[storage]\nurl = \"sqlite://{}/a.db\"\n\n\
             [[channels]]\nid = \"hang\"\nkind = \"wecom\"\nurl = \"{hang}\"\nformat = \"text\"\ntimeout = \"3s\"\nmax_attempts = 1\n{hang_extra}\n\
             [[channels]]\nid = \"fast\"\nkind = \"wecom\"\nurl = \"{fast}\"\nformat = \"text\"\n",
            dir.join("state").display().to_string(),
            dir.display(),
        ),
    )
    .unwrap();
    std::fs::write(
        cfg.join("duty.toml"),
        format!(
            r#"
[[officers]]
id = "zhangwei"
name = "张伟"
mobile = "13800000001"

[[teams]]
id = "t"
name = "执法大队"
members = ["zhangwei"]

[[rotations]]
team = "t"
shift = "daily"
handover = "08:30"
start = "2026-11-23"
officers = ["zhangwei"]

[[routes]]
districts = ["吴中区"]
team = "t"
channels = {e1_channels}

[[routes]]
team = "t"
channels = ["fast"]
"#
        ),
    )
    .unwrap();
    for (id, district) in [("E1", "吴中区"), ("E2", "相城区")] {
        std::fs::write(
            cfg.join(format!("enterprises/{id}.toml")),
            format!(
                "id = \"{id}\"\nname = \"{id} 热电\"\ndistrict = \"{district}\"\nindustry = \"火电\"\n\n\
                 [[outlets]]\nid = \"DA001\"\nname = \"1#锅炉烟囱\"\nkind = \"flue_gas\"\n\n\
                 [[outlets.limits]]\nfactor = \"a21026\"\nmax = 35.0\nbasis = \"hour\"\n"
            ),
        )
        .unwrap();
    }
    Config::load(&cfg, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap()
}

fn finding(enterprise: &str, rule: RuleName, factor: &str, start: DateTime<Utc>) -> Finding {
    Finding {
        rule,
        severity: Severity::Violation,
        enterprise: enterprise.into(),
        location: Some(Location::Outlet("DA001".into())),
        factor: factor.into(),
        window_start: start,
        window_end: start + chrono::Duration::hours(1),
        at: start + chrono::Duration::hours(1),
        value: Some(41.2),
        threshold: Some(35.0),
        detail: "outlets[0].limits[0]".into(),
        message: format!("{factor} 小时均值 41.2 mg/m³，限值 35"),
        evidence: Evidence::default(),
    }
}

async fn stored(store: &Store, fs: Vec<Finding>, now: DateTime<Utc>) -> Vec<StoredFinding> {
    let ids = store.insert_findings(&fs, now).await.unwrap();
    fs.into_iter()
        .zip(ids)
        .map(|(finding, id)| StoredFinding {
            id: id.expect("new finding"),
            created: now,
            finding,
        })
        .collect()
}

struct Running {
    store: Store,
    findings: mpsc::Sender<Vec<StoredFinding>>,
    stop: watch::Sender<bool>,
    task: AlertsTask,
    _dir: tempfile::TempDir,
}

async fn start(e1_channels: &str) -> (Running, common::wecom::Seen) {
    let dir = tempfile::tempdir().unwrap();
    let hang = hanging_peer().await;
    let (fast, seen) = common::wecom::receiver(false).await;
    let cfg = Arc::new(config(dir.path(), &hang, &fast, e1_channels));
    let store = Store::open(&cfg.storage_url, &StoreOptions::default())
        .await
        .unwrap();
    let (findings, rx) = mpsc::channel(64);
    let (stop, stop_rx) = watch::channel(false);
    let (_cfg_tx, cfg_rx) = watch::channel(cfg);
    let task = AlertsTask::spawn_from_config(
        store.clone(),
        AlertsSetup {
            clock: Arc::new(SystemClock),
            metrics: Default::default(),
            health: HealthBoard::default(),
            tick: Duration::from_secs(10),
        },
        rx,
        stop_rx,
        cfg_rx,
    );
    // The config sender must outlive the task (a closed channel ends it).
    std::mem::forget(_cfg_tx);
    (
        Running {
            store,
            findings,
            stop,
            task,
            _dir: dir,
        },
        seen,
    )
}

async fn open_alerts(store: &Store) -> usize {
    store
        .alerts(&AlertQuery {
            state: Some(AlertState::Open),
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

/// Waits until `n` alerts are open or `limit` passes.
async fn until_open(store: &Store, n: usize, limit: Duration) {
    let t = Instant::now();
    while open_alerts(store).await < n && t.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn burst(n: usize) {
    let (r, _seen) = start(r#"["hang"]"#).await;
    let now = Utc::now();
    let fs = (0..n)
        .map(|i| finding("E1", RuleName::Exceedance, &format!("x{i:04}"), t0()))
        .collect();
    let batch = stored(&r.store, fs, now).await;
    // As the rules task hands them over: in batches of 50.
    let t = Instant::now();
    for chunk in batch.chunks(50) {
        r.findings.send(chunk.to_vec()).await.unwrap();
    }
    until_open(&r.store, n, Duration::from_secs(30)).await;
    let took = t.elapsed();
    let open = open_alerts(&r.store).await;
    eprintln!("{n} alerts open after {took:?} while every channel hangs");
    // The channel accepts and never answers: had opening an alert waited on a
    // delivery, none would be open within the limit. How fast they open is a
    // benchmark's question (`pollwatch bench alert-load`), not a test's.
    assert_eq!(open, n, "all alerts open while every delivery hangs");
    // Their notifications are in the hanging channel's lane, not lost and not
    // sent: still pending, or — where the channel's timeout came first on a slow
    // machine — settled as not delivered, to be retried.
    let outbox = r.store.outbox(None, None, 10_000).await.unwrap();
    assert_eq!(outbox.len(), n, "one notification per alert");
    let sent: Vec<_> = outbox.iter().filter(|o| o.state == "sent").collect();
    assert!(sent.is_empty(), "a hanging channel delivered {sent:?}");
    let _ = r.stop.send(true);
    r.task.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_alerts_open_at_once_while_the_channel_hangs() {
    burst(20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_alerts_open_while_the_channel_hangs() {
    burst(1000).await;
}

/// E1's route goes over the hanging channel (each attempt waits its 3-s
/// timeout); E2's over the answering one. E2's alert, raised after ten of E1's,
/// is delivered before the first of E1's attempts has even timed out: when it
/// arrives, no attempt of E1's is on record (attempts are recorded when the
/// channel has answered or timed out). An ordering, not a stopwatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_channel_does_not_delay_another_channels_deliveries() {
    let (r, seen) = start(r#"["hang"]"#).await;
    let now = Utc::now();
    let e1: Vec<Finding> = (0..10)
        .map(|i| finding("E1", RuleName::Exceedance, &format!("x{i}"), t0()))
        .collect();
    r.findings
        .send(stored(&r.store, e1, now).await)
        .await
        .unwrap();
    let e2 = stored(
        &r.store,
        vec![finding("E2", RuleName::Exceedance, "a21026", t0())],
        now,
    )
    .await;
    let t = Instant::now();
    r.findings.send(e2).await.unwrap();
    while seen.lock().unwrap().is_empty() && t.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = t.elapsed();
    let got = seen.lock().unwrap().clone();
    let mut settled = Vec::new();
    for row in r.store.outbox(None, None, 1000).await.unwrap() {
        settled.extend(r.store.alert_attempts(row.alert_id).await.unwrap());
    }
    assert_eq!(
        got.len(),
        1,
        "only E2's alert goes over the answering channel"
    );
    assert!(got[0].to_string().contains("E2"), "{}", got[0]);
    let hung: Vec<_> = settled.iter().filter(|a| a.channel == "hang").collect();
    assert!(
        hung.is_empty(),
        "E2's delivery waited behind the hanging channel: E1's attempts had already timed out: {hung:?}"
    );
    println!("E2 delivered {took:?} after it was raised, while E1's 10 attempts hang");
    let _ = r.stop.send(true);
    r.task.join().await;
}

/// A channel whose secret file is missing is unavailable; alerting runs, the
/// alert opens, and the route's next channel carries the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_channel_falls_back_to_the_routes_next_channel() {
    let dir = tempfile::tempdir().unwrap();
    let (fast, seen) = common::wecom::receiver(false).await;
    let cfg = Arc::new(config_with(
        dir.path(),
        "http://127.0.0.1:9/x?key={token}",
        "token_file = \"/nonexistent/wecom.key\"\n",
        &fast,
        r#"["hang", "fast"]"#,
    ));
    let clock = Arc::new(ManualClock::new(t0()));
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    let notifier = Arc::new(Notifier::from_config(&cfg, clock_dyn.clone()));
    let down = notifier
        .health()
        .into_iter()
        .find(|c| c.channel == "hang")
        .unwrap();
    assert!(
        down.down
            .as_deref()
            .unwrap()
            .contains("/nonexistent/wecom.key"),
        "{down:?}"
    );
    let store = Store::open(&cfg.storage_url, &StoreOptions::default())
        .await
        .unwrap();
    let engine = AlertEngine::new(store.clone(), notifier.clone(), cfg, clock_dyn.clone());
    let mut dispatcher = Dispatcher::new(store.clone(), notifier, clock_dyn);
    let f = stored(
        &store,
        vec![finding("E1", RuleName::Exceedance, "a21026", t0())],
        t0(),
    )
    .await;
    let rec = engine.on_finding(&f[0]).await.unwrap();
    assert!(rec.opened);
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "delivered over the next channel"
    );
    let attempts = store.alert_attempts(rec.alert_id).await.unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].channel, "hang");
    assert_eq!(attempts[0].code.as_deref(), Some("channel-unavailable"));
    assert!(attempts[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("/nonexistent/wecom.key"));
    assert_eq!(attempts[1].channel, "fast");
    assert_eq!(attempts[1].result, "accepted");
}

/// Two days offline: one `offline` alert; the hourly `missing_data` findings of
/// the outage are on its timeline and open nothing, notify nobody. A
/// `missing_data` hour from before the outage is an alert of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_data_during_an_outage_is_recorded_on_the_offline_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (fast, seen) = common::wecom::receiver(false).await;
    let cfg = Arc::new(config(dir.path(), &fast, &fast, r#"["fast"]"#));
    let last_data = t0();
    let clock = Arc::new(ManualClock::new(last_data + chrono::Duration::minutes(30)));
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    let notifier = Arc::new(Notifier::from_config(&cfg, clock_dyn.clone()));
    let store = Store::open(&cfg.storage_url, &StoreOptions::default())
        .await
        .unwrap();
    let engine = AlertEngine::new(store.clone(), notifier.clone(), cfg, clock_dyn.clone());
    let mut dispatcher = Dispatcher::new(store.clone(), notifier, clock_dyn);

    let mut offline = finding("E1", RuleName::Offline, "", last_data);
    offline.window_end = clock.now();
    let off = stored(&store, vec![offline], clock.now()).await;
    let off_alert = engine.on_finding(&off[0]).await.unwrap().alert_id;
    dispatcher.run_once().await.unwrap();
    // Each hour of the two days closes short of data, one finding an hour.
    for h in 0..48 {
        let start = last_data + chrono::Duration::hours(h);
        clock.set(start + chrono::Duration::hours(1) + chrono::Duration::minutes(5));
        let f = stored(
            &store,
            vec![finding("E1", RuleName::MissingData, "a21026", start)],
            clock.now(),
        )
        .await;
        let rec = engine.on_finding(&f[0]).await.unwrap();
        assert!(rec.inhibited && !rec.opened, "hour {h}: {rec:?}");
        assert_eq!(rec.alert_id, off_alert);
        engine.tick().await.unwrap();
        dispatcher.run_once().await.unwrap();
    }
    let all = store
        .alerts(&AlertQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "only the offline alert: {all:?}");
    assert_eq!(all[0].rule, "offline");
    assert_eq!(
        all[0].state,
        AlertState::Open,
        "kept live by the outage's hours"
    );
    let timeline = store.alert_events(off_alert).await.unwrap();
    let inhibited = timeline.iter().filter(|e| e.kind == "inhibited").count();
    assert_eq!(inhibited, 48);
    assert_eq!(store.alert_finding_ids(off_alert).await.unwrap().len(), 49);
    assert_eq!(seen.lock().unwrap().len(), 1, "the offline message alone");

    // An hour that closed short before the logger went silent is not part of
    // the outage: an alert of its own.
    let before = stored(
        &store,
        vec![finding(
            "E1",
            RuleName::MissingData,
            "a21026",
            last_data - chrono::Duration::hours(2),
        )],
        clock.now(),
    )
    .await;
    let rec = engine.on_finding(&before[0]).await.unwrap();
    assert!(rec.opened && !rec.inhibited);
}
