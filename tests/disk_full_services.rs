//! A full disk under the other services (issue 16): PostgreSQL with its tables
//! in a tablespace on a small tmpfs, and MQTT messages through the real daemon
//! while its SQLite disk fills. Root only (tmpfs), like `disk_full_tmpfs.rs`.

mod common;

use std::time::{Duration, Instant};

use common::tmpfs::{ballast, quick_writer, Tmpfs};
use pollwatch::store::{Store, StoreOptions};

/// PostgreSQL with its tables in a tablespace on a small tmpfs (the server runs on
/// this machine): when the tablespace fills, commits fail with "could not extend
/// file … No space left on device", the writer holds and retries, and nothing is
/// answered; once space is freed the held batches commit. Every acknowledged
/// write is stored. Skipped without root, without `PW_TEST_DATABASE_URL`, or when
/// the server cannot use a local directory (a remote server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tablespace_full_costs_no_acknowledged_write() {
    use sqlx::Connection;
    let Some(base) = common::pg_url("disk_full_tmpfs::postgres_tablespace_full") else {
        return;
    };
    let Some(fs) = Tmpfs::mount("32m") else {
        return;
    };
    let ts_dir = fs.path.join("ts");
    std::fs::create_dir(&ts_dir).unwrap();
    let chown = std::process::Command::new("chown")
        .args(["postgres:postgres"])
        .arg(&ts_dir)
        .status();
    let suffix = std::process::id();
    let (ts, db) = (format!("pw_ts_{suffix}"), format!("pw_full_{suffix}"));
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    let created = sqlx::query(&format!(
        "CREATE TABLESPACE {ts} LOCATION '{}'",
        ts_dir.display()
    ))
    .execute(&mut admin)
    .await;
    if chown.map(|s| !s.success()).unwrap_or(true) || created.is_err() {
        eprintln!(
            "SKIPPED disk_full_tmpfs::postgres_tablespace_full: the server cannot use a local tablespace ({:?})",
            created.err()
        );
        return;
    }
    sqlx::query(&format!("CREATE DATABASE {db} TABLESPACE {ts}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = common::replace_db_name(&base, &db);
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let (writer, task) = quick_writer(&store);
    let ballast = ballast(&fs.path, 2 << 20);
    let reading = |i: u32, k: u32| {
        let mut r = common::reading("DA001", &format!("a{:05}", 20000 + k), i64::from(i), 1.0);
        r.value = f64::from(i);
        r
    };
    let mut acked = 0u32;
    let mut held = false;
    let mut freed_at = None;
    let mut resumed_after = None;
    let started = Instant::now();
    let mut i = 0u32;
    while resumed_after.is_none() || !acked.is_multiple_of(20) {
        let batch = pollwatch::store::Batch::readings((0..200).map(|k| reading(i, k)).collect());
        let write = writer.write(batch);
        tokio::pin!(write);
        let done = tokio::select! {
            r = &mut write => Some(r),
            _ = tokio::time::sleep(Duration::from_secs(2)) => None,
        };
        let result = match done {
            Some(r) => r,
            None => {
                // Held: the tablespace is full. Free it and wait for the answer.
                held = true;
                std::fs::remove_file(&ballast).unwrap();
                freed_at = Some(Instant::now());
                write.await
            }
        };
        result.unwrap();
        if let (Some(f), None) = (freed_at, resumed_after) {
            resumed_after = Some(f.elapsed());
        }
        acked += 1;
        i += 1;
        assert!(started.elapsed() < Duration::from_secs(180), "never filled");
    }
    drop(writer);
    task.finish(Duration::from_secs(10)).await;
    let stored = store.count_readings().await.unwrap();
    store.close().await;
    eprintln!(
        "postgres tablespace full: {acked} batches acknowledged ({} readings), {stored} stored, resumed {resumed_after:?} after space was freed",
        acked * 200
    );
    assert!(held, "the tablespace never filled");
    assert_eq!(stored, u64::from(acked) * 200);
    sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(&format!("DROP TABLESPACE {ts}"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
}

/// MQTT with the real daemon and a private broker that queues without limit (the
/// shared one drops what exceeds mosquitto's default queue of 1,000 for a stalled
/// subscriber — a broker setting, see the README): QoS 1 messages arrive while
/// the disk fills for real (`min_free` off), then space is freed. pollwatch
/// acknowledges a message to the broker only after its commit, and the broker
/// redelivers what was not acknowledged, so every message must end up stored
/// exactly once — one acknowledged but never committed would be missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_messages_survive_a_full_disk() {
    use pollwatch::sim::mosquitto::{Broker, BrokerOptions};
    use pollwatch::sim::mqtt_pub::{json_message, MqttPublisher, PublisherOptions};
    const MESSAGES: u64 = 40_000;
    if !common::mosquitto_binary("mqtt_messages_survive_a_full_disk") {
        return;
    }
    let Some(fs) = Tmpfs::mount("24m") else {
        return;
    };
    let broker_dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(broker_dir.path(), &BrokerOptions::default()).unwrap();
    let url = broker.url();
    let prefix = format!("full{}", std::process::id());
    let cfg = fs.path.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\nstate_dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n[hj212]\nlisten = \"127.0.0.1:0\"\n\
             [storage]\nmin_free = \"0\"\n\
             [mqtt]\nurl = \"{url}\"\nclient_id = \"pw-{prefix}\"\n\n\
             [[mqtt.subscriptions]]\ntopic = \"{prefix}/{{enterprise}}/{{meter}}\"\nformat = \"json\"\n",
            fs.path.join("state").display().to_string(),
        ),
    )
    .unwrap();
    let mut e = String::from(
        "id = \"E1\"\nname = \"测试企业\"\ndistrict = \"吴中区\"\nindustry = \"印染\"\n",
    );
    for m in 0..10 {
        e.push_str(&format!(
            "\n[[meters]]\nid = \"M{m}\"\nname = \"{m}号表\"\nrole = \"production\"\n"
        ));
    }
    std::fs::write(cfg.join("enterprises/e1.toml"), e).unwrap();
    let mut daemon = common::daemon::Daemon::start(&cfg, None);
    let db = fs.path.join("state/pollwatch.db");
    // Little room, so that the 40,000 readings outgrow it.
    let ballast = ballast(&fs.path, 512 << 10);

    let publisher = std::sync::Arc::new(
        MqttPublisher::connect(&url, &PublisherOptions::persistent(format!("pub-{prefix}")))
            .unwrap(),
    );
    let p = publisher.clone();
    let p_prefix = prefix.clone();
    let feeding = tokio::spawn(async move {
        for i in 0..MESSAGES {
            let ts = 1_796_169_600_000 + (i / 10) as i64 * 1000;
            p.publish(
                format!("{p_prefix}/E1/M{}", i % 10),
                json_message(ts, &[("e_p", i as f64)]),
            )
            .await
            .unwrap();
        }
    });
    let full = daemon.wait_for_log(0, "disk is full", Duration::from_secs(120));
    assert!(full.is_some(), "the disk never filled: {:#?}", daemon.log());
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::remove_file(&ballast).unwrap();
    feeding.await.unwrap();
    let count = || async {
        let store = Store::open(&format!("sqlite://{}", db.display()), &Default::default())
            .await
            .ok()?;
        let n = store.count_readings().await.ok();
        store.close().await;
        n
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut n = 0;
    while Instant::now() < deadline {
        n = count().await.unwrap_or(0);
        if n >= MESSAGES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = daemon.terminate();
    let n_after = count().await.unwrap_or(0);
    if n_after != MESSAGES {
        for l in daemon.log().iter().filter(|l| !l.contains("INFO")) {
            eprintln!("{l}");
        }
    }
    eprintln!("mqtt on a full disk: {MESSAGES} published, {n_after} stored");
    assert!(status.success(), "{:#?}", daemon.log());
    assert_eq!(n_after, MESSAGES, "lost or doubled: {n}");
    // Recovered without a restart: the alerts tick and the rules engine carried on.
    for stuck in [
        "transaction depth",
        "alert tick failed",
        "rules engine did not finish",
    ] {
        assert!(
            !daemon.log().iter().any(|l| l.contains(stuck)),
            "{stuck}: {:#?}",
            daemon.log()
        );
    }
}
