//! Polled devices inside an enterprise file: a power meter's `device` table, or an
//! outlet's `[[outlets.devices]]` (analyzers read directly rather than through a
//! logger). Each device says how to reach it and which values to read.
//!
//! ```toml
//! [meters.device]
//! protocol = "modbus"            # or "dlt645"
//! transport = "tcp"              # "tcp" | "rtu" | "rtu-over-tcp" | "dtu"
//! address = "10.8.0.21:502"      # tcp, rtu-over-tcp
//! # port = "/dev/ttyUSB0"        # rtu: serial line, with baud = 9600, parity = "none",
//! #                              #      data_bits = 8, stop_bits = 1
//! # dtu_id = "860000000000001"   # dtu: the id the DTU registers with
//! # dtu_allow = ["10.8.0.0/16"]  # dtu: addresses it may dial in from (default: any)
//! # dtu_secret = "k3Vq…"         # dtu: then it registers as "<id>:<secret>"
//! unit = 1                       # Modbus unit id (dlt645: meter_address = "000000000161")
//! interval = "10s"               # how often to read
//! timeout = "1s"                 # per request
//! gap = "20ms"                   # quiet time between requests on a shared line
//!
//! [[meters.device.points]]
//! factor = "e_p"                 # what the value is
//! register = "input"             # holding | input | coil | discrete
//! address = 52                   # 0-based protocol address (register 30053 in PLC style)
//! type = "f32"                   # u16 i16 u32 i32 u64 i64 f32 f64 bool
//! order = "ABCD"                 # ABCD (big-endian) | DCBA | BADC | CDAB
//! scale = 0.001                  # W → kW; also offset, raw_range = { raw_min, raw_max, eng_min, eng_max }
//!
//! # dlt645 points name a data identifier instead:
//! # [[meters.device.points]]
//! # factor = "e_ep"
//! # di = "00000000"
//! ```

use serde::Deserialize;

use super::units::HumanDuration;
use crate::sources::modbus::decode::{DataType, WordOrder};
use crate::sources::modbus::plan::RegisterKind;
use crate::sources::modbus::scale::{RawRange, StatusMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceProtocol {
    Modbus,
    Dlt645,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    Tcp,
    Rtu,
    RtuOverTcp,
    Dtu,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Rtu => "rtu",
            Transport::RtuOverTcp => "rtu-over-tcp",
            Transport::Dtu => "dtu",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Name in logs, status and metrics; default: the meter's id, or
    /// `<outlet>-<n>` for an outlet's devices.
    pub id: Option<String>,
    pub protocol: DeviceProtocol,
    pub transport: Transport,
    pub address: Option<String>,
    pub port: Option<String>,
    pub baud: Option<u32>,
    pub parity: Option<Parity>,
    pub data_bits: Option<u8>,
    pub stop_bits: Option<u8>,
    pub dtu_id: Option<String>,
    /// Addresses or networks (`10.8.0.0/16`) the DTU may register from; empty: any.
    #[serde(default)]
    pub dtu_allow: Vec<String>,
    /// A shared secret the DTU's registration packet carries after its id
    /// (`<id>:<secret>`); devices behind the same DTU must agree on it.
    pub dtu_secret: Option<String>,
    pub unit: Option<u8>,
    pub meter_address: Option<String>,
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Default: none on TCP, 20 ms on a serial line or behind a DTU (comfortably
    /// above Modbus t3.5 at 2400 baud and up).
    pub gap: Option<HumanDuration>,
    /// Unused registers a merged read may span (default 8).
    pub max_gap: Option<u16>,
    /// Registers per read at most (default 125; some devices need less).
    pub max_registers: Option<u16>,
    pub status: Option<StatusPoint>,
    #[serde(default)]
    pub points: Vec<Point>,
}

fn default_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}

fn default_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1))
}

impl Device {
    pub fn gap(&self) -> std::time::Duration {
        match (self.gap, self.transport) {
            (Some(g), _) => g.0,
            (None, Transport::Tcp) => std::time::Duration::ZERO,
            (None, _) => std::time::Duration::from_millis(20),
        }
    }
}

/// One value read from a device.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub factor: String,
    pub register: Option<RegisterKind>,
    pub address: Option<u16>,
    #[serde(rename = "type")]
    pub data_type: Option<DataType>,
    #[serde(default)]
    pub order: WordOrder,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub raw_range: Option<RawRange>,
    /// Start a new read request at this point (never merged with the one before).
    #[serde(default)]
    pub no_merge: bool,
    /// DL/T 645 data identifier, 8 hex digits (`"02030000"`).
    pub di: Option<String>,
}

/// A status register whose value sets the HJ 212 flag of every value read in
/// the same poll, e.g. a CEMS analyzer's 0 running / 1 maintenance / 2 fault.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPoint {
    pub register: RegisterKind,
    pub address: u16,
    #[serde(rename = "type", default = "default_status_type")]
    pub data_type: DataType,
    #[serde(default)]
    pub order: WordOrder,
    pub map: StatusMap,
}

fn default_status_type() -> DataType {
    DataType::U16
}

/// A `dtu_allow` entry: an address (`10.8.0.5`) or a network (`10.8.0.0/16`).
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}
