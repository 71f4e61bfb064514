//! A hostile message on the MQTT source (issue 17), against the real Mosquitto
//! (`PW_TEST_MQTT_URL`): one message over `max_packet_size` costs no reconnect
//! storm but one dead letter, and the good messages after it are stored.

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
"#;

fn config(dir: &std::path::Path, url: &str, prefix: &str) -> pollwatch::config::Config {
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\nstate_dir = {:?}\n[hj212]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nurl = \"{url}\"\nclient_id = \"pw-hostile-{}\"\nmax_packet_size = 1048576\n\n[[mqtt.subscriptions]]\ntopic = \"{prefix}/{{enterprise}}/{{meter}}/data\"\nformat = \"json\"\nfactor_map = {{ P = \"e_p\" }}\n",
            dir.join("state").display().to_string(),
            prefix.replace('/', "-"),
        ),
    )
    .unwrap();
    std::fs::write(cfg.join("enterprises/e1.toml"), ENTERPRISE).unwrap();
    pollwatch::config::Config::load(&cfg, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn an_oversized_message_costs_no_reconnects_and_good_ones_after_it_are_stored() {
    let Some(url) = common::mqtt_url() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = common::unique();
    let prefix = format!("pwhostile/{run}");
    let cfg = config(dir.path(), &url, &prefix);
    let (store, writer, task) = common::store_and_writer(&cfg.storage_url).await;
    let (source, stop) = common::mqtt_source(&cfg, &writer).await;
    let stats = source.stats();
    assert_eq!(stats.connects.load(Ordering::Relaxed), 1);

    let publ = common::mqtt_publisher_max(&url, Some(4 << 20));

    let topic = format!("{prefix}/E1/M1/data");
    // 2 MB: a gateway's runaway buffer, over our 1 MiB limit.
    let huge = format!(
        r#"{{"ts":"2026-11-27T08:00:00+08:00","values":{{"P":1}},"pad":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    publ.publish(topic.clone(), QoS::AtLeastOnce, false, huge)
        .await
        .unwrap();
    for i in 0..10 {
        let payload = format!(
            r#"{{"ts":"2026-11-27T08:{:02}:00+08:00","values":{{"P":{}}}}}"#,
            i + 1,
            10 + i
        );
        publ.publish(topic.clone(), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    let q = ReadingQuery::new("E1", LocationKind::Meter, "M1").factor("e_p");
    let mut stored = 0;
    for _ in 0..100 {
        stored = store.readings(&q).await.unwrap().len();
        if stored == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored, 10, "the good messages after the oversized one");
    // Some time for a storm to show: none. One reconnect admitted the message.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stats.connects.load(Ordering::Relaxed),
        2,
        "one reconnect to take the oversized message, no storm"
    );
    assert_eq!(stats.rejected_for("too_large"), 1);
    assert_eq!(
        store.readings(&q).await.unwrap().len(),
        10,
        "the oversized message stored nothing"
    );
    let _ = stop.send(true);
    source.join().await;
    drop(writer);
    task.finish(Duration::from_secs(5)).await;
    let dl = store.dead_letters(10).await.unwrap();
    let big = dl
        .iter()
        .find(|d| d.reason == "too_large")
        .expect("one dead letter");
    assert_eq!(big.peer, topic);
    assert!(
        big.detail
            .contains("exceeds [mqtt] max_packet_size 1048576"),
        "{}",
        big.detail
    );
    assert_eq!(big.raw.len(), 64 << 10, "its head kept, not 2 MB");
}
