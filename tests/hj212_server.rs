//! The HJ 212 server against real TCP clients, a real SQLite store and the real
//! traffic of two loggers.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pollwatch::model::DataKind;
use pollwatch::sim::hj212_logger::cp_values;
use pollwatch::sources::hj212::codec::crc::{crc16_modbus_swapped, CrcMode};
use pollwatch::sources::hj212::codec::frame::FrameDecoder;
use pollwatch::sources::hj212::codec::reply::encode_frame;
use pollwatch::sources::hj212::codec::segment::DataSegment;
use pollwatch::sources::hj212::codec::time::LocalDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::hj212::Harness;

async fn start(hj212_extra: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::hj212_config(dir.path(), hj212_extra);
    Harness::start_with(cfg, dir, "E1").await
}

fn t(h: u8, m: u8) -> LocalDateTime {
    LocalDateTime {
        year: 2026,
        month: 11,
        day: 27,
        hour: h,
        minute: m,
        second: 0,
    }
}

/// Reads every frame the server sends until `want` arrived or `within` passed.
async fn collect_replies(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    want: usize,
    within: Duration,
) -> Vec<String> {
    let mut dec = FrameDecoder::new();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + within;
    let mut chunk = [0u8; 8192];
    while out.len() < want {
        while let Some(f) = dec.decode(&mut buf) {
            out.push(
                f.expect("server frames are valid (CRC checked)")
                    .segment_text()
                    .into_owned(),
            );
        }
        if out.len() >= want {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rd.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    out
}

#[tokio::test]
async fn fixture_replayed_in_random_chunks_is_answered_frame_by_frame() {
    // A day of one logger's traffic in seconds: its odd commands (kept as dead
    // letters) arrive far faster than the per-minute dead-letter limits allow.
    let mut h =
        start("dead_letters_per_minute = 100000\ndead_letters_per_connection = 100000").await;
    let frames = common::fixture_frames();
    assert_eq!(frames.len(), 802);
    let mut stream: Vec<u8> = Vec::new();
    for f in &frames {
        stream.extend_from_slice(f.as_bytes());
        stream.extend_from_slice(b"\r\n");
    }
    let conn = TcpStream::connect(h.addr()).await.unwrap();
    conn.set_nodelay(true).unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let writer = tokio::spawn(async move {
        // Deterministic pseudo-random chunk sizes from 1 byte to 4 KiB.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut pos = 0;
        while pos < stream.len() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (1 + (x % 4096) as usize).min(stream.len() - pos);
            wr.write_all(&stream[pos..pos + n]).await.unwrap();
            pos += n;
            if x.is_multiple_of(3) {
                tokio::task::yield_now().await;
            }
        }
        wr
    });
    let segs: Vec<DataSegment<'_>> = frames
        .iter()
        .map(|f| DataSegment::parse(&f[6..f.len() - 4]).unwrap())
        .collect();
    let uploads: Vec<_> = segs.iter().filter(|s| s.cn != "9021").collect();
    let heartbeats = segs.len() - uploads.len();
    let replies = collect_replies(&mut rd, segs.len(), Duration::from_secs(120)).await;
    let _wr = writer.await.unwrap();

    assert_eq!(
        h.stats.frames.load(Ordering::Relaxed),
        802,
        "every frame exactly once"
    );
    let answers: Vec<DataSegment<'_>> = replies
        .iter()
        .map(|r| DataSegment::parse(r).unwrap())
        .collect();
    let d9014: Vec<_> = answers.iter().filter(|a| a.cn == "9014").collect();
    let d9013 = answers.iter().filter(|a| a.cn == "9013").count();
    assert_eq!(d9014.len(), uploads.len());
    assert_eq!(d9013, heartbeats);
    // In order, each 9014 echoes its upload's QN, MN and password.
    for (up, ans) in uploads.iter().zip(&d9014) {
        assert_eq!(
            (ans.qn, ans.mn, ans.pw, ans.st),
            (up.qn, up.mn, up.pw, Some("91"))
        );
        assert_eq!(ans.flag.map(|f| f.0), Some(4));
    }
    let flag5 = uploads
        .iter()
        .filter(|u| u.flag.map(|f| f.0) == Some(5))
        .count();
    assert!(flag5 > 200, "the Flag=5 uploads are among them ({flag5})");
    let stored = h.readings("DW001", "w01018").await;
    assert!(
        stored.iter().any(|r| r.kind == DataKind::Hour),
        "hourly COD stored"
    );
    assert!(
        stored.iter().any(|r| r.kind == DataKind::Rtd),
        "real-time COD stored"
    );
    assert!(
        h.stats.rejected_for("unsupported_cn") > 0,
        "2065/2066 kept as dead letters"
    );
    assert_eq!(h.stats.rejected_for("bad_crc"), 0);
    h.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_mn_are_refused_and_the_connection_closed() {
    let mut h = start("max_auth_failures = 3").await;
    let mut bad = h.sim("23040281003022", "wrong");
    bad.tries = 1;
    let cp = cp_values("Rtd", &[("w01018", 20.0, 'N')]);
    let err = bad.upload("2011", t(8, 0), &cp).await.unwrap_err();
    assert!(err.to_string().starts_with("no 9014"), "{err}");
    let mut stranger = h.sim("NOT-CONFIGURED", "123456");
    stranger.tries = 3;
    assert!(stranger.upload("2011", t(8, 0), &cp).await.is_err());
    assert!(
        stranger.closed_by_peer(Duration::from_secs(2)).await,
        "hung up after 3 failures"
    );
    assert_eq!(h.stats.rejected_for("bad_password"), 1);
    assert_eq!(h.stats.rejected_for("unknown_mn"), 3);
    assert_eq!(h.stats.rejected_for("auth_failures"), 1);
    assert!(
        h.readings("DW001", "w01018").await.is_empty(),
        "nothing stored"
    );
    h.stop().await;
    let dl = h.store.dead_letters(10).await.unwrap();
    let reasons: Vec<_> = dl.iter().map(|d| d.reason.as_str()).collect();
    assert!(
        reasons.contains(&"bad_password") && reasons.contains(&"unknown_mn"),
        "{reasons:?}"
    );
    let pw = dl.iter().find(|d| d.reason == "bad_password").unwrap();
    assert_eq!(pw.detail, "wrong password for MN \"23040281003022\"");
    assert!(
        String::from_utf8_lossy(&pw.raw).contains("PW=wrong"),
        "raw frame kept"
    );
}

#[tokio::test]
async fn bad_crc_gets_no_answer_and_the_resend_is_stored_once() {
    let mut h = start("").await;
    let mut sim = h.sim("23040281003022", "123456");
    sim.connect().await.unwrap();
    let (qn, seg) = sim.segment("2011", t(8, 1), &cp_values("Rtd", &[("w01018", 31.5, 'N')]));
    let good = encode_frame(&seg).unwrap();
    let mut broken = good.clone();
    let n = broken.len();
    broken[n - 3] = if broken[n - 3] == b'0' { b'1' } else { b'0' };
    sim.send_raw(&broken).await.unwrap();
    let reply = sim
        .next_segment(Instant::now() + Duration::from_millis(600))
        .await;
    assert!(reply.is_none(), "no NAK for a bad CRC: {reply:?}");
    assert!(h.readings("DW001", "w01018").await.is_empty());
    // The logger resends (same QN); then once more, as if our 9014 was lost.
    sim.send_until_answered(&qn, &good).await.unwrap();
    sim.send_until_answered(&qn, &good).await.unwrap();
    let rows = h.readings("DW001", "w01018").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].value, 31.5);
    assert_eq!(h.stats.rejected_for("bad_crc"), 1);
    h.stop().await;
    let dl = h.store.dead_letters(5).await.unwrap();
    assert_eq!(dl[0].reason, "bad_crc");
    assert!(
        dl[0].detail.starts_with("bad CRC: frame says"),
        "{}",
        dl[0].detail
    );
}

#[tokio::test]
async fn garbage_and_http_on_the_port_do_not_cost_good_frames() {
    let mut h = start("").await;
    let mut sim = h.sim("23040281003022", "123456");
    sim.connect().await.unwrap();
    sim.send_raw(b"GET / HTTP/1.1\r\nHost: pollwatch\r\nUser-Agent: scanner\r\n\r\n")
        .await
        .unwrap();
    sim.send_raw(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0xff, b'#'])
        .await
        .unwrap();
    let d = sim
        .upload("2011", t(8, 2), &cp_values("Rtd", &[("w01018", 12.0, 'N')]))
        .await
        .unwrap();
    assert_eq!(d.attempts, 1);
    // A length field of junk and a frame claiming more than the limit, then good data.
    sim.send_raw(b"##12a4QN=1;CN=2011\r\n").await.unwrap();
    sim.send_raw(b"##9999QN=1;CN=2011;").await.unwrap();
    let d = sim
        .upload("2011", t(8, 3), &cp_values("Rtd", &[("w01018", 13.0, 'N')]))
        .await
        .unwrap();
    assert_eq!(d.attempts, 1);
    assert_eq!(h.readings("DW001", "w01018").await.len(), 2);
    assert!(h.stats.rejected_for("garbage") >= 1);
    assert!(h.stats.rejected_for("bad_length") >= 1);
    h.stop().await;
}

#[tokio::test]
async fn oversize_length_is_refused_and_long_frames_within_the_limit_accepted() {
    let mut h = start("max_frame_len = 3000").await;
    let mut sim = h.sim("23040281003022", "123456");
    sim.connect().await.unwrap();
    sim.send_raw(b"##5000QN=20261127080000000;ST=32;CN=2011;PW=123456;MN=23040281003022;Flag=5;CP=&&&&0000\r\n").await.unwrap();
    // Over 1024 bytes (real loggers send up to ~1750): 60 factors.
    let values: Vec<(String, f64)> = (0..60).map(|i| (format!("w9{i:04}"), i as f64)).collect();
    let cp = values
        .iter()
        .map(|(c, v)| format!("{c}-Rtd={v},{c}-Flag=N"))
        .collect::<Vec<_>>()
        .join(";");
    let (qn, seg) = sim.segment("2011", t(8, 4), &cp);
    assert!(seg.len() > 1024);
    sim.send_until_answered(&qn, &encode_frame(&seg).unwrap())
        .await
        .unwrap();
    assert!(h.stats.rejected_for("too_long") >= 1);
    assert_eq!(
        h.readings("DW001", "w90059").await.len(),
        1,
        "unknown codes stored as received"
    );
    assert_eq!(h.stats.unknown_codes().len(), 60);
    h.stop().await;
}

#[tokio::test]
async fn silent_connections_are_closed() {
    let mut h = start("idle_timeout = \"400ms\"\nhandshake_timeout = \"300ms\"").await;
    let mut scanner = h.sim("x", "y");
    scanner.connect().await.unwrap();
    assert!(
        scanner.closed_by_peer(Duration::from_secs(3)).await,
        "never authenticated: closed"
    );
    let mut sim = h.sim("23040281003022", "123456");
    sim.upload("2011", t(8, 5), &cp_values("Rtd", &[("w01018", 1.0, 'N')]))
        .await
        .unwrap();
    assert!(
        sim.closed_by_peer(Duration::from_secs(3)).await,
        "idle: closed"
    );
    assert_eq!(h.stats.rejected_for("handshake_timeout"), 1);
    assert_eq!(h.stats.rejected_for("idle_timeout"), 1);
    h.stop().await;
}

#[tokio::test]
async fn old_and_odd_frames_are_understood() {
    let mut h = start("").await;
    let mut sim = h.sim("23040281003022", "123456");
    sim.connect().await.unwrap();
    // 2005 style: no QN, no Flag (so no answer), old code 011 for COD.
    let old = encode_frame("ST=32;CN=2011;PW=123456;MN=23040281003022;CP=&&DataTime=20261127080600;011-Rtd=55.5,011-Flag=N&&").unwrap();
    sim.send_raw(&old).await.unwrap();
    // Lowercase CRC.
    let (qn, seg) = sim.segment("2011", t(8, 7), &cp_values("Rtd", &[("w01018", 56.5, 'N')]));
    let mut lower = encode_frame(&seg).unwrap();
    let n = lower.len();
    lower[n - 6..n - 2].make_ascii_lowercase();
    sim.send_until_answered(&qn, &lower).await.unwrap();
    let rows = h.readings("DW001", "w01018").await;
    let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
    assert_eq!(values, vec![55.5, 56.5]);
    // Heartbeat with a reply wanted gets 9013; a time request gets 9013 and 1012.
    let hb = encode_frame(
        "QN=20261127080800000;ST=91;CN=9021;PW=123456;MN=23040281003022;Flag=5;CP=&&Data=7A7E&&",
    )
    .unwrap();
    sim.send_raw(&hb).await.unwrap();
    let a = sim
        .next_segment(Instant::now() + Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        a.contains("CN=9013") && a.contains("QN=20261127080800000"),
        "{a}"
    );
    let tr = encode_frame(
        "QN=20261127080900000;ST=32;CN=1013;PW=123456;MN=23040281003022;Flag=5;CP=&&&&",
    )
    .unwrap();
    sim.send_raw(&tr).await.unwrap();
    let a = sim
        .next_segment(Instant::now() + Duration::from_secs(2))
        .await
        .unwrap();
    assert!(a.contains("CN=9013"), "{a}");
    let b = sim
        .next_segment(Instant::now() + Duration::from_secs(2))
        .await
        .unwrap();
    assert!(b.contains("CN=1012") && b.contains("SystemTime="), "{b}");
    h.stop().await;
}

#[tokio::test]
async fn configured_commands_and_swapped_crc() {
    let mut h = start("").await;
    let mut flue = h.sim("MN-FLUE-01", "pw1");
    flue.st = "31".into();
    flue.upload(
        "2011",
        t(8, 10),
        &cp_values("Rtd", &[("a21026", 20.0, 'N')]),
    )
    .await
    .unwrap();
    let cns: Vec<String> = flue
        .received
        .iter()
        .filter_map(|s| DataSegment::parse(s).ok().map(|d| d.cn.to_string()))
        .collect();
    assert_eq!(cns, vec!["1012", "1062"], "{:?}", flue.received);
    assert!(flue.received[1].contains("RtdInterval=30") && flue.received[1].contains("ST=31"));

    // An old logger configured for the swapped CRC-16/MODBUS.
    let mut old = h.sim("MN-OLD-CRC", "pw2");
    old.crc = CrcMode::ModbusSwapped;
    old.connect().await.unwrap();
    let (qn, seg) = old.segment(
        "2011",
        t(8, 11),
        &cp_values("Rtd", &[("a21026", 21.0, 'N')]),
    );
    let swapped = format!(
        "##{:04}{seg}{:04X}\r\n",
        seg.len(),
        crc16_modbus_swapped(seg.as_bytes())
    );
    old.send_until_answered(&qn, swapped.as_bytes())
        .await
        .unwrap();
    assert_eq!(h.readings("DA002", "a21026").await.len(), 1);
    // The same CRC variant from an MN not configured for it is a bad CRC.
    let mut other = h.sim("23040281003022", "123456");
    other.tries = 1;
    other.connect().await.unwrap();
    let (qn, seg) = other.segment("2011", t(8, 12), &cp_values("Rtd", &[("w01018", 1.0, 'N')]));
    let swapped = format!(
        "##{:04}{seg}{:04X}\r\n",
        seg.len(),
        crc16_modbus_swapped(seg.as_bytes())
    );
    assert!(other
        .send_until_answered(&qn, swapped.as_bytes())
        .await
        .is_err());
    assert_eq!(h.stats.rejected_for("bad_crc"), 1);
    h.stop().await;
}

#[tokio::test]
async fn connection_limit_refuses_extra_connections() {
    let mut h = start("max_connections = 2").await;
    let mut a = h.sim("23040281003022", "123456");
    let mut b = h.sim("A140100_2006", "624930");
    a.upload("2011", t(9, 0), &cp_values("Rtd", &[("w01018", 1.0, 'N')]))
        .await
        .unwrap();
    b.upload("2011", t(9, 0), &cp_values("Rtd", &[("w21003", 1.0, 'N')]))
        .await
        .unwrap();
    let mut c = h.sim("x", "y");
    c.connect().await.unwrap();
    assert!(c.closed_by_peer(Duration::from_secs(2)).await);
    assert_eq!(h.stats.rejected_for("connection_limit"), 1);
    // The two admitted loggers carry on.
    a.upload("2011", t(9, 1), &cp_values("Rtd", &[("w01018", 2.0, 'N')]))
        .await
        .unwrap();
    h.stop().await;
}

#[tokio::test]
async fn split_packets_are_answered_part_by_part_and_merged_by_time() {
    let mut h = start("").await;
    let mut sim = h.sim("23040281003022", "123456");
    sim.connect().await.unwrap();
    let parts = [
        ("20261127100000001", "1", "w01018-Avg=30.1,w01018-Flag=N"),
        ("20261127100000002", "2", "w21003-Avg=2.2,w21003-Flag=N"),
    ];
    for (qn, pno, cp) in parts {
        let seg = format!(
            "QN={qn};ST=32;CN=2061;PW=123456;MN=23040281003022;Flag=7;PNUM=2;PNO={pno};CP=&&DataTime=20261127090000;{cp}&&"
        );
        let d = sim
            .send_until_answered(qn, &encode_frame(&seg).unwrap())
            .await
            .unwrap();
        assert_eq!(d.attempts, 1, "part {pno} answered on its own");
    }
    let cod = h.readings("DW001", "w01018").await;
    let nh3 = h.readings("DW001", "w21003").await;
    assert_eq!((cod.len(), nh3.len()), (1, 1));
    assert_eq!(cod[0].ts, nh3[0].ts, "both parts describe the same hour");
    assert_eq!(cod[0].kind, DataKind::Hour);
    h.stop().await;
}
