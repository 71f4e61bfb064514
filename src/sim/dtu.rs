//! A simulated 4G/Ethernet DTU: dials out to the monitoring server, sends its
//! registration packet, sends heartbeats while the line is idle, and
//! otherwise forwards bytes transparently to a simulated Modbus RTU slave or
//! DL/T 645 meter behind it.
//!
//! Why: in China most remote meters reach the platform this way, so the
//! server side (accept, identify by registration id, act as master over the
//! accepted socket, cope with heartbeats mixed into the byte stream and with
//! the DTU reconnecting) needs a counterpart that behaves like the real
//! boxes. The device runs on one end of an in-memory duplex for the DTU's
//! whole life, as the RS-485 device keeps running while the 4G link drops.
//!
//! Heartbeats only go out after `interval` with no bytes in either
//! direction, and between whole chunks read from the device; the simulated
//! devices write each reply in one piece, so a heartbeat never lands inside
//! a reply.

use std::future::pending;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::dlt645_meter::{self, MeterSim};
use super::link::{is_stopped, stopped};
use super::modbus::{serve_rtu, ModbusSim};

/// Room for many frames, so a reply is never split by a full buffer.
const DUPLEX_CAPACITY: usize = 8192;

/// What sits on the serial side of the DTU.
#[derive(Clone)]
pub enum DtuDevice {
    Modbus(Arc<ModbusSim>),
    Meter(Arc<MeterSim>),
}

impl DtuDevice {
    fn spawn(self, end: DuplexStream, shutdown: watch::Receiver<bool>) {
        tokio::spawn(async move {
            let result = match self {
                DtuDevice::Modbus(sim) => serve_rtu(end, sim, shutdown).await,
                DtuDevice::Meter(sim) => dlt645_meter::serve(end, sim, shutdown).await,
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "device behind simulated DTU stopped");
            }
        });
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DtuStats {
    /// Successful connections to the server, reconnections included.
    pub connections: u64,
    pub heartbeats: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    heartbeats: AtomicU64,
}

/// Clones share their counters, so keep a clone to watch a running DTU.
#[derive(Debug, Clone)]
pub struct DtuSim {
    pub id: String,
    /// Every `interval` of idle line, send these bytes.
    pub heartbeat: Option<(Duration, Vec<u8>)>,
    /// Sent first on every connection; `None` sends the id's bytes, the
    /// usual factory setting.
    pub registration: Option<Vec<u8>>,
    /// Wait between a lost connection (or failed dial) and the next dial.
    pub backoff: Duration,
    counters: Arc<Counters>,
}

impl DtuSim {
    pub fn new(id: impl Into<String>) -> Self {
        DtuSim {
            id: id.into(),
            heartbeat: None,
            registration: None,
            backoff: Duration::from_millis(200),
            counters: Arc::default(),
        }
    }

    pub fn registration_packet(&self) -> Vec<u8> {
        match &self.registration {
            Some(bytes) => bytes.clone(),
            None => self.id.as_bytes().to_vec(),
        }
    }

    pub fn stats(&self) -> DtuStats {
        DtuStats {
            connections: self.counters.connections.load(Ordering::Relaxed),
            heartbeats: self.counters.heartbeats.load(Ordering::Relaxed),
        }
    }

    /// Dials `server` and bridges it to `device` until `shutdown`,
    /// redialling after `backoff` whenever the connection is lost.
    pub async fn run(
        self,
        server: SocketAddr,
        device: DtuDevice,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (device_end, mut line) = tokio::io::duplex(DUPLEX_CAPACITY);
        device.spawn(device_end, shutdown.clone());
        while !is_stopped(&shutdown) {
            let dialled = tokio::select! {
                _ = stopped(&mut shutdown) => return,
                dialled = TcpStream::connect(server) => dialled,
            };
            match dialled {
                Ok(stream) => {
                    self.counters.connections.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = self.session(stream, &mut line, &mut shutdown).await {
                        tracing::debug!(id = %self.id, error = %e, "simulated DTU lost its connection");
                    }
                }
                Err(e) => tracing::debug!(id = %self.id, error = %e, "simulated DTU cannot dial"),
            }
            self.pause(&mut line, &mut shutdown).await;
        }
    }

    /// Waits `backoff`, throwing away whatever the device says meanwhile: a
    /// reply to a request from the lost connection must not reach the next.
    async fn pause(&self, line: &mut DuplexStream, shutdown: &mut watch::Receiver<bool>) {
        let until = Instant::now() + self.backoff;
        let mut scratch = [0u8; 512];
        loop {
            tokio::select! {
                _ = stopped(shutdown) => return,
                _ = sleep_until(until) => return,
                read = line.read(&mut scratch) => if matches!(read, Ok(0) | Err(_)) {
                    // The device is gone; only the timer is left to wait for.
                    sleep_until(until).await;
                    return;
                },
            }
        }
    }

    /// One connection: registration, then forwarding and heartbeats until
    /// either side closes. `Ok` on shutdown or a clean close by the server.
    async fn session(
        &self,
        mut stream: TcpStream,
        line: &mut DuplexStream,
        shutdown: &mut watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let _ = stream.set_nodelay(true);
        stream.write_all(&self.registration_packet()).await?;
        let (mut net_rd, mut net_wr) = stream.split();
        let mut from_net = [0u8; 1024];
        let mut from_device = [0u8; 1024];
        let mut last_traffic = Instant::now();
        loop {
            let heartbeat_due = self
                .heartbeat
                .as_ref()
                .map(|(every, _)| last_traffic + *every);
            let heartbeat = async move {
                match heartbeat_due {
                    Some(at) => sleep_until(at).await,
                    None => pending::<()>().await,
                }
            };
            tokio::select! {
                _ = stopped(shutdown) => return Ok(()),
                read = net_rd.read(&mut from_net) => {
                    let n = read?;
                    if n == 0 {
                        return Ok(());
                    }
                    line.write_all(from_net.get(..n).unwrap_or_default()).await?;
                }
                read = line.read(&mut from_device) => {
                    let n = read?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::BrokenPipe.into());
                    }
                    net_wr.write_all(from_device.get(..n).unwrap_or_default()).await?;
                }
                _ = heartbeat => {
                    if let Some((_, bytes)) = &self.heartbeat {
                        net_wr.write_all(bytes).await?;
                        self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            last_traffic = Instant::now();
        }
    }
}
