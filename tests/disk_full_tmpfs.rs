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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use pollwatch::clock::SystemClock;
use pollwatch::config::MinFree;
use pollwatch::model::LocationKind;
use pollwatch::sim::hj212_logger::cp_values;
use pollwatch::sim::LoggerSim;
use pollwatch::sources::hj212::codec::time::LocalDateTime;
use pollwatch::sources::hj212::{Hj212Server, Registry, ServerConfig};
use pollwatch::store::{ReadingQuery, Store, StoreOptions, Writer, WriterOptions};
use tokio::sync::watch;

/// A tmpfs mounted for the test and unmounted when dropped (also on a panic).
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { path, _dir: dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED disk_full_tmpfs: cannot mount a tmpfs (run the tests as root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED disk_full_tmpfs: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a panicking test may still hold files open on it.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Fills `dir` with a ballast file until `leave` bytes are free.
fn ballast(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("ballast");
    let free = fs_free(dir);
    let size = free.saturating_sub(leave);
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut f = std::fs::File::create(&path).unwrap();
    let mut written = 0u64;
    while written < size {
        let n = ((size - written) as usize).min(chunk.len());
        std::io::Write::write_all(&mut f, &chunk[..n]).unwrap();
        written += n as u64;
    }
    f.sync_all().unwrap();
    path
}

fn fs_free(dir: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

/// A writer that retries often (space comes back within a second here).
fn quick_writer(store: &Store) -> (Writer, pollwatch::store::WriterTask) {
    Writer::spawn(
        store.clone(),
        WriterOptions {
            retry_max: Duration::from_millis(300),
            ..WriterOptions::default()
        },
        Arc::new(SystemClock),
    )
}

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

/// PostgreSQL with its tables in a tablespace on a small tmpfs (the server runs on
/// this machine): when the tablespace fills, commits fail with "could not extend
/// file … No space left on device", the writer holds and retries, and nothing is
/// answered; once space is freed the held batches commit. Every acknowledged
/// write is stored. Skipped without root, without `PW_TEST_DATABASE_URL`, or when
/// the server cannot use a local directory (a remote server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tablespace_full_costs_no_acknowledged_write() {
    use sqlx::Connection;
    let Some(base) = common::pg_url("disk_full_tmpfs::postgres_tablespace_full") else {
        return;
    };
    let Some(fs) = Tmpfs::mount("32m") else {
        return;
    };
    let ts_dir = fs.path.join("ts");
    std::fs::create_dir(&ts_dir).unwrap();
    let chown = std::process::Command::new("chown")
        .args(["postgres:postgres"])
        .arg(&ts_dir)
        .status();
    let suffix = std::process::id();
    let (ts, db) = (format!("pw_ts_{suffix}"), format!("pw_full_{suffix}"));
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    let created = sqlx::query(&format!(
        "CREATE TABLESPACE {ts} LOCATION '{}'",
        ts_dir.display()
    ))
    .execute(&mut admin)
    .await;
    if chown.map(|s| !s.success()).unwrap_or(true) || created.is_err() {
        eprintln!(
            "SKIPPED disk_full_tmpfs::postgres_tablespace_full: the server cannot use a local tablespace ({:?})",
            created.err()
        );
        return;
    }
    sqlx::query(&format!("CREATE DATABASE {db} TABLESPACE {ts}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = common::replace_db_name(&base, &db);
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let (writer, task) = quick_writer(&store);
    let ballast = ballast(&fs.path, 2 << 20);
    let reading = |i: u32, k: u32| {
        let mut r = common::reading("DA001", &format!("a{:05}", 20000 + k), i64::from(i), 1.0);
        r.value = f64::from(i);
        r
    };
    let mut acked = 0u32;
    let mut held = false;
    let mut freed_at = None;
    let mut resumed_after = None;
    let started = Instant::now();
    let mut i = 0u32;
    while resumed_after.is_none() || !acked.is_multiple_of(20) {
        let batch = pollwatch::store::Batch::readings((0..200).map(|k| reading(i, k)).collect());
        let write = writer.write(batch);
        tokio::pin!(write);
        let done = tokio::select! {
            r = &mut write => Some(r),
            _ = tokio::time::sleep(Duration::from_secs(2)) => None,
        };
        let result = match done {
            Some(r) => r,
            None => {
                // Held: the tablespace is full. Free it and wait for the answer.
                held = true;
                std::fs::remove_file(&ballast).unwrap();
                freed_at = Some(Instant::now());
                write.await
            }
        };
        result.unwrap();
        if let (Some(f), None) = (freed_at, resumed_after) {
            resumed_after = Some(f.elapsed());
        }
        acked += 1;
        i += 1;
        assert!(started.elapsed() < Duration::from_secs(180), "never filled");
    }
    drop(writer);
    task.finish(Duration::from_secs(10)).await;
    let stored = store.count_readings().await.unwrap();
    store.close().await;
    eprintln!(
        "postgres tablespace full: {acked} batches acknowledged ({} readings), {stored} stored, resumed {resumed_after:?} after space was freed",
        acked * 200
    );
    assert!(held, "the tablespace never filled");
    assert_eq!(stored, u64::from(acked) * 200);
    sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(&format!("DROP TABLESPACE {ts}"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
}

/// MQTT with the real daemon and a private broker that queues without limit (the
/// shared one drops what exceeds mosquitto's default queue of 1,000 for a stalled
/// subscriber — a broker setting, see the README): QoS 1 messages arrive while
/// the disk fills for real (`min_free` off), then space is freed. pollwatch
/// acknowledges a message to the broker only after its commit, and the broker
/// redelivers what was not acknowledged, so every message must end up stored
/// exactly once — one acknowledged but never committed would be missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_messages_survive_a_full_disk() {
    use pollwatch::sim::mosquitto::{Broker, BrokerOptions};
    use pollwatch::sim::mqtt_pub::{json_message, MqttPublisher, PublisherOptions};
    const MESSAGES: u64 = 40_000;
    if !common::mosquitto_binary("mqtt_messages_survive_a_full_disk") {
        return;
    }
    let Some(fs) = Tmpfs::mount("24m") else {
        return;
    };
    let broker_dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(broker_dir.path(), &BrokerOptions::default()).unwrap();
    let url = broker.url();
    let prefix = format!("full{}", std::process::id());
    let cfg = fs.path.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\nstate_dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n[hj212]\nlisten = \"127.0.0.1:0\"\n\
             [storage]\nmin_free = \"0\"\n\
             [mqtt]\nurl = \"{url}\"\nclient_id = \"pw-{prefix}\"\n\n\
             [[mqtt.subscriptions]]\ntopic = \"{prefix}/{{enterprise}}/{{meter}}\"\nformat = \"json\"\n",
            fs.path.join("state").display().to_string(),
        ),
    )
    .unwrap();
    let mut e = String::from(
        "id = \"E1\"\nname = \"测试企业\"\ndistrict = \"吴中区\"\nindustry = \"印染\"\n",
    );
    for m in 0..10 {
        e.push_str(&format!(
            "\n[[meters]]\nid = \"M{m}\"\nname = \"{m}号表\"\nrole = \"production\"\n"
        ));
    }
    std::fs::write(cfg.join("enterprises/e1.toml"), e).unwrap();
    let mut daemon = common::daemon::Daemon::start(&cfg, None);
    let db = fs.path.join("state/pollwatch.db");
    let ballast = ballast(&fs.path, 2 << 20);

    let publisher = std::sync::Arc::new(
        MqttPublisher::connect(&url, &PublisherOptions::persistent(format!("pub-{prefix}")))
            .unwrap(),
    );
    let p = publisher.clone();
    let p_prefix = prefix.clone();
    let feeding = tokio::spawn(async move {
        for i in 0..MESSAGES {
            let ts = 1_796_169_600_000 + (i / 10) as i64 * 1000;
            p.publish(
                format!("{p_prefix}/E1/M{}", i % 10),
                json_message(ts, &[("e_p", i as f64)]),
            )
            .await
            .unwrap();
        }
    });
    let full = daemon.wait_for_log(0, "disk is full", Duration::from_secs(120));
    assert!(full.is_some(), "the disk never filled: {:#?}", daemon.log());
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::remove_file(&ballast).unwrap();
    feeding.await.unwrap();
    let count = || async {
        let store = Store::open(&format!("sqlite://{}", db.display()), &Default::default())
            .await
            .ok()?;
        let n = store.count_readings().await.ok();
        store.close().await;
        n
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut n = 0;
    while Instant::now() < deadline {
        n = count().await.unwrap_or(0);
        if n >= MESSAGES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = daemon.terminate();
    let n_after = count().await.unwrap_or(0);
    if n_after != MESSAGES {
        for l in daemon.log().iter().filter(|l| !l.contains("INFO")) {
            eprintln!("{l}");
        }
    }
    eprintln!("mqtt on a full disk: {MESSAGES} published, {n_after} stored");
    assert!(status.success(), "{:#?}", daemon.log());
    assert_eq!(n_after, MESSAGES, "lost or doubled: {n}");
    // Recovered without a restart: the alerts tick and the rules engine carried on.
    for stuck in [
        "transaction depth",
        "alert tick failed",
        "rules engine did not finish",
    ] {
        assert!(
            !daemon.log().iter().any(|l| l.contains(stuck)),
            "{stuck}: {:#?}",
            daemon.log()
        );
    }
}
