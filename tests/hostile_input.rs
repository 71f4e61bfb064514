//! Issue 17, data side: one bad message costs one dead letter — never the stream
//! behind it, never another logger's answer, never the store writer. Conflicting
//! resends are recorded; data dated beyond the logger's plausible clock is not a
//! reading. Real sockets, Mosquitto, SQLite and PostgreSQL.

#[macro_use]
mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, Timelike, Utc};
use common::hj212::Harness;
use pollwatch::clock::SystemClock;
use pollwatch::model::check::Skewed;
use pollwatch::model::LocationKind;
use pollwatch::sources::hj212::codec::time::LocalDateTime;
use pollwatch::store::{
    Batch, ReadingQuery, StatusEvent, Store, WriteError, Writer, WriterOptions,
};
use rumqttc::QoS;
use tokio::sync::mpsc;

both_backends!(
    mqtt_poison_messages_cost_one_dead_letter_each,
    hj212_nul_in_a_factor_code_is_a_dead_letter,
    hj212_clock_skew_is_answered_kept_and_reported,
    writer_isolates_a_request_the_database_refuses,
    nul_in_dead_letters_and_events_is_stored_escaped,
    conflicting_resends_are_recorded_and_the_first_stands,
);

/// Local (Asia/Shanghai) wall time `offset` from now, as a logger writes it.
fn local(offset: chrono::Duration) -> LocalDateTime {
    let t = (Utc::now() + offset).with_timezone(&chrono_tz::Asia::Shanghai);
    LocalDateTime {
        year: t.year() as u16,
        month: t.month() as u8,
        day: t.day() as u8,
        hour: t.hour() as u8,
        minute: t.minute() as u8,
        second: t.second() as u8,
    }
}

fn mqtt_config(dir: &std::path::Path, url: &str, prefix: &str) -> pollwatch::config::Config {
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\nstate_dir = {:?}\n[hj212]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nurl = \"{url}\"\nclient_id = \"pw-hostile-{}\"\n\n[[mqtt.subscriptions]]\ntopic = \"{prefix}/{{enterprise}}/{{meter}}/data\"\nformat = \"json\"\n",
            dir.join("state").display().to_string(),
            common::unique()
        ),
    )
    .unwrap();
    std::fs::write(
        cfg.join("enterprises/e1.toml"),
        "id = \"E1\"\nname = \"测试\"\ndistrict = \"吴中区\"\nindustry = \"电镀\"\n\n[[meters]]\nid = \"M1\"\nname = \"总表\"\nrole = \"production\"\n",
    )
    .unwrap();
    pollwatch::config::Config::load(&cfg, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

async fn mqtt_poison_messages_cost_one_dead_letter_each(db: &str) {
    let Some(url) = common::mqtt_url() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("pwhostile/{}", common::unique());
    let cfg = mqtt_config(dir.path(), &url, &prefix);
    let (store, writer, task) = common::store_and_writer(db).await;
    let (source, stop) = common::mqtt_source(&cfg, &writer).await;
    let stats = source.stats();
    let publ = common::mqtt_publisher(&url);
    let topic = format!("{prefix}/E1/M1/data");
    let now = Utc::now();
    let mut msgs = Vec::new();
    for _ in 0..30 {
        msgs.push(format!(
            r#"{{"ts":"{}","values":{{"":1}}}}"#,
            now.to_rfc3339()
        ));
    }
    // A NUL in a key reaches the store path without any password.
    msgs.push(format!(
        r#"{{"ts":"{}","values":{{"x\u0000y":1}}}}"#,
        now.to_rfc3339()
    ));
    for i in 0..10 {
        let ts = now - chrono::Duration::seconds(60 - i);
        msgs.push(format!(
            r#"{{"ts":"{}","values":{{"e_p":{i}}}}}"#,
            ts.to_rfc3339()
        ));
    }
    for p in &msgs {
        publ.publish(topic.clone(), QoS::AtLeastOnce, false, p.clone())
            .await
            .unwrap();
    }
    common::wait_acked(&stats, msgs.len() as u64).await;
    assert_eq!(
        stats.acked.load(Ordering::Relaxed),
        msgs.len() as u64,
        "every message acknowledged: the good ones stored, the bad ones as dead letters"
    );
    let _ = stop.send(true);
    source.join().await;
    drop(writer);
    task.finish(Duration::from_secs(5)).await;

    let rows = store
        .readings(&ReadingQuery::new("E1", LocationKind::Meter, "M1").factor("e_p"))
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        10,
        "all 10 good readings after 31 poison messages"
    );
    let dead = store.dead_letters(100).await.unwrap();
    assert_eq!(dead.len(), 31, "{dead:#?}");
    assert!(dead.iter().all(|d| d.reason == "bad_code"), "{dead:#?}");
    assert_eq!(
        dead.iter()
            .filter(|d| d.detail.contains("is empty"))
            .count(),
        30
    );
    let nul = dead
        .iter()
        .find(|d| d.detail.contains("NUL"))
        .expect("the NUL key is a dead letter");
    assert!(nul.raw.ends_with(b"}}"), "raw payload kept");
    assert_eq!(stats.rejected_for("bad_code"), 31);
    store.close().await;
}

/// The HJ 212 test server (the common test loggers) on the store at `db`;
/// `daemon_extra` replaces the common config's `max_data_age` line.
async fn hj212_on(db: &str, daemon_extra: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::hj212_config(dir.path(), "");
    if !daemon_extra.is_empty() {
        let toml = cfg.dir.join("pollwatch.toml");
        let text = std::fs::read_to_string(&toml)
            .unwrap()
            .replace("max_data_age = \"36500d\"\n", daemon_extra);
        std::fs::write(&toml, text).unwrap();
        cfg = pollwatch::config::Config::load(&cfg.dir, &Default::default()).unwrap();
    }
    cfg.storage_url = db.to_string();
    Harness::start_with(cfg, dir, "E1").await
}

async fn hj212_nul_in_a_factor_code_is_a_dead_letter(db: &str) {
    let mut h = hj212_on(db, "").await;
    let mut bad = h.sim("MN-FLUE-01", "pw1");
    let mut good = h.sim("23040281003022", "123456");

    // Kept as a dead letter (durable), so the frame is answered and the logger
    // moves on; nothing of it reaches the readings.
    bad.upload("2011", local(chrono::Duration::zero()), "x\0y-Rtd=1")
        .await
        .expect("the refused frame is answered once its dead letter is durable");
    for i in 0..3 {
        good.upload(
            "2011",
            local(chrono::Duration::seconds(-30 + i)),
            &format!("w01001-Rtd=7.{i},w01001-Flag=N"),
        )
        .await
        .expect("other loggers still get 9014");
    }
    // The writer is not stuck: a probe round trip answers.
    let writer = h.writer.as_ref().unwrap().0.clone();
    tokio::time::timeout(Duration::from_secs(5), writer.write(Batch::default()))
        .await
        .expect("writer answers")
        .unwrap();
    drop(writer);
    h.stop().await;
    let store = h.store.clone();

    let ph = store
        .readings(&ReadingQuery::new("E1", LocationKind::Outlet, "DW001").factor("w01001"))
        .await
        .unwrap();
    assert_eq!(ph.len(), 3);
    let dead = store.dead_letters(10).await.unwrap();
    let d = dead
        .iter()
        .find(|d| d.reason == "bad_code")
        .unwrap_or_else(|| panic!("no bad_code dead letter in {dead:#?}"));
    assert!(d.detail.contains("NUL"), "{}", d.detail);
    assert!(!d.detail.contains('\0'));
    assert!(
        d.raw.windows(3).any(|w| w == b"x\0y"),
        "raw bytes kept as sent"
    );
    assert_eq!(
        store
            .readings(&ReadingQuery::new("E1", LocationKind::Outlet, "DA001"))
            .await
            .unwrap()
            .len(),
        0
    );
    store.close().await;
}

async fn hj212_clock_skew_is_answered_kept_and_reported(db: &str) {
    let mut h = hj212_on(db, "clock_tolerance = \"10m\"\nmax_data_age = \"35d\"\n").await;
    let (skew_tx, mut skew_rx) = mpsc::channel::<Skewed>(16);
    h.writer.as_ref().unwrap().0.clock_skew().connect(skew_tx);
    let mut sim = h.sim("23040281003022", "123456");
    // A day ahead (pH 7.0), 2030, and 40 days old: answered, not readings.
    for (t, v) in [
        (local(chrono::Duration::days(1)), "7.0"),
        (
            LocalDateTime {
                year: 2030,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
            },
            "7.1",
        ),
        (local(-chrono::Duration::days(40)), "7.2"),
    ] {
        sim.upload("2011", t, &format!("w01001-Rtd={v},w01001-Flag=N"))
            .await
            .expect("a skewed frame is answered so the logger moves on");
    }
    // Then real time: stored.
    sim.upload(
        "2011",
        local(chrono::Duration::zero()),
        "w01001-Rtd=3.0,w01001-Flag=N",
    )
    .await
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(2), skew_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*first.enterprise, "E1");
    assert_eq!(first.location.id(), "DW001");
    h.stop().await;
    let store = h.store.clone();

    let ph = store
        .readings(&ReadingQuery::new("E1", LocationKind::Outlet, "DW001").factor("w01001"))
        .await
        .unwrap();
    assert_eq!(
        ph.len(),
        1,
        "only the real-time value is a reading: {ph:#?}"
    );
    assert_eq!(ph[0].value, 3.0);
    let dead = store.dead_letters(10).await.unwrap();
    let skewed: Vec<_> = dead.iter().filter(|d| d.reason == "clock_skew").collect();
    assert_eq!(skewed.len(), 3, "{dead:#?}");
    assert!(skewed.iter().any(|d| d.detail.contains("ahead")));
    assert!(skewed
        .iter()
        .any(|d| d.detail.contains("older than max_data_age")));
    store.close().await;
}

/// Makes the database refuse one request's data: a device event whose detail is
/// `poison` violates a constraint (a trigger on SQLite, a CHECK on PostgreSQL).
async fn poison_constraint(store: &Store, db: &str) {
    if db.starts_with("sqlite") {
        let path = db.trim_start_matches("sqlite://");
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
        sqlx::query(
            "CREATE TRIGGER test_poison BEFORE INSERT ON device_status WHEN NEW.detail = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poison refused'); END",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(db).await.unwrap();
        sqlx::query(
            "ALTER TABLE device_status ADD CONSTRAINT test_poison CHECK (detail <> 'poison')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let _ = store;
}

fn event(detail: &str) -> Batch {
    Batch::status_event(StatusEvent {
        at: common::t0(),
        enterprise: "E1".into(),
        device: "SB1".into(),
        status: "info".into(),
        detail: detail.into(),
    })
}

async fn writer_isolates_a_request_the_database_refuses(db: &str) {
    let store = Store::open(db, &Default::default()).await.unwrap();
    poison_constraint(&store, db).await;
    // A long linger groups every request below into one batch.
    let (writer, task) = Writer::spawn(
        store.clone(),
        WriterOptions {
            linger: Duration::from_millis(300),
            ..Default::default()
        },
        Arc::new(SystemClock),
    );
    let mut waits = Vec::new();
    for i in 0..8 {
        let w = writer.clone();
        let batch = if i == 3 {
            event("poison")
        } else {
            Batch::readings(vec![common::reading("DA001", "a21026", i, 40.0 + i as f64)])
        };
        waits.push(tokio::spawn(async move { w.write(batch).await }));
    }
    let mut results = Vec::new();
    for w in waits {
        results.push(
            tokio::time::timeout(Duration::from_secs(10), w)
                .await
                .expect("no request is held in a retry loop")
                .unwrap(),
        );
    }
    for (i, r) in results.iter().enumerate() {
        if i == 3 {
            assert!(matches!(r, Err(WriteError::Refused(_))), "{r:?}");
        } else {
            assert!(r.is_ok(), "request {i}: {r:?}");
        }
    }
    assert_eq!(writer.stats().refused.load(Ordering::Relaxed), 1);
    // Later requests flow as usual.
    writer
        .write(Batch::readings(vec![common::reading(
            "DA001", "a21026", 100, 1.0,
        )]))
        .await
        .unwrap();
    drop(writer);
    task.finish(Duration::from_secs(5)).await;
    assert_eq!(store.count_readings().await.unwrap(), 8);
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0].reason, "store_refused");
    assert!(
        String::from_utf8_lossy(&dead[0].raw).contains("\"poison\""),
        "the refused request's content is kept: {:?}",
        String::from_utf8_lossy(&dead[0].raw)
    );
    assert!(store.status_events(10).await.unwrap().is_empty());
    store.close().await;
}

async fn nul_in_dead_letters_and_events_is_stored_escaped(db: &str) {
    let (store, writer, task) = common::store_and_writer(db).await;
    writer.write(event("CP=\0;x")).await.unwrap();
    writer
        .write(Batch::dead_letter(pollwatch::store::DeadLetter {
            at: common::t0(),
            protocol: pollwatch::model::Protocol::Mqtt,
            peer: "t/\0".into(),
            reason: "bad_payload".into(),
            detail: "a\0b".into(),
            raw: b"a\0b".to_vec(),
        }))
        .await
        .unwrap();
    drop(writer);
    task.finish(Duration::from_secs(5)).await;
    let ev = store.status_events(1).await.unwrap();
    assert_eq!(ev[0].detail, "CP=\\0;x");
    let d = store.dead_letters(1).await.unwrap();
    assert_eq!(
        (d[0].peer.as_str(), d[0].detail.as_str()),
        ("t/\\0", "a\\0b")
    );
    assert_eq!(d[0].raw, b"a\0b", "raw bytes are kept as sent");
    store.close().await;
}

async fn conflicting_resends_are_recorded_and_the_first_stands(db: &str) {
    let (store, writer, task) = common::store_and_writer(db).await;
    let r = |secs, v| common::reading("DA001", "a21026", secs, v);
    writer
        .write(Batch::readings(vec![r(0, 40.0), r(60, 41.0)]))
        .await
        .unwrap();
    // An identical resend is not a conflict.
    writer
        .write(Batch::readings(vec![r(0, 40.0)]))
        .await
        .unwrap();
    assert_eq!(writer.stats().conflicts.load(Ordering::Relaxed), 0);
    // A different value for the same time is; so is one within a single batch.
    writer
        .write(Batch::readings(vec![r(0, 99.0)]))
        .await
        .unwrap();
    writer
        .write(Batch::readings(vec![r(120, 42.0), r(120, 43.0)]))
        .await
        .unwrap();
    // Compacted history (SQLite moves it to the archive tier) is compared too.
    store.compact().await.unwrap();
    writer
        .write(Batch::readings(vec![r(60, 77.0)]))
        .await
        .unwrap();
    assert_eq!(writer.stats().conflicts.load(Ordering::Relaxed), 3);
    drop(writer);
    task.finish(Duration::from_secs(5)).await;

    let q = ReadingQuery::new("E1", LocationKind::Outlet, "DA001").factor("a21026");
    let values: Vec<f64> = store
        .readings(&q)
        .await
        .unwrap()
        .iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(values, vec![40.0, 41.0, 42.0], "the first value stands");
    let c = store.conflicts(&q).await.unwrap();
    let pairs: Vec<(i64, f64, f64)> = c
        .iter()
        .map(|c| ((c.ts - common::t0()).num_seconds(), c.first_value, c.value))
        .collect();
    assert_eq!(
        pairs,
        vec![(0, 40.0, 99.0), (60, 41.0, 77.0), (120, 42.0, 43.0)]
    );
    assert_eq!(c[0].device, "MN0001");
    assert!(c[0].received >= c[0].first_received);
    // A window narrows them like readings.
    let narrow = ReadingQuery {
        from: Some(common::t0() + chrono::Duration::seconds(30)),
        to: Some(common::t0() + chrono::Duration::seconds(90)),
        ..q
    };
    assert_eq!(store.conflicts(&narrow).await.unwrap().len(), 1);
    store.close().await;
}

#[test]
fn clock_keys_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path();
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        "[daemon]\nclock_tolerance = \"2d\"\nmax_data_age = \"30m\"\n",
    )
    .unwrap();
    std::fs::write(
        cfg.join("enterprises/e1.toml"),
        "id = \"E1\"\nname = \"测试\"\ndistrict = \"吴中区\"\nindustry = \"电镀\"\n\n[[outlets]]\nid = \"DW001\"\nname = \"总排口\"\nkind = \"wastewater\"\nclock_tolerance = \"0s\"\nmax_data_age = \"90d\"\n",
    )
    .unwrap();
    let err = pollwatch::config::Config::load(cfg, &Default::default())
        .unwrap_err()
        .to_string();
    for want in [
        "daemon.clock_tolerance: must be longer than 0s and at most 1d, got 2d",
        "daemon.max_data_age: must be at least 1h",
        "outlets[0].clock_tolerance: must be longer than 0s",
    ] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
    // Valid overrides apply per outlet; the daemon-wide values elsewhere.
    std::fs::write(
        cfg.join("pollwatch.toml"),
        "[daemon]\nclock_tolerance = \"5m\"\n",
    )
    .unwrap();
    std::fs::write(
        cfg.join("enterprises/e1.toml"),
        "id = \"E1\"\nname = \"测试\"\ndistrict = \"吴中区\"\nindustry = \"电镀\"\n\n[[outlets]]\nid = \"DW001\"\nname = \"总排口\"\nkind = \"wastewater\"\nmax_data_age = \"90d\"\n",
    )
    .unwrap();
    let c = pollwatch::config::Config::load(cfg, &Default::default()).unwrap();
    let b = c.clock_bounds("E1", Some("DW001"));
    assert_eq!(b.tolerance, chrono::Duration::minutes(5));
    assert_eq!(b.max_age, chrono::Duration::days(90));
    assert_eq!(
        c.clock_bounds("E1", None).max_age,
        chrono::Duration::days(35)
    );
}
