//! Live reload against the real daemon: a new enterprise file and SIGHUP bring its
//! logger in, while an HJ 212 logger and a Modbus device of other enterprises go on
//! streaming over the same TCP connections and lose nothing; a broken file on
//! reload leaves the old config running and names file, line and key.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::daemon::Daemon;
use pollwatch::clock::SystemClock;
use pollwatch::model::LocationKind;
use pollwatch::sim::hj212_logger::cp_values;
use pollwatch::sim::modbus::{serve_tcp, ModbusSim, Point};
use pollwatch::sim::profile::Profile;
use pollwatch::sim::LoggerSim;
use pollwatch::sources::hj212::codec::time::LocalDateTime;
use pollwatch::sources::modbus::decode::{DataType, WordOrder};
use pollwatch::sources::modbus::plan::RegisterKind;
use pollwatch::store::{ReadingQuery, Store, StoreOptions};

const NEW_ENTERPRISE: &str = r#"
id = "E3"
name = "新增企业"
district = "吴中区"
industry = "印染"

[[outlets]]
id = "DW001"
name = "总排口"
kind = "wastewater"
hj212 = { mn = "MN-NEW-0001", password = "pw-new" }
"#;

fn at(i: u32) -> LocalDateTime {
    LocalDateTime {
        year: 2026,
        month: 11,
        day: 27,
        hour: (i / 3600) as u8,
        minute: ((i / 60) % 60) as u8,
        second: (i % 60) as u8,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_an_enterprise_and_streams_keep_their_connections() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::hj212_config(dir.path(), "").dir;

    // E2: one power meter behind a Modbus TCP gateway, polled every 200 ms.
    let sim = Arc::new(ModbusSim::new(Arc::new(SystemClock)));
    sim.add_unit(1);
    sim.set(
        1,
        RegisterKind::Input,
        52,
        Point::new(
            Profile::Ramp {
                start: 100.0,
                per_sec: 1.0,
            },
            DataType::F32,
            WordOrder::ABCD,
        ),
    );
    let (_stop_sim, stop_sim_rx) = tokio::sync::watch::channel(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    tokio::spawn(serve_tcp(listener, sim.clone(), stop_sim_rx));
    std::fs::write(
        cfg.join("enterprises/e2.toml"),
        format!(
            "id = \"E2\"\nname = \"电表企业\"\ndistrict = \"吴中区\"\nindustry = \"印染\"\n\n\
             [[meters]]\nid = \"M1\"\nname = \"总电源\"\nrole = \"total\"\n\n\
             [meters.device]\nprotocol = \"modbus\"\ntransport = \"tcp\"\naddress = \"{gw}\"\nunit = 1\n\
             interval = \"200ms\"\ntimeout = \"150ms\"\n\n\
             [[meters.device.points]]\nfactor = \"e_p\"\nregister = \"input\"\naddress = 52\ntype = \"f32\"\n"
        ),
    )
    .unwrap();

    let mut daemon = Daemon::start(&cfg, None);
    let addr: std::net::SocketAddr = daemon.field("hj212").parse().unwrap();

    // E1's logger streams throughout, each upload answered only once durable.
    let streaming = Arc::new(AtomicBool::new(true));
    let go = streaming.clone();
    let stream = tokio::spawn(async move {
        let mut sim = LoggerSim::new(addr, "23040281003022", "123456");
        sim.tries = 1;
        let mut acked = Vec::new();
        let mut failed = 0;
        let mut i = 0u32;
        // Bounded: one upload every 20 ms for at most a simulated day.
        while go.load(Ordering::Relaxed) && i < 86_400 {
            let cp = cp_values("Rtd", &[("w01018", f64::from(i), 'N')]);
            match sim.upload("2011", at(i), &cp).await {
                Ok(_) => acked.push(i),
                Err(_) => failed += 1,
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (acked, failed, sim.connects)
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The new enterprise's logger is refused before the reload …
    let mut newcomer = LoggerSim::new(addr, "MN-NEW-0001", "pw-new");
    newcomer.tries = 1;
    newcomer.answer_timeout = Duration::from_millis(800);
    let cp = cp_values("Rtd", &[("w01018", 7.5, 'N')]);
    assert!(
        newcomer.upload("2011", at(1), &cp).await.is_err(),
        "unknown MN answered"
    );
    newcomer.disconnect();

    // … and accepted after it.
    std::fs::write(cfg.join("enterprises/e3.toml"), NEW_ENTERPRISE).unwrap();
    let from = daemon.log_len();
    let reloaded_at = chrono::Utc::now();
    daemon.signal("HUP");
    let line = daemon
        .wait_for_log(from, "config reloaded", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no reload: {:#?}", daemon.log()));
    assert!(
        line.contains("MN-NEW-0001"),
        "diff names the new logger: {line}"
    );
    newcomer.answer_timeout = Duration::from_secs(5);
    newcomer
        .upload("2011", at(2), &cp)
        .await
        .expect("new logger stored and answered");

    // A broken file: refused, reported with file and line, old config kept.
    std::fs::write(
        cfg.join("enterprises/e4.toml"),
        "id = \"E4\"\nname = \"x\"\ndistrict = \"x\"\nindustry = \"x\"\nposition_list = true\n",
    )
    .unwrap();
    let from = daemon.log_len();
    daemon.signal("HUP");
    let refused = daemon
        .wait_for_log(from, "reload refused", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no refusal: {:#?}", daemon.log()));
    assert!(refused.contains("enterprises/e4.toml:5"), "{refused}");
    assert!(refused.contains("position_list"), "{refused}");
    newcomer
        .upload("2011", at(3), &cp)
        .await
        .expect("old (reloaded) config still in force");

    tokio::time::sleep(Duration::from_millis(1000)).await;
    streaming.store(false, Ordering::Relaxed);
    let (acked, failed, connects) = stream.await.unwrap();
    assert_eq!(failed, 0, "the streaming logger had uploads unanswered");
    assert_eq!(connects, 1, "the streaming logger had to reconnect");
    assert_eq!(
        sim.tcp_connections(),
        1,
        "the Modbus gateway connection was reopened"
    );
    assert!(daemon.terminate().success());

    let db = dir.path().join("state/pollwatch.db");
    let store = Store::open(
        &format!("sqlite://{}", db.display()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    let rows = store
        .readings(&ReadingQuery::new("E1", LocationKind::Outlet, "DW001").factor("w01018"))
        .await
        .unwrap();
    let stored: std::collections::HashSet<u32> = rows.iter().map(|r| r.value as u32).collect();
    let missing: Vec<&u32> = acked.iter().filter(|i| !stored.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    let new_rows = store
        .readings(&ReadingQuery::new("E3", LocationKind::Outlet, "DW001"))
        .await
        .unwrap();
    assert_eq!(
        new_rows.len(),
        2,
        "the new logger's two accepted uploads stored"
    );

    let mut polled = store
        .readings(&ReadingQuery::new("E2", LocationKind::Meter, "M1").factor("e_p"))
        .await
        .unwrap();
    polled.sort_by_key(|r| r.ts);
    assert!(
        polled.iter().any(|r| r.ts < reloaded_at),
        "polled before the reload"
    );
    assert!(
        polled.iter().any(|r| r.ts > reloaded_at),
        "polled after the reload"
    );
    // Polling never paused: no gap near the reload wider than a few intervals
    // plus scheduling slack (the interval is 200 ms).
    let widest = polled.windows(2).map(|w| w[1].ts - w[0].ts).max().unwrap();
    assert!(
        widest < chrono::Duration::seconds(2),
        "polling gap of {widest} around the reload"
    );
}

/// MQTT: a reload that adds an enterprise makes its topics known without
/// reconnecting (`[mqtt]` unchanged); changing `[mqtt]` reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_follows_reloads_and_reconnects_only_when_mqtt_changes() {
    let Some(url) = common::mqtt_url() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::hj212_config(dir.path(), "").dir;
    let topic_root = format!("rl{}", std::process::id());
    let toml = cfg.join("pollwatch.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    let mqtt = format!(
        "\n[mqtt]\nurl = \"{url}\"\nclient_id = \"pw-reload-{topic_root}\"\n\n\
         [[mqtt.subscriptions]]\ntopic = \"{topic_root}/{{enterprise}}/{{meter}}\"\nformat = \"json\"\n"
    );
    text.push_str(&mqtt);
    std::fs::write(&toml, &text).unwrap();
    let mut daemon = Daemon::start(&cfg, None);
    assert!(daemon
        .wait_for_log(0, "MQTT connected", Duration::from_secs(10))
        .is_some());

    let publish = |round: u32| {
        let plan = pollwatch::sim::mqtt_pub::GatewayPlan {
            url: url.clone(),
            topic: format!("{topic_root}/{{enterprise}}/{{meter}}"),
            enterprise: "E5".into(),
            meters: vec!["M1".into()],
            values: vec![("e_p".into(), f64::from(round))],
            count: 1,
            interval: Duration::from_millis(10),
        };
        async move {
            pollwatch::sim::mqtt_pub::run_gateway(&plan, |_, _| {})
                .await
                .unwrap()
        }
    };
    std::fs::write(
        cfg.join("enterprises/e5.toml"),
        "id = \"E5\"\nname = \"MQTT企业\"\ndistrict = \"x\"\nindustry = \"x\"\n\n\
         [[meters]]\nid = \"M1\"\nname = \"总电源\"\nrole = \"total\"\n",
    )
    .unwrap();
    let from = daemon.log_len();
    daemon.signal("HUP");
    daemon
        .wait_for_log(from, "config reloaded", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no reload: {:#?}", daemon.log()));
    publish(1).await;

    // Now change [mqtt] (keep-alive): the client reconnects, same session.
    std::fs::write(
        &toml,
        text.replace("[mqtt]\n", "[mqtt]\nkeep_alive = \"20s\"\n"),
    )
    .unwrap();
    let from = daemon.log_len();
    daemon.signal("HUP");
    daemon
        .wait_for_log(from, "config reloaded", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no reload: {:#?}", daemon.log()));
    assert!(daemon
        .wait_for_log(from, "MQTT connected", Duration::from_secs(10))
        .is_some());
    publish(2).await;

    let db = dir.path().join("state/pollwatch.db");
    let store = Store::open(
        &format!("sqlite://{}", db.display()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    let q = ReadingQuery::new("E5", LocationKind::Meter, "M1").factor("e_p");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = store.readings(&q).await.unwrap();
        if rows.len() >= 2 || std::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
    assert!(values.contains(&1.0) && values.contains(&2.0), "{values:?}");
    let connects = daemon
        .log()
        .iter()
        .filter(|l| l.contains("MQTT connected"))
        .count();
    assert_eq!(
        connects, 2,
        "one connect at start, one for the [mqtt] change"
    );
    assert!(daemon.terminate().success());
}

#[test]
fn config_diff_names_what_changed() {
    use pollwatch::config::diff::ConfigDiff;
    use pollwatch::config::{Config, LoadOptions};
    let dir = tempfile::tempdir().unwrap();
    let old = common::hj212_config(dir.path(), "");
    let cfg = old.dir.clone();
    let e1 = cfg.join("enterprises/e1.toml");
    let text = std::fs::read_to_string(&e1).unwrap();
    // DA002's password changes, SW001 goes, E3 arrives; [hj212] listen changes.
    let text = text
        .replace("password = \"pw2\"", "password = \"pw2-new\"")
        .replace(
            "[[outlets]]\nid = \"SW001\"\nname = \"监测断面\"\nkind = \"wastewater\"\nhj212 = { mn = \"A140100_2006\", password = \"624930\" }\n",
            "",
        );
    std::fs::write(&e1, text).unwrap();
    std::fs::write(cfg.join("enterprises/e3.toml"), NEW_ENTERPRISE).unwrap();
    let toml = cfg.join("pollwatch.toml");
    let t = std::fs::read_to_string(&toml).unwrap().replace(
        "[hj212]\nlisten = \"127.0.0.1:0\"",
        "[hj212]\nlisten = \"127.0.0.1:9999\"",
    );
    std::fs::write(&toml, t).unwrap();
    let new = Config::load(&cfg, &LoadOptions::default()).unwrap();
    assert_ne!(old.hash, new.hash);
    let d = ConfigDiff::between(&old, &new);
    assert_eq!(d.enterprises.added, vec!["E3"]);
    assert_eq!(d.enterprises.changed, vec!["E1"]);
    assert_eq!(d.loggers.added, vec!["MN-NEW-0001"]);
    assert_eq!(d.loggers.removed, vec!["A140100_2006"]);
    assert_eq!(d.loggers.changed, vec!["MN-OLD-CRC"]);
    assert!(d.devices.is_empty() && !d.mqtt);
    assert_eq!(d.restart_required, vec!["hj212"]);
    let same = Config::load(&cfg, &LoadOptions::default()).unwrap();
    assert!(ConfigDiff::between(&new, &same).is_empty());
    assert_eq!(new.hash, same.hash);
}
