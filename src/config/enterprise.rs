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
//! platform = "provincial"          # or "city": the monitoring platform it reports to
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
    /// Which online-monitoring platform the enterprise's loggers also report to
    /// (the monthly report counts enterprises by it).
    pub platform: Option<Platform>,
    #[serde(default)]
    pub contacts: Vec<Contact>,
    #[serde(default)]
    pub outlets: Vec<Outlet>,
    #[serde(default)]
    pub meters: Vec<Meter>,
    /// Production/treatment power linkage (see `src/rules/linkage.rs`).
    #[serde(default)]
    pub linkages: Vec<Linkage>,
    /// Stop or limit orders with a time window.
    #[serde(default)]
    pub orders: Vec<Order>,
    /// Annual permitted emission quantities.
    #[serde(default)]
    pub emission_caps: Vec<EmissionCap>,
}

/// `platform = "provincial" | "city"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Provincial,
    City,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Provincial => "provincial",
            Platform::City => "city",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Platform::Provincial => "省级平台",
            Platform::City => "市级平台",
        }
    }
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
    /// Which hourly/daily averages are judged when the logger supplies them and we
    /// can also compute them: `supplied` (default; computed is a cross-check) or
    /// `computed`.
    #[serde(default)]
    pub aggregates: Aggregates,
    /// Valid minutes for a valid hour (HJ 75: 45).
    pub min_valid_minutes: Option<u32>,
    /// Valid hours for a valid day (HJ 75: 20).
    pub min_valid_hours: Option<u32>,
    /// Relative difference between supplied and computed averages above which a
    /// `data_mismatch` is raised. Default 0.05.
    pub mismatch_tolerance: Option<f64>,
    /// No data for this long → `offline`. Default 30m.
    pub offline_after: Option<super::HumanDuration>,
    /// Identical values for this long → `constant_value`. Default 4h.
    pub constant_for: Option<super::HumanDuration>,
    /// Values within this absolute difference count as identical. Default 1e-6.
    pub constant_epsilon: Option<f64>,
    /// Share of the day flagged M or C above which `maintenance_overuse` is raised.
    /// Default 0.1.
    pub maintenance_max_share: Option<f64>,
    /// Analyzer ranges: a value above `range` is `over_range`.
    #[serde(default)]
    pub analyzers: Vec<Analyzer>,
    /// Overrides `[daemon] clock_tolerance` for this outlet's logger.
    pub clock_tolerance: Option<super::HumanDuration>,
    /// Overrides `[daemon] max_data_age` for this outlet's logger.
    pub max_data_age: Option<super::HumanDuration>,
    /// Waste incineration: the furnace temperature rule on the logger's 5-minute
    /// means (HJ 212-2025 CN 2111).
    pub furnace: Option<Furnace>,
    /// Ask this outlet's logger for the hours we lack (history requests, 反控).
    /// Default true.
    #[serde(default = "default_true")]
    pub backfill: bool,
    /// A closed day whose effective transmission rate (valid / expected hours) of
    /// a limited factor is below this raises `low_transmission`. Default 0.9.
    pub min_effective_rate: Option<f64>,
}

fn default_true() -> bool {
    true
}

impl Outlet {
    pub const DEFAULT_MIN_VALID_MINUTES: u32 = 45;
    pub const DEFAULT_MIN_VALID_HOURS: u32 = 20;
    pub const DEFAULT_MISMATCH_TOLERANCE: f64 = 0.05;
    pub const DEFAULT_OFFLINE_AFTER: std::time::Duration = std::time::Duration::from_secs(30 * 60);
    pub const DEFAULT_CONSTANT_FOR: std::time::Duration = std::time::Duration::from_secs(4 * 3600);
    pub const DEFAULT_CONSTANT_EPSILON: f64 = 1e-6;
    pub const DEFAULT_MAINTENANCE_MAX_SHARE: f64 = 0.1;
    pub const DEFAULT_MIN_EFFECTIVE_RATE: f64 = 0.9;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregates {
    #[default]
    Supplied,
    Computed,
}

impl Aggregates {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregates::Supplied => "supplied",
            Aggregates::Computed => "computed",
        }
    }
}

/// An analyzer's measuring range on an outlet.
///
/// ```toml
/// analyzers = [{ factor = "a21026", range = 200.0 }]
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Analyzer {
    pub factor: String,
    /// Upper end of the range, in the factor's unit.
    pub range: f64,
}

/// The 850 ℃ rule of a waste incinerator (生活垃圾焚烧发电厂自动监测数据应用管理规定):
/// a 5-minute mean furnace temperature below `min_c` while the furnace burns is a
/// `furnace_temperature` finding, and more than `max_per_day` of them in one natural
/// day is a violation. Values the logger flags as not burning or not valid (F stopped,
/// M maintenance, D fault, C calibration, B communication) are not counted.
///
/// ```toml
/// furnace = { factor = "a01902", min_c = 850.0, max_per_day = 5 }
/// ```
///
/// `factor` is the code the logger sends the furnace temperature under in its 2111
/// uploads (our references do not fix one; declare a local code with `[[factors]]`
/// if it is not in the catalogue).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Furnace {
    pub factor: String,
    /// Lowest compliant 5-minute mean, ℃. Default 850.
    pub min_c: Option<f64>,
    /// Below-minimum means a natural day may hold before it is a violation. Default 5.
    pub max_per_day: Option<u32>,
}

impl Furnace {
    pub const DEFAULT_MIN_C: f64 = 850.0;
    pub const DEFAULT_MAX_PER_DAY: u32 = 5;
}

/// How a logger proves it speaks for this outlet, and what we ask of it.
///
/// ```toml
/// hj212 = { mn = "32050600000001", password = "123456", set_time_on_connect = true, rtd_interval = "30s" }
/// # An HJ 212-2025 logger that encrypts its data areas (SM4): the key is 32 hex
/// # digits in a file (or an environment variable, sm4_key_env), never in this file.
/// hj212 = { mn = "010000A8900016F000PW0001", password = "123456", sm4_key_file = "/etc/pollwatch/sm4/DA001.key", require_encryption = true }
/// ```
///
/// The key is read when the config is loaded (`check-config` reports a missing or
/// malformed key with the file or variable, never the key, and `run` goes on with
/// that logger keyless; see `keys.rs`); a relative `sm4_key_file` is relative to
/// the config directory. Loading it with the config
/// means a reload after the sysadmin rotates the key file puts the new key in force
/// for that logger, and only that logger is touched.
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
    /// File holding the logger's SM4 key (HJ 212-2025 encrypted data areas).
    pub sm4_key_file: Option<std::path::PathBuf>,
    /// Environment variable holding the key, instead of a file.
    pub sm4_key_env: Option<String>,
    /// Refuse plaintext data uploads (CN 2xxx) from this logger: dead letter
    /// `not_encrypted`, not answered. Default false (2017 loggers do not encrypt).
    #[serde(default)]
    pub require_encryption: bool,
    /// The key itself, read at load time from `sm4_key_file` or `sm4_key_env`.
    #[serde(skip)]
    pub sm4_key: Option<crate::sources::hj212::codec::crypt::Sm4Key>,
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
    /// Early warning at this fraction of `max`. Default 0.8 for hour and day limits;
    /// instant limits warn only when it is set.
    pub warn_at: Option<f64>,
    /// Instant limits: raise only when the value stays outside for this long.
    #[serde(rename = "for")]
    pub for_: Option<super::HumanDuration>,
    /// Instant limits: raise only after this many consecutive values outside.
    pub repeat: Option<u32>,
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
    /// Usual active power (kW) in production; orders are a share of it.
    pub baseline_kw: Option<f64>,
    /// No data for this long → `offline`. Default 30m.
    pub offline_after: Option<super::HumanDuration>,
    /// HJ 212-2025 power-use data: this meter's active power arrives in the uploads
    /// of one of the enterprise's outlet loggers, under `factor`.
    pub hj212: Option<MeterHj212>,
}

/// Where an HJ 212-2025 logger sends a meter's power (the 2025 standard adds the
/// power use of production and treatment equipment to the logger's uploads), so
/// linkage rules work without Modbus.
///
/// ```toml
/// [[meters]]
/// id = "M-FGD"
/// name = "脱硫系统总电源"
/// role = "treatment"
/// hj212 = { mn = "010000A8900016F000PW0001", factor = "e40001", scale = 1.0 }
/// ```
///
/// `mn` must be the MN of one of this enterprise's outlets (the logger that
/// carries the power data); `factor` is the code it sends the equipment's active
/// power under; `scale` turns the value into kW (default 1.0; 0.001 for W).
/// Values of that code are stored as the meter's power (`e_p`), not as the
/// outlet's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterHj212 {
    pub mn: String,
    pub factor: String,
    pub scale: Option<f64>,
}

/// Treatment must run while production runs (分表计电).
///
/// ```toml
/// [[linkages]]
/// id = "boiler1-fgd"
/// production = ["M-BOILER1"]        # meters; production runs when any is above
/// production_on_kw = 50.0           #   this active power (e_p, kW)
/// treatment = ["M-FGD"]             # meters; their powers are summed
/// treatment_normal_kw = 400.0       # usual treatment power while production runs
/// off_below = 0.1                   # below 10 % of normal = not running (default)
/// underpowered_below = 0.5          # below 50 % of normal = underpowered (default)
/// grace = "15m"                     # how long before it is a finding (default)
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Linkage {
    pub id: String,
    pub production: Vec<String>,
    pub production_on_kw: f64,
    pub treatment: Vec<String>,
    pub treatment_normal_kw: f64,
    pub off_below: Option<f64>,
    pub underpowered_below: Option<f64>,
    pub grace: Option<super::HumanDuration>,
}

impl Linkage {
    pub const DEFAULT_OFF_BELOW: f64 = 0.1;
    pub const DEFAULT_UNDERPOWERED_BELOW: f64 = 0.5;
    pub const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(15 * 60);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    /// Stop production (停产): power at most `allowed_share` (default 0.1, standby).
    Stop,
    /// Limit production (限产): power at most `allowed_share` of baseline.
    Limit,
}

impl OrderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::Stop => "stop",
            OrderKind::Limit => "limit",
        }
    }
}

/// A stop or limit order (heavy-pollution-weather response, 错峰生产).
///
/// ```toml
/// [[orders]]
/// id = "2026-11-orange"
/// kind = "limit"                    # stop | limit
/// start = "2026-11-28T00:00:00+08:00"
/// end = "2026-11-30T00:00:00+08:00" # exclusive
/// allowed_share = 0.6               # of baseline (required for limit; stop: 0.1)
/// meters = ["M-DYE1", "M-DYE2"]     # default: every production meter
/// baseline_kw = 900.0               # default: sum of the meters' baseline_kw
/// grace = "15m"                     # default
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub id: String,
    pub kind: OrderKind,
    #[serde(deserialize_with = "offset_datetime")]
    pub start: chrono::DateTime<chrono::FixedOffset>,
    #[serde(deserialize_with = "offset_datetime")]
    pub end: chrono::DateTime<chrono::FixedOffset>,
    pub allowed_share: Option<f64>,
    #[serde(default)]
    pub meters: Vec<String>,
    pub baseline_kw: Option<f64>,
    pub grace: Option<super::HumanDuration>,
}

impl Order {
    pub const DEFAULT_STOP_SHARE: f64 = 0.1;
    pub const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(15 * 60);
}

/// An annual permitted emission quantity (许可排放量).
///
/// ```toml
/// [[emission_caps]]
/// factor = "a21026"
/// tonnes_per_year = 120.0
/// outlets = ["DA001", "DA002"]      # default: every outlet where the factor belongs
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmissionCap {
    pub factor: String,
    pub tonnes_per_year: f64,
    #[serde(default)]
    pub outlets: Vec<String>,
}

/// A time with its UTC offset, written either as a TOML datetime
/// (`start = 2026-11-28T00:00:00+08:00`) or as a string. A time without an offset is
/// refused: an order's window must not depend on the server's time zone.
fn offset_datetime<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<chrono::DateTime<chrono::FixedOffset>, D::Error> {
    let text = match toml::Value::deserialize(d)? {
        toml::Value::String(s) => s,
        toml::Value::Datetime(dt) => dt.to_string(),
        other => {
            return Err(serde::de::Error::custom(format!(
                "expected a date-time such as 2026-11-28T00:00:00+08:00, got {}",
                other.type_str()
            )))
        }
    };
    chrono::DateTime::parse_from_rfc3339(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid date-time {text:?} ({e}): write it with its offset, e.g. 2026-11-28T00:00:00+08:00"
        ))
    })
}
