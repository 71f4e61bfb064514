//! MQTT ingest against a real Mosquitto (`PW_TEST_MQTT_URL`).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use pollwatch::model::LocationKind;
use pollwatch::store::ReadingQuery;
use rumqttc::QoS;

const ENTERPRISE: &str = r#"
id = "E1"
name = "测试企业"
district = "吴中区"
industry = "印染"

[[meters]]
id = "M1"
name = "生产线"
role = "production"

[[outlets]]
id = "DA001"
name = "1#排气筒"
kind = "flue_gas"
o2_reference = 6.0
hj212 = { mn = "MQ-MN-1", password = "pw1" }
"#;

/// A config with one JSON subscription under a topic prefix of its own.
fn config(dir: &std::path::Path, url: &str, prefix: &str) -> pollwatch::config::Config {
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\nstate_dir = {:?}\n# The messages carry fixed dates; the clock check is tested in hostile_input.rs.\nmax_data_age = \"36500d\"\n[hj212]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nurl = \"{url}\"\nclient_id = \"pw-test-{prefix}\"\n\n[[mqtt.subscriptions]]\ntopic = \"{prefix}/{{enterprise}}/{{meter}}/data\"\nformat = \"json\"\nfactor_map = {{ P = \"e_p\" }}\n\n[[mqtt.subscriptions]]\ntopic = \"{prefix}/hj212/{{enterprise}}/{{outlet}}\"\nformat = \"hj212\"\n",
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(cfg.join("enterprises/e1.toml"), ENTERPRISE).unwrap();
    pollwatch::config::Config::load(&cfg, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn json_lands_as_readings_and_bad_messages_as_dead_letters() {
    let Some(url) = common::mqtt_url() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("pwtest/{}", common::unique());
    let cfg = config(dir.path(), &url, &prefix);
    let (store, writer, task) = common::store_and_writer(&cfg.storage_url).await;
    let (source, stop) = common::mqtt_source(&cfg, &writer).await;
    let stats = source.stats();

    let publ = common::mqtt_publisher(&url);
    let t = "2026-11-27T08:00:00+08:00";
    let msgs = [
        (
            format!("{prefix}/E1/M1/data"),
            format!(r#"{{"ts":"{t}","values":{{"P":12.5,"e_ep":3021.7}}}}"#),
        ),
        (
            format!("{prefix}/E1/M1/data"),
            r#"{"ts":"2026-11-27T08:01:00+08:00","values":{"P":"n/a","e_ep":3022.0}}"#.to_string(),
        ),
        (format!("{prefix}/E1/M1/data"), "not json".to_string()),
        (
            format!("{prefix}/E1/NOPE/data"),
            format!(r#"{{"ts":"{t}","values":{{"P":1}}}}"#),
        ),
        (
            format!("{prefix}/E9/M1/data"),
            format!(r#"{{"ts":"{t}","values":{{"P":1}}}}"#),
        ),
        (format!("{prefix}/hj212/E1/DA001"), hj212("pw1", "41.2")),
        (format!("{prefix}/hj212/E1/DA001"), hj212("wrong", "41.3")),
    ];
    for (topic, payload) in &msgs {
        publ.publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
    }
    common::wait_acked(&stats, msgs.len() as u64).await;
    assert_eq!(
        stats.acked.load(Ordering::Relaxed),
        msgs.len() as u64,
        "every message acknowledged once stored"
    );
    let _ = stop.send(true);
    source.join().await;
    drop(writer);
    task.finish(Duration::from_secs(5)).await;

    let q = ReadingQuery::new("E1", LocationKind::Meter, "M1");
    let rows = store.readings(&q.clone().factor("e_p")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].value, 12.5);
    assert_eq!(rows[0].protocol, pollwatch::model::Protocol::Mqtt);
    assert_eq!(
        store.readings(&q.factor("e_ep")).await.unwrap().len(),
        2,
        "the good value of a half-bad message is kept"
    );
    let dead = store.dead_letters(20).await.unwrap();
    let reasons: Vec<(&str, &str)> = dead
        .iter()
        .map(|d| (d.reason.as_str(), d.detail.as_str()))
        .collect();
    for want in [
        ("bad_value", "P: \"n/a\" is not a number"),
        ("bad_payload", "payload is not JSON"),
        (
            "unknown_location",
            "meter \"NOPE\" is not configured for E1",
        ),
        ("unknown_enterprise", "enterprise \"E9\" is not configured"),
    ] {
        assert!(
            reasons
                .iter()
                .any(|(r, d)| *r == want.0 && d.contains(want.1)),
            "missing {want:?} in {reasons:#?}"
        );
    }
    assert!(
        dead.iter().any(|d| d.raw == b"not json"),
        "raw payload kept"
    );
    assert!(
        reasons
            .iter()
            .any(|(r, d)| *r == "bad_password" && d.contains("MQ-MN-1")),
        "{reasons:#?}"
    );
    let so2 = store
        .readings(&ReadingQuery::new("E1", LocationKind::Outlet, "DA001").factor("a21026"))
        .await
        .unwrap();
    assert_eq!(
        so2.len(),
        1,
        "HJ 212 frame over MQTT stored; the wrong password's is not"
    );
    assert_eq!(so2[0].value, 41.2);
}

fn hj212(pw: &str, so2: &str) -> String {
    let seg = format!("QN=20261127080000001;ST=31;CN=2011;PW={pw};MN=MQ-MN-1;Flag=5;CP=&&DataTime=20261127080000;a21026-Rtd={so2},a21026-Flag=N&&");
    String::from_utf8(pollwatch::sources::hj212::codec::reply::encode_frame(&seg).unwrap()).unwrap()
}
