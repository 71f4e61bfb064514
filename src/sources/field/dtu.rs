//! DTU dial-in: most remote meters in China sit behind a 4G/Ethernet DTU that
//! connects *out* to the platform and then forwards bytes to the RS-485 line.
//! We accept the connection, read its registration packet to learn which DTU it
//! is, and hand the socket to the line of the devices configured with that
//! `dtu_id`; we then act as master over it (Modbus RTU or DL/T 645 framing).
//!
//! A DTU that reconnects replaces its old connection: the line notices the new
//! generation and switches. Heartbeat packets the DTU sends while idle are
//! removed from the byte stream ([`HeartbeatFilter`]) before any decoder sees
//! them. An unknown id is recorded as a dead letter and hung up on.
//!
//! **Identity.** The id alone proves nothing: anyone who learns it can dial in.
//! Per DTU, `dtu_allow` limits the addresses it may register from, and
//! `dtu_secret` makes it register as `<id>:<secret>`; a registration that fails
//! either is a dead letter (`dtu_not_allowed`, `dtu_bad_secret`) and is hung up
//! on. A registration of an id whose connection is alive from *another* address
//! is refused (`dtu_takeover`): the real DTU keeps its line, and the daemon
//! raises a `dtu_takeover` finding (once per id and address per hour). Each
//! accepted registration is recorded as a status event `connected` with the
//! peer's address: the provenance of what the line reads from then on.
//!
//! **Limits.** At most `max_connections` connections at once (registering or
//! held), and `max_connections_per_address` from one address
//! ([`crate::sources::peers`]); dead-letter rows are sampled per address.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::clock::Clock;
use crate::model::Protocol;
use crate::ratelimit::LogLimiter;
use crate::sources::peers::{PeerLimits, PeerSlot};
use crate::store::{Batch, DeadLetter, StatusEvent, Writer};

/// How DTUs introduce themselves.
#[derive(Debug, Clone)]
pub struct DtuOptions {
    pub listen: std::net::SocketAddr,
    pub registration_timeout: Duration,
    /// Bytes around the id in the registration packet (e.g. a vendor header).
    pub registration_prefix: Vec<u8>,
    pub registration_suffix: Vec<u8>,
    /// The idle heartbeat the DTUs send, removed from the stream.
    pub heartbeat: Vec<u8>,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub dead_letters_per_minute: u32,
    /// Where refused takeovers are reported (the daemon turns them into findings).
    pub takeovers: Option<mpsc::Sender<Takeover>>,
}

/// Who a configured DTU is: its enterprise, and what proves a registration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DtuIdentity {
    pub enterprise: String,
    /// Networks it may register from; empty: any.
    pub allow: Vec<ipnet::IpNet>,
    /// The secret after `<id>:` in its registration packet.
    pub secret: Option<String>,
}

/// A registration refused because the id is connected from another address.
#[derive(Debug, Clone)]
pub struct Takeover {
    pub dtu: String,
    pub enterprise: String,
    /// The address holding the line.
    pub holder: SocketAddr,
    /// The address that tried to take it.
    pub peer: SocketAddr,
    pub at: DateTime<Utc>,
}

/// What a DTU connection holds while it lives: its places under the limits.
/// The hub knows a DTU is connected while its lease is alive.
#[derive(Debug)]
pub struct Lease {
    _permit: OwnedSemaphorePermit,
    _slot: PeerSlot,
}

/// Connections waiting for (or held by) their line, by DTU id.
#[derive(Debug, Default)]
pub struct DtuHub {
    slots: Mutex<HashMap<String, Slot>>,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u64,
    waiting: Option<(TcpStream, Arc<Lease>)>,
    /// Who registered last, and whether that connection still lives.
    holder: Option<(SocketAddr, std::sync::Weak<Lease>)>,
}

impl DtuHub {
    /// Hands the connection to the line; `Err(holder)` when `id` is connected
    /// (alive) from another address — the connection is then dropped.
    fn put(
        &self,
        id: &str,
        stream: TcpStream,
        peer: SocketAddr,
        lease: Lease,
    ) -> Result<(), SocketAddr> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(id.to_string()).or_default();
        if let Some((holder, alive)) = &slot.holder {
            if alive.strong_count() > 0 && holder.ip() != peer.ip() {
                return Err(*holder);
            }
        }
        let lease = Arc::new(lease);
        slot.holder = Some((peer, Arc::downgrade(&lease)));
        slot.generation += 1;
        // A connection the line never took is simply replaced (and closed).
        slot.waiting = Some((stream, lease));
        Ok(())
    }

    /// The newest connection of `id`, if one is waiting, with its generation and
    /// the lease to keep while using it.
    pub fn take(&self, id: &str) -> Option<(u64, TcpStream, Arc<Lease>)> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.get_mut(id)?;
        slot.waiting
            .take()
            .map(|(s, lease)| (slot.generation, s, lease))
    }

    pub fn generation(&self, id: &str) -> u64 {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.get(id).map_or(0, |s| s.generation)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for DTUs on {addr}: {source}")]
pub struct DtuListenError {
    pub addr: std::net::SocketAddr,
    #[source]
    pub source: io::Error,
}

/// Accepts DTU connections until shutdown. `known` are the configured DTUs.
pub async fn listen(
    opts: DtuOptions,
    known: HashMap<String, DtuIdentity>,
    hub: Arc<DtuHub>,
    writer: Writer,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), DtuListenError> {
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|source| DtuListenError {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| DtuListenError {
        addr: opts.listen,
        source,
    })?;
    tracing::info!(listen = %addr, dtus = known.len(), "DTU listener ready");
    let ctx = Arc::new(Registrar {
        peers: PeerLimits::new(
            opts.max_connections_per_address,
            opts.dead_letters_per_minute,
        ),
        slots: Arc::new(Semaphore::new(opts.max_connections.max(1))),
        opts,
        known,
        hub,
        writer,
        clock,
        logs: LogLimiter::new(Duration::from_secs(60)),
        reported: LogLimiter::new(Duration::from_secs(3600)),
    });
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.changed() => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "DTU accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = ctx.slots.clone().try_acquire_owned() else {
                if ctx.logs.allow("connection_limit").is_some() {
                    tracing::warn!(peer = %peer, limit = ctx.opts.max_connections, "DTU: connection limit reached; refusing");
                }
                continue;
            };
            let Some(slot) = ctx.peers.admit(peer.ip()) else {
                if ctx
                    .logs
                    .allow(&format!("{} address_limit", peer.ip()))
                    .is_some()
                {
                    tracing::warn!(peer = %peer, limit = ctx.opts.max_connections_per_address, "DTU: connection limit for this address reached; refusing");
                }
                continue;
            };
            let lease = Lease {
                _permit: permit,
                _slot: slot,
            };
            let ctx = ctx.clone();
            tokio::spawn(async move { ctx.register(stream, peer, lease).await });
        }
    });
    Ok((addr, task))
}

struct Registrar {
    opts: DtuOptions,
    known: HashMap<String, DtuIdentity>,
    hub: Arc<DtuHub>,
    writer: Writer,
    clock: Arc<dyn Clock>,
    peers: Arc<PeerLimits>,
    slots: Arc<Semaphore>,
    logs: LogLimiter,
    /// Takeover findings reported, per id and address.
    reported: LogLimiter,
}

impl Registrar {
    async fn register(&self, mut stream: TcpStream, peer: SocketAddr, lease: Lease) {
        let opts = &self.opts;
        let _ = stream.set_nodelay(true);
        let mut packet = vec![0u8; 256];
        let n = match tokio::time::timeout(opts.registration_timeout, stream.read(&mut packet))
            .await
        {
            Ok(Ok(n)) if n > 0 => n,
            // A DTU configured without a registration packet (or with the heartbeat
            // only) never registers: say so, or the sysadmin sees only a device offline.
            Err(_) => {
                tracing::warn!(peer = %peer, timeout_ms = opts.registration_timeout.as_millis() as u64, "DTU sent no registration packet in time; closing (check the DTU's registration packet setting)");
                return;
            }
            _ => {
                tracing::debug!(peer = %peer, "connection closed before a DTU registration packet");
                return;
            }
        };
        packet.truncate(n);
        let body = parse_registration(
            &packet,
            &opts.registration_prefix,
            &opts.registration_suffix,
        );
        let found = body.as_deref().and_then(|b| self.identify(b));
        let Some((id, identity, secret)) = found else {
            let shown = shown(&packet);
            tracing::warn!(peer = %peer, registration = %shown.escape_debug(), "unknown DTU; closing");
            let detail = format!("registration {shown:?} names no configured dtu_id");
            self.dead_letter(peer, "unknown_dtu", detail, packet).await;
            return;
        };
        if !identity.allow.is_empty() && !identity.allow.iter().any(|n| n.contains(&peer.ip())) {
            tracing::warn!(peer = %peer, dtu = %id, "DTU registration from an address not in dtu_allow; closing");
            let detail = format!("DTU {id} may not register from {}", peer.ip());
            self.dead_letter(peer, "dtu_not_allowed", detail, packet)
                .await;
            return;
        }
        if let Some(want) = &identity.secret {
            // Digests compared: the time taken says nothing about the secret.
            let digest = |s: &str| -> [u8; 32] {
                use sha2::Digest;
                sha2::Sha256::digest(s.as_bytes()).into()
            };
            let ok = secret.is_some_and(|s| digest(&s) == digest(want));
            if !ok {
                tracing::warn!(peer = %peer, dtu = %id, "DTU registration without its dtu_secret; closing");
                let detail = format!("DTU {id}: registration secret missing or wrong");
                self.dead_letter(peer, "dtu_bad_secret", detail, redact(&packet))
                    .await;
                return;
            }
        }
        match self.hub.put(&id, stream, peer, lease) {
            Ok(()) => {
                tracing::info!(peer = %peer, dtu = %id, "DTU registered");
                let ev = StatusEvent {
                    at: self.clock.now(),
                    enterprise: identity.enterprise.clone(),
                    device: id.clone(),
                    status: "connected".into(),
                    detail: format!("peer {peer}"),
                };
                if let Err(e) = self.writer.submit(Batch::status_event(ev)).await {
                    tracing::error!(error = %e, "cannot record DTU registration");
                }
            }
            Err(holder) => {
                tracing::warn!(peer = %peer, dtu = %id, holder = %holder, "DTU id registered again from another address while connected; refused (the connected DTU keeps its line)");
                let detail = format!(
                    "DTU {id} is connected from {holder}; registration from {peer} refused"
                );
                self.dead_letter(peer, "dtu_takeover", detail, redact(&packet))
                    .await;
                let key = format!("{id} {}", peer.ip());
                if let (Some(tx), Some(_)) = (&opts.takeovers, self.reported.allow(&key)) {
                    let _ = tx.try_send(Takeover {
                        dtu: id.clone(),
                        enterprise: identity.enterprise.clone(),
                        holder,
                        peer,
                        at: self.clock.now(),
                    });
                }
            }
        }
    }

    /// The DTU a registration names: `<id>`, or `<id>:<secret>`.
    fn identify(&self, body: &str) -> Option<(String, &DtuIdentity, Option<String>)> {
        if let Some(identity) = self.known.get(body) {
            return Some((body.to_string(), identity, None));
        }
        let (id, secret) = body.split_once(':')?;
        let identity = self.known.get(id)?;
        Some((id.to_string(), identity, Some(secret.to_string())))
    }

    async fn dead_letter(&self, peer: SocketAddr, reason: &str, detail: String, raw: Vec<u8>) {
        if !self.peers.dead_letter_allowed(peer.ip()) {
            return;
        }
        let dl = DeadLetter {
            at: self.clock.now(),
            protocol: Protocol::Modbus,
            peer: peer.to_string(),
            reason: reason.into(),
            detail,
            raw,
        };
        if let Err(e) = self.writer.submit(Batch::dead_letter(dl)).await {
            tracing::error!(error = %e, "cannot record dead letter");
        }
    }
}

fn shown(packet: &[u8]) -> String {
    String::from_utf8_lossy(packet).chars().take(64).collect()
}

/// A registration packet as kept: a secret after `:` is not stored.
fn redact(packet: &[u8]) -> Vec<u8> {
    match packet.iter().position(|b| *b == b':') {
        Some(i) => [packet.get(..=i).unwrap_or(&[]), b"<redacted>"].concat(),
        None => packet.to_vec(),
    }
}

/// The DTU id in a registration packet: prefix and suffix removed, ASCII, trimmed.
pub fn parse_registration(packet: &[u8], prefix: &[u8], suffix: &[u8]) -> Option<String> {
    let body = packet.strip_prefix(prefix)?;
    let body = body.strip_suffix(suffix).unwrap_or(body);
    let text = std::str::from_utf8(body).ok()?.trim();
    (!text.is_empty() && text.chars().all(|c| c.is_ascii_graphic())).then(|| text.to_string())
}

/// Removes a DTU's heartbeat packets from what it forwards. Heartbeats arrive
/// between frames (the DTU sends them when the line is idle), so a heartbeat is
/// recognised at the start of unread input; anything else passes untouched.
pub struct HeartbeatFilter<S> {
    inner: S,
    pattern: Vec<u8>,
    pending: Vec<u8>,
    /// A DTU connection's places under the limits, freed with the connection.
    _lease: Option<Arc<Lease>>,
}

impl<S> HeartbeatFilter<S> {
    pub fn new(inner: S, pattern: Vec<u8>) -> Self {
        HeartbeatFilter {
            inner,
            pattern,
            pending: Vec::new(),
            _lease: None,
        }
    }

    /// Holds `lease` for as long as the stream is in use.
    pub fn leased(mut self, lease: Arc<Lease>) -> Self {
        self._lease = Some(lease);
        self
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeartbeatFilter<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pattern.is_empty() {
                while this.pending.starts_with(&this.pattern) {
                    this.pending.drain(..this.pattern.len());
                }
            }
            let partial = !this.pending.is_empty()
                && this.pending.len() < this.pattern.len()
                && this.pattern.starts_with(&this.pending);
            if !this.pending.is_empty() && !partial {
                let n = this.pending.len().min(out.remaining());
                out.put_slice(this.pending.get(..n).unwrap_or(&[]));
                this.pending.drain(..n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    // EOF: hand over whatever partial bytes there were.
                    let n = this.pending.len().min(out.remaining());
                    out.put_slice(this.pending.get(..n).unwrap_or(&[]));
                    this.pending.drain(..n);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => this.pending.extend_from_slice(rb.filled()),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeartbeatFilter<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn registration_ids() {
        assert_eq!(
            parse_registration(b"860000000000001", b"", b""),
            Some("860000000000001".into())
        );
        assert_eq!(
            parse_registration(b"REG:DTU-7\r\n", b"REG:", b"\r\n"),
            Some("DTU-7".into())
        );
        assert_eq!(parse_registration(b"XX:DTU-7", b"REG:", b""), None);
        assert_eq!(parse_registration(b"\x01\x03\x00", b"", b""), None);
    }

    #[tokio::test]
    async fn heartbeats_between_frames_are_removed() {
        let (mut far, near) = tokio::io::duplex(256);
        let mut f = HeartbeatFilter::new(near, b"HB".to_vec());
        far.write_all(b"HBHB\x01\x03\x02\x00\x05").await.unwrap();
        let mut reply = [0u8; 5];
        f.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"\x01\x03\x02\x00\x05");
        // Idle heartbeat, then a reply that happens to start like one.
        far.write_all(b"HB").await.unwrap();
        far.write_all(b"H").await.unwrap();
        far.write_all(b"\x7f").await.unwrap();
        drop(far);
        let mut got = Vec::new();
        f.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"H\x7f");
    }
}
