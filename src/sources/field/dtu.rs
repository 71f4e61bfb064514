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

use std::collections::{HashMap, HashSet};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::model::Protocol;
use crate::store::{Batch, DeadLetter, Writer};

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
}

/// Connections waiting for (or held by) their line, by DTU id.
#[derive(Debug, Default)]
pub struct DtuHub {
    slots: Mutex<HashMap<String, Slot>>,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u64,
    waiting: Option<TcpStream>,
}

impl DtuHub {
    fn put(&self, id: &str, stream: TcpStream) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(id.to_string()).or_default();
        slot.generation += 1;
        // A connection the line never took is simply replaced (and closed).
        slot.waiting = Some(stream);
    }

    /// The newest connection of `id`, if one is waiting, with its generation.
    pub fn take(&self, id: &str) -> Option<(u64, TcpStream)> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.get_mut(id)?;
        slot.waiting.take().map(|s| (slot.generation, s))
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

/// Accepts DTU connections until shutdown. `known` are the configured DTU ids.
pub async fn listen(
    opts: DtuOptions,
    known: HashSet<String>,
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
    let opts = Arc::new(opts);
    let known = Arc::new(known);
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
            let (opts, known, hub, writer, clock) = (
                opts.clone(),
                known.clone(),
                hub.clone(),
                writer.clone(),
                clock.clone(),
            );
            tokio::spawn(async move {
                register(stream, peer, &opts, &known, &hub, &writer, clock.as_ref()).await;
            });
        }
    });
    Ok((addr, task))
}

async fn register(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    opts: &DtuOptions,
    known: &HashSet<String>,
    hub: &DtuHub,
    writer: &Writer,
    clock: &dyn Clock,
) {
    let _ = stream.set_nodelay(true);
    let mut packet = vec![0u8; 256];
    let n = match tokio::time::timeout(opts.registration_timeout, stream.read(&mut packet)).await {
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
    let id = parse_registration(
        &packet,
        &opts.registration_prefix,
        &opts.registration_suffix,
    );
    match id {
        Some(id) if known.contains(&id) => {
            tracing::info!(peer = %peer, dtu = %id, "DTU registered");
            hub.put(&id, stream);
        }
        _ => {
            let shown = String::from_utf8_lossy(&packet)
                .chars()
                .take(64)
                .collect::<String>();
            tracing::warn!(peer = %peer, registration = %shown.escape_debug(), "unknown DTU; closing");
            let dl = DeadLetter {
                at: clock.now(),
                protocol: Protocol::Modbus,
                peer: peer.to_string(),
                reason: "unknown_dtu".into(),
                detail: format!("registration {:?} names no configured dtu_id", shown),
                raw: packet,
            };
            if let Err(e) = writer.submit(Batch::dead_letter(dl)).await {
                tracing::error!(error = %e, "cannot record dead letter");
            }
        }
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
}

impl<S> HeartbeatFilter<S> {
    pub fn new(inner: S, pattern: Vec<u8>) -> Self {
        HeartbeatFilter {
            inner,
            pattern,
            pending: Vec::new(),
        }
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
