//! HJ 212-2025 loggers against the real server, store and sockets: encrypted data
//! areas (answered only once stored, with the plaintext's values), wrong keys and
//! bad CRCs (dead letters, no answer), `require_encryption`, the 9015 heartbeat, and
//! one connection relaying many loggers.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::hj212::Harness;
use pollwatch::model::{DataKind, Stat};
use pollwatch::sim::hj212_logger::cp_values;
use pollwatch::sim::LoggerSim;
use pollwatch::sources::hj212::codec::crypt::Sm4Key;
use pollwatch::sources::hj212::codec::reply::encode_frame;
use pollwatch::sources::hj212::codec::segment::DataSegment;
use pollwatch::sources::hj212::codec::time::LocalDateTime;

/// The fixture's outlet and key (hj212/2025-encrypted.txt).
const MN: &str = "010000A8900016F000PW0001";
const KEY: &str = "7A3F0C5512E94B6D88A1C4F02B9E6D31";

const ENTERPRISE: &str = r#"
id = "E25"
name = "垃圾焚烧发电厂"
district = "吴中区"
industry = "垃圾焚烧"

[[outlets]]
id = "DA001"
name = "1#焚烧线烟囱"
kind = "flue_gas"
o2_reference = 11.0
hj212 = { mn = "010000A8900016F000PW0001", password = "123456", sm4_key_file = "keys/DA001.key", require_encryption = true }

[[outlets]]
id = "DA002"
name = "2#焚烧线烟囱"
kind = "flue_gas"
o2_reference = 11.0
hj212 = { mn = "010000A8900016F000PW0002", password = "pw2" }

[[outlets]]
id = "DA003"
name = "3#焚烧线烟囱"
kind = "flue_gas"
o2_reference = 11.0
hj212 = { mn = "010000A8900016F000PW0003", password = "pw3", rtd_interval = "30s" }
"#;

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = dir.path().join("config");
    std::fs::create_dir_all(cfg_dir.join("enterprises")).unwrap();
    std::fs::create_dir_all(cfg_dir.join("keys")).unwrap();
    std::fs::write(cfg_dir.join("keys/DA001.key"), format!("{KEY}\n")).unwrap();
    std::fs::write(
        cfg_dir.join("pollwatch.toml"),
        format!(
            "[daemon]\ntimezone = \"Asia/Shanghai\"\nstate_dir = {:?}\n# Frames carry fixed dates: accept any data age.\nmax_data_age = \"36500d\"\n\n[hj212]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("state").display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(cfg_dir.join("enterprises/e25.toml"), ENTERPRISE).unwrap();
    let cfg = pollwatch::config::Config::load(&cfg_dir, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    Harness::start_with(cfg, dir, "E25").await
}

/// A 2025 logger: Flag 9 (this revision, reply wanted).
fn sim(h: &Harness, mn: &str, pw: &str) -> LoggerSim {
    let mut s = h.sim(mn, pw);
    s.flag = 9;
    s
}

/// The fixture's frames, by line: (expected, frame without CRLF).
fn fixture_frames() -> Vec<(String, String)> {
    let dir = match std::env::var_os("PW_FIXTURES") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    };
    let path = dir.join("hj212/2025-encrypted.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; set PW_FIXTURES", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut p = l.split('\t');
            (p.next().unwrap().to_string(), p.next().unwrap().to_string())
        })
        .collect()
}

fn qn_of(frame: &str) -> String {
    frame.split("QN=").nth(1).unwrap()[..17].to_string()
}

#[tokio::test]
async fn encrypted_uploads_are_stored_then_answered_and_a_wrong_key_is_a_dead_letter() {
    let mut h = start().await;
    let mut logger = sim(&h, MN, "123456");
    logger.connect().await.unwrap();
    let frames = fixture_frames();
    // The 2051 minute upload (line 2): answered, and only after it was stored.
    let (_, minute) = &frames[1];
    logger
        .send_until_answered(&qn_of(minute), format!("{minute}\r\n").as_bytes())
        .await
        .unwrap();
    let so2 = h.readings("DA001", "a21026").await;
    let got: BTreeMap<Stat, f64> = so2
        .iter()
        .filter(|r| r.kind == DataKind::Min)
        .map(|r| (r.stat, r.value))
        .collect();
    let want = BTreeMap::from([(Stat::Min, 20.1), (Stat::Avg, 21.0), (Stat::Max, 22.4)]);
    assert_eq!(got, want, "the plaintext column's values");
    assert_eq!(
        so2[0].ts.to_rfc3339(),
        "2026-11-30T02:01:00+00:00",
        "DataTime is local (UTC+8)"
    );

    // Every other good frame of the fixture is answered too (2011, 2061, RF=1 2051, 2011).
    for (expected, frame) in frames.iter().filter(|(e, _)| e == "ok") {
        assert_eq!(expected, "ok");
        logger
            .send_until_answered(&qn_of(frame), format!("{frame}\r\n").as_bytes())
            .await
            .unwrap();
    }
    assert_eq!(
        h.readings("DA001", "a00000").await.len(),
        2,
        "hourly flow Avg and Cou"
    );
    // The RF=1 frame (line 4, 2051 at 10:03) is stored with its resend mark, and
    // only its values are.
    let marked: Vec<(String, f64)> = h
        .readings("DA001", "a21026")
        .await
        .iter()
        .filter(|r| r.resend)
        .map(|r| (r.ts.to_rfc3339(), r.value))
        .collect();
    assert_eq!(
        marked,
        vec![("2026-11-30T02:03:00+00:00".to_string(), 18.5)]
    );

    // Encrypted under another key: a dead letter, never answered.
    let (expected, wrong) = &frames[4];
    assert_eq!(expected, "bad_decrypt");
    logger.tries = 1;
    assert!(logger
        .send_until_answered(&qn_of(wrong), format!("{wrong}\r\n").as_bytes())
        .await
        .is_err());
    assert_eq!(h.stats.rejected_for("bad_decrypt"), 1);
    // A CRC that fails over the decrypted segment: a bad CRC, not answered.
    let (_, good) = &frames[0];
    let broken = format!("{}0000\r\n", &good[..good.len() - 4]);
    assert!(logger
        .send_until_answered(&qn_of(good), broken.as_bytes())
        .await
        .is_err());
    assert_eq!(h.stats.rejected_for("bad_crc"), 1);
    h.stop().await;
    let dead = h.store.dead_letters(10).await.unwrap();
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert!(
        reasons.contains(&"bad_decrypt") && reasons.contains(&"bad_crc"),
        "{reasons:?}"
    );
    let d = dead.iter().find(|d| d.reason == "bad_decrypt").unwrap();
    assert!(
        d.detail
            .contains("does not decrypt with the configured key"),
        "{}",
        d.detail
    );
    assert_eq!(
        d.raw,
        wrong.as_bytes()[6..wrong.len() - 4].to_vec(),
        "kept as received"
    );
}

#[tokio::test]
async fn a_simulated_2025_logger_encrypts_and_plaintext_data_is_refused_when_required() {
    let mut h = start().await;
    let mut logger = sim(&h, MN, "123456");
    logger.st = "31".into();
    logger.sm4_key = Some(Sm4Key::from_hex(KEY).unwrap());
    let t = LocalDateTime {
        year: 2026,
        month: 12,
        day: 1,
        hour: 9,
        minute: 5,
        second: 0,
    };
    logger
        .upload(
            "2051",
            t,
            &cp_values("Avg", &[("a21026", 12.5, 'N'), ("a21002", 40.25, 'N')]),
        )
        .await
        .unwrap();
    assert_eq!(h.readings("DA001", "a21002").await[0].value, 40.25);

    // The same logger in plaintext: require_encryption refuses data, silently.
    logger.sm4_key = None;
    logger.tries = 1;
    assert!(logger
        .upload("2011", t, &cp_values("Rtd", &[("a21026", 99.0, 'N')]))
        .await
        .is_err());
    assert_eq!(h.stats.rejected_for("not_encrypted"), 1);
    assert_eq!(h.readings("DA001", "a21026").await.len(), 1);

    // Heartbeats are sent in clear: 9015 with a reply wanted gets 9013.
    let (qn, seg) = logger.segment("9015", t, "");
    logger.send_raw(&encode_frame(&seg).unwrap()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let answer = logger.next_segment(deadline).await.expect("9013 for 9015");
    let a = DataSegment::parse(&answer).unwrap();
    assert_eq!((a.cn, a.qn), ("9013", Some(qn.as_str())));
    h.stop().await;
}

#[tokio::test]
async fn a_relayed_connection_connects_each_logger_once() {
    let mut h = start().await;
    // One TCP connection (a platform forwarding three loggers): frames of the
    // three MNs interleaved, three rounds.
    let mut relay = sim(&h, MN, "123456");
    relay.connect().await.unwrap();
    let key = Sm4Key::from_hex(KEY).unwrap();
    let loggers = [
        (MN, "123456", Some(key)),
        ("010000A8900016F000PW0002", "pw2", None),
        ("010000A8900016F000PW0003", "pw3", None),
    ];
    for minute in 0..3u8 {
        for (mn, pw, key) in &loggers {
            relay.mn = mn.to_string();
            relay.password = pw.to_string();
            relay.sm4_key = key.clone();
            let t = LocalDateTime {
                year: 2026,
                month: 12,
                day: 1,
                hour: 10,
                minute,
                second: 0,
            };
            relay
                .upload(
                    "2011",
                    t,
                    &cp_values("Rtd", &[("a21026", 10.0 + f64::from(minute), 'N')]),
                )
                .await
                .unwrap();
        }
    }
    assert_eq!(relay.connects, 1, "one connection throughout");
    // The on-connect command of DA003 (1062) went out once, not once per frame.
    let sets: Vec<&String> = relay
        .received
        .iter()
        .filter(|s| s.contains("CN=1062"))
        .collect();
    assert_eq!(sets.len(), 1, "{:?}", relay.received);
    assert!(sets[0].contains("MN=010000A8900016F000PW0003"));
    // A wrong password for one MN is refused for that frame only.
    relay.password = "nope".into();
    relay.tries = 1;
    let t = LocalDateTime {
        year: 2026,
        month: 12,
        day: 1,
        hour: 10,
        minute: 9,
        second: 0,
    };
    assert!(relay
        .upload("2011", t, &cp_values("Rtd", &[("a21026", 1.0, 'N')]))
        .await
        .is_err());
    assert_eq!(h.stats.rejected_for("bad_password"), 1);
    relay.disconnect();
    for outlet in ["DA001", "DA002", "DA003"] {
        assert_eq!(h.readings(outlet, "a21026").await.len(), 3, "{outlet}");
    }
    h.stop().await;
    let events = h.store.status_events(50).await.unwrap();
    let count = |s: &str| events.iter().filter(|e| e.status == s).count();
    assert_eq!(count("connected"), 3, "{events:?}");
    assert_eq!(count("disconnected"), 3, "{events:?}");
}

#[tokio::test]
async fn new_2025_commands_are_kept_as_events_and_furnace_means_as_readings() {
    let mut h = start().await;
    let mut logger = sim(&h, "010000A8900016F000PW0002", "pw2");
    logger.st = "31".into();
    let t = LocalDateTime {
        year: 2026,
        month: 12,
        day: 1,
        hour: 11,
        minute: 5,
        second: 0,
    };
    // 2111: furnace temperature 5-minute means, stored as minute data. The
    // factor code is not in our references: stored as received.
    logger
        .upload("2111", t, "f01001-Avg=862.5,f01001-Flag=N")
        .await
        .unwrap();
    let furnace = h.readings("DA002", "f01001").await;
    assert_eq!(furnace.len(), 1);
    assert_eq!((furnace[0].kind, furnace[0].value), (DataKind::Min, 862.5));
    // 1001 hardware ids, 1014 a key request, 2062 a standard-sample check and
    // 2013 raw data: device events, answered once stored.
    let uploads = [
        (
            "1001",
            "i23005-Info=LOGGER-01;i23006-Info=CPU-9F;i23007-Info=00:1A:2B:3C:4D:5E",
        ),
        ("1014", "SKCreateTime=20261201110000"),
        (
            "2062",
            "a21026-StdValue=50.0,a21026-Check=49.2,a21026-Flag=N",
        ),
        ("2013", "a24088-RetTime=3.21,a24088-PeakArea=15022.7"),
    ];
    for (cn, cp) in uploads {
        logger.upload(cn, t, cp).await.unwrap();
    }
    h.stop().await;
    let events = h.store.status_events(20).await.unwrap();
    for (status, needle) in [
        ("hardware_ids", "i23006-Info=CPU-9F"),
        ("key_request", "SKCreateTime=20261201110000"),
        ("qc_check", "a21026-Check=49.2"),
        ("raw_data", "a24088-PeakArea=15022.7"),
    ] {
        let e = events
            .iter()
            .find(|e| e.status == status)
            .unwrap_or_else(|| panic!("no {status} event in {events:?}"));
        assert!(e.detail.contains(needle), "{e:?}");
        assert_eq!(e.device, "010000A8900016F000PW0002");
    }
    assert!(h.store.dead_letters(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn pollwatch_simulate_hj212_speaks_2025_with_a_key_and_resends() {
    let mut h = start().await;
    let key_file = h._dir.path().join("sim.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pollwatch"))
        .args([
            "simulate",
            "hj212",
            "--version",
            "2025",
            "--resend",
            "--st",
            "31",
        ])
        .arg("--addr")
        .arg(h.addr().to_string())
        .args(["--mn", MN, "--password", "123456", "--cn", "2051"])
        .arg("--sm4-key-file")
        .arg(&key_file)
        .args(["--value", "a21026=33.5"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("9014 after 1 attempt(s)"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = h.readings("DA001", "a21026").await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].resend && rows[0].value == 33.5, "{rows:?}");
    // require_encryption is on for DA001, so this went encrypted; without a key
    // it is refused.
    assert_eq!(h.stats.rejected_for("not_encrypted"), 0);
    h.stop().await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pollwatch"))
        .args([
            "simulate",
            "hj212",
            "--resend",
            "--mn",
            MN,
            "--password",
            "x",
        ])
        .args(["--value", "a21026=1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("add --version 2025"));
}
