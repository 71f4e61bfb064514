//! A line is one physical channel to devices: a TCP connection to a gateway, a
//! serial port, or a socket carrying RTU frames. Devices that share a line are
//! polled in turn, with a quiet gap between requests; devices on different lines
//! are polled by different tasks and never wait for each other.
//!
//! The connection is opened lazily and dropped after any timeout, transport error
//! or mismatched reply, so that bytes a slow device sends late can never be taken
//! for the answer to the next request.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_modbus::client::Context;
use tokio_modbus::Slave;

use super::dtu::{DtuHub, HeartbeatFilter};
use super::modbus_tcp::TcpMaster;
use crate::config::{Device, DeviceProtocol, Parity, Transport};

/// Where a line goes; devices with equal endpoints share a line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Tcp(String),
    RtuOverTcp(String),
    Serial {
        port: String,
        baud: u32,
        parity: String,
        data_bits: u8,
        stop_bits: u8,
    },
    Dtu(String),
}

impl Endpoint {
    pub fn of(d: &Device) -> Endpoint {
        match d.transport {
            Transport::Tcp => Endpoint::Tcp(d.address.clone().unwrap_or_default()),
            Transport::RtuOverTcp => Endpoint::RtuOverTcp(d.address.clone().unwrap_or_default()),
            Transport::Rtu => Endpoint::Serial {
                port: d.port.clone().unwrap_or_default(),
                baud: d.baud.unwrap_or(match d.protocol {
                    DeviceProtocol::Modbus => 9600,
                    DeviceProtocol::Dlt645 => 2400,
                }),
                parity: format!(
                    "{:?}",
                    d.parity.unwrap_or(match d.protocol {
                        DeviceProtocol::Modbus => Parity::None,
                        DeviceProtocol::Dlt645 => Parity::Even,
                    })
                ),
                data_bits: d.data_bits.unwrap_or(8),
                stop_bits: d.stop_bits.unwrap_or(1),
            },
            Transport::Dtu => Endpoint::Dtu(d.dtu_id.clone().unwrap_or_default()),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
            Endpoint::RtuOverTcp(a) => write!(f, "rtu-over-tcp://{a}"),
            Endpoint::Serial { port, baud, .. } => write!(f, "{port}@{baud}"),
            Endpoint::Dtu(id) => write!(f, "dtu:{id}"),
        }
    }
}

pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

pub enum Link {
    /// Modbus TCP to a gateway: pollwatch's own master ([`super::modbus_tcp`]).
    ModbusTcp(Box<TcpMaster>),
    /// Modbus RTU framing over a byte stream (tokio-modbus).
    Modbus(Context),
    Bytes(Box<dyn ByteStream>),
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {endpoint}: {source}")]
    Io {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open serial port {port}: {source}")]
    Serial {
        port: String,
        #[source]
        source: tokio_serial::Error,
    },
    #[error("connecting to {0} timed out")]
    Timeout(String),
    #[error("DTU {0} has not dialled in (or dropped its connection)")]
    DtuNotConnected(String),
}

pub struct Line {
    pub endpoint: Endpoint,
    gap: Duration,
    link: Option<(DeviceProtocol, Link)>,
    last_request: Option<Instant>,
    /// Where DTU connections come from, and the heartbeat to strip.
    dtu: Option<(Arc<DtuHub>, Vec<u8>)>,
    /// Generation of the DTU connection in use.
    dtu_generation: u64,
}

impl Line {
    pub fn new(endpoint: Endpoint, gap: Duration, dtu: Option<(Arc<DtuHub>, Vec<u8>)>) -> Self {
        Line {
            endpoint,
            gap,
            link: None,
            last_request: None,
            dtu,
            dtu_generation: 0,
        }
    }

    /// A reload changed a device's quiet gap; the connection stays.
    pub fn set_gap(&mut self, gap: Duration) {
        self.gap = gap;
    }

    /// Waits out the quiet gap the line needs between requests (no timer at all
    /// when it has passed, as it always has on a TCP gateway).
    pub async fn pace(&mut self) {
        if let Some(at) = self.last_request.map(|last| last + self.gap) {
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
        }
    }

    pub fn mark(&mut self) {
        self.last_request = Some(Instant::now());
    }

    /// Forgets the connection; the next poll opens a fresh one.
    pub fn drop_link(&mut self) {
        self.link = None;
    }

    /// The connection for `protocol`, opened if needed.
    pub async fn link(
        &mut self,
        protocol: DeviceProtocol,
        timeout: Duration,
    ) -> Result<&mut Link, ConnectError> {
        if self.link.as_ref().is_some_and(|(p, _)| *p != protocol) {
            self.link = None;
        }
        if let (Endpoint::Dtu(id), Some((hub, heartbeat))) = (&self.endpoint, &self.dtu) {
            // A DTU that dialled in again replaces the connection we hold.
            if hub.generation(id) != self.dtu_generation {
                if let Some((generation, stream, lease)) = hub.take(id) {
                    self.dtu_generation = generation;
                    let stream: Box<dyn ByteStream> =
                        Box::new(HeartbeatFilter::new(stream, heartbeat.clone()).leased(lease));
                    self.link = Some((protocol, over_bytes(stream, protocol)));
                }
            }
            return match self.link.as_mut() {
                Some((_, link)) => Ok(link),
                None => Err(ConnectError::DtuNotConnected(id.clone())),
            };
        }
        if self.link.is_none() {
            let link = tokio::time::timeout(timeout, connect(&self.endpoint, protocol))
                .await
                .map_err(|_| ConnectError::Timeout(self.endpoint.to_string()))??;
            self.link = Some((protocol, link));
        }
        match self.link.as_mut() {
            Some((_, link)) => Ok(link),
            None => Err(ConnectError::Timeout(self.endpoint.to_string())),
        }
    }
}

async fn connect(endpoint: &Endpoint, protocol: DeviceProtocol) -> Result<Link, ConnectError> {
    let stream: Box<dyn ByteStream> = match endpoint {
        Endpoint::Tcp(addr) | Endpoint::RtuOverTcp(addr) => {
            let s = TcpStream::connect(addr.as_str())
                .await
                .map_err(|source| ConnectError::Io {
                    endpoint: endpoint.to_string(),
                    source,
                })?;
            let _ = s.set_nodelay(true);
            if matches!(endpoint, Endpoint::Tcp(_)) && protocol == DeviceProtocol::Modbus {
                return Ok(Link::ModbusTcp(Box::new(TcpMaster::new(s))));
            }
            Box::new(s)
        }
        Endpoint::Serial {
            port,
            baud,
            parity,
            data_bits,
            stop_bits,
        } => {
            use tokio_serial::SerialPortBuilderExt;
            let builder = tokio_serial::new(port.as_str(), *baud)
                .parity(match parity.as_str() {
                    "Even" => tokio_serial::Parity::Even,
                    "Odd" => tokio_serial::Parity::Odd,
                    _ => tokio_serial::Parity::None,
                })
                .data_bits(match data_bits {
                    5 => tokio_serial::DataBits::Five,
                    6 => tokio_serial::DataBits::Six,
                    7 => tokio_serial::DataBits::Seven,
                    _ => tokio_serial::DataBits::Eight,
                })
                .stop_bits(if *stop_bits == 2 {
                    tokio_serial::StopBits::Two
                } else {
                    tokio_serial::StopBits::One
                });
            let s = builder
                .open_native_async()
                .map_err(|source| ConnectError::Serial {
                    port: port.clone(),
                    source,
                })?;
            Box::new(s)
        }
        Endpoint::Dtu(id) => return Err(ConnectError::DtuNotConnected(id.clone())),
    };
    Ok(over_bytes(stream, protocol))
}

/// RTU or DL/T 645 framing over a byte stream.
fn over_bytes(stream: Box<dyn ByteStream>, protocol: DeviceProtocol) -> Link {
    match protocol {
        DeviceProtocol::Modbus => {
            Link::Modbus(tokio_modbus::client::rtu::attach_slave(stream, Slave(1)))
        }
        DeviceProtocol::Dlt645 => Link::Bytes(stream),
    }
}
