//! Shared helpers for integration tests: real services, found through the
//! environment, and readings to feed them.
#![allow(dead_code, unused_macros)]

/// Runs each named `async fn case(url: &str)` of the test file on SQLite, and on
/// PostgreSQL when `PW_TEST_DATABASE_URL` is set (a fresh database per case).
macro_rules! both_backends {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}/t.db", dir.path().display());
                    super::$case(&url).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(base) = super::common::pg_url(concat!("postgres::", stringify!($case))) else { return };
                    let url = super::common::fresh_pg_database(&base).await;
                    super::$case(&url).await;
                }
            )+
        }
    };
}

pub mod alerting;
pub mod backfill;
pub mod completeness;
pub mod console;
pub mod daemon;
pub mod field;
pub mod hj212;
pub mod proxy;
pub mod rules_rig;
pub mod tmpfs;
pub mod wecom;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use pollwatch::model::{DataKind, Flag, Id, Location, Protocol, Reading, SourceRef, Stat};

/// A port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The PostgreSQL URL for tests, or `None` after printing that the test is
/// skipped. With `PW_REQUIRE_SERVICES=1` (CI) a missing service fails the test.
pub fn pg_url(test: &str) -> Option<String> {
    match std::env::var("PW_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("PW_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: PW_TEST_DATABASE_URL is not set but PW_REQUIRE_SERVICES=1");
            }
            eprintln!("SKIPPED {test}: set PW_TEST_DATABASE_URL to run it against PostgreSQL");
            None
        }
    }
}

/// The Mosquitto URL for tests (`PW_TEST_MQTT_URL`), or `None` after printing that
/// the test is skipped; a failure under `PW_REQUIRE_SERVICES=1`.
pub fn mqtt_url() -> Option<String> {
    match std::env::var("PW_TEST_MQTT_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var("PW_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("PW_TEST_MQTT_URL is not set but PW_REQUIRE_SERVICES=1");
            }
            eprintln!("SKIPPED mqtt tests: set PW_TEST_MQTT_URL (e.g. mqtt://127.0.0.1:1883)");
            None
        }
    }
}

/// Whether the `mosquitto` binary is here, for tests that run a private broker
/// (to restart it, or to give it TLS). Gated like the shared services.
pub fn mosquitto_binary(test: &str) -> bool {
    let found = std::process::Command::new("mosquitto")
        .arg("-h")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("PW_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{test}: the mosquitto binary is missing but PW_REQUIRE_SERVICES=1");
        }
        eprintln!("SKIPPED {test}: install mosquitto to run it");
    }
    found
}

/// A config directory in `dir` with the daemon on Shanghai time (plus
/// `daemon_extra`) and one enterprise file per entry of `enterprises`, loaded.
pub fn rules_config(
    dir: &std::path::Path,
    daemon_extra: &str,
    enterprises: &[String],
) -> pollwatch::config::Config {
    std::fs::create_dir_all(dir.join("enterprises")).unwrap();
    std::fs::write(
        dir.join("pollwatch.toml"),
        format!("[daemon]\ntimezone = \"Asia/Shanghai\"\n{daemon_extra}"),
    )
    .unwrap();
    for (i, e) in enterprises.iter().enumerate() {
        std::fs::write(dir.join(format!("enterprises/e{i}.toml")), e).unwrap();
    }
    pollwatch::config::Config::load(dir, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// A store writer whose commits feed a rules task, as in the daemon.
pub fn rules_pipeline(
    store: &pollwatch::store::Store,
    clock: &Arc<pollwatch::clock::ManualClock>,
    plans: tokio::sync::watch::Receiver<Arc<pollwatch::rules::Plan>>,
    opts: pollwatch::rules::task::TaskOptions,
    forward: Option<tokio::sync::mpsc::Sender<Vec<pollwatch::store::StoredFinding>>>,
) -> (
    pollwatch::store::Writer,
    pollwatch::store::WriterTask,
    pollwatch::rules::task::RulesTask,
) {
    let (tap, rx) = tokio::sync::mpsc::channel(256);
    let (writer, wtask) = pollwatch::store::Writer::spawn(
        store.clone(),
        pollwatch::store::WriterOptions {
            tap: Some(tap),
            ..Default::default()
        },
        clock.clone(),
    );
    let rules = pollwatch::rules::task::RulesTask::spawn(
        store.clone(),
        plans,
        opts,
        clock.clone(),
        rx,
        forward,
    );
    (writer, wtask, rules)
}

/// A store at `url` with a writer on the wall clock: what every source test needs.
pub async fn store_and_writer(
    url: &str,
) -> (
    pollwatch::store::Store,
    pollwatch::store::Writer,
    pollwatch::store::WriterTask,
) {
    let store = pollwatch::store::Store::open(url, &Default::default())
        .await
        .unwrap();
    let (writer, task) = pollwatch::store::Writer::spawn(
        store.clone(),
        Default::default(),
        Arc::new(pollwatch::clock::SystemClock),
    );
    (store, writer, task)
}

/// A fresh, empty database on the test server, so tests never see each other's rows.
pub async fn fresh_pg_database(base_url: &str) -> String {
    use sqlx::Connection;
    let name = format!("pw_test_{}_{}", std::process::id(), rand_suffix());
    let mut conn = sqlx::PgConnection::connect(base_url)
        .await
        .expect("connect to PW_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    replace_db_name(base_url, &name)
}

/// A name no other test run uses (topics, client ids).
pub fn unique() -> String {
    format!("{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    nanos * 1000 + N.fetch_add(1, Ordering::Relaxed)
}

/// Swaps the database name (the path) of a postgres URL, keeping any query string.
pub fn replace_db_name(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()
}

/// A real-time SO2 reading of outlet DA001 at `t0 + secs`.
pub fn reading(outlet: &str, factor: &str, secs: i64, value: f64) -> Reading {
    Reading {
        enterprise: Id::from("E1"),
        location: Location::Outlet(outlet.into()),
        factor: factor.into(),
        unit: "mg/m³".into(),
        ts: t0() + chrono::Duration::seconds(secs),
        value,
        kind: DataKind::Rtd,
        stat: Stat::Rtd,
        converted: false,
        flag: Flag::N,
        source: SourceRef {
            protocol: Protocol::Hj212,
            device: Arc::from("MN0001"),
            resend: false,
        },
    }
}

/// The 802 real frames of `../shared/fixtures/hj212/real-traffic.txt` (without
/// CRLF). `$PW_FIXTURES` overrides the fixtures directory.
pub fn fixture_frames() -> Vec<String> {
    let dir = std::env::var_os("PW_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
        });
    let path = dir.join("hj212/real-traffic.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(|l| l.split_once('\t').expect("ok<TAB>frame").1.to_string())
        .collect()
}

/// A config directory for HJ 212 tests: the two fixture loggers plus test loggers,
/// listening on an ephemeral local port. `extra_daemon` is appended to
/// `[hj212]`.
pub fn hj212_config(dir: &std::path::Path, hj212_extra: &str) -> pollwatch::config::Config {
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\ntimezone = \"Asia/Shanghai\"\nstate_dir = {:?}\n# Fixture frames are historical traffic: accept any data age.\nmax_data_age = \"36500d\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[hj212]\nlisten = \"127.0.0.1:0\"\n{hj212_extra}\n",
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(cfg.join("enterprises/e1.toml"), HJ212_ENTERPRISE).unwrap();
    pollwatch::config::Config::load(&cfg, &pollwatch::config::LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`hj212_config`] with two API tokens: `prom`, a viewer whose token is in a
/// file, and `desk`, an operator ([`console::VIEWER`], [`console::OPERATOR`]).
/// Returns the config directory.
pub fn hj212_config_with_tokens(dir: &std::path::Path) -> std::path::PathBuf {
    let cfg = hj212_config(dir, "");
    let toml = cfg.dir.join("pollwatch.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    let token_file = dir.join("viewer.token");
    std::fs::write(&token_file, format!("{}\n", console::VIEWER)).unwrap();
    text.push_str(&format!(
        "\n[[http.tokens]]\nname = \"prom\"\nrole = \"viewer\"\ntoken_file = {:?}\n\n\
         [[http.tokens]]\nname = \"desk\"\nrole = \"operator\"\ntoken = \"{}\"\n",
        token_file.display().to_string(),
        console::OPERATOR
    ));
    std::fs::write(&toml, text).unwrap();
    cfg.dir
}

pub const HJ212_ENTERPRISE: &str = r#"
id = "E1"
name = "测试企业"
district = "吴中区"
industry = "污水处理"

[[outlets]]
id = "DW001"
name = "总排口"
kind = "wastewater"
hj212 = { mn = "23040281003022", password = "123456" }

[[outlets]]
id = "SW001"
name = "监测断面"
kind = "wastewater"
hj212 = { mn = "A140100_2006", password = "624930" }

[[outlets]]
id = "DA001"
name = "1#烟囱"
kind = "flue_gas"
o2_reference = 6.0
hj212 = { mn = "MN-FLUE-01", password = "pw1", set_time_on_connect = true, rtd_interval = "30s" }

[[outlets]]
id = "DA002"
name = "2#烟囱"
kind = "flue_gas"
o2_reference = 6.0
hj212 = { mn = "MN-OLD-CRC", password = "pw2", crc = "modbus_swapped" }
"#;

/// An MQTT source for `cfg` storing through `writer`, with the stop switch; returns
/// once it has connected and had a moment to subscribe.
pub async fn mqtt_source(
    cfg: &pollwatch::config::Config,
    writer: &pollwatch::store::Writer,
) -> (
    pollwatch::sources::mqtt::MqttSource,
    tokio::sync::watch::Sender<bool>,
) {
    use std::sync::atomic::Ordering;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let m = cfg.daemon.mqtt.as_ref().expect("an [mqtt] section");
    let source = pollwatch::sources::mqtt::MqttSource::start(
        m,
        cfg,
        writer.clone(),
        Arc::new(pollwatch::clock::SystemClock),
        stop_rx,
    )
    .unwrap();
    let stats = source.stats();
    for _ in 0..50 {
        if stats.connects.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Wait for the subscription before anyone publishes.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    (source, stop)
}

/// A publishing client on `url` (`mqtt://host:port`), its event loop in the background.
pub fn mqtt_publisher(url: &str) -> rumqttc::AsyncClient {
    mqtt_publisher_max(url, None)
}

/// [`mqtt_publisher`] whose packets may be up to `max_packet` bytes (to send
/// what a broker or a subscriber must refuse).
pub fn mqtt_publisher_max(url: &str, max_packet: Option<usize>) -> rumqttc::AsyncClient {
    let hostport = url.trim_start_matches("mqtt://");
    let (host, port) = hostport.rsplit_once(':').expect("mqtt://host:port");
    let id = format!("pw-pub-{}", rand_suffix());
    let mut opts = rumqttc::MqttOptions::new(id, host, port.parse().expect("a port"));
    opts.set_keep_alive(std::time::Duration::from_secs(10));
    if let Some(max) = max_packet {
        opts.set_max_packet_size(max, max);
    }
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 100);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    client
}

/// Waits (10 s at most) until the source has acknowledged `n` messages.
pub async fn wait_acked(stats: &pollwatch::sources::mqtt::MqttStats, n: u64) {
    for _ in 0..200 {
        if stats.acked.load(std::sync::atomic::Ordering::Relaxed) >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
