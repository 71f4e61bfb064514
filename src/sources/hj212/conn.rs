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

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, Timelike};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::codec::crc::{crc16_modbus_swapped, CrcMode};
use super::codec::error::FrameError;
use super::codec::frame::FrameDecoder;
use super::codec::reply::{
    data_answer_9014, encode_frame_with, make_qn, notification_answer_9013, set_rtd_interval_1062,
    set_time_1012, RequestHeader,
};
use super::codec::segment::{DataSegment, Flag as HjFlag};
use super::codec::time::LocalDateTime;
use super::mapping::{self, Command, MapError, Mapped};
use super::registry::Endpoint;
use super::server::Ctx;
use crate::model::Protocol;
use crate::store::{Batch, DeadLetter, StatusEvent};

/// Dead letters one connection may write; past that, problems are only counted so a
/// hostile peer cannot fill the database.
const MAX_DEAD_LETTERS: u32 = 50;
/// How long to wait for a peer to take an answer before giving up on it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Conn {
    ctx: Arc<Ctx>,
    peer: SocketAddr,
    wr: OwnedWriteHalf,
    endpoint: Option<Arc<Endpoint>>,
    auth_failures: u32,
    dead_letters: u32,
}

type Flow = ControlFlow<()>;

impl Conn {
    pub(super) async fn serve(
        ctx: Arc<Ctx>,
        stream: TcpStream,
        peer: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (mut rd, wr) = stream.into_split();
        let mut conn = Conn {
            ctx,
            peer,
            wr,
            endpoint: None,
            auth_failures: 0,
            dead_letters: 0,
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
            if conn.endpoint.is_none() {
                deadline = deadline.min(started + cfg.handshake_timeout);
            }
            let wake = if buf.is_empty() || quiet_done {
                deadline
            } else {
                deadline.min(last_rx + cfg.quiet)
            };
            tokio::select! {
                _ = shutdown.changed() => break,
                Ok(()) = registry.changed() => {
                    // A reload: a logger whose MN is gone is hung up on; one whose
                    // settings changed goes on with the new ones.
                    let reg = registry.borrow_and_update().clone();
                    if let Some(mn) = conn.mn().map(str::to_string) {
                        match reg.get(&mn) {
                            Some(ep) => conn.endpoint = Some(ep.clone()),
                            None => {
                                tracing::info!(peer = %peer, mn = %mn, "hj212: MN removed from config; closing its connection");
                                break;
                            }
                        }
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
                        let reason = if conn.endpoint.is_none() { "handshake_timeout" } else { "idle_timeout" };
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

    fn mn(&self) -> Option<&str> {
        self.endpoint.as_ref().map(|e| &*e.origin.mn)
    }

    fn log(&self, reason: &str, detail: std::fmt::Arguments<'_>) {
        let key = format!("{} {reason}", self.peer.ip());
        if let Some(suppressed) = self.ctx.logs.allow(&key) {
            tracing::warn!(peer = %self.peer, mn = self.mn().unwrap_or("-"), reason, suppressed, "hj212: {detail}");
        }
    }

    fn dead_letter(&mut self, reason: &'static str, detail: String, raw: &[u8]) -> Batch {
        self.dead_letters += 1;
        if self.dead_letters > MAX_DEAD_LETTERS {
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
    async fn reject(&mut self, reason: &'static str, detail: String, raw: &[u8]) {
        self.ctx.stats.reject(reason, self.mn());
        self.log(reason, format_args!("{detail}"));
        let batch = self.dead_letter(reason, detail, raw);
        if !batch.is_empty() {
            if let Err(e) = self.ctx.writer.submit(batch).await {
                tracing::error!(error = %e, "hj212: cannot record dead letter");
            }
        }
    }

    async fn event(&mut self, ev: Result<super::codec::frame::Frame, FrameError>) -> Flow {
        match ev {
            Ok(frame) => self.frame(&frame.segment, CrcMode::Hj212).await,
            Err(FrameError::BadCrc {
                sent,
                computed,
                segment,
            }) => {
                // Some old loggers send a byte-swapped CRC-16/MODBUS; accepted only
                // from an MN configured for it.
                if let Some(ep) = self.swapped_crc_endpoint(&segment, &sent) {
                    tracing::debug!(mn = %ep.origin.mn, "accepted swapped CRC-16/MODBUS");
                    return self.frame(&segment, CrcMode::ModbusSwapped).await;
                }
                let detail = format!("bad CRC: frame says {sent}, computed {computed:04X}");
                self.reject("bad_crc", detail, &segment).await;
                ControlFlow::Continue(())
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
                ControlFlow::Continue(())
            }
        }
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

    async fn frame(&mut self, raw: &[u8], crc: CrcMode) -> Flow {
        let text = String::from_utf8_lossy(raw);
        let seg = match DataSegment::parse(&text) {
            Ok(seg) => seg,
            Err(e) => {
                self.reject("bad_segment", format!("data segment: {e}"), raw)
                    .await;
                return ControlFlow::Continue(());
            }
        };
        let Some(ep) = self.authenticate(&seg, raw, crc).await? else {
            return ControlFlow::Continue(());
        };
        let now = self.ctx.clock.now();
        let command = Command::of(seg.cn);
        match command {
            Command::Data(kind) => {
                let mapped = mapping::map_values(&seg, kind, &ep.origin, self.ctx.cfg.tz);
                self.store_upload(&seg, &ep, raw, crc, mapped).await
            }
            Command::DeviceStatus | Command::DeviceRunTime => {
                let mapped = mapping::map_devices(&seg, &ep.origin, self.ctx.cfg.tz);
                self.store_upload(&seg, &ep, raw, crc, mapped).await
            }
            Command::Restart | Command::Info => {
                let status = if command == Command::Restart {
                    "restart"
                } else {
                    "info"
                };
                let batch = Batch::status_event(StatusEvent {
                    at: now,
                    enterprise: ep.origin.enterprise.to_string(),
                    device: ep.origin.mn.to_string(),
                    status: status.to_string(),
                    detail: seg.cp_raw.unwrap_or("").chars().take(2000).collect(),
                });
                self.ctx.stats.seen(&ep.origin.mn, now, 0);
                self.durable_then_answer(&seg, crc, batch).await
            }
            Command::Other => {
                self.ctx.stats.seen(&ep.origin.mn, now, 0);
                self.ctx.stats.reject("unsupported_cn", Some(&ep.origin.mn));
                self.log(
                    "unsupported_cn",
                    format_args!("CN {} kept as a dead letter", seg.cn),
                );
                let batch = self.dead_letter(
                    "unsupported_cn",
                    format!("CN {} is not interpreted; kept raw", seg.cn),
                    raw,
                );
                self.durable_then_answer(&seg, crc, batch).await
            }
            Command::TimeRequest => {
                self.ctx.stats.seen(&ep.origin.mn, now, 0);
                self.answer(notification_answer_9013(&seg), crc, true)
                    .await?;
                self.send_time(&seg, &ep, crc).await
            }
            Command::Heartbeat => {
                self.ctx.stats.seen(&ep.origin.mn, now, 0);
                if seg.reply_wanted() {
                    return self.answer(notification_answer_9013(&seg), crc, true).await;
                }
                ControlFlow::Continue(())
            }
            Command::Answer => {
                self.ctx.stats.seen(&ep.origin.mn, now, 0);
                tracing::debug!(mn = %ep.origin.mn, cn = seg.cn, qn = seg.qn.unwrap_or("-"), cp = seg.cp_raw.unwrap_or(""), "hj212 answer from logger");
                ControlFlow::Continue(())
            }
        }
    }

    /// Checks MN and password. `Break` hangs up after too many failures.
    async fn authenticate(
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
            self.auth_failures += 1;
            if self.auth_failures >= self.ctx.cfg.max_auth_failures {
                self.ctx.stats.reject("auth_failures", None);
                self.log(
                    "auth_failures",
                    format_args!("closing after {} failed frames", self.auth_failures),
                );
                return ControlFlow::Break(());
            }
            return ControlFlow::Continue(None);
        }
        self.auth_failures = 0;
        let Some(ep) = found else {
            return ControlFlow::Continue(None);
        };
        if self
            .endpoint
            .as_ref()
            .is_none_or(|cur| cur.origin.mn != ep.origin.mn)
        {
            self.connected(seg, &ep, crc).await?;
        }
        ControlFlow::Continue(Some(ep))
    }

    async fn store_upload(
        &mut self,
        seg: &DataSegment<'_>,
        ep: &Endpoint,
        raw: &[u8],
        crc: CrcMode,
        mapped: Result<Mapped, MapError>,
    ) -> Flow {
        let now = self.ctx.clock.now();
        let batch = match mapped {
            Ok(m) => {
                for code in &m.unknown_codes {
                    if self.ctx.stats.unknown_code(code) == 1 {
                        tracing::info!(mn = %ep.origin.mn, code, "hj212: unknown factor code, stored as received");
                    }
                }
                let mut batch = Batch::default();
                if !m.problems.is_empty() {
                    self.ctx.stats.reject("bad_value", Some(&ep.origin.mn));
                    let detail = m
                        .problems
                        .iter()
                        .map(|p| format!("{}={:?}: {}", p.key, p.value, p.reason))
                        .collect::<Vec<_>>()
                        .join("; ");
                    self.log("bad_value", format_args!("MN {}: {detail}", ep.origin.mn));
                    batch = self.dead_letter("bad_value", detail, raw);
                }
                batch.readings = m.readings;
                batch
            }
            Err(e) => {
                self.ctx.stats.reject("bad_data_time", Some(&ep.origin.mn));
                self.log("bad_data_time", format_args!("MN {}: {e}", ep.origin.mn));
                self.dead_letter("bad_data_time", e.to_string(), raw)
            }
        };
        self.ctx
            .stats
            .seen(&ep.origin.mn, now, batch.readings.len() as u64);
        self.durable_then_answer(seg, crc, batch).await
    }

    /// Stores the batch, then sends 9014 if the logger asked for one.
    async fn durable_then_answer(
        &mut self,
        seg: &DataSegment<'_>,
        crc: CrcMode,
        batch: Batch,
    ) -> Flow {
        if !batch.is_empty() {
            if let Err(e) = self.ctx.writer.write(batch).await {
                // Not durable: stay silent, the logger will resend.
                tracing::error!(peer = %self.peer, error = %e, "hj212: upload not stored; no 9014 sent");
                self.ctx.stats.reject("store_failed", self.mn());
                return ControlFlow::Continue(());
            }
        }
        if seg.reply_wanted() {
            return self.answer(data_answer_9014(seg), crc, false).await;
        }
        ControlFlow::Continue(())
    }

    async fn answer(
        &mut self,
        segment: Result<String, super::codec::error::ReplyError>,
        crc: CrcMode,
        notification: bool,
    ) -> Flow {
        let bytes = match segment.and_then(|s| encode_frame_with(&s, crc)) {
            Ok(b) => b,
            Err(e) => {
                self.log("reply", format_args!("cannot build answer: {e}"));
                return ControlFlow::Continue(());
            }
        };
        match tokio::time::timeout(WRITE_TIMEOUT, self.wr.write_all(&bytes)).await {
            Ok(Ok(())) => {
                let counter = if notification {
                    &self.ctx.stats.replies_9013
                } else {
                    &self.ctx.stats.replies_9014
                };
                counter.fetch_add(1, Ordering::Relaxed);
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Break(()),
        }
    }

    /// First authenticated frame of an MN on this connection.
    async fn connected(&mut self, seg: &DataSegment<'_>, ep: &Arc<Endpoint>, crc: CrcMode) -> Flow {
        self.endpoint = Some(ep.clone());
        tracing::info!(peer = %self.peer, enterprise = %ep.origin.enterprise, outlet = %ep.origin.outlet, mn = %ep.origin.mn, "hj212 logger connected");
        self.status("connected").await;
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

    async fn send_time(&mut self, seg: &DataSegment<'_>, ep: &Endpoint, crc: CrcMode) -> Flow {
        let (now, qn) = self.request_qn();
        let h = header(seg, ep, &qn);
        self.answer(set_time_1012(&h, now), crc, true).await
    }

    fn request_qn(&self) -> (LocalDateTime, String) {
        let t = self.ctx.clock.now().with_timezone(&self.ctx.cfg.tz);
        let local = LocalDateTime {
            year: u16::try_from(t.year()).unwrap_or(0),
            month: t.month() as u8,
            day: t.day() as u8,
            hour: t.hour() as u8,
            minute: t.minute() as u8,
            second: t.second() as u8,
        };
        let millis = (t.timestamp_subsec_millis()).min(999) as u16;
        (local, make_qn(local, millis))
    }

    async fn status(&mut self, status: &str) {
        let Some(ep) = &self.endpoint else { return };
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
        if let Some(ep) = &self.endpoint {
            tracing::info!(peer = %self.peer, mn = %ep.origin.mn, "hj212 logger disconnected");
        }
        self.status("disconnected").await;
    }
}

/// Header for a platform request to this logger: its own ST, version, reply wanted.
fn header<'a>(seg: &DataSegment<'a>, ep: &'a Endpoint, qn: &'a str) -> RequestHeader<'a> {
    let version = seg.flag.map_or(1, |f| f.version_number());
    RequestHeader {
        qn,
        st: seg.st.unwrap_or("32"),
        pw: &ep.password,
        mn: &ep.origin.mn,
        flag: HjFlag((version << 2) | 1),
    }
}
