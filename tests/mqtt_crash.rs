//! Issue #5's promise, end to end: 100,000 QoS 1 messages published while the
//! pollwatch process is killed (SIGKILL) and restarted once, and while the broker
//! is restarted once, end as exactly 100,000 distinct readings — none lost, none
//! doubled, each with the value that was published for its time.
//!
//! It runs a private Mosquitto with persistence (the shared one must not be
//! restarted) and pollwatch as a child process (it must be killable).

mod common;

use std::time::Duration;

use common::daemon::Daemon;
use pollwatch::model::LocationKind;
use pollwatch::sim::mosquitto::{Broker, BrokerOptions};
use pollwatch::sim::mqtt_pub::{json_message, MqttPublisher, PublisherOptions};
use pollwatch::store::{ReadingQuery, Store, StoreOptions};

const MESSAGES: u64 = 100_000;
const METERS: u64 = 10;
/// 2026-11-27T00:00:00Z.
const T0_MS: i64 = 1_796_169_600_000;

fn write_config(dir: &std::path::Path, broker_url: &str) -> std::path::PathBuf {
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\nstate_dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n[hj212]\nlisten = \"127.0.0.1:0\"\n\
             [mqtt]\nurl = \"{broker_url}\"\nclient_id = \"pw-crash-{}\"\n\n\
             [[mqtt.subscriptions]]\ntopic = \"crash/{{enterprise}}/{{meter}}\"\nformat = \"json\"\n",
            dir.join("state").display().to_string(),
            // Unique: a daemon left over from an aborted run must never share
            // (and fight over) this session.
            std::process::id()
        ),
    )
    .unwrap();
    let mut e = String::from(
        "id = \"E1\"\nname = \"测试企业\"\ndistrict = \"吴中区\"\nindustry = \"印染\"\n",
    );
    for m in 0..METERS {
        e.push_str(&format!(
            "\n[[meters]]\nid = \"M{m}\"\nname = \"{m}号表\"\nrole = \"production\"\n"
        ));
    }
    std::fs::write(cfg.join("enterprises/e1.toml"), e).unwrap();
    cfg
}

/// Message `i`: meter `i % METERS`, one second apart per meter, value `i`.
fn message(i: u64) -> (String, Vec<u8>) {
    let ts = T0_MS + (i / METERS) as i64 * 1000;
    (
        format!("crash/E1/M{}", i % METERS),
        json_message(ts, &[("e_p", i as f64)]),
    )
}

async fn stored(db: &std::path::Path) -> u64 {
    // Opened afresh each time: the daemon is killed and restarted under us.
    let Ok(store) = Store::open(
        &format!("sqlite://{}", db.display()),
        &StoreOptions::default(),
    )
    .await
    else {
        return 0;
    };
    let n = store.count_readings().await.unwrap_or(0);
    store.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_broker_restart_lose_and_double_nothing() {
    if !common::mosquitto_binary("sigkill_and_broker_restart_lose_and_double_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let mut broker = Broker::start(&broker_dir, &BrokerOptions::default()).unwrap();
    let cfg = write_config(dir.path(), &broker.url());
    let log = dir.path().join("daemon.log");
    let db = dir.path().join("state/pollwatch.db");

    let mut daemon = Daemon::start(&cfg, Some(&log));
    let publisher =
        MqttPublisher::connect(&broker.url(), &PublisherOptions::persistent("crash-pub")).unwrap();
    let pubs = std::sync::Arc::new(publisher);
    let p = pubs.clone();
    let feeding = tokio::spawn(async move {
        for i in 0..MESSAGES {
            let (topic, payload) = message(i);
            p.publish(topic, payload).await.unwrap();
        }
    });

    assert!(pubs.wait_acked(30_000, Duration::from_secs(60)).await);
    daemon.kill();
    let at_kill = pubs.acked();
    let stored_at_kill = stored(&db).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut daemon = Daemon::start(&cfg, Some(&log));

    assert!(pubs.wait_acked(60_000, Duration::from_secs(60)).await);
    broker.restart().unwrap();
    let at_restart = pubs.acked();

    feeding.await.unwrap();
    let all_acked = pubs.wait_acked(MESSAGES, Duration::from_secs(120)).await;
    let mut n = 0;
    for _ in 0..600 {
        n = stored(&db).await;
        if n >= MESSAGES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = daemon.terminate();
    let diag = format!(
        "acked by broker {} (at kill {at_kill}, at broker restart {at_restart}), stored at kill {stored_at_kill}, stored {n}\n--- daemon log tail ---\n{}\n--- broker log tail ---\n{}",
        pubs.acked(),
        tail(&std::fs::read_to_string(&log).unwrap_or_default(), 30),
        tail(&broker.log(), 30),
    );
    assert!(all_acked, "publisher not acknowledged: {diag}");
    assert!(status.success(), "daemon exit {status}: {diag}");
    // The kill and the restart happened mid-stream, with work in flight.
    assert!(at_kill < MESSAGES && at_restart < MESSAGES, "{diag}");
    assert!(
        pubs.stats()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2,
        "{diag}"
    );

    let store = Store::open(
        &format!("sqlite://{}", db.display()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    let mut total = 0;
    for m in 0..METERS {
        let rows = store
            .readings(&ReadingQuery::new("E1", LocationKind::Meter, format!("M{m}")).factor("e_p"))
            .await
            .unwrap();
        assert_eq!(rows.len() as u64, MESSAGES / METERS, "meter M{m}: {diag}");
        for (k, r) in rows.iter().enumerate() {
            let i = k as u64 * METERS + m;
            assert_eq!(
                r.ts.timestamp_millis(),
                T0_MS + (i / METERS) as i64 * 1000,
                "M{m} row {k}"
            );
            assert_eq!(r.value, i as f64, "M{m} row {k}: value of message {i}");
        }
        total += rows.len();
    }
    assert_eq!(total as u64, MESSAGES);
    drop(broker);
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
