//! `mqtts://` against a private Mosquitto with a TLS listener that demands a client
//! certificate: with the CA and our certificate configured, messages land as
//! readings; a missing certificate file is an error that names it.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pollwatch::clock::SystemClock;
use pollwatch::model::LocationKind;
use pollwatch::sim::mosquitto::{Broker, BrokerOptions};
use pollwatch::sim::mqtt_pub::{json_message, MqttPublisher, PublisherOptions};
use pollwatch::sources::mqtt::{MqttError, MqttSource};
use pollwatch::store::ReadingQuery;
use tokio::sync::watch;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=pollwatch test CA",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    for name in ["server", "client"] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
    }
}

fn config(dir: &Path, tls_port: u16, cert_lines: &str) -> pollwatch::config::Config {
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\nstate_dir = {:?}\n[hj212]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nurl = \"mqtts://127.0.0.1:{tls_port}\"\nclient_id = \"pw-tls\"\n{cert_lines}\n[[mqtt.subscriptions]]\ntopic = \"tls/{{enterprise}}/{{meter}}\"\nformat = \"json\"\n",
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(
        cfg.join("enterprises/e1.toml"),
        "id = \"E1\"\nname = \"测试企业\"\ndistrict = \"吴中区\"\nindustry = \"印染\"\n[[meters]]\nid = \"M1\"\nname = \"生产线\"\nrole = \"production\"\n",
    )
    .unwrap();
    pollwatch::config::Config::load(&cfg, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn mqtts_with_a_client_certificate() {
    if !common::mosquitto_binary("mqtts_with_a_client_certificate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certs(d);
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = BrokerOptions {
        persistence: false,
        extra: format!(
            "listener {tls_port} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\nrequire_certificate true\n",
            d.display()
        ),
        ..BrokerOptions::default()
    };
    let broker = Broker::start(d, &opts).unwrap();
    let cfg = config(
        d,
        tls_port,
        &format!(
            "ca_file = \"{0}/ca.pem\"\nclient_cert_file = \"{0}/client.pem\"\nclient_key_file = \"{0}/client.key\"\n",
            d.display()
        ),
    );
    let (store, writer, task) = common::store_and_writer(&cfg.storage_url).await;
    let (stop, stop_rx) = watch::channel(false);
    let m = cfg.daemon.mqtt.as_ref().unwrap();
    let source =
        MqttSource::start(m, &cfg, writer.clone(), Arc::new(SystemClock), stop_rx).unwrap();
    let stats = source.stats();
    for _ in 0..100 {
        if stats.connects.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        stats.connects.load(Ordering::Relaxed),
        1,
        "connected over TLS:\n{}",
        broker.log()
    );

    // The gateway publishes on the broker's plain listener; pollwatch reads over TLS.
    let publisher =
        MqttPublisher::connect(&broker.url(), &PublisherOptions::persistent("tls-pub")).unwrap();
    publisher
        .publish(
            "tls/E1/M1",
            json_message(1_796_169_600_000, &[("e_p", 812.5)]),
        )
        .await
        .unwrap();
    for _ in 0..100 {
        if stats.acked.load(Ordering::Relaxed) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publisher.close().await;
    stop.send(true).unwrap();
    source.join().await;
    drop(writer);
    task.finish(Duration::from_secs(5)).await;
    let rows = store
        .readings(&ReadingQuery::new("E1", LocationKind::Meter, "M1").factor("e_p"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].value, 812.5);
}

#[tokio::test]
async fn a_missing_certificate_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = config(d, 8883, "ca_file = \"/nonexistent/ca.pem\"\n");
    let (_store, writer, _task) = common::store_and_writer(&cfg.storage_url).await;
    let (_stop, stop_rx) = watch::channel(false);
    let err = MqttSource::start(
        cfg.daemon.mqtt.as_ref().unwrap(),
        &cfg,
        writer,
        Arc::new(SystemClock),
        stop_rx,
    )
    .err()
    .expect("start must fail");
    assert!(
        matches!(
            err,
            MqttError::File {
                what: "CA certificate",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
