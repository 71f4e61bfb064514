//! A real full file system (issue 16): a 24 MiB tmpfs holds the SQLite store, an
//! HJ 212 logger sends 30-value real-time frames through the real listener as fast
//! as it is answered (resending what is not answered, like a real logger) until
//! the disk is full, then space is freed. Every frame answered with 9014 must be
//! in the database afterwards, frames sent while the disk is full go unanswered,
//! and answers resume by themselves once space is back. The run's numbers are
//! printed (BENCHMARKS.md quotes them).
//!
//! Mounting needs root; without it the test is skipped with a message (a missing
//! privilege is not a missing service, so `PW_REQUIRE_SERVICES=1` does not turn
//! the skip into a failure).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::tmpfs::{ballast, quick_writer, Tmpfs};
use pollwatch::clock::SystemClock;
use pollwatch::config::MinFree;
use pollwatch::model::LocationKind;
use pollwatch::sim::hj212_logger::cp_values;
use pollwatch::sim::LoggerSim;
use pollwatch::sources::hj212::codec::time::LocalDateTime;
use pollwatch::sources::hj212::{Hj212Server, Registry, ServerConfig};
use pollwatch::store::{ReadingQuery, Store, StoreOptions};
use tokio::sync::watch;

/// Frame `i`'s data time: one second apart, from 00:00 local time.
fn data_time(i: u32) -> LocalDateTime {
    LocalDateTime {
        year: 2026,
        month: 11,
        day: 27,
        hour: (i / 3600) as u8,
        minute: (i / 60 % 60) as u8,
        second: (i % 60) as u8,
    }
}

/// The same instant in UTC, as stored (Asia/Shanghai is UTC+8).
fn stored_ts(i: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 16, 0, 0).unwrap() + chrono::Duration::seconds(i64::from(i))
}

fn cp(i: u32) -> String {
    let codes: Vec<String> = (0..30).map(|k| format!("w9{k:04}")).collect();
    let values: Vec<(&str, f64, char)> = codes
        .iter()
        .zip(0..)
        .map(|(c, k)| (c.as_str(), f64::from(i) + f64::from(k) / 10.0, 'N'))
        .collect();
    cp_values("Rtd", &values)
}

#[derive(Debug, Default)]
struct Run {
    answered: Vec<u32>,
    /// Sends of a frame that got no answer (each resend counts).
    unanswered_sends: u64,
    /// Answers received after the disk was seen full and before space was freed (a
    /// commit that found room after all, e.g. in the WAL: stored, so correct).
    answered_while_full: u64,
    resumed_after: Option<Duration>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tmpfs_costs_no_answered_frame() {
    let Some(fs) = Tmpfs::mount("24m") else {
        return;
    };
    let cfg = common::hj212_config(&fs.path, "");
    // min_free off: this test fills the disk for real (the next one stops short).
    let store = Store::open(
        &cfg.storage_url,
        &StoreOptions {
            min_free: MinFree::parse("0").unwrap(),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let (writer, task) = quick_writer(&store);
    let (stop, stop_rx) = watch::channel(false);
    let (_reg_tx, registry) = watch::channel(Arc::new(Registry::from_config(&cfg)));
    let server = Hj212Server::start(
        ServerConfig::from_config(&cfg),
        registry,
        writer.clone(),
        Arc::new(SystemClock),
        stop_rx,
    )
    .await
    .unwrap();
    // Leave little room, so that the logger fills it within seconds. For the
    // measured run (BENCHMARKS.md) `PW_DISK_FULL_LEAVE_MIB=20` leaves most of the
    // 24 MiB to fill, as a real disk would.
    let leave: u64 = std::env::var("PW_DISK_FULL_LEAVE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let ballast = ballast(&fs.path, leave << 20);

    let mut sim = LoggerSim::new(server.local_addr(), "23040281003022", "123456");
    sim.answer_timeout = Duration::from_millis(700);
    sim.tries = 1;
    let mut run = Run::default();
    let started = Instant::now();
    let mut full_since: Option<Instant> = None;
    let mut freed_at: Option<Instant> = None;
    let mut i = 0u32;
    loop {
        let answered = sim.upload("2011", data_time(i), &cp(i)).await.is_ok();
        let now = Instant::now();
        if answered {
            run.answered.push(i);
            i += 1;
            if full_since.is_some() && freed_at.is_none() {
                run.answered_while_full += 1;
            }
            if let (Some(freed), None) = (freed_at, run.resumed_after) {
                run.resumed_after = Some(now - freed);
            }
            if run
                .resumed_after
                .is_some_and(|_| run.answered.len().is_multiple_of(50))
            {
                break;
            }
        } else {
            run.unanswered_sends += 1;
            // Two unanswered sends in a row: the disk is full. Keep resending
            // for a while so that "full" is really tested, then free space.
            if full_since.is_none() && run.unanswered_sends >= 2 {
                full_since = Some(now);
            }
        }
        if let (Some(full), None) = (full_since, freed_at) {
            if now - full > Duration::from_secs(4) {
                std::fs::remove_file(&ballast).unwrap();
                freed_at = Some(Instant::now());
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the run did not finish: {run:?}, full since {full_since:?}, freed {freed_at:?}"
        );
    }
    let _ = stop.send(true);
    server.join().await;
    drop(writer);
    task.finish(Duration::from_secs(10)).await;
    store.close().await;

    let store = Store::open(&cfg.storage_url, &Default::default())
        .await
        .unwrap();
    let rows = store
        .readings(&ReadingQuery::new("E1", LocationKind::Outlet, "DW001"))
        .await
        .unwrap();
    let mut per_ts: HashMap<i64, usize> = HashMap::new();
    for r in &rows {
        *per_ts.entry(r.ts.timestamp()).or_default() += 1;
    }
    let missing: Vec<u32> = run
        .answered
        .iter()
        .copied()
        .filter(|i| per_ts.get(&stored_ts(*i).timestamp()).copied() != Some(30))
        .collect();
    eprintln!(
        "disk_full_tmpfs: {:?} run, {} frames answered, {} stored in full, {} unanswered sends, {} answered while full, resumed {:?} after space was freed",
        started.elapsed(),
        run.answered.len(),
        run.answered.len() - missing.len(),
        run.unanswered_sends,
        run.answered_while_full,
        run.resumed_after
    );
    assert!(
        missing.is_empty(),
        "{} answered frames are not stored: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(run.unanswered_sends >= 2, "the disk never filled: {run:?}");
    assert!(run.resumed_after.is_some(), "{run:?}");
    store.close().await;
}

/// `[storage] min_free` with the real daemon: below it a logger's frame goes
/// unanswered, `/readyz` is 503 and says why, `/metrics` shows the free bytes, and
/// a `disk_low` alert is recorded; once space is freed everything resumes by
/// itself and the resent frame is answered and stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_min_free_the_daemon_holds_says_why_and_resumes() {
    use common::console::VIEWER;
    let Some(fs) = Tmpfs::mount("24m") else {
        return;
    };
    let cfg = common::hj212_config_with_tokens(&fs.path);
    let toml = cfg.join("pollwatch.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str("\n[storage]\nmin_free = \"8MiB\"\n");
    std::fs::write(&toml, text).unwrap();
    let mut daemon = common::daemon::Daemon::start(&cfg, None);
    let base = format!("http://{}", daemon.field("http"));
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut rq = http.get(format!("{base}{path}"));
        if let Some(t) = token {
            rq = rq.bearer_auth(t);
        }
        rq.send()
    };
    let mut sim = LoggerSim::new(
        daemon.field("hj212").parse().unwrap(),
        "23040281003022",
        "123456",
    );
    sim.answer_timeout = Duration::from_millis(1500);
    sim.tries = 1;
    sim.upload("2011", data_time(0), &cp(0)).await.unwrap();

    let ballast = ballast(&fs.path, 4 << 20);
    let wait_ready = |want: reqwest::StatusCode| {
        let get = &get;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let r = get("/readyz", None).await.unwrap();
                if r.status() == want || Instant::now() > deadline {
                    let status = r.status();
                    return (status, r.json::<serde_json::Value>().await.unwrap());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (status, body) = wait_ready(reqwest::StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("min_free"), "{body}");
    assert!(
        body["storage_free_bytes"].as_u64().unwrap() < 8 << 20,
        "{body}"
    );
    let metrics = get("/metrics", Some(VIEWER))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let free: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pollwatch_storage_free_bytes "))
        .unwrap_or_else(|| panic!("no free bytes in /metrics:\n{metrics}"))
        .parse()
        .unwrap();
    assert!(free < f64::from(8 << 20) && free > 0.0, "{free}");

    // Held, not answered: the logger keeps the frame.
    let (qn, seg) = sim.segment("2011", data_time(1), &cp(1));
    let frame = pollwatch::sources::hj212::codec::reply::encode_frame(&seg).unwrap();
    assert!(
        sim.send_until_answered(&qn, &frame).await.is_err(),
        "answered below min_free"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let alerts: serde_json::Value = loop {
        let a: serde_json::Value = get("/api/v1/alerts", Some(VIEWER))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if a.to_string().contains("disk_low") {
            break a;
        }
        assert!(Instant::now() < deadline, "no disk_low alert: {a}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(alerts.to_string().contains("critical"), "{alerts}");

    std::fs::remove_file(&ballast).unwrap();
    let freed = Instant::now();
    let (status, body) = wait_ready(reqwest::StatusCode::OK).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let ready_after = freed.elapsed();
    sim.tries = 5;
    sim.send_until_answered(&qn, &frame).await.unwrap();
    let answered_after = freed.elapsed();
    eprintln!(
        "min_free: ready again {ready_after:?} and the resent frame answered {answered_after:?} after space was freed"
    );
    assert!(daemon
        .log()
        .iter()
        .any(|l| l.contains("below [storage] min_free")));
    assert!(daemon.terminate().success());

    let store = Store::open(
        &format!("sqlite://{}/state/pollwatch.db", fs.path.display()),
        &Default::default(),
    )
    .await
    .unwrap();
    let rows = store
        .readings(&ReadingQuery::new("E1", LocationKind::Outlet, "DW001"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 60, "both frames, 30 values each");
    store.close().await;
}
