//! One logger connection: bytes in, frames out, readings stored, answers sent.
//!
//! A connection is handled strictly in order: a frame's readings are handed to the
//! store writer and the 9014 goes out only when the writer says they are durable
//! (invariant 1). A logger waits for that answer before sending its next upload, so
//! ordering costs nothing, and a crash between receipt and answer means the logger
//! resends — the store absorbs the duplicate.
//!
//! Nothing a peer sends can make this task panic or hold unbounded memory: the
//! frame decoder bounds the buffer, every error is a value, and a peer that keeps
//! failing authentication, or never authenticates, is hung up on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::backfill::Session;
use super::codec::crc::{crc16_modbus_swapped, CrcMode};
use super::codec::error::FrameError;
use super::codec::frame::{Frame, FrameDecoder};
use super::codec::reply::set_rtd_interval_1062;
use super::codec::segment::DataSegment;
use super::handle::header;
use super::registry::{Endpoint, Registry};
use super::server::Ctx;
use crate::model::Protocol;
use crate::store::{Batch, DeadLetter, StatusEvent};

/// The window of `dead_letters_per_connection`: a connection that causes more
/// dead letters than that within it is closed (a frame whose dead letter is not
/// written is never answered), so a hostile peer can neither fill the database
/// nor be told "stored" for what was dropped; a logger that sends an odd command
/// now and then over weeks is not.
const DEAD_LETTER_WINDOW: Duration = Duration::from_secs(60);
/// How long to wait for a peer to take an answer before giving up on it.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Conn {
    pub(super) ctx: Arc<Ctx>,
    pub(super) peer: SocketAddr,
    pub(super) wr: OwnedWriteHalf,
    /// The logger of the last authenticated frame (logs and counters name it).
    endpoint: Option<Arc<Endpoint>>,
    /// Every MN authenticated on this connection. A platform or forwarder relays
    /// many loggers over one connection: each is "connected" (event, 1012/1062)
    /// once, on its first frame, and "disconnected" when the connection ends.
    loggers: HashMap<String, Arc<Endpoint>>,
    auth_failures: u32,
    /// Dead letters in the current window, and when it began.
    dead_letters: u32,
    /// History requests to the loggers on this connection ([`super::backfill`]).
    pub(super) backfill: Session,
    dead_letter_window: Instant,
    /// The current frame's dead letter was not written (cap or sampling): the
    /// frame must not be answered.
    pub(super) unstored: bool,
    /// The time the last QN of our requests was made of (see `request_qn`).
    pub(super) last_request_qn: Option<chrono::DateTime<chrono::Utc>>,
}

pub(super) type Flow = ControlFlow<()>;

impl Conn {
    pub(super) async fn serve(
        ctx: Arc<Ctx>,
        stream: TcpStream,
        peer: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (mut rd, wr) = stream.into_split();
        let ctx_backfill = ctx.backfill.clone();
        let mut conn = Conn {
            ctx,
            peer,
            wr,
            endpoint: None,
            loggers: HashMap::new(),
            auth_failures: 0,
            dead_letters: 0,
            backfill: Session::new(ctx_backfill),
            dead_letter_window: Instant::now(),
            unstored: false,
            last_request_qn: None,
        };
        let cfg = conn.ctx.cfg.clone();
        let mut decoder = FrameDecoder::with_config(cfg.max_frame_len, CrcMode::Hj212);
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 8192];
        let started = Instant::now();
        let mut last_rx = started;
        let mut quiet_done = false;
        let mut registry = conn.ctx.registry.clone();
        'conn: loop {
            while let Some(ev) = decoder.decode(&mut buf) {
                if conn.event(ev).await.is_break() {
                    break 'conn;
                }
            }
            let mut deadline = last_rx + cfg.idle_timeout;
            if conn.loggers.is_empty() {
                deadline = deadline.min(started + cfg.handshake_timeout);
            }
            let wake = if buf.is_empty() || quiet_done {
                deadline
            } else {
                deadline.min(last_rx + cfg.quiet)
            };
            tokio::select! {
                _ = shutdown.changed() => break,
                w = conn.backfill.wake() => {
                    if conn.backfill_wake(w).await.is_break() {
                        break;
                    }
                }
                Ok(()) = registry.changed() => {
                    // A reload: a logger whose MN is gone is hung up on; one whose
                    // settings changed goes on with the new ones.
                    let reg = registry.borrow_and_update().clone();
                    if !conn.reloaded(&reg).await {
                        break;
                    }
                }
                r = tokio::time::timeout_at(wake, rd.read(&mut chunk)) => match r {
                    Ok(Ok(0)) => {
                        while let Some(ev) = decoder.finish(&mut buf) {
                            if conn.event(ev).await.is_break() {
                                break;
                            }
                        }
                        break;
                    }
                    Ok(Ok(n)) => {
                        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                        last_rx = Instant::now();
                        quiet_done = false;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %peer, error = %e, "hj212 read failed");
                        break;
                    }
                    Err(_) if Instant::now() >= deadline => {
                        let reason = if conn.loggers.is_empty() { "handshake_timeout" } else { "idle_timeout" };
                        conn.ctx.stats.reject(reason, conn.mn());
                        conn.log(reason, format_args!("closing: no frame for {:?}", Instant::now() - last_rx));
                        break;
                    }
                    Err(_) => {
                        // The peer went quiet with bytes pending: a frame without a
                        // CRLF, or a cut one. Decide now rather than wait for more.
                        quiet_done = true;
                        while let Some(ev) = decoder.decode_idle(&mut buf) {
                            if conn.event(ev).await.is_break() {
                                break 'conn;
                            }
                        }
                    }
                }
            }
        }
        conn.disconnected().await;
    }

    /// Follows a reload: loggers whose MN is gone are disconnected; `false` when
    /// none is left, and the connection is closed.
    async fn reloaded(&mut self, reg: &Registry) -> bool {
        if self.loggers.is_empty() {
            return true;
        }
        let mut gone = Vec::new();
        for (mn, ep) in self.loggers.iter_mut() {
            match reg.get(mn) {
                Some(new) => *ep = new.clone(),
                None => gone.push(mn.clone()),
            }
        }
        for mn in gone {
            tracing::info!(peer = %self.peer, mn = %mn, "hj212: MN removed from config; its logger is disconnected");
            if let Some(ep) = self.loggers.remove(&mn) {
                self.status(&ep, "disconnected").await;
            }
        }
        self.endpoint = match &self.endpoint {
            Some(cur) => self.loggers.get(&*cur.origin.mn).cloned(),
            None => None,
        };
        !self.loggers.is_empty()
    }

    /// Whether `mn` has spoken on this connection and is still configured.
    pub(super) fn has_logger(&self, mn: &str) -> bool {
        self.loggers.contains_key(mn)
    }

    pub(super) fn mn(&self) -> Option<&str> {
        self.endpoint.as_ref().map(|e| &*e.origin.mn)
    }

    pub(super) fn log(&self, reason: &str, detail: std::fmt::Arguments<'_>) {
        let key = format!("{} {reason}", self.peer.ip());
        if let Some(suppressed) = self.ctx.logs.allow(&key) {
            tracing::warn!(peer = %self.peer, mn = self.mn().unwrap_or("-"), reason, suppressed, "hj212: {detail}");
        }
    }

    pub(super) fn dead_letter(
        &mut self,
        reason: &'static str,
        detail: String,
        raw: &[u8],
    ) -> Batch {
        if self.dead_letter_window.elapsed() >= DEAD_LETTER_WINDOW {
            self.dead_letter_window = Instant::now();
            self.dead_letters = 0;
        }
        self.dead_letters += 1;
        if self.dead_letters > self.ctx.cfg.dead_letters_per_connection
            || !self.ctx.peers.dead_letter_allowed(self.peer.ip())
        {
            self.unstored = true;
            return Batch::default();
        }
        Batch::dead_letter(DeadLetter {
            at: self.ctx.clock.now(),
            protocol: Protocol::Hj212,
            peer: self.peer.to_string(),
            reason: reason.to_string(),
            detail,
            raw: raw.to_vec(),
        })
    }

    /// Queues a dead letter without waiting (nobody is answered for it).
    pub(super) async fn reject(&mut self, reason: &'static str, detail: String, raw: &[u8]) {
        self.ctx.stats.reject(reason, self.mn());
        self.log(reason, format_args!("{detail}"));
        let batch = self.dead_letter(reason, detail, raw);
        self.unstored = false;
        if !batch.is_empty() {
            if let Err(e) = self.ctx.writer.submit(batch).await {
                tracing::error!(error = %e, "hj212: cannot record dead letter");
            }
        }
    }

    async fn event(&mut self, ev: Result<Frame, FrameError>) -> Flow {
        match ev {
            Ok(frame) => {
                let pending = frame.crc_pending.then(|| frame.crc_sent());
                self.frame(&frame.segment, CrcMode::Hj212, pending).await
            }
            Err(FrameError::BadCrc {
                sent,
                computed,
                segment,
            }) => {
                // Some old loggers send a byte-swapped CRC-16/MODBUS; accepted only
                // from an MN configured for it.
                if let Some(ep) = self.swapped_crc_endpoint(&segment, &sent) {
                    tracing::debug!(mn = %ep.origin.mn, "accepted swapped CRC-16/MODBUS");
                    return self.frame(&segment, CrcMode::ModbusSwapped, None).await;
                }
                let detail = format!("bad CRC: frame says {sent}, computed {computed:04X}");
                self.reject("bad_crc", detail, &segment).await;
                self.failed_frame()
            }
            Err(e) => {
                let reason = match &e {
                    FrameError::Garbage { .. } | FrameError::GarbageAtEnd { .. } => "garbage",
                    FrameError::BadLengthField { .. } => "bad_length",
                    FrameError::TooLong { .. } => "too_long",
                    FrameError::Interrupted { .. } => "interrupted",
                    FrameError::NoEnd { .. } => "no_end",
                    FrameError::Truncated { .. } => "truncated",
                    FrameError::BadCrc { .. } => "bad_crc",
                };
                self.reject(reason, e.to_string(), &[]).await;
                self.failed_frame()
            }
        }
    }

    /// A frame that failed authentication or could not be read at all: after
    /// `max_auth_failures` in a row, or past the dead-letter cap, `Break`.
    pub(super) fn failed_frame(&mut self) -> Flow {
        self.auth_failures += 1;
        if self.auth_failures >= self.ctx.cfg.max_auth_failures {
            self.ctx.stats.reject("auth_failures", None);
            self.log(
                "auth_failures",
                format_args!("closing after {} failed frames", self.auth_failures),
            );
            return ControlFlow::Break(());
        }
        self.over_cap()
    }

    /// `Break` once this connection wrote its last allowed dead letter.
    pub(super) fn over_cap(&self) -> Flow {
        let cap = self.ctx.cfg.dead_letters_per_connection;
        if self.dead_letters > cap {
            self.ctx.stats.reject("dead_letter_cap", self.mn());
            self.log(
                "dead_letter_cap",
                format_args!(
                    "closing: more than {cap} unusable frames on this connection within a minute"
                ),
            );
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn swapped_crc_endpoint(&self, segment: &[u8], sent: &str) -> Option<Arc<Endpoint>> {
        let sent = u16::from_str_radix(sent, 16).ok()?;
        if crc16_modbus_swapped(segment) != sent {
            return None;
        }
        let text = std::str::from_utf8(segment).ok()?;
        let seg = DataSegment::parse(text).ok()?;
        let reg = self.ctx.registry.borrow().clone();
        let ep = reg.get(seg.mn?)?;
        (ep.crc == CrcMode::ModbusSwapped).then(|| ep.clone())
    }

    /// Checks MN and password, each frame against its own MN. `Break` hangs up
    /// after too many failures.
    pub(super) async fn authenticate(
        &mut self,
        seg: &DataSegment<'_>,
        raw: &[u8],
        crc: CrcMode,
    ) -> ControlFlow<(), Option<Arc<Endpoint>>> {
        let reg = self.ctx.registry.borrow().clone();
        let found = seg.mn.and_then(|mn| reg.get(mn).cloned());
        let failure = match (seg.mn, &found) {
            (None, _) => Some(("missing_mn", "frame has no MN".to_string())),
            (Some(mn), None) => Some((
                "unknown_mn",
                format!("MN {mn:?} is not configured for any outlet"),
            )),
            (Some(mn), Some(ep)) if seg.pw != Some(ep.password.as_str()) => {
                Some(("bad_password", format!("wrong password for MN {mn:?}")))
            }
            (Some(mn), Some(ep)) if ep.crc != crc => Some((
                "bad_crc",
                format!("MN {mn:?} sent a CRC variant it is not configured for"),
            )),
            _ => None,
        };
        if let Some((reason, detail)) = failure {
            self.reject(reason, detail, raw).await;
            if reason != "bad_crc" {
                // Credentials: counted against the address, across connections.
                self.ctx
                    .lockout
                    .failed(self.peer.ip(), self.ctx.clock.now());
            }
            self.failed_frame()?;
            return ControlFlow::Continue(None);
        }
        self.auth_failures = 0;
        let Some(ep) = found else {
            return ControlFlow::Continue(None);
        };
        self.endpoint = Some(ep.clone());
        if !self.loggers.contains_key(&*ep.origin.mn) {
            self.connected(seg, &ep, crc).await?;
        }
        ControlFlow::Continue(Some(ep))
    }

    /// First authenticated frame of an MN on this connection.
    async fn connected(&mut self, seg: &DataSegment<'_>, ep: &Arc<Endpoint>, crc: CrcMode) -> Flow {
        self.loggers.insert(ep.origin.mn.to_string(), ep.clone());
        tracing::info!(peer = %self.peer, enterprise = %ep.origin.enterprise, outlet = %ep.origin.outlet, mn = %ep.origin.mn, loggers = self.loggers.len(), "hj212 logger connected");
        self.status(ep, "connected").await;
        self.backfill_connected(seg, ep);
        if ep.set_time_on_connect {
            self.send_time(seg, ep, crc).await?;
        }
        if let Some(secs) = ep.rtd_interval {
            let (_, qn) = self.request_qn();
            let h = header(seg, ep, &qn);
            self.answer(set_rtd_interval_1062(&h, secs), crc, true)
                .await?;
        }
        ControlFlow::Continue(())
    }

    async fn status(&self, ep: &Endpoint, status: &str) {
        let ev = StatusEvent {
            at: self.ctx.clock.now(),
            enterprise: ep.origin.enterprise.to_string(),
            device: ep.origin.mn.to_string(),
            status: status.to_string(),
            detail: format!("peer {}", self.peer),
        };
        if let Err(e) = self.ctx.writer.submit(Batch::status_event(ev)).await {
            tracing::error!(error = %e, "hj212: cannot record status event");
        }
    }

    async fn disconnected(&mut self) {
        self.backfill_closed();
        for ep in std::mem::take(&mut self.loggers).into_values() {
            tracing::info!(peer = %self.peer, mn = %ep.origin.mn, "hj212 logger disconnected");
            self.status(&ep, "disconnected").await;
        }
    }
}
