//! Hostile peers on the HJ 212 listener (issue 17): idle connection floods, password
//! guessing, bad-frame floods and the per-connection dead-letter cap, each against a
//! real socket and a real store (SQLite, and PostgreSQL where rows are counted).
//! Attackers connect from other loopback addresses (127.0.0.x) than the real logger.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use pollwatch::sim::hj212_logger::cp_values;
use pollwatch::sources::hj212::codec::frame::FrameDecoder;
use pollwatch::sources::hj212::codec::reply::encode_frame;
use pollwatch::sources::hj212::codec::time::LocalDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use common::hj212::Harness;

const MN: &str = "23040281003022";
const PW: &str = "123456";

async fn start(extra: &str, pg: Option<String>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::hj212_config(dir.path(), extra);
    if let Some(url) = pg {
        cfg.storage_url = url;
    }
    Harness::start_with(cfg, dir, "E1").await
}

fn t(m: u8) -> LocalDateTime {
    LocalDateTime {
        year: 2026,
        month: 11,
        day: 27,
        hour: 10,
        minute: m,
        second: 0,
    }
}

async fn connect_from(ip: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 0))?;
    sock.connect(to).await
}

/// An encoded frame from `mn` with password `pw`.
fn frame(h: &Harness, mn: &str, pw: &str, cn: &str, m: u8) -> Vec<u8> {
    let mut sim = h.sim(mn, pw);
    let (_, seg) = sim.segment(cn, t(m), &cp_values("Rtd", &[("w01018", 10.0, 'N')]));
    encode_frame(&seg).unwrap()
}

/// True when the peer closed `s` within `wait`.
async fn closed(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 512];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn good_logger_is_answered_at_once(h: &Harness, minute: u8, value: f64) {
    let mut sim = h.sim(MN, PW);
    sim.tries = 1;
    sim.answer_timeout = Duration::from_secs(3);
    let d = sim
        .upload(
            "2011",
            t(minute),
            &cp_values("Rtd", &[("w01018", value, 'N')]),
        )
        .await
        .expect("the real logger is answered");
    assert_eq!(d.attempts, 1);
}

#[tokio::test]
async fn two_thousand_idle_connections_from_one_address_do_not_starve_a_logger() {
    let mut h = start("", None).await;
    let addr = h.addr();
    let mut idle = Vec::new();
    for _ in 0..2000 {
        if let Ok(s) = connect_from("127.0.0.2", addr).await {
            idle.push(s);
        }
    }
    assert!(idle.len() >= 1900, "connects: {}", idle.len());
    good_logger_is_answered_at_once(&h, 0, 11.0).await;
    assert_eq!(h.readings("DW001", "w01018").await.len(), 1);
    // 16 held, the rest closed at once and counted.
    let limited = h.stats.rejected()["address_limit"];
    assert!(limited >= idle.len() as u64 - 16, "address_limit {limited}");
    drop(idle);
    h.stop().await;
}

#[tokio::test]
async fn a_hundred_password_guesses_lock_the_address_out() {
    let mut h = start("", None).await;
    let addr = h.addr();
    let guess = frame(&h, MN, "guess", "2011", 1);
    for _ in 0..20 {
        let Ok(mut s) = connect_from("127.0.0.3", addr).await else {
            continue;
        };
        for _ in 0..5 {
            if s.write_all(&guess).await.is_err() {
                break;
            }
        }
        closed(&mut s, Duration::from_secs(2)).await;
    }
    let checked = h.stats.rejected_for("bad_password");
    assert!(
        checked <= 25,
        "at most lockout_after (20) guesses, plus the rest of one connection: {checked}"
    );
    assert!(h.stats.rejected_for("locked_out") >= 1);
    // The locked-out address gets no further hearing, not even with the right password.
    let mut s = connect_from("127.0.0.3", addr).await.unwrap();
    let _ = s.write_all(&frame(&h, MN, PW, "2011", 2)).await;
    assert!(closed(&mut s, Duration::from_secs(2)).await);
    good_logger_is_answered_at_once(&h, 3, 12.0).await;
    h.stop().await;
}

/// 50 connections × 60 bad-CRC frames from one address.
async fn bad_frame_flood(pg: Option<String>) {
    let mut h = start("dead_letters_per_minute = 40", pg).await;
    let addr = h.addr();
    let mut bad = frame(&h, MN, PW, "2011", 4);
    let n = bad.len();
    bad[n - 3] = if bad[n - 3] == b'0' { b'1' } else { b'0' };
    let flood = bad.repeat(60);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let flood = flood.clone();
        tasks.spawn(async move {
            if let Ok(mut s) = connect_from("127.0.0.4", addr).await {
                let _ = s.write_all(&flood).await;
                closed(&mut s, Duration::from_secs(3)).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let counted = h.stats.rejected_for("bad_crc");
    assert!(counted >= 5, "refusals are counted: {counted}");
    assert!(
        h.stats.rejected_for("auth_failures") >= 1,
        "bad CRCs hang up"
    );
    good_logger_is_answered_at_once(&h, 5, 13.0).await;
    assert_eq!(h.readings("DW001", "w01018").await.len(), 1);
    h.stop().await;
    let rows = h.store.dead_letters(10_000).await.unwrap();
    let from_flood = rows
        .iter()
        .filter(|d| d.peer.starts_with("127.0.0.4:"))
        .count();
    assert!(
        from_flood <= 40,
        "rows sampled per address and minute: {from_flood}"
    );
    assert!(from_flood >= 5, "the first ones are kept: {from_flood}");
}

#[tokio::test]
async fn a_bad_frame_flood_writes_a_bounded_number_of_rows() {
    bad_frame_flood(None).await;
}

#[tokio::test]
async fn a_bad_frame_flood_writes_a_bounded_number_of_rows_on_postgres() {
    let Some(base) = common::pg_url("hostile_hj212::bad_frame_flood_on_postgres") else {
        return;
    };
    bad_frame_flood(Some(common::fresh_pg_database(&base).await)).await;
}

/// Reads answers until the peer closes or `wait` passes; their count, and whether closed.
async fn count_answers(s: &mut TcpStream, wait: Duration) -> (usize, bool) {
    let mut dec = FrameDecoder::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut answers = 0;
    let deadline = Instant::now() + wait;
    loop {
        while let Some(f) = dec.decode(&mut buf) {
            if f.is_ok_and(|f| f.segment_text().contains("CN=9014")) {
                answers += 1;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (answers, true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (answers, false),
        }
    }
}

async fn no_answer_without_a_row(pg: Option<String>) {
    let mut h = start("dead_letters_per_minute = 1000", pg).await;
    let mut s = TcpStream::connect(h.addr()).await.unwrap();
    // 60 authenticated uploads of a command we keep only as a dead letter.
    let mut sim = h.sim(MN, PW);
    for m in 0..60u8 {
        let (_, seg) = sim.segment("2999", t(m), "x=1");
        if s.write_all(&encode_frame(&seg).unwrap()).await.is_err() {
            break;
        }
    }
    let (answers, was_closed) = count_answers(&mut s, Duration::from_secs(5)).await;
    assert!(was_closed, "closed past the dead-letter cap");
    assert_eq!(h.stats.rejected_for("dead_letter_cap"), 1);
    h.stop().await;
    let rows = h
        .store
        .dead_letters(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.reason == "unsupported_cn")
        .count();
    assert_eq!(rows, 50, "the cap");
    assert_eq!(answers, rows, "every answer stands for a stored row");
}

#[tokio::test]
async fn past_the_dead_letter_cap_nothing_is_answered_and_the_connection_closes() {
    no_answer_without_a_row(None).await;
}

#[tokio::test]
async fn past_the_dead_letter_cap_nothing_is_answered_on_postgres() {
    let Some(base) = common::pg_url("hostile_hj212::dead_letter_cap_on_postgres") else {
        return;
    };
    no_answer_without_a_row(Some(common::fresh_pg_database(&base).await)).await;
}
