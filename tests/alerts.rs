//! Alerts end to end on a simulated clock: a finding reaches the officer on duty
//! through a local WeCom-shaped receiver with the right numbers; unacknowledged it
//! escalates on time; acknowledged it does not; a restart with notifications
//! pending delivers each once; an alert resolves by itself after its hold time;
//! the timeline's hash chain detects an edited row. Runs on SQLite, and on
//! PostgreSQL when `PW_TEST_DATABASE_URL` is set.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use pollwatch::alerts::{AlertEngine, Dispatcher};
use pollwatch::clock::{Clock, ManualClock};
use pollwatch::config::Config;
use pollwatch::model::Location;
use pollwatch::notify::Notifier;
use pollwatch::rules::{Evidence, Finding, LimitRef, RuleName, Severity};
use pollwatch::store::{verify_chain, AlertState, Store, StoreOptions, StoredFinding};

fn config(dir: &std::path::Path, url: &str, storage: &str) -> Config {
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\nstate_dir = {:?}\n[storage]\nurl = {storage:?}\n\n[alerts]\nconsole_url = \"http://console.example\"\n\n\
             [[channels]]\nid = \"wecom\"\nkind = \"wecom\"\nurl = \"{url}\"\nformat = \"text\"\nmention = true\n",
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(
        cfg.join("duty.toml"),
        r#"
[[officers]]
id = "zhangwei"
name = "张伟"
mobile = "13800000001"

[[officers]]
id = "chenjing"
name = "陈静"
mobile = "13800000009"

[[teams]]
id = "wuzhong"
name = "吴中区执法大队"
members = ["zhangwei"]

[[rotations]]
team = "wuzhong"
shift = "daily"
handover = "08:30"
start = "2026-11-23"
officers = ["zhangwei"]

[[routes]]
team = "wuzhong"
channels = ["wecom"]
escalation = "standard"

[[escalation]]
id = "standard"

[[escalation.levels]]
after = "0m"
on_duty = true

[[escalation.levels]]
after = "15m"
officers = ["chenjing"]
"#,
    )
    .unwrap();
    std::fs::write(
        cfg.join("enterprises/e1.toml"),
        r#"
id = "E1"
name = "东山热电"
district = "吴中区"
industry = "火电"

[[outlets]]
id = "DA001"
name = "1#锅炉烟囱"
kind = "flue_gas"
o2_reference = 6.0

[[outlets.limits]]
factor = "a21026"
max = 35.0
basis = "hour"

[[outlets.limits]]
factor = "a21002"
max = 50.0
basis = "hour"
"#,
    )
    .unwrap();
    Config::load(&cfg, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn t0() -> DateTime<Utc> {
    // 10:00 in Shanghai: within the day shift.
    Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap()
}

fn finding(factor: &str, value: f64, limit: f64, hour: i64) -> Finding {
    let start = t0() - Duration::hours(1) + Duration::hours(hour);
    Finding {
        rule: RuleName::Exceedance,
        severity: Severity::Violation,
        enterprise: "E1".into(),
        location: Some(Location::Outlet("DA001".into())),
        factor: factor.into(),
        window_start: start,
        window_end: start + Duration::hours(1),
        at: start + Duration::hours(1),
        value: Some(value),
        threshold: Some(limit),
        detail: "outlets[0].limits[0]".into(),
        message: format!("{factor} 小时均值(折算) {value} mg/m³，限值 {limit}"),
        evidence: Evidence {
            average: Some(value),
            limit: Some(LimitRef {
                min: None,
                max: Some(limit),
                basis: "hour".into(),
                warn_at: Some(0.8),
                o2_reference: Some(6.0),
                file: "enterprises/e1.toml".into(),
                key: "outlets[0].limits[0]".into(),
            }),
            ..Default::default()
        },
    }
}

async fn store_finding(store: &Store, f: Finding, now: DateTime<Utc>) -> StoredFinding {
    let ids = store
        .insert_findings(std::slice::from_ref(&f), now)
        .await
        .unwrap();
    StoredFinding {
        id: ids[0].expect("new finding"),
        created: now,
        finding: f,
    }
}

struct Rig {
    store: Store,
    clock: Arc<ManualClock>,
    cfg: Arc<Config>,
}

impl Rig {
    fn parts(&self) -> (AlertEngine, Dispatcher) {
        let clock: Arc<dyn Clock> = self.clock.clone();
        let notifier = Arc::new(Notifier::from_config(&self.cfg, clock.clone()));
        (
            AlertEngine::new(
                self.store.clone(),
                notifier.clone(),
                self.cfg.clone(),
                clock.clone(),
            ),
            Dispatcher::new(self.store.clone(), notifier, clock),
        )
    }
}

async fn scenario(storage: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (url, seen) = common::wecom::receiver(false).await;
    let storage = storage.replace("{dir}", &dir.path().display().to_string());
    let cfg = Arc::new(config(dir.path(), &url, &storage));
    let store = Store::open(&cfg.storage_url, &StoreOptions::default())
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let rig = Rig {
        store: store.clone(),
        clock: clock.clone(),
        cfg,
    };
    let (engine, mut dispatcher) = rig.parts();

    // An exceedance reaches the officer on duty with the numbers that matter.
    let so2 = store_finding(&store, finding("a21026", 41.2, 35.0, 0), clock.now()).await;
    let rec = engine.on_finding(&so2).await.unwrap();
    assert!(rec.opened);
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    let first = seen.lock().unwrap().clone();
    assert_eq!(first.len(), 1, "{first:#?}");
    let text = first[0]["text"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("{first:#?}"))
        .to_string();
    for needle in [
        "东山热电",
        "41.2",
        "35",
        "mg/m³",
        &format!("http://console.example/alerts/{}", rec.alert_id),
    ] {
        assert!(text.contains(needle), "{needle:?} missing in {text}");
    }
    assert_eq!(
        first[0]["text"]["mentioned_mobile_list"],
        serde_json::json!(["13800000001"])
    );

    // The same condition an hour later updates the alert; it does not open another.
    let again = store_finding(&store, finding("a21026", 44.0, 35.0, 1), clock.now()).await;
    let rec2 = engine.on_finding(&again).await.unwrap();
    assert_eq!((rec2.alert_id, rec2.opened), (rec.alert_id, false));
    let alert = store.alert(rec.alert_id).await.unwrap().unwrap();
    assert_eq!((alert.count, alert.value), (2, Some(44.0)));

    // A second alert, acknowledged at once: it must not escalate.
    let nox = store_finding(&store, finding("a21002", 61.0, 50.0, 0), clock.now()).await;
    let rec_nox = engine.on_finding(&nox).await.unwrap();
    dispatcher.run_once().await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2);
    engine
        .acknowledge(rec_nox.alert_id, "zhangwei", "已电话核实")
        .await
        .unwrap()
        .unwrap();

    // 14 minutes: nothing is due yet.
    clock.advance(Duration::minutes(14));
    assert!(engine.tick().await.unwrap().escalated.is_empty());
    // 15 minutes unacknowledged: the section chief is told; the acked alert stays quiet.
    clock.advance(Duration::minutes(1));
    let tick = engine.tick().await.unwrap();
    assert_eq!(
        tick.escalated,
        vec![(rec.alert_id, vec!["L1R0".to_string()])]
    );
    dispatcher.run_once().await.unwrap();
    let all = seen.lock().unwrap().clone();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[2]["text"]["mentioned_mobile_list"],
        serde_json::json!(["13800000009"])
    );

    // A restart with a notification pending: the new process sends it, once.
    let mut f = finding("a21002", 70.0, 50.0, 3);
    f.rule = RuleName::EarlyWarning;
    let warn = store_finding(&store, f, clock.now()).await;
    let rec_warn = engine.on_finding(&warn).await.unwrap();
    drop((engine, dispatcher));
    let (engine, mut dispatcher) = rig.parts();
    // A finding stored just before the stop, never recorded on its alert.
    let missed = store_finding(&store, finding("a21002", 80.0, 50.0, 4), clock.now()).await;
    let _ = missed;
    assert_eq!(engine.catch_up().await.unwrap(), 1);
    assert_eq!(engine.catch_up().await.unwrap(), 0);
    assert_eq!(
        store.alert(rec_nox.alert_id).await.unwrap().unwrap().count,
        2
    );
    dispatcher.recover().await.unwrap();
    dispatcher.run_once().await.unwrap();
    dispatcher.run_once().await.unwrap();
    let all = seen.lock().unwrap().clone();
    assert_eq!(all.len(), 4, "the pending message once, after the restart");
    let sent = store
        .outbox(Some("sent"), Some(rec_warn.alert_id), 10)
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);
    let attempts = store.alert_attempts(rec_warn.alert_id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].channel.as_str(), attempts[0].result.as_str()),
        ("wecom", "accepted")
    );

    // Clear for the hold time (2 h): resolved by itself; a new finding opens a new alert.
    clock.advance(Duration::hours(2) + Duration::minutes(1));
    let tick = engine.tick().await.unwrap();
    assert!(tick.resolved.contains(&rec.alert_id), "{tick:?}");
    let a = store.alert(rec.alert_id).await.unwrap().unwrap();
    assert_eq!(a.state, AlertState::Resolved);
    let later = store_finding(&store, finding("a21026", 50.0, 35.0, 6), clock.now()).await;
    let rec3 = engine.on_finding(&later).await.unwrap();
    assert!(rec3.opened && rec3.alert_id != rec.alert_id);

    // The timeline holds, and an edited row is detected.
    let events = store.alert_events(rec.alert_id).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "notification_queued",
            "notified",
            "finding",
            "escalated",
            "notified",
            "resolved"
        ]
    );
    verify_chain(&events).unwrap();
    let mut edited = events.clone();
    edited[3].detail = edited[3].detail.replace("44", "34");
    assert_eq!(verify_chain(&edited), Err(4));
    let mut dropped = events.clone();
    dropped.remove(2);
    assert!(verify_chain(&dropped).is_err());
}

/// The scenario's config with one edit to duty.toml, on a fresh store.
async fn rig_with(
    storage: &str,
    from: &str,
    to: &str,
) -> (tempfile::TempDir, Rig, common::wecom::Seen) {
    let dir = tempfile::tempdir().unwrap();
    let (url, seen) = common::wecom::receiver(false).await;
    let storage = storage.replace("{dir}", &dir.path().display().to_string());
    let cfg = config(dir.path(), &url, &storage);
    let duty = cfg.dir.join("duty.toml");
    let text = std::fs::read_to_string(&duty).unwrap();
    assert!(text.contains(from), "{from:?} not in duty.toml");
    std::fs::write(&duty, text.replace(from, to)).unwrap();
    let cfg = Arc::new(Config::load(&cfg.dir, &Default::default()).unwrap());
    let store = Store::open(&cfg.storage_url, &StoreOptions::default())
        .await
        .unwrap();
    let rig = Rig {
        store,
        clock: Arc::new(ManualClock::new(t0())),
        cfg,
    };
    (dir, rig, seen)
}

/// With `ack_timeout`, an acknowledged alert nobody resolves re-opens: the officer
/// on duty is told again and escalation starts over from the re-open.
async fn ack_timeout(storage: &str) {
    let (_dir, rig, seen) = rig_with(
        storage,
        "id = \"standard\"\n",
        "id = \"standard\"\nack_timeout = \"30m\"\n",
    )
    .await;
    let (store, clock) = (rig.store.clone(), rig.clock.clone());
    let (engine, mut dispatcher) = rig.parts();
    let mentioned = |i: usize| seen.lock().unwrap()[i]["text"]["mentioned_mobile_list"].clone();

    let so2 = store_finding(&store, finding("a21026", 41.2, 35.0, 0), clock.now()).await;
    let id = engine.on_finding(&so2).await.unwrap().alert_id;
    dispatcher.run_once().await.unwrap();
    clock.advance(Duration::minutes(5));
    engine
        .acknowledge(id, "zhangwei", "在处理")
        .await
        .unwrap()
        .unwrap();

    // 29 minutes after the acknowledgement: still acknowledged, nobody told.
    clock.advance(Duration::minutes(29));
    let tick = engine.tick().await.unwrap();
    assert!(
        tick.reopened.is_empty() && tick.escalated.is_empty(),
        "{tick:?}"
    );
    // 30 minutes: open again; the officer on duty hears of it again.
    clock.advance(Duration::minutes(1));
    let tick = engine.tick().await.unwrap();
    assert_eq!(tick.reopened, vec![id]);
    assert_eq!(tick.escalated, vec![(id, vec!["L0R0@1".to_string()])]);
    dispatcher.run_once().await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert_eq!(mentioned(1), serde_json::json!(["13800000001"]));
    let a = store.alert(id).await.unwrap().unwrap();
    assert_eq!(
        (a.state, a.reopens, a.acked_by.as_deref()),
        (AlertState::Open, 1, None)
    );
    assert_eq!(a.cycle_start(), t0() + Duration::minutes(35));

    // Escalation runs from the re-open: the chief at +15 minutes, not at +14.
    clock.advance(Duration::minutes(14));
    assert!(engine.tick().await.unwrap().escalated.is_empty());
    clock.advance(Duration::minutes(1));
    let tick = engine.tick().await.unwrap();
    assert_eq!(tick.escalated, vec![(id, vec!["L1R0@1".to_string()])]);
    dispatcher.run_once().await.unwrap();
    assert_eq!(mentioned(2), serde_json::json!(["13800000009"]));

    // Resolved now: no re-open however long it waits.
    engine
        .resolve(id, "chenjing", "已整改")
        .await
        .unwrap()
        .unwrap();
    clock.advance(Duration::hours(3));
    assert!(engine.tick().await.unwrap().reopened.is_empty());
    let events = store.alert_events(id).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "notification_queued",
            "notified",
            "acknowledged",
            "reopened",
            "escalated",
            "notified",
            "escalated",
            "notified",
            "resolved"
        ]
    );
    assert!(
        events[4].detail.contains("zhangwei"),
        "{}",
        events[4].detail
    );
    verify_chain(&events).unwrap();
}

/// An alert no duty route matches is recorded all the same (the board shows it),
/// and it holds up neither the others' notifications and escalation nor the
/// catch-up after a restart.
async fn unrouted(storage: &str) {
    let (_dir, rig, seen) = rig_with(
        storage,
        "[[routes]]\nteam",
        "[[routes]]\nrules = [\"exceedance\"]\nteam",
    )
    .await;
    let (store, clock) = (rig.store.clone(), rig.clock.clone());
    let (engine, mut dispatcher) = rig.parts();
    let warning = |hour| {
        let mut f = finding("a21002", 45.0, 50.0, hour);
        f.rule = RuleName::EarlyWarning;
        f
    };

    let lone = store_finding(&store, warning(0), clock.now()).await;
    let lone = engine.on_finding(&lone).await.unwrap();
    assert!(lone.opened);
    let so2 = store_finding(&store, finding("a21026", 41.2, 35.0, 0), clock.now()).await;
    let routed = engine.on_finding(&so2).await.unwrap().alert_id;
    dispatcher.run_once().await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1, "the routed alert is sent");
    assert!(store
        .outbox(None, Some(lone.alert_id), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.alert(lone.alert_id).await.unwrap().unwrap().state,
        AlertState::Open
    );
    clock.advance(Duration::minutes(15));
    let tick = engine.tick().await.unwrap();
    assert_eq!(tick.escalated, vec![(routed, vec!["L1R0".to_string()])]);

    // Stored before a stop, never recorded: both are caught up.
    store_finding(&store, warning(1), clock.now()).await;
    store_finding(&store, finding("a21026", 44.0, 35.0, 1), clock.now()).await;
    assert_eq!(engine.catch_up().await.unwrap(), 2);
    assert_eq!(store.alert(routed).await.unwrap().unwrap().count, 2);
    assert_eq!(store.alert(lone.alert_id).await.unwrap().unwrap().count, 2);
}

#[tokio::test]
async fn alerts_on_sqlite() {
    scenario("sqlite://{dir}/state/pollwatch.db").await;
    ack_timeout("sqlite://{dir}/state/pollwatch.db").await;
    unrouted("sqlite://{dir}/state/pollwatch.db").await;
}

#[tokio::test]
async fn alerts_on_postgres() {
    let Some(base) = common::pg_url("alerts_on_postgres") else {
        return;
    };
    let url = common::fresh_pg_database(&base).await;
    scenario(&url).await;
    let url = common::fresh_pg_database(&base).await;
    ack_timeout(&url).await;
    let url = common::fresh_pg_database(&base).await;
    unrouted(&url).await;
}

#[tokio::test]
async fn alerts_verify_detects_an_edited_timeline_row() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _seen) = common::wecom::receiver(false).await;
    let db = dir.path().join("state/pollwatch.db");
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    let cfg = Arc::new(config(
        dir.path(),
        &url,
        &format!("sqlite://{}", db.display()),
    ));
    let store = Store::open(&cfg.storage_url, &StoreOptions::default())
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let rig = Rig {
        store: store.clone(),
        clock: clock.clone(),
        cfg: cfg.clone(),
    };
    let (engine, mut dispatcher) = rig.parts();
    let f = store_finding(&store, finding("a21026", 41.2, 35.0, 0), clock.now()).await;
    let id = engine.on_finding(&f).await.unwrap().alert_id;
    dispatcher.run_once().await.unwrap();
    store.close().await;

    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pollwatch"))
            .args(["alerts", "--config"])
            .arg(&cfg.dir)
            .args(["verify", &id.to_string()])
            .output()
            .unwrap()
    };
    // No [evidence] key here: consistent, but "not keyed" (exit 2), never "intact".
    let ok = verify();
    assert_eq!(
        ok.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("NOT KEYED"));

    // Someone lowers the recorded value in the database afterwards (dropping
    // the append-only trigger first, as the database's owner can).
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("DROP TRIGGER alert_events_append_only_u")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("UPDATE alert_events SET detail = replace(detail, '41.2', '34.9') WHERE alert_id = ? AND seq = 1")
        .bind(id)
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let bad = verify();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("ALTERED")
            && String::from_utf8_lossy(&bad.stdout).contains("row 1 "),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
}

/// Settling a notification whose outbox row does not exist is an error that
/// names the row, and records nothing.
#[tokio::test]
async fn finishing_a_missing_outbox_row_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &format!("sqlite://{}/t.db", dir.path().display()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    let attempt = pollwatch::store::Attempt {
        outbox_id: 9999,
        at: t0(),
        channel: "wecom".into(),
        recipients: "zhangwei".into(),
        alert_ids: "1".into(),
        result: "accepted".into(),
        code: None,
        reason: None,
        provider_id: None,
    };
    let err = store
        .finish_outbox(9999, "sent", Some("wecom"), &[attempt], t0())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("outbox row 9999 is gone"), "{err}");
    assert!(store.alert_attempts(1).await.unwrap().is_empty());
}

/// Recording finding A failed while B, stored after it, made it onto its alert:
/// the next start still records A (catching up from the highest recorded
/// finding missed it).
#[tokio::test]
async fn a_finding_missed_before_a_recorded_one_is_caught_up() {
    let storage = "sqlite://{dir}/state/pollwatch.db";
    let (_dir, rig, _seen) = rig_with(storage, "id = \"standard\"\n", "id = \"standard\"\n").await;
    let (store, clock) = (rig.store.clone(), rig.clock.clone());
    let (engine, _) = rig.parts();
    let a = store_finding(&store, finding("a21002", 61.0, 50.0, 0), clock.now()).await;
    let b = store_finding(&store, finding("a21026", 41.2, 35.0, 0), clock.now()).await;
    engine.on_finding(&b).await.unwrap();
    assert!(store.alert_finding_ids(1).await.unwrap().contains(&b.id));
    let (engine, _) = rig.parts();
    assert_eq!(engine.catch_up().await.unwrap(), 1);
    let nox = store
        .alerts(&pollwatch::store::AlertQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.factor == "a21002")
        .expect("A is on an alert now");
    assert_eq!(store.alert_finding_ids(nox.id).await.unwrap(), vec![a.id]);
    assert_eq!(engine.catch_up().await.unwrap(), 0);
}

/// An alert whose stored facts cannot be read (an older or damaged row) is
/// settled as not sent and skipped; the others are sent and escalate as usual.
#[tokio::test]
async fn an_unreadable_alert_does_not_hold_up_the_others() {
    let storage = "sqlite://{dir}/state/pollwatch.db";
    let (_dir, rig, seen) = rig_with(storage, "id = \"standard\"\n", "id = \"standard\"\n").await;
    let (store, clock) = (rig.store.clone(), rig.clock.clone());
    let (engine, mut dispatcher) = rig.parts();
    let nox = store_finding(&store, finding("a21002", 61.0, 50.0, 0), clock.now()).await;
    let bad = engine.on_finding(&nox).await.unwrap().alert_id;
    let so2 = store_finding(&store, finding("a21026", 41.2, 35.0, 0), clock.now()).await;
    let good = engine.on_finding(&so2).await.unwrap().alert_id;
    let pool = sqlx::SqlitePool::connect(&rig.cfg.storage_url)
        .await
        .unwrap();
    sqlx::query("UPDATE alerts SET facts = '{\"damaged\": true}' WHERE id = $1")
        .bind(bad)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    assert_eq!(dispatcher.run_once().await.unwrap(), 2, "both rows settled");
    assert_eq!(seen.lock().unwrap().len(), 1, "the readable alert is sent");
    let row = |id| store.outbox(None, Some(id), 10);
    assert_eq!(row(bad).await.unwrap()[0].state, "failed");
    assert_eq!(row(good).await.unwrap()[0].state, "sent");
    clock.advance(Duration::minutes(15));
    let tick = engine.tick().await.unwrap();
    assert_eq!(tick.escalated, vec![(good, vec!["L1R0".to_string()])]);
}
