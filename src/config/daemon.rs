//! `pollwatch.toml`: how the daemon itself runs — time zone, state, storage,
//! listeners. Enterprises and the duty roster live in their own files.
//!
//! ```toml
//! [daemon]
//! timezone = "Asia/Shanghai"        # HJ 212 DataTime and all displayed times
//! state_dir = "/var/lib/pollwatch"  # default: $STATE_DIRECTORY, else ./state
//!
//! [storage]
//! url = "sqlite:///var/lib/pollwatch/pollwatch.db"   # or postgres://user@host/db
//! max_batch = 20000     # readings per transaction at most
//! linger = "0ms"        # wait this long for more input before committing
//! queue = 4096          # write requests waiting for the writer before sources block
//! sqlite_synchronous = "full"   # "full": a committed batch survives power loss
//! min_free = "1GiB or 5%"       # below this much free disk (the smaller of the two)
//!                               # sources stop being answered; "0" switches it off
//!
//! [http]
//! listen = "127.0.0.1:9180"
//!
//! [hj212]
//! listen = "0.0.0.0:9212"
//!
//! [[factors]]          # local factor codes the built-in catalogue lacks
//! code = "w20117"
//! name = "六价铬"
//! unit = "mg/L"
//! class = "water_pollutant"
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use super::units::{HumanDuration, ListenAddr, MinFree};
use crate::model::FactorClass;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonFile {
    #[serde(default)]
    pub daemon: DaemonSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub hj212: Hj212Section,
    #[serde(default)]
    pub dtu: DtuSection,
    pub mqtt: Option<MqttSection>,
    #[serde(default)]
    pub factors: Vec<ExtraFactor>,
    /// Where alerts are pushed; see [`super::channels`].
    #[serde(default)]
    pub channels: Vec<super::ChannelConfig>,
    /// How findings become alerts; see [`super::alerts`].
    #[serde(default)]
    pub alerts: super::AlertsSection,
    /// The evidence key and the daily anchor; see [`EvidenceSection`].
    #[serde(default)]
    pub evidence: EvidenceSection,
    /// Cluster mode (issue 22); see [`super::cluster`].
    pub cluster: Option<super::ClusterSection>,
}

/// The key alert timelines are chained under, and where the daily anchor goes
/// (issue 18; see `crate::seal` and `crate::evidence::anchor`).
///
/// ```toml
/// [evidence]
/// # 32 random bytes, mode 0600; `pollwatch evidence init-key --out PATH` makes one.
/// # Under systemd: LoadCredential=evidence-key:/etc/pollwatch/evidence.key
/// key_file = "/run/credentials/pollwatch.service/evidence-key"
/// old_key_files = ["/etc/pollwatch/evidence-2025.key"]   # after a rotation
/// anchor_time = "00:10"              # local time the previous day is anchored
/// ```
///
/// Without `key_file` the daemon runs and chains rows unkeyed; check-config
/// warns and `alerts verify` says "not keyed", never "intact".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceSection {
    pub key_file: Option<PathBuf>,
    pub old_key_files: Vec<PathBuf>,
    /// `HH:MM` local; default 00:10.
    pub anchor_time: Option<String>,
}

impl EvidenceSection {
    /// The anchor time as (hour, minute), if it is a valid `HH:MM`.
    pub fn anchor_at(&self) -> Option<(u32, u32)> {
        let t = self.anchor_time.as_deref().unwrap_or("00:10");
        let (h, m) = t.split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60 && t.len() == 5).then_some((h, m))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// IANA zone name; validated against the tz database.
    pub timezone: Option<String>,
    pub state_dir: Option<PathBuf>,
    /// A logger's DataTime later than now + this is not a reading (dead letter
    /// `clock_skew`, finding `clock_skew`). Default 10m; per outlet overridable.
    pub clock_tolerance: Option<HumanDuration>,
    /// A DataTime older than this is not a reading either. Default 35d.
    pub max_data_age: Option<HumanDuration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// `sqlite://PATH` or `postgres://…`; default `sqlite://<state_dir>/pollwatch.db`.
    pub url: Option<String>,
    pub max_batch: usize,
    pub linger: HumanDuration,
    pub queue: usize,
    pub sqlite_synchronous: SqliteSync,
    /// Free space to keep on the SQLite store's file system: below it the writer
    /// holds new data (sources go unanswered and keep it), `/readyz` says why, and
    /// the archive move stops first. See `store::space`.
    pub min_free: MinFree,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            url: None,
            max_batch: 20_000,
            linger: HumanDuration(std::time::Duration::ZERO),
            queue: 4096,
            sqlite_synchronous: SqliteSync::Full,
            min_free: MinFree::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// fsync on every commit: an acknowledged reading survives power loss.
    Full,
    /// WAL default: survives a process crash, may lose the last commits on power loss.
    Normal,
}

/// The HTTP API (health, metrics, readings, status, alerts, reload).
///
/// ```toml
/// [http]
/// listen = "127.0.0.1:9180"
///
/// [[http.tokens]]
/// name = "prometheus"            # logged and audited instead of the secret
/// role = "viewer"                # GET endpoints
/// token_file = "/etc/pollwatch/tokens/prometheus"
///
/// [[http.tokens]]
/// name = "duty-desk"
/// role = "operator"              # also ack, resolve, orders, reload
/// token_file = "/etc/pollwatch/tokens/duty-desk"
/// # token = "…"                  # inline, for tests and the demo only
/// ```
///
/// Clients send `Authorization: Bearer <token>`. Tokens are at least 16
/// characters; a token file holds the token on its first line.
///
/// The web console (`crate::console`) logs in with the same tokens and keeps a
/// session cookie:
///
/// ```toml
/// [http]
/// secure_cookies = true          # behind an HTTPS proxy: cookies only over HTTPS
/// session_lifetime = "12h"       # a duty shift; 5m … 7d
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub listen: ListenAddr,
    pub tokens: Vec<HttpToken>,
    /// Marks the console's session cookie `Secure`. Off by default because the
    /// daemon itself speaks plain HTTP, where a browser would drop such a cookie.
    pub secure_cookies: bool,
    /// How long a console login lasts, from the login (not renewed by use).
    pub session_lifetime: HumanDuration,
    /// A client must send a request's headers within this long (slow or
    /// half-sent requests are closed).
    pub header_read_timeout: HumanDuration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: ListenAddr(([127, 0, 0, 1], 9180).into()),
            tokens: Vec::new(),
            secure_cookies: false,
            session_lifetime: HumanDuration(std::time::Duration::from_secs(12 * 3600)),
            header_read_timeout: HumanDuration(std::time::Duration::from_secs(10)),
            max_connections: 256,
        }
    }
}

#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpToken {
    pub name: String,
    pub role: HttpRole,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

// Hand-written so that a config dumped with {:?} never shows a secret.
impl std::fmt::Debug for HttpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

impl HttpToken {
    /// The secret: inline, or the first line of `token_file`.
    pub fn secret(&self) -> std::io::Result<String> {
        match (&self.token, &self.token_file) {
            (Some(t), _) => Ok(t.clone()),
            (None, Some(path)) => Ok(std::fs::read_to_string(path)?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()),
            (None, None) => Ok(String::new()),
        }
    }
}

/// What a token may do. Operators can do everything viewers can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpRole {
    Viewer,
    Operator,
}

impl HttpRole {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpRole::Viewer => "viewer",
            HttpRole::Operator => "operator",
        }
    }
}

/// The HJ 212 listener and its limits against abuse (the port is usually
/// reachable from the internet, and scanners find it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hj212Section {
    pub listen: ListenAddr,
    /// Connections served at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: HumanDuration,
    /// A connection that has not sent one authenticated frame by then is closed
    /// (scanners hold connections open otherwise).
    pub handshake_timeout: HumanDuration,
    /// Consecutive failed frames (unknown MN, wrong password, bad CRC, unparseable)
    /// before we hang up.
    pub max_auth_failures: u32,
    /// Largest data segment accepted (the standard says 1024; real ones are longer).
    pub max_frame_len: usize,
    /// Backfill (history requests, 反控): request starts per second, server-wide.
    pub backfill_rate: u32,
    /// Hours older than this are not asked for (the 10-day repair window).
    pub backfill_max_age: HumanDuration,
    /// A history request with no 9011, data or 9012 for this long ends `timeout`.
    pub backfill_timeout: HumanDuration,
    /// Connections served at once from one address; more are closed at once.
    pub max_connections_per_address: usize,
    /// Wrong MN or password from one address within 15 minutes before that
    /// address is refused (`locked_out`) until the oldest is 15 minutes old; 0: never.
    pub lockout_after: usize,
    /// Dead-letter rows written per address per minute; beyond it refusals are
    /// only counted (a flood cannot fill the database).
    pub dead_letters_per_minute: u32,
    /// Dead letters one connection may cause within a minute; the next one closes
    /// it (unanswered: a frame is never acknowledged without being recorded).
    pub dead_letters_per_connection: u32,
}

impl Default for Hj212Section {
    fn default() -> Self {
        Hj212Section {
            listen: ListenAddr(([0, 0, 0, 0], 9212).into()),
            max_connections: 4096,
            idle_timeout: HumanDuration(std::time::Duration::from_secs(600)),
            handshake_timeout: HumanDuration(std::time::Duration::from_secs(15)),
            max_auth_failures: 5,
            max_frame_len: 9999,
            backfill_rate: 10,
            backfill_max_age: HumanDuration(std::time::Duration::from_secs(10 * 86400)),
            backfill_timeout: HumanDuration(std::time::Duration::from_secs(120)),
            max_connections_per_address: 16,
            lockout_after: 20,
            dead_letters_per_minute: 60,
            dead_letters_per_connection: 50,
        }
    }
}

/// DTU dial-in: 4G/Ethernet DTUs connect here and are identified by their
/// registration packet (the id, optionally wrapped in a vendor prefix/suffix).
/// Only bound when some device has `transport = "dtu"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DtuSection {
    pub listen: ListenAddr,
    pub registration_timeout: HumanDuration,
    pub registration_prefix: String,
    pub registration_suffix: String,
    /// The idle heartbeat as text (`"HB"`) …
    pub heartbeat: String,
    /// … or as hex bytes (`"FE"`), for binary heartbeats.
    pub heartbeat_hex: Option<String>,
    /// Connections held at once (registered or registering); more are closed.
    pub max_connections: usize,
    /// Connections held at once from one address.
    pub max_connections_per_address: usize,
    /// Dead-letter rows (unknown or refused registrations) per address per minute.
    pub dead_letters_per_minute: u32,
}

impl Default for DtuSection {
    fn default() -> Self {
        DtuSection {
            listen: ListenAddr(([0, 0, 0, 0], 9300).into()),
            registration_timeout: HumanDuration(std::time::Duration::from_secs(10)),
            registration_prefix: String::new(),
            registration_suffix: String::new(),
            heartbeat: String::new(),
            heartbeat_hex: None,
            max_connections: 1024,
            max_connections_per_address: 16,
            dead_letters_per_minute: 60,
        }
    }
}

impl DtuSection {
    /// The heartbeat bytes; `None` if `heartbeat_hex` is not hex.
    pub fn heartbeat_bytes(&self) -> Option<Vec<u8>> {
        match &self.heartbeat_hex {
            None => Some(self.heartbeat.as_bytes().to_vec()),
            Some(hex) => {
                let hex: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
                if !hex.len().is_multiple_of(2) {
                    return None;
                }
                (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|b| u8::from_str_radix(b, 16).ok())
                    })
                    .collect()
            }
        }
    }
}

/// The MQTT broker pollwatch subscribes to (gateways and loggers publish there).
///
/// ```toml
/// [mqtt]
/// url = "mqtt://127.0.0.1:1883"
/// client_id = "pollwatch-1"          # the persistent session is kept under this id
/// username = "pollwatch"
/// password_file = "/etc/pollwatch/mqtt.password"   # or password_env = "PW_MQTT_PASSWORD"
///
/// # TLS: url = "mqtts://broker.example.gov.cn:8883", and
/// # ca_file = "/etc/pollwatch/mqtt-ca.pem"      # default: the system's CA bundle
/// # client_cert_file = "/etc/pollwatch/mqtt-client.pem"   # with client_key_file,
/// # client_key_file = "/etc/pollwatch/mqtt-client.key"    # when the broker asks for one
///
/// [[mqtt.subscriptions]]
/// topic = "power/{enterprise}/{meter}/data"   # named levels are subscribed as +
/// format = "json"                             # or "hj212"
/// shared_group = "pollwatch"                  # optional: $share/<group>/… for scale-out
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// `mqtt://host[:1883]` or `mqtts://host[:8883]`.
    pub url: String,
    /// mqtts: CA certificates (PEM) that the broker's certificate must chain to.
    pub ca_file: Option<std::path::PathBuf>,
    /// mqtts: our certificate chain and key (PEM), for brokers that require them.
    pub client_cert_file: Option<std::path::PathBuf>,
    pub client_key_file: Option<std::path::PathBuf>,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    pub username: Option<String>,
    pub password_file: Option<std::path::PathBuf>,
    pub password_env: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive: HumanDuration,
    /// Largest incoming packet; rumqttc's own default (10 KiB) drops real gateways.
    #[serde(default = "default_max_packet")]
    pub max_packet_size: usize,
    #[serde(default)]
    pub subscriptions: Vec<MqttSubscription>,
}

fn default_keep_alive() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

fn default_max_packet() -> usize {
    1024 * 1024
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSubscription {
    pub topic: String,
    pub format: MqttFormat,
    pub shared_group: Option<String>,
    /// JSON: where the time is (default `ts`: RFC 3339 or epoch milliseconds).
    #[serde(default = "default_ts_field")]
    pub ts_field: String,
    /// JSON: the object of factor → number (default `values`).
    #[serde(default = "default_values_field")]
    pub values_field: String,
    /// JSON: the object of factor → HJ 212 flag letter (default `flags`; optional).
    #[serde(default = "default_flags_field")]
    pub flags_field: String,
    /// JSON: gateway's own names → factor codes, e.g. `{ P = "e_p" }`.
    #[serde(default)]
    pub factor_map: std::collections::BTreeMap<String, String>,
}

fn default_ts_field() -> String {
    "ts".into()
}
fn default_values_field() -> String {
    "values".into()
}
fn default_flags_field() -> String {
    "flags".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MqttFormat {
    Json,
    Hj212,
}

fn default_client_id() -> String {
    "pollwatch".to_string()
}

/// A factor code the built-in catalogue does not know, declared by the site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraFactor {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub unit: String,
    pub class: ExtraFactorClass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtraFactorClass {
    GasPollutant,
    GasParameter,
    WaterPollutant,
    WaterParameter,
    Electrical,
}

impl From<ExtraFactorClass> for FactorClass {
    fn from(c: ExtraFactorClass) -> Self {
        match c {
            ExtraFactorClass::GasPollutant => FactorClass::GasPollutant,
            ExtraFactorClass::GasParameter => FactorClass::GasParameter,
            ExtraFactorClass::WaterPollutant => FactorClass::WaterPollutant,
            ExtraFactorClass::WaterParameter => FactorClass::WaterParameter,
            ExtraFactorClass::Electrical => FactorClass::Electrical,
        }
    }
}
