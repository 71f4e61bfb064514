//! Cluster mode (issue 22), measured:
//!
//! - [`feed`]: what feeding the rules engine from the store costs against the
//!   single node's in-process tap. The same readings, committed by the same
//!   writer in the same batches, reach a consumer either through the tap or
//!   through [`crate::cluster::feed`] reading them back from PostgreSQL; the
//!   rules engine behind either is the same code, so the difference is the
//!   path. Reported: readings per second delivered, and the delay from a
//!   writer's commit answer to the consumer receiving that batch.
//! - [`failover`]: two `pollwatch run` processes (this binary) on one
//!   database with a day's readings in it; the leader is SIGKILLed again and
//!   again, and each time the survivor's "leader term started" line is timed
//!   from the kill (lease expiry + acquisition + rebuild + start).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use tokio::sync::{mpsc, watch};

use super::{percentile, synthetic_readings, BenchError};
use crate::clock::SystemClock;
use crate::store::cluster::FeedCursor;
use crate::store::{Batch, Committed, Store, Writer, WriterOptions};

fn other(e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(e.to_string())
}

/// A fresh database on the server of `base`; returns its URL and name.
async fn fresh_database(base: &str) -> Result<(String, String), BenchError> {
    let name = format!("pw_bench_{}_{}", std::process::id(), rand_suffix());
    let mut conn = sqlx::PgConnection::connect(base).await.map_err(other)?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .map_err(other)?;
    let _ = conn.close().await;
    let (head, _) = base.split_once('?').unwrap_or((base, ""));
    let cut = head
        .rfind('/')
        .filter(|i| *i > head.find("://").unwrap_or(0) + 2);
    let url = match cut {
        Some(i) => format!("{}/{name}", &head[..i]),
        None => format!("{head}/{name}"),
    };
    Ok((url, name))
}

async fn drop_database(base: &str, name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(base).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// One path's figures.
#[derive(Debug, Clone)]
pub struct PathFigures {
    pub readings: usize,
    pub elapsed: Duration,
    pub delay_p50: Duration,
    pub delay_max: Duration,
}

impl PathFigures {
    fn per_sec(&self) -> f64 {
        self.readings as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A reading's identity (series and time), to match a commit with its arrival.
fn key(r: &crate::model::Reading) -> String {
    format!(
        "{}/{}/{}/{}",
        r.enterprise,
        r.location,
        r.factor,
        r.ts.timestamp_millis()
    )
}

/// Commits `readings` in `batch`-sized writes, each from its own task (like
/// many loggers), and times their arrival at a consumer of `rx`.
async fn run_path(
    store: &Store,
    readings: &[crate::model::Reading],
    batch: usize,
    tap: Option<mpsc::Sender<Committed>>,
    mut rx: mpsc::Receiver<Committed>,
) -> Result<PathFigures, BenchError> {
    let (writer, task) = Writer::spawn(
        store.clone(),
        WriterOptions {
            tap,
            ..WriterOptions::default()
        },
        Arc::new(SystemClock),
    );
    let total = readings.len();
    // (first reading's ts, when its commit was answered), matched on arrival.
    let answered: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> =
        Arc::default();
    let started = Instant::now();
    let consumer = tokio::spawn(async move {
        let mut got = 0usize;
        let mut arrivals: Vec<(Vec<String>, Instant)> = Vec::new();
        while got < total {
            match tokio::time::timeout(Duration::from_secs(120), rx.recv()).await {
                Ok(Some(c)) => {
                    got += c.readings.len();
                    let keys = c.readings.iter().map(key).collect();
                    arrivals.push((keys, Instant::now()));
                }
                _ => break,
            }
        }
        (got, arrivals, Instant::now())
    });
    let mut writes = tokio::task::JoinSet::new();
    for chunk in readings.chunks(batch.max(1)) {
        let w = writer.clone();
        let chunk = chunk.to_vec();
        let answered = answered.clone();
        writes.spawn(async move {
            let key = key(&chunk[0]);
            let r = w.write(Batch::readings(chunk)).await;
            answered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, Instant::now());
            r
        });
    }
    while let Some(r) = writes.join_next().await {
        r.map_err(other)?.map_err(other)?;
    }
    drop(writer);
    let (got, arrivals, done) = consumer.await.map_err(other)?;
    task.finish(Duration::from_secs(10)).await;
    if got < total {
        return Err(other(format!("only {got} of {total} readings arrived")));
    }
    let answered = answered.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut delays: Vec<Duration> = Vec::new();
    for (keys, at) in arrivals {
        for k in keys {
            if let Some(a) = answered.get(&k) {
                delays.push(at.saturating_duration_since(*a));
            }
        }
    }
    delays.sort();
    Ok(PathFigures {
        readings: total,
        elapsed: done - started,
        delay_p50: percentile(&delays, 0.5),
        delay_max: delays.last().copied().unwrap_or_default(),
    })
}

/// The store-fed path against the in-process tap, side by side on one server.
pub async fn feed(base: &str, n: usize, batch: usize) -> Result<String, BenchError> {
    let (url, name) = fresh_database(base).await?;
    let result = async {
        let store = Store::open(&url, &Default::default()).await.map_err(other)?;
        // Two disjoint sets of readings (a later day for the second run).
        let tap_readings = synthetic_readings(n, 100);
        let shift = chrono::Duration::days(3);
        let feed_readings: Vec<_> = synthetic_readings(n, 100)
            .into_iter()
            .map(|mut r| {
                r.ts += shift;
                r
            })
            .collect();

        // Warm-up: the series exist and the id cache is filled before either
        // run, so neither pays for creating them.
        let warm: Vec<_> = tap_readings
            .iter()
            .take(5_000)
            .cloned()
            .map(|mut r| {
                r.ts -= shift;
                r
            })
            .collect();
        let (w, t) = Writer::spawn(store.clone(), WriterOptions::default(), Arc::new(SystemClock));
        w.write(Batch::readings(warm)).await.map_err(other)?;
        drop(w);
        t.finish(Duration::from_secs(10)).await;

        let (tap_tx, tap_rx) = mpsc::channel(crate::daemon::RULES_TAP_QUEUE);
        let tap = run_path(&store, &tap_readings, batch, Some(tap_tx), tap_rx).await?;

        let start = FeedCursor::at(store.feed_horizon().await.map_err(other)?);
        let (feed_tx, feed_rx) = mpsc::channel(crate::daemon::RULES_TAP_QUEUE);
        let (stop_tx, stop) = watch::channel(false);
        let stats = Arc::default();
        let feeder = tokio::spawn(crate::cluster::feed::run(
            store.clone(),
            start,
            feed_tx,
            stats,
            stop,
        ));
        let fed = run_path(&store, &feed_readings, batch, None, feed_rx).await?;
        let _ = stop_tx.send(true);
        let _ = feeder.await;
        store.close().await;
        let line = |what: &str, f: &PathFigures| {
            format!(
                "{what:<28} {:>9.0} readings/s   commit→judge p50 {:>7.1} ms, max {:>7.1} ms",
                f.per_sec(),
                f.delay_p50.as_secs_f64() * 1e3,
                f.delay_max.as_secs_f64() * 1e3
            )
        };
        Ok::<String, BenchError>(format!(
            "cluster feed: {n} readings in writes of {batch}, PostgreSQL\n{}\n{}\nratio (tap/feed throughput): {:.2}",
            line("in-process tap (1 node)", &tap),
            line("store-fed (cluster leader)", &fed),
            tap.per_sec() / fed.per_sec().max(1e-9),
        ))
    }
    .await;
    drop_database(base, &name).await;
    result
}

/// A `pollwatch run` child with its stderr scanned for lines.
struct Node {
    child: Child,
    lines: std_mpsc::Receiver<(Instant, String)>,
}

impl Node {
    fn start(config: &std::path::Path) -> Result<Node, BenchError> {
        let exe = std::env::current_exe().map_err(other)?;
        let mut child = Command::new(exe)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(other)?;
        let stderr = child.stderr.take().ok_or_else(|| other("no stderr"))?;
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(Node { child, lines })
    }

    /// When a line containing `needle` came, waiting up to `within`.
    fn wait(&self, needle: &str, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok((at, l)) if l.contains(needle) => return Some(at),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(
    dir: &std::path::Path,
    node: &str,
    url: &str,
    lease: &str,
    enterprises: usize,
) -> Result<std::path::PathBuf, BenchError> {
    let cfg = dir.join(format!("config-{node}"));
    std::fs::create_dir_all(cfg.join("enterprises")).map_err(other)?;
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\nstate_dir = {:?}\n[storage]\nurl = \"{url}\"\n\
             [hj212]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [cluster]\nnode_id = \"{node}\"\nlease = \"{lease}\"\n",
            dir.join(format!("state-{node}")).display().to_string()
        ),
    )
    .map_err(other)?;
    for e in 0..enterprises {
        let mut text = format!(
            "id = \"E{e:04}\"\nname = \"企业{e}\"\ndistrict = \"吴中区\"\nindustry = \"火电\"\n"
        );
        for o in 0..2 {
            text.push_str(&format!(
                "[[outlets]]\nid = \"DA{o}\"\nname = \"{o}#烟囱\"\nkind = \"flue_gas\"\n\
                 offline_after = \"3650d\"\nhj212 = {{ mn = \"MN-{e:04}-{o}\", password = \"123456\" }}\n\
                 [[outlets.limits]]\nfactor = \"a21026\"\nmax = 35.0\nbasis = \"hour\"\n"
            ));
        }
        std::fs::write(cfg.join(format!("enterprises/e{e:04}.toml")), text).map_err(other)?;
    }
    Ok(cfg)
}

/// Minute values of the last `hours` for every outlet: what a rebuild reads.
async fn seed(url: &str, enterprises: usize, hours: i64) -> Result<usize, BenchError> {
    let store = Store::open(url, &Default::default()).await.map_err(other)?;
    let (writer, task) = Writer::spawn(
        store.clone(),
        WriterOptions::default(),
        Arc::new(SystemClock),
    );
    let now = chrono::Utc::now();
    let start = now - chrono::Duration::hours(hours);
    let mut n = 0;
    for e in 0..enterprises {
        let mut batch = Vec::new();
        for o in 0..2 {
            for m in 0..hours * 60 {
                batch.push(crate::model::Reading {
                    enterprise: format!("E{e:04}").as_str().into(),
                    location: crate::model::Location::Outlet(format!("DA{o}").as_str().into()),
                    factor: "a21026".into(),
                    unit: "mg/m³".into(),
                    ts: start + chrono::Duration::minutes(m),
                    value: 10.0 + (m % 13) as f64,
                    kind: crate::model::DataKind::Min,
                    stat: crate::model::Stat::Avg,
                    converted: false,
                    flag: crate::model::Flag::N,
                    source: crate::model::SourceRef {
                        protocol: crate::model::Protocol::Hj212,
                        device: Arc::from(format!("MN-{e:04}-{o}").as_str()),
                        resend: false,
                    },
                });
            }
        }
        n += batch.len();
        writer.write(Batch::readings(batch)).await.map_err(other)?;
    }
    drop(writer);
    task.finish(Duration::from_secs(10)).await;
    store.close().await;
    Ok(n)
}

/// Failover times over `kills` SIGKILLs of the leader.
pub async fn failover(
    base: &str,
    kills: usize,
    lease: &str,
    enterprises: usize,
) -> Result<String, BenchError> {
    let (url, name) = fresh_database(base).await?;
    let dir = tempfile::tempdir().map_err(other)?;
    let result = async {
        // The schema first (the nodes would race for it), then the data.
        let seeded = seed(&url, enterprises, 5).await?;
        let cfg = [
            write_config(dir.path(), "a", &url, lease, enterprises)?,
            write_config(dir.path(), "b", &url, lease, enterprises)?,
        ];
        let mut nodes = [Some(Node::start(&cfg[0])?), None];
        let first = nodes[0].as_ref().ok_or_else(|| other("no node a"))?;
        first
            .wait("leader term started", Duration::from_secs(60))
            .ok_or_else(|| other("a never led"))?;
        nodes[1] = Some(Node::start(&cfg[1])?);
        let mut leader = 0usize;
        let mut times = Vec::new();
        for _ in 0..kills {
            let follower = 1 - leader;
            let f = nodes[follower].as_ref().ok_or_else(|| other("no follower"))?;
            f.wait("pollwatch ready", Duration::from_secs(60));
            // Let the follower heartbeat and settle.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let killed = Instant::now();
            if let Some(n) = nodes[leader].take() {
                n.kill();
            }
            let f = nodes[follower].as_ref().ok_or_else(|| other("no follower"))?;
            let at = f
                .wait("leader term started", Duration::from_secs(120))
                .ok_or_else(|| other("the survivor never took over"))?;
            times.push(at.saturating_duration_since(killed));
            nodes[leader] = Some(Node::start(&cfg[leader])?);
            leader = follower;
        }
        for n in nodes.into_iter().flatten() {
            n.kill();
        }
        let mut sorted = times.clone();
        sorted.sort();
        Ok::<String, BenchError>(format!(
            "cluster failover: {kills} SIGKILLs of the leader, lease {lease}, {enterprises} enterprises ({seeded} readings of the last 5 h to rebuild from)\n\
             kill → survivor's leader term started: p50 {:.2} s, max {:.2} s (all: {})",
            percentile(&sorted, 0.5).as_secs_f64(),
            sorted.last().copied().unwrap_or_default().as_secs_f64(),
            times
                .iter()
                .map(|t| format!("{:.2}", t.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
    .await;
    drop_database(base, &name).await;
    result
}
