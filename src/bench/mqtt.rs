//! MQTT figures: QoS 1 messages from publishers through a broker on this machine
//! into durable SQLite, acknowledged after commit — against what `mosquitto_sub`
//! alone receives from the same broker in the same run, so the ratio says how much
//! of the broker's own delivery rate pollwatch keeps.
//!
//! The broker is a private Mosquitto (no persistence: the figure is pollwatch's,
//! not the broker's disk) with `max_inflight_messages` as given: Mosquitto's
//! default of 20 caps any QoS 1 subscriber that acknowledges after a commit.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::BenchError;
use crate::clock::SystemClock;
use crate::config::{Config, LoadOptions};
use crate::sim::mosquitto::{Broker, BrokerOptions};
use crate::sim::mqtt_pub::{json_message, MqttPublisher, PublisherOptions};
use crate::sources::mqtt::MqttSource;
use crate::store::{Store, StoreOptions, Writer, WriterOptions};

#[derive(Debug, Clone)]
pub struct MqttBench {
    pub messages: u64,
    pub meters: u64,
    /// Factors per message (a power gateway sends P, U, I, energy…).
    pub values_per_message: usize,
    pub publishers: u64,
    pub broker_inflight: u32,
    /// Publish everything first, with pollwatch and mosquitto_sub away, then time
    /// how fast each drains its queued session: the subscriber's rate without
    /// the publishers on the same two cores.
    pub backlog: bool,
}

impl Default for MqttBench {
    fn default() -> Self {
        MqttBench {
            messages: 200_000,
            meters: 1000,
            values_per_message: 4,
            publishers: 4,
            broker_inflight: 1000,
            backlog: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MqttReport {
    pub opts: MqttBench,
    /// From the first publish until the broker had acknowledged every message.
    pub published_in: Duration,
    /// … until pollwatch had made every message durable and acknowledged it.
    pub pollwatch_in: Duration,
    /// … until `mosquitto_sub -q 1` had received every message.
    pub sub_in: Duration,
    pub stored: u64,
}

impl MqttReport {
    pub fn pollwatch_rate(&self) -> f64 {
        self.opts.messages as f64 / self.pollwatch_in.as_secs_f64()
    }
    pub fn sub_rate(&self) -> f64 {
        self.opts.messages as f64 / self.sub_in.as_secs_f64()
    }
}

impl fmt::Display for MqttReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.opts;
        write!(
            f,
            "mqtt{}: {} QoS 1 messages ({} values each, {} meters, {} publishers, broker max_inflight {}): \
             published in {:.2} s ({:.0}/s); pollwatch durable+acked in {:.2} s = {:.0} messages/s ({:.0} readings/s, {} stored); \
             mosquitto_sub in {:.2} s = {:.0} messages/s; ratio {:.2}",
            if o.backlog { " backlog drain" } else { "" },
            o.messages,
            o.values_per_message,
            o.meters,
            o.publishers,
            o.broker_inflight,
            self.published_in.as_secs_f64(),
            o.messages as f64 / self.published_in.as_secs_f64(),
            self.pollwatch_in.as_secs_f64(),
            self.pollwatch_rate(),
            self.pollwatch_rate() * o.values_per_message as f64,
            self.stored,
            self.sub_in.as_secs_f64(),
            self.sub_rate(),
            self.pollwatch_rate() / self.sub_rate(),
        )
    }
}

const FACTORS: [&str; 8] = [
    "e_p", "e_ep", "e_ia", "e_ib", "e_ic", "e_ua", "e_ub", "e_uc",
];

fn write_config(dir: &std::path::Path, url: &str, meters: u64) -> Result<Config, BenchError> {
    let setup = |e: std::io::Error| BenchError::Setup(e.to_string());
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).map_err(setup)?;
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\nstate_dir = {:?}\n[mqtt]\nurl = \"{url}\"\nclient_id = \"pw-bench\"\n\n[[mqtt.subscriptions]]\ntopic = \"bench/{{enterprise}}/{{meter}}\"\nformat = \"json\"\n",
            dir.join("state").display().to_string()
        ),
    )
    .map_err(setup)?;
    let mut e = String::from(
        "id = \"E1\"\nname = \"基准企业\"\ndistrict = \"吴中区\"\nindustry = \"印染\"\n",
    );
    for m in 0..meters {
        e.push_str(&format!(
            "[[meters]]\nid = \"M{m:04}\"\nname = \"{m}号表\"\nrole = \"production\"\n"
        ));
    }
    std::fs::write(cfg.join("enterprises/e1.toml"), e).map_err(setup)?;
    Config::load(&cfg, &LoadOptions::default()).map_err(|e| BenchError::Setup(e.to_string()))
}

type Sub = (
    std::process::Child,
    std::sync::mpsc::Receiver<(Instant, u64)>,
);

/// `mosquitto_sub -q 1` for `n` messages; with `session`, on a persistent session
/// of that id (`n == 0`: just create the session and leave).
fn spawn_sub(port: u16, n: u64, session: Option<&str>) -> Result<Sub, BenchError> {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-q", "1", "-t", "bench/#"]);
    if let Some(id) = session {
        cmd.args(["-c", "-i", id]);
    }
    if n == 0 {
        cmd.args(["-W", "1"]);
    } else {
        cmd.args(["-C", &n.to_string()]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::Setup(format!("mosquitto_sub: {e}")))?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| BenchError::Setup("mosquitto_sub stdout".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let n = BufReader::new(out).lines().map_while(Result::ok).count() as u64;
        let _ = tx.send((Instant::now(), n));
    });
    Ok((child, rx))
}

async fn sub_done(sub: Sub, expect: u64) -> Result<Instant, BenchError> {
    let (mut child, rx) = sub;
    let (at, n) = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(600)))
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?
        .map_err(|e| BenchError::Setup(format!("mosquitto_sub: {e}")))?;
    let _ = child.wait();
    if n < expect {
        return Err(BenchError::Setup(format!(
            "mosquitto_sub received {n} of {expect} messages"
        )));
    }
    Ok(at)
}

fn values(opts: &MqttBench, i: u64) -> Vec<(&'static str, f64)> {
    (0..opts.values_per_message)
        .map(|k| (FACTORS[k % FACTORS.len()], i as f64 + k as f64))
        .collect()
}

/// Publishes every message from `opts.publishers` connections; returns when the
/// broker has acknowledged them all. Payloads are built before `started`.
async fn publish_all(opts: &MqttBench, url: &str) -> Result<(Instant, Instant), BenchError> {
    let setup = |e: &dyn fmt::Display| BenchError::Setup(e.to_string());
    let per = opts.messages.div_ceil(opts.publishers);
    let mut batches = Vec::new();
    for p in 0..opts.publishers {
        let msgs: Vec<(String, Vec<u8>)> = (p * per..((p + 1) * per).min(opts.messages))
            .map(|i| {
                let ts = 1_796_169_600_000 + (i / opts.meters) as i64 * 1000;
                (
                    format!("bench/E1/M{:04}", i % opts.meters),
                    json_message(ts, &values(opts, i)),
                )
            })
            .collect();
        batches.push(msgs);
    }
    let started = Instant::now();
    let mut pubs = Vec::new();
    for (p, msgs) in batches.into_iter().enumerate() {
        let mut o = PublisherOptions::persistent(format!("bench-pub-{p}"));
        o.clean_session = true;
        o.inflight = 1000;
        let publisher = MqttPublisher::connect(url, &o).map_err(|e| setup(&e))?;
        pubs.push(tokio::spawn(async move {
            let n = msgs.len() as u64;
            for (topic, payload) in msgs {
                publisher.publish(topic, payload).await?;
            }
            publisher.wait_acked(n, Duration::from_secs(600)).await;
            let at = Instant::now();
            publisher.close().await;
            Ok::<_, crate::sim::mqtt_pub::PublishError>(at)
        }));
    }
    let mut published_at = started;
    for p in pubs {
        let at = p.await.map_err(|e| setup(&e))?.map_err(|e| setup(&e))?;
        published_at = published_at.max(at);
    }
    Ok((started, published_at))
}

async fn wait_acked(source: &MqttSource, n: u64, what: &str) -> Result<Instant, BenchError> {
    let stats = source.stats();
    let deadline = Instant::now() + Duration::from_secs(600);
    while stats.acked.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "pollwatch: {what} not acknowledged within 10 min"
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(Instant::now())
}

pub async fn mqtt(opts: &MqttBench) -> Result<MqttReport, BenchError> {
    let setup = |e: &dyn fmt::Display| BenchError::Setup(e.to_string());
    let dir = tempfile::tempdir().map_err(|e| setup(&e))?;
    let broker = Broker::start(
        dir.path(),
        &BrokerOptions {
            persistence: false,
            max_inflight: opts.broker_inflight,
            extra: String::new(),
        },
    )
    .map_err(|e| setup(&e))?;
    let cfg = write_config(dir.path(), &broker.url(), opts.meters)?;
    let m = cfg.daemon.mqtt.clone().ok_or_else(|| setup(&"no [mqtt]"))?;
    let store = Store::open(&cfg.storage_url, &StoreOptions::default()).await?;
    let (writer, task) = Writer::spawn(
        store.clone(),
        WriterOptions::default(),
        Arc::new(SystemClock),
    );
    let start = || {
        let (stop, stop_rx) = watch::channel(false);
        MqttSource::start(&m, &cfg, writer.clone(), Arc::new(SystemClock), stop_rx)
            .map(|s| (s, stop))
            .map_err(|e| setup(&e))
    };
    let (mut source, mut stop) = start()?;

    // Each meter's series is created once (a one-time cost a running city has
    // long paid) before the clock starts; this also proves the subscription.
    let warm = MqttPublisher::connect(&broker.url(), &PublisherOptions::persistent("bench-warm"))
        .map_err(|e| setup(&e))?;
    for m in 0..opts.meters {
        warm.publish(
            format!("bench/E1/M{m:04}"),
            json_message(1_796_000_000_000, &values(opts, 0)),
        )
        .await
        .map_err(|e| setup(&e))?;
    }
    wait_acked(&source, opts.meters, "warm-up").await?;
    warm.close().await;

    let report = if opts.backlog {
        sub_done(spawn_sub(broker.port(), 0, Some("bench-sub"))?, 0).await?;
        let _ = stop.send(true);
        source.join().await;
        let (started, published_at) = publish_all(opts, &broker.url()).await?;
        let t = Instant::now();
        (source, stop) = start()?;
        let pollwatch_in = wait_acked(&source, opts.messages, "backlog").await? - t;
        let t = Instant::now();
        let sub_in = sub_done(
            spawn_sub(broker.port(), opts.messages, Some("bench-sub"))?,
            opts.messages,
        )
        .await?
            - t;
        (published_at - started, pollwatch_in, sub_in)
    } else {
        // mosquitto_sub receives the same messages from the same broker, at once.
        let sub = spawn_sub(broker.port(), opts.messages, None)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let base = source.stats().acked.load(Ordering::Relaxed);
        let (started, published_at) = publish_all(opts, &broker.url()).await?;
        let pollwatch_at = wait_acked(&source, base + opts.messages, "messages").await?;
        let sub_at = sub_done(sub, opts.messages).await?;
        (
            published_at - started,
            pollwatch_at - started,
            sub_at - started,
        )
    };
    let _ = stop.send(true);
    source.join().await;
    drop(writer);
    task.finish(Duration::from_secs(30)).await;
    let stored = store.count_readings().await?;
    Ok(MqttReport {
        opts: opts.clone(),
        published_in: report.0,
        pollwatch_in: report.1,
        sub_in: report.2,
        stored: stored - opts.meters * opts.values_per_message as u64,
    })
}
