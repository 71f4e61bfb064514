//! `enterprises/*.toml`: one file per enterprise — its outlets with their permit
//! limits and HJ 212 identity, and its power-usage meters. Adding an enterprise is
//! dropping one file; nothing else changes.
//!
//! ```toml
//! id = "91320500MA1XXXXX0A"        # unified social credit code, unique
//! name = "苏州某热电有限公司"
//! district = "吴中区"
//! industry = "火电"
//! positive_list = false            # 正面清单: supervised off-site only
//! contacts = [{ name = "王工", role = "环保专员", mobile = "13800000000" }]
//!
//! [[outlets]]
//! id = "DA001"
//! name = "1#锅炉烟囱"
//! kind = "flue_gas"                # or "wastewater"
//! o2_reference = 6.0               # % O2 the limits refer to (GB 13223: 6)
//! hj212 = { mn = "88888880000001", password = "123456" }
//!
//! [[outlets.limits]]
//! factor = "a21026"                # HJ 212-2017 code
//! max = 35.0                       # mg/m³ at reference O2; exceeded when above
//! basis = "hour"                   # instant | hour | day
//! warn_at = 0.8                    # early warning at 80 % of max (default 0.8)
//!
//! [[meters]]
//! id = "M01"
//! name = "脱硫系统总电源"
//! role = "treatment"               # production | treatment | total
//! ```

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enterprise {
    pub id: String,
    pub name: String,
    pub district: String,
    pub industry: String,
    #[serde(default)]
    pub positive_list: bool,
    #[serde(default)]
    pub contacts: Vec<Contact>,
    #[serde(default)]
    pub outlets: Vec<Outlet>,
    #[serde(default)]
    pub meters: Vec<Meter>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    pub role: Option<String>,
    pub mobile: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutletKind {
    FlueGas,
    Wastewater,
}

impl OutletKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutletKind::FlueGas => "flue_gas",
            OutletKind::Wastewater => "wastewater",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outlet {
    pub id: String,
    pub name: String,
    pub kind: OutletKind,
    /// Reference O2 (%) that flue-gas limits are stated at.
    pub o2_reference: Option<f64>,
    pub hj212: Option<Hj212Identity>,
    #[serde(default)]
    pub limits: Vec<Limit>,
    /// Analyzers polled directly (most outlets report through an HJ 212 logger).
    #[serde(default)]
    pub devices: Vec<super::Device>,
}

/// How a logger proves it speaks for this outlet, and what we ask of it.
///
/// ```toml
/// hj212 = { mn = "32050600000001", password = "123456", set_time_on_connect = true, rtd_interval = "30s" }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hj212Identity {
    pub mn: String,
    pub password: String,
    /// `"hj212"` (the standard's CRC) or `"modbus_swapped"`, which some old loggers
    /// send; only ever accepted for the MN it is configured on.
    #[serde(default)]
    pub crc: Hj212Crc,
    /// Send 1012 (set time) with our clock when the logger connects.
    #[serde(default)]
    pub set_time_on_connect: bool,
    /// Send 1062 (set real-time interval) when the logger connects.
    pub rtd_interval: Option<super::HumanDuration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hj212Crc {
    #[default]
    Hj212,
    ModbusSwapped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Every value on its own (pH).
    Instant,
    /// The hourly average (flue gas: oxygen-corrected).
    Hour,
    /// The daily average (wastewater: flow-weighted).
    Day,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Instant => "instant",
            Basis::Hour => "hour",
            Basis::Day => "day",
        }
    }
}

/// A permit limit. Exceeded strictly above `max` or strictly below `min`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub factor: String,
    pub max: Option<f64>,
    pub min: Option<f64>,
    pub basis: Basis,
    /// Early warning at this fraction of `max`. Default 0.8.
    pub warn_at: Option<f64>,
}

impl Limit {
    pub const DEFAULT_WARN_AT: f64 = 0.8;

    pub fn warn_at(&self) -> f64 {
        self.warn_at.unwrap_or(Self::DEFAULT_WARN_AT)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeterRole {
    /// On production (pollution-producing) equipment.
    Production,
    /// On pollution-control equipment.
    Treatment,
    /// The enterprise's total supply.
    Total,
}

impl MeterRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MeterRole::Production => "production",
            MeterRole::Treatment => "treatment",
            MeterRole::Total => "total",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meter {
    pub id: String,
    pub name: String,
    pub role: MeterRole,
    /// How the meter is read, when pollwatch polls it (MQTT meters publish instead).
    pub device: Option<super::Device>,
}
