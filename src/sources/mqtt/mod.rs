//! MQTT ingest: gateways and loggers publish to the bureau's broker; pollwatch
//! subscribes with QoS 1 on a persistent session and acknowledges each message
//! only after what it carried is durable (invariant 1) — readings, or the message
//! itself as a dead letter when it cannot be used, so a bad message never blocks
//! the stream and is never lost either.
//!
//! rumqttc reconnects on the next `poll` after an error, at once; we add our own
//! exponential backoff with jitter so a broker restart is not met by a storm. The
//! backoff starts again from the bottom only after a connection that lasted
//! ([`STABLE`]): one that dies soon after connecting backs off further.
//! Subscriptions are (re)sent on every ConnAck without a present session.
//!
//! **Oversized messages.** A message larger than `[mqtt] max_packet_size` makes
//! rumqttc drop the connection, and the broker redelivers it at the head of the
//! session every time (MQTT 3.1.1 has no way to refuse one message). So after such
//! a drop the next connection alone admits that size (up to [`OVERSIZE_CEILING`]):
//! the message arrives, becomes one dead letter `too_large` (its first 64 KiB kept,
//! with topic and size, logged once per topic) and is acknowledged; the limit is
//! back to `max_packet_size` from the connection after. A message over the ceiling
//! cannot be taken: the backoff grows to 30 s and the log says so once. Either way
//! the sysadmin should set the broker's `message_size_limit` below
//! `max_packet_size`, so that the broker refuses such messages at the publisher.

pub mod conn;
pub mod payload;
pub mod topic;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{ClockBounds, Config, MqttFormat, MqttSection, MqttSubscription};
use crate::model::check::{self, Skewed};
use crate::model::{Id, Location, Protocol};
use crate::sources::hj212::codec::frame::FrameDecoder;
use crate::sources::hj212::codec::segment::DataSegment;
use crate::sources::hj212::mapping::{self, Command};
use crate::sources::hj212::Registry;
use crate::store::{Batch, DeadLetter, WriteError, Writer};
use topic::TopicPattern;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("mqtt.url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot read the MQTT {what} from {path}: {source}")]
    File {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("environment variable {0} for the MQTT password is not set")]
    PasswordEnv(String),
    #[error("subscription {topic:?}: {source}")]
    Topic {
        topic: String,
        #[source]
        source: topic::TopicError,
    },
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct MqttStats {
    pub received: AtomicU64,
    pub acked: AtomicU64,
    pub readings: AtomicU64,
    pub connects: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl MqttStats {
    fn reject(&self, reason: &'static str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub fn rejected(&self) -> BTreeMap<&'static str, u64> {
        self.rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn rejected_for(&self, reason: &str) -> u64 {
        self.rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(reason)
            .copied()
            .unwrap_or(0)
    }
}

struct Sub {
    cfg: MqttSubscription,
    pattern: TopicPattern,
}

/// What the enterprise files say about topics' names; swapped on reload without
/// reconnecting, so a new enterprise's meters are recognised at once.
struct Lookup {
    registry: Registry,
    tz: chrono_tz::Tz,
    enterprises: HashSet<String>,
    /// (enterprise, "outlet"|"meter", id) configured, with its clock bounds.
    known: HashMap<(String, &'static str, String), ClockBounds>,
}

impl Lookup {
    fn of(config: &Config) -> Lookup {
        let mut known = HashMap::new();
        for e in &config.enterprises {
            for o in &e.outlets {
                let bounds = config.clock_bounds(&e.id, Some(&o.id));
                known.insert((e.id.clone(), "outlet", o.id.clone()), bounds);
            }
            for mt in &e.meters {
                let bounds = config.clock_bounds(&e.id, None);
                known.insert((e.id.clone(), "meter", mt.id.clone()), bounds);
            }
        }
        Lookup {
            registry: Registry::from_config(config),
            tz: config.timezone,
            enterprises: config.enterprises.iter().map(|e| e.id.clone()).collect(),
            known,
        }
    }
}

struct Ctx {
    subs: Vec<Sub>,
    lookup: watch::Receiver<Arc<Lookup>>,
    writer: Writer,
    clock: Arc<dyn Clock>,
    stats: Arc<MqttStats>,
    /// `[mqtt] max_packet_size`: larger messages are dead letters `too_large`.
    max_message: usize,
    logs: crate::ratelimit::LogLimiter,
}

pub struct MqttSource {
    task: JoinHandle<()>,
    stats: Arc<MqttStats>,
    lookup: watch::Sender<Arc<Lookup>>,
}

/// Messages stored in one write at most.
const ROUND: usize = 5000;
/// Requests (acks, subscriptions) waiting for the event loop.
const REQUESTS: usize = 10_000;
/// A connection that lasted this long resets the reconnect backoff.
const STABLE: Duration = Duration::from_secs(10);
/// The largest message admitted once, to be dead-lettered, after it broke a
/// connection (a bound on the memory one message can take).
pub const OVERSIZE_CEILING: usize = 16 << 20;
/// Bytes of an oversized message kept in its dead letter.
const OVERSIZE_KEPT: usize = 64 << 10;

impl MqttSource {
    pub fn start(
        m: &MqttSection,
        config: &Config,
        writer: Writer,
        clock: Arc<dyn Clock>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<MqttSource, MqttError> {
        let opts = conn::options(m)?;
        let mut subs = Vec::new();
        for s in &m.subscriptions {
            let pattern = TopicPattern::parse(&s.topic).map_err(|source| MqttError::Topic {
                topic: s.topic.clone(),
                source,
            })?;
            subs.push(Sub {
                cfg: s.clone(),
                pattern,
            });
        }
        let (lookup, lookup_rx) = watch::channel(Arc::new(Lookup::of(config)));
        let stats = Arc::new(MqttStats::default());
        let ctx = Arc::new(Ctx {
            subs,
            lookup: lookup_rx,
            writer,
            clock,
            stats: stats.clone(),
            max_message: m.max_packet_size,
            logs: crate::ratelimit::LogLimiter::new(Duration::from_secs(3600)),
        });
        let task = tokio::spawn(run(opts, ctx, shutdown));
        Ok(MqttSource {
            task,
            stats,
            lookup,
        })
    }

    /// A reload changed enterprises but not `[mqtt]`: messages from now on are
    /// matched against the new config; the connection and session stay.
    pub fn update(&self, config: &Config) {
        let _ = self.lookup.send(Arc::new(Lookup::of(config)));
    }

    pub fn stats(&self) -> Arc<MqttStats> {
        self.stats.clone()
    }

    pub async fn join(self) {
        let _ = self.task.await;
    }
}

fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    // 50–150 % of the nominal delay.
    d.mul_f64(0.5 + f64::from(nanos % 1000) / 1000.0)
}

async fn run(opts: MqttOptions, ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let (client, mut events) = AsyncClient::new(opts, REQUESTS);
    // Unbounded, yet bounded in fact: the broker sends at most its in-flight
    // window of unacknowledged messages. The event loop must never wait on the
    // committer, because the committer's acks wait on the event loop.
    let (tx, rx) = mpsc::unbounded_channel::<Publish>();
    let committer = tokio::spawn(commit_loop(ctx.clone(), client.clone(), rx));
    let mut backoff = Duration::from_millis(500);
    let mut connected_at: Option<tokio::time::Instant> = None;
    let limit = events.mqtt_options.max_packet_size();
    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => break,
            e = events.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                ctx.stats.connects.fetch_add(1, Ordering::Relaxed);
                connected_at = Some(tokio::time::Instant::now());
                // A raised limit served this connection only (it is fixed at connect).
                events.mqtt_options.set_max_packet_size(limit, limit);
                tracing::info!(session_present = ack.session_present, "MQTT connected");
                if !ack.session_present {
                    for s in &ctx.subs {
                        let filter = match &s.cfg.shared_group {
                            Some(g) => format!("$share/{g}/{}", s.pattern.filter()),
                            None => s.pattern.filter(),
                        };
                        if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                            tracing::error!(filter, error = %e, "MQTT subscribe failed");
                        }
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                ctx.stats.received.fetch_add(1, Ordering::Relaxed);
                if tx.send(p).is_err() {
                    tracing::error!("MQTT committer stopped; messages stay with the broker");
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                if connected_at.take().is_some_and(|t| t.elapsed() >= STABLE) {
                    backoff = Duration::from_millis(500);
                }
                if let Some(size) = oversize(&e) {
                    ctx.stats.reject("oversize_disconnect");
                    if size <= OVERSIZE_CEILING.max(limit) {
                        events.mqtt_options.set_max_packet_size(size, limit);
                        if ctx.logs.allow("oversize").is_some() {
                            tracing::warn!(size, max_packet_size = limit, "MQTT: the broker sent a message larger than [mqtt] max_packet_size; admitting it once to keep it as a dead letter (set the broker's message_size_limit below max_packet_size)");
                        }
                    } else if ctx.logs.allow("oversize_ceiling").is_some() {
                        tracing::error!(size, max_packet_size = limit, ceiling = OVERSIZE_CEILING, "MQTT: the broker keeps redelivering a message too large to take; ingest from this broker is stuck behind it. Set the broker's message_size_limit below max_packet_size and remove the message (or the session)");
                    }
                }
                let wait = jitter(backoff);
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "MQTT connection lost");
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    // Messages already received are stored and acknowledged; the event loop keeps
    // turning meanwhile, or their acks (and the disconnect) would wait forever in
    // the request queue. Messages not received stay with the broker for the next
    // start.
    drop(tx);
    tokio::pin!(committer);
    let deadline = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut committer => break,
            _ = &mut deadline => {
                tracing::warn!("MQTT: messages still being stored at shutdown; the broker will redeliver them");
                break;
            }
            e = events.poll() => if e.is_err() { break },
        }
    }
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(500), events.poll()).await;
    tracing::info!("MQTT source stopped");
}

/// The size of a packet rumqttc refused for exceeding our limit.
fn oversize(e: &rumqttc::ConnectionError) -> Option<usize> {
    match e {
        rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::Error::PayloadSizeLimitExceeded(size),
        )) => Some(*size),
        _ => None,
    }
}

/// Takes every message waiting, stores them in one write (group commit at the
/// source: one request to the writer per round, not per message), then
/// acknowledges each. While a round commits, the next one gathers. A round the
/// store refuses (one message's data it cannot hold) is stored again message by
/// message, so the rest of the round is not held back by it.
async fn commit_loop(ctx: Arc<Ctx>, client: AsyncClient, mut rx: mpsc::UnboundedReceiver<Publish>) {
    let mut round: Vec<Publish> = Vec::with_capacity(ROUND);
    while rx.recv_many(&mut round, ROUND).await > 0 {
        let mut batch = Batch::default();
        for p in &round {
            parse(&ctx, p, &mut batch);
        }
        match ctx.writer.write(batch).await {
            Ok(_) => {}
            Err(WriteError::Refused(_) | WriteError::Invalid(_)) if round.len() > 1 => {
                tracing::warn!(
                    messages = round.len(),
                    "MQTT round refused by the store; storing its messages one by one"
                );
                for p in round.drain(..) {
                    if store_one(&ctx, &p).await {
                        ack(&ctx, &client, &p).await;
                    }
                }
                continue;
            }
            Err(e) => {
                if round.len() == 1 && refused_kept(&ctx, &round[0], &e).await {
                    ack(&ctx, &client, &round[0]).await;
                } else {
                    tracing::error!(messages = round.len(), error = %e, "MQTT messages not stored; not acknowledged");
                }
                round.clear();
                continue;
            }
        }
        for p in round.drain(..) {
            ack(&ctx, &client, &p).await;
        }
    }
}

async fn ack(ctx: &Ctx, client: &AsyncClient, p: &Publish) {
    match client.ack(p).await {
        Ok(()) => {
            ctx.stats.acked.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::warn!(error = %e, "MQTT ack failed; the broker will redeliver");
        }
    }
}

/// Stores one message on its own; whether it may be acknowledged.
async fn store_one(ctx: &Ctx, p: &Publish) -> bool {
    let mut batch = Batch::default();
    parse(ctx, p, &mut batch);
    match ctx.writer.write(batch).await {
        Ok(_) => true,
        Err(e) => refused_kept(ctx, p, &e).await,
    }
}

/// One message the store would not hold: the writer kept it as a dead letter
/// (`Refused`), or it refused it before storage (`Invalid`) and it is kept here.
/// Either way it is durable as a dead letter and may be acknowledged.
async fn refused_kept(ctx: &Ctx, p: &Publish, e: &WriteError) -> bool {
    match e {
        WriteError::Refused(_) => {
            ctx.stats.reject("store_refused");
            true
        }
        WriteError::Invalid(detail) => {
            ctx.stats.reject("bad_code");
            let letter = DeadLetter {
                at: ctx.clock.now(),
                protocol: Protocol::Mqtt,
                peer: p.topic.clone(),
                reason: "bad_code".into(),
                detail: detail.clone(),
                raw: p.payload.to_vec(),
            };
            ctx.writer.write(Batch::dead_letter(letter)).await.is_ok()
        }
        _ => {
            tracing::error!(topic = %p.topic, error = %e, "MQTT message not stored; not acknowledged");
            false
        }
    }
}

/// Adds what a message carries to `batch` — its readings, or the message itself as
/// a dead letter with the reason it could not be used.
fn parse(ctx: &Ctx, p: &Publish, batch: &mut Batch) {
    let topic = p.topic.as_str();
    if p.payload.len() + topic.len() > ctx.max_message {
        too_large(ctx, p, batch);
        return;
    }
    let found = ctx
        .subs
        .iter()
        .find_map(|s| s.pattern.captures(topic).map(|c| (s, c)));
    let outcome: Result<(), (&'static str, String)> = match found {
        None => Err((
            "no_subscription",
            format!("topic {topic:?} matches no configured subscription"),
        )),
        Some((sub, caps)) => {
            let enterprise = caps.get("enterprise").cloned().unwrap_or_default();
            let (kind, id) = match (caps.get("outlet"), caps.get("meter")) {
                (Some(o), _) => ("outlet", o.clone()),
                (None, Some(m)) => ("meter", m.clone()),
                (None, None) => ("meter", String::new()),
            };
            let lookup = ctx.lookup.borrow().clone();
            if !lookup.enterprises.contains(&enterprise) {
                Err((
                    "unknown_enterprise",
                    format!("topic {topic:?}: enterprise {enterprise:?} is not configured"),
                ))
            } else if !lookup
                .known
                .contains_key(&(enterprise.clone(), kind, id.clone()))
            {
                Err((
                    "unknown_location",
                    format!("topic {topic:?}: {kind} {id:?} is not configured for {enterprise}"),
                ))
            } else {
                let location = if kind == "outlet" {
                    Location::Outlet(id.as_str().into())
                } else {
                    Location::Meter(id.as_str().into())
                };
                match sub.cfg.format {
                    MqttFormat::Json => {
                        let e: Id = enterprise.as_str().into();
                        let device: Id = topic.into();
                        match payload::parse_json(&p.payload, &sub.cfg, &e, &location, &device) {
                            Ok(parsed) => {
                                let bounds = lookup.known[&(enterprise.clone(), kind, id.clone())];
                                refuse(ctx, &parsed.readings, &e, &location, bounds)
                                    .map(|()| {
                                        ctx.stats.readings.fetch_add(
                                            parsed.readings.len() as u64,
                                            Ordering::Relaxed,
                                        );
                                        batch.readings.extend(parsed.readings);
                                    })
                                    .and_then(|()| {
                                        if parsed.problems.is_empty() {
                                            Ok(())
                                        } else {
                                            Err(("bad_value", parsed.problems.join("; ")))
                                        }
                                    })
                            }
                            Err(e) => Err(("bad_payload", e.to_string())),
                        }
                    }
                    MqttFormat::Hj212 => {
                        match hj212_payload(
                            &lookup.registry,
                            &p.payload,
                            &enterprise,
                            &location,
                            lookup.tz,
                        )
                        .and_then(|(readings, bounds)| {
                            let e: Id = enterprise.as_str().into();
                            refuse(ctx, &readings, &e, &location, bounds).map(|()| readings)
                        }) {
                            Ok(readings) => {
                                ctx.stats
                                    .readings
                                    .fetch_add(readings.len() as u64, Ordering::Relaxed);
                                batch.readings.extend(readings);
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    }
                }
            }
        }
    };
    if let Err((reason, detail)) = outcome {
        ctx.stats.reject(reason);
        tracing::debug!(topic, reason, detail, "MQTT message kept as a dead letter");
        batch.dead_letters.push(DeadLetter {
            at: ctx.clock.now(),
            protocol: Protocol::Mqtt,
            peer: topic.to_string(),
            reason: reason.to_string(),
            detail,
            raw: p.payload.to_vec(),
        });
    }
}

/// A message over `max_packet_size` (admitted once after it broke a connection):
/// one dead letter with its head, topic and size.
fn too_large(ctx: &Ctx, p: &Publish, batch: &mut Batch) {
    let topic = p.topic.as_str();
    let size = p.payload.len();
    ctx.stats.reject("too_large");
    if ctx.logs.allow(&format!("too_large {topic}")).is_some() {
        tracing::warn!(
            topic,
            size,
            max_packet_size = ctx.max_message,
            "MQTT message larger than max_packet_size kept as a dead letter (first 64 KiB)"
        );
    }
    batch.dead_letters.push(DeadLetter {
        at: ctx.clock.now(),
        protocol: Protocol::Mqtt,
        peer: topic.to_string(),
        reason: "too_large".to_string(),
        detail: format!(
            "message of {size} bytes on topic {topic:?} exceeds [mqtt] max_packet_size {}; first {} bytes kept",
            ctx.max_message,
            size.min(OVERSIZE_KEPT)
        ),
        raw: p.payload.get(..size.min(OVERSIZE_KEPT)).unwrap_or(&[]).to_vec(),
    });
}

/// An HJ 212 frame as an MQTT payload: checked (CRC, MN, password) and mapped
/// exactly as on TCP; the MN must belong to the outlet the topic names.
fn hj212_payload(
    registry: &Registry,
    payload: &[u8],
    enterprise: &str,
    location: &Location,
    tz: chrono_tz::Tz,
) -> Result<(Vec<crate::model::Reading>, ClockBounds), (&'static str, String)> {
    let mut buf = payload.to_vec();
    let mut decoder = FrameDecoder::new();
    let frame = match decoder
        .decode_idle(&mut buf)
        .or_else(|| decoder.finish(&mut buf))
    {
        Some(Ok(f)) => f,
        Some(Err(e)) => return Err(("bad_frame", e.to_string())),
        None => return Err(("bad_frame", "no HJ 212 frame in the payload".into())),
    };
    let text = String::from_utf8_lossy(&frame.segment).into_owned();
    let seg = DataSegment::parse(&text).map_err(|e| ("bad_segment", e.to_string()))?;
    let mn = seg
        .mn
        .ok_or(("missing_mn", "frame has no MN".to_string()))?;
    let ep = registry.get(mn).ok_or_else(|| {
        (
            "unknown_mn",
            format!("MN {mn:?} is not configured for any outlet"),
        )
    })?;
    if seg.pw != Some(ep.password.as_str()) {
        return Err(("bad_password", format!("wrong password for MN {mn:?}")));
    }
    if *ep.origin.enterprise != *enterprise
        || Location::Outlet(ep.origin.outlet.clone()) != *location
    {
        return Err((
            "mn_mismatch",
            format!(
                "MN {mn:?} belongs to {} outlet {}, not to the topic's {enterprise} {location}",
                ep.origin.enterprise, ep.origin.outlet
            ),
        ));
    }
    let mapped = match Command::of(seg.cn) {
        Command::Data(kind) => mapping::map_values(&seg, kind, &ep.origin, tz),
        Command::DeviceStatus | Command::DeviceRunTime => {
            mapping::map_devices(&seg, &ep.origin, tz)
        }
        _ => {
            return Err((
                "unsupported_cn",
                format!("CN {} carries no readings", seg.cn),
            ))
        }
    };
    let mut mapped = mapped.map_err(|e| ("bad_data_time", e.to_string()))?;
    mapping::route_power(&mut mapped.readings, &ep.power);
    if !mapped.problems.is_empty() {
        let detail = mapped
            .problems
            .iter()
            .map(|p| format!("{}={:?}: {}", p.key, p.value, p.reason))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(("bad_value", detail));
    }
    let mut readings = mapped.readings;
    for r in &mut readings {
        r.source.protocol = Protocol::Mqtt;
    }
    Ok((readings, ep.clock))
}

/// The per-message checks ([`check`]): a message whose codes, ids or values fail,
/// or whose time its sender's clock cannot mean, is refused whole (the caller
/// keeps it as a dead letter and acknowledges it).
fn refuse(
    ctx: &Ctx,
    readings: &[crate::model::Reading],
    enterprise: &Id,
    location: &Location,
    bounds: ClockBounds,
) -> Result<(), (&'static str, String)> {
    check::readings(readings).map_err(|e| (e.reason, e.detail))?;
    let now = ctx.clock.now();
    check::data_times(readings, now, bounds).map_err(|skew| {
        ctx.writer.clock_skew().report(Skewed {
            enterprise: enterprise.clone(),
            location: location.clone(),
            at: now,
            skew: skew.clone(),
        });
        ("clock_skew", skew.to_string())
    })
}
