//! The HJ 212 TCP server: loggers connect to us and upload.
//!
//! Each connection gets its own task ([`super::conn`]); this module accepts,
//! enforces the connection limits (in all, per address — [`crate::sources::peers`] —
//! and the password-guessing lockout per address), and on shutdown stops accepting, lets every
//! connection finish the frame it is storing and answering, and waits for them.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::backfill::Backfill;
use super::conn::Conn;
use super::registry::Registry;
use super::stats::Hj212Stats;
use crate::clock::Clock;
use crate::config::Config;
use crate::ratelimit::LogLimiter;
use crate::sources::peers::PeerLimits;
use crate::store::Writer;
use crate::throttle::AuthThrottle;

/// What the server needs from config, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_auth_failures: u32,
    pub max_frame_len: usize,
    pub max_connections_per_address: usize,
    /// Wrong MN/password frames per address in 15 minutes before a lockout; 0: off.
    pub lockout_after: usize,
    pub dead_letters_per_minute: u32,
    /// Dead letters one connection may cause within a minute before it is closed.
    pub dead_letters_per_connection: u32,
    /// Quiet time after which pending bytes are judged without waiting for more.
    pub quiet: Duration,
    pub tz: Tz,
}

impl ServerConfig {
    pub fn from_config(cfg: &Config) -> Self {
        let h = &cfg.daemon.hj212;
        ServerConfig {
            listen: h.listen.0,
            max_connections: h.max_connections,
            idle_timeout: h.idle_timeout.0,
            handshake_timeout: h.handshake_timeout.0,
            max_auth_failures: h.max_auth_failures.max(1),
            max_frame_len: h.max_frame_len,
            max_connections_per_address: h.max_connections_per_address,
            lockout_after: h.lockout_after,
            dead_letters_per_minute: h.dead_letters_per_minute,
            dead_letters_per_connection: h.dead_letters_per_connection,
            quiet: Duration::from_millis(1500),
            tz: cfg.timezone,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen for HJ 212 on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Shared by all connections of one server.
/// How long shutdown waits for open connections to finish their current frame.
pub const DRAIN: Duration = Duration::from_secs(10);

pub(super) struct Ctx {
    pub cfg: ServerConfig,
    pub registry: watch::Receiver<Arc<Registry>>,
    pub writer: Writer,
    pub clock: Arc<dyn Clock>,
    pub stats: Arc<Hj212Stats>,
    pub logs: LogLimiter,
    /// History requests to reconnected loggers; `None`: never ask.
    pub backfill: Option<Arc<Backfill>>,
    pub peers: Arc<PeerLimits>,
    /// Wrong MN or password per address ([`crate::throttle`]).
    pub lockout: AuthThrottle,
}

pub struct Hj212Server {
    local_addr: SocketAddr,
    stats: Arc<Hj212Stats>,
    task: JoinHandle<()>,
}

impl Hj212Server {
    /// Binds the listener and starts serving. Completes when `shutdown` turns true
    /// and every connection has finished its current frame.
    pub async fn start(
        cfg: ServerConfig,
        registry: watch::Receiver<Arc<Registry>>,
        writer: Writer,
        clock: Arc<dyn Clock>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Hj212Server, ServerError> {
        Self::start_with_backfill(cfg, registry, writer, clock, shutdown, None).await
    }

    /// As [`Hj212Server::start`], asking reconnected loggers for missing hours
    /// through `backfill` ([`super::backfill`]).
    pub async fn start_with_backfill(
        cfg: ServerConfig,
        registry: watch::Receiver<Arc<Registry>>,
        writer: Writer,
        clock: Arc<dyn Clock>,
        shutdown: watch::Receiver<bool>,
        backfill: Option<Arc<Backfill>>,
    ) -> Result<Hj212Server, ServerError> {
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let stats = Arc::new(Hj212Stats::default());
        let ctx = Arc::new(Ctx {
            peers: PeerLimits::new(cfg.max_connections_per_address, cfg.dead_letters_per_minute),
            lockout: AuthThrottle::new(cfg.lockout_after, chrono::Duration::minutes(15)),
            cfg,
            registry,
            writer,
            clock,
            stats: stats.clone(),
            logs: LogLimiter::new(Duration::from_secs(60)),
            backfill,
        });
        tracing::info!(listen = %local_addr, "hj212 server listening");
        let task = tokio::spawn(accept_loop(listener, ctx, shutdown));
        Ok(Hj212Server {
            local_addr,
            stats,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> Arc<Hj212Stats> {
        self.stats.clone()
    }

    /// Waits until the server has stopped (after shutdown was signalled).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(ctx.cfg.max_connections));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: pause, don't spin.
                        tracing::warn!(error = %e, "hj212 accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    ctx.stats.reject("connection_limit", None);
                    if ctx.logs.allow("connection_limit").is_some() {
                        tracing::warn!(peer = %peer, limit = ctx.cfg.max_connections, "hj212: connection limit reached; refusing");
                    }
                    drop(stream);
                    continue;
                };
                if ctx.lockout.check(peer.ip(), ctx.clock.now()).is_err() {
                    ctx.stats.reject("locked_out", None);
                    if ctx.logs.allow(&format!("{} locked_out", peer.ip())).is_some() {
                        tracing::warn!(peer = %peer, "hj212: too many wrong MNs or passwords from this address; refusing for now");
                    }
                    drop((stream, permit));
                    continue;
                }
                let Some(slot) = ctx.peers.admit(peer.ip()) else {
                    ctx.stats.reject("address_limit", None);
                    if ctx.logs.allow(&format!("{} address_limit", peer.ip())).is_some() {
                        tracing::warn!(peer = %peer, limit = ctx.cfg.max_connections_per_address, "hj212: connection limit for this address reached; refusing");
                    }
                    drop((stream, permit));
                    continue;
                };
                let _ = stream.set_nodelay(true);
                ctx.stats.connections_accepted.fetch_add(1, Ordering::Relaxed);
                ctx.stats.connections_open.fetch_add(1, Ordering::Relaxed);
                let ctx = ctx.clone();
                let shutdown = shutdown.clone();
                conns.spawn(async move {
                    let span = tracing::info_span!("hj212", peer = %peer);
                    let _permit = (permit, slot);
                    let stats = ctx.stats.clone();
                    tracing::Instrument::instrument(Conn::serve(ctx, stream, peer, shutdown), span).await;
                    stats.connections_open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }
    }
    drop(listener);
    // Connections finish their current frame; one still waiting after DRAIN (its
    // store write held by an unreachable database, a peer that stopped reading)
    // is dropped: what it sent was either committed (its resend is a duplicate)
    // or never answered (the logger resends). SIGTERM never waits on a peer.
    let drained =
        tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = conns.len(),
            "hj212: connections still busy {DRAIN:?} after shutdown; closing them"
        );
        conns.shutdown().await;
    }
    tracing::info!("hj212 server stopped");
}
