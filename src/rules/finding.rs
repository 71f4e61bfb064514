//! What the evaluator hands on: a [`Finding`], with everything an officer (and a
//! court) needs to check it without us — the values and their flags, the window,
//! the computed numbers, the limit and the config key it came from, and the rule
//! with its parameters.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Flag, Id, Location, UnknownVariant};

macro_rules! rule_names {
    ($($variant:ident = $text:literal),+ $(,)?) => {
        /// Stable rule names: used in config, the API, messages and metrics.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum RuleName { $(#[serde(rename = $text)] $variant),+ }

        impl RuleName {
            pub const ALL: &'static [RuleName] = &[$(RuleName::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $(RuleName::$variant => $text),+ }
            }
        }

        impl FromStr for RuleName {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(RuleName::$variant),)+
                    _ => Err(UnknownVariant { what: "rule", given: s.to_string(), expected: &[$($text),+] }),
                }
            }
        }
    };
}

rule_names!(
    Exceedance = "exceedance",
    EarlyWarning = "early_warning",
    ProjectedExceedance = "projected_exceedance",
    MissingData = "missing_data",
    NotJudgeable = "not_judgeable",
    DataMismatch = "data_mismatch",
    Offline = "offline",
    ConstantValue = "constant_value",
    ZeroValue = "zero_value",
    NegativeValue = "negative_value",
    OverRange = "over_range",
    MaintenanceOveruse = "maintenance_overuse",
    FlowMismatch = "flow_mismatch",
    TreatmentNotRunning = "treatment_not_running",
    TreatmentUnderpowered = "treatment_underpowered",
    OrderViolation = "order_violation",
    EmissionTotal = "emission_total",
    FurnaceTemperature = "furnace_temperature",
    // Not a rule on readings: the daemon raises it when free disk space falls
    // below [storage] min_free (see daemon/disk.rs); duty.toml routes it by rule.
    DiskLow = "disk_low",
    // Not a rule on readings: a closed day's effective transmission rate below the
    // outlet's min_effective_rate (see daemon/completeness.rs).
    LowTransmission = "low_transmission",
    // Not a rule on readings: sources refuse data dated beyond clock_tolerance or
    // max_data_age and the daemon raises this once an hour per outlet
    // (see daemon/skew.rs).
    ClockSkew = "clock_skew",
    // Not a rule on readings: the DTU listener refused a registration of a DTU id
    // that is connected from another address (see sources/field/dtu.rs).
    DtuTakeover = "dtu_takeover",
);

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's name for officers; unknown names are shown as they are.
pub fn rule_zh(r: &str) -> &str {
    match r {
        "exceedance" => "超标",
        "early_warning" => "超标预警",
        "projected_exceedance" => "日均值预计超标",
        "missing_data" => "数据缺失",
        "not_judgeable" => "无法判定",
        "data_mismatch" => "均值不符",
        "offline" => "离线",
        "constant_value" => "数据恒值",
        "zero_value" => "数据为零",
        "negative_value" => "数据为负",
        "over_range" => "超量程",
        "maintenance_overuse" => "维护标记过多",
        "flow_mismatch" => "流量不符",
        "treatment_not_running" => "治污设施未运行",
        "treatment_underpowered" => "治污设施功率不足",
        "order_violation" => "违反停限产令",
        "emission_total" => "排放总量超许可",
        "low_transmission" => "有效传输率不足",
        "disk_low" => "存储空间不足",
        "furnace_temperature" => "炉温低于850℃",
        "clock_skew" => "数采仪时钟异常",
        "dtu_takeover" => "DTU 冒用",
        other => other,
    }
}

/// A hint for the alerts engine; it decides the real priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A possible fault or gap in the record.
    Notice,
    /// Before the legal line, or a suspected falsification pattern.
    Warning,
    /// A breach of the permit or an order.
    Violation,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Violation => "violation",
        }
    }
}

impl FromStr for Severity {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "notice" => Ok(Severity::Notice),
            "warning" => Ok(Severity::Warning),
            "violation" => Ok(Severity::Violation),
            _ => Err(UnknownVariant {
                what: "severity",
                given: s.to_string(),
                expected: &["notice", "warning", "violation"],
            }),
        }
    }
}

/// One value as it was judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceValue {
    pub ts: DateTime<Utc>,
    /// Shared with the reading: keeping a value as evidence costs no allocation.
    #[serde(with = "id_serde")]
    pub factor: Id,
    pub value: f64,
    pub flag: Flag,
    /// Oxygen-corrected value, where correction applies.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub corrected: Option<f64>,
    /// Measured O2 (%) used for the correction.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub o2: Option<f64>,
    /// The value came from the logger's backlog (HJ 212-2025 `RF=1`). Written
    /// only when true, so evidence recorded before the mark existed reads the same.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub resend: bool,
}

/// The permit limit a finding refers to, and where it is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitRef {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub basis: String,
    pub warn_at: Option<f64>,
    /// Reference O2 (%) the limit is stated at.
    pub o2_reference: Option<f64>,
    /// Config file, relative to the config directory.
    pub file: String,
    /// Key path inside it (`outlets[0].limits[1]`).
    pub key: String,
}

/// Counts over a window: how many values were valid and why the rest were not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub values: u32,
    pub valid_values: u32,
    /// Minutes of the hour with at least one valid value (hourly windows).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub valid_minutes: Option<u32>,
    /// Valid hours of the day (daily windows).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub valid_hours: Option<u32>,
    /// Values per HJ 212 flag, in flag order N F M S D C T B.
    pub flags: [u32; 8],
    /// Values not judgeable because O2 was ≥ 19 % or missing.
    pub not_judgeable: u32,
}

impl Counts {
    pub fn add_flag(&mut self, flag: Flag) {
        if let Some(i) = Flag::ALL.iter().position(|f| *f == flag) {
            self.flags[i] += 1;
        }
    }

    pub fn merge(&mut self, o: &Counts) {
        self.values += o.values;
        self.valid_values += o.valid_values;
        self.not_judgeable += o.not_judgeable;
        for (a, b) in self.flags.iter_mut().zip(o.flags) {
            *a += b;
        }
    }
}

/// One hour of a day as the daily mean used it: which data, and its weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourEvidence {
    pub start: DateTime<Utc>,
    /// `computed` (from real-time/minute values), `supplied` (the logger's
    /// hourly average) or `none`.
    pub source: String,
    pub valid: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<f64>,
    /// The supplied hour's flag.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub flag: Option<Flag>,
    /// The hour's discharge (m³) that weighed it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub weight_m3: Option<f64>,
    /// `cou` (the logger's discharge), `flow_avg` (its mean flow × 3600 s) or
    /// `flow` (our mean of the real-time flow × 3600 s).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub weight_from: Option<String>,
}

/// Everything behind a finding. Fields that do not apply to a rule are left out of
/// the JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The values behind the finding (for windows: the last ones, at most a few).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub values: Vec<EvidenceValue>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub counts: Option<Counts>,
    /// The average that was judged (corrected for flue gas, flow-weighted for water).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub average: Option<f64>,
    /// The same window's plain (measured, unweighted) mean, for comparison.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub measured_average: Option<f64>,
    /// Where the judged average came from: `supplied` (logger) or `computed`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub aggregate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub limit: Option<LimitRef>,
    /// A day's hours: the source and weight of each (daily means).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub hours: Vec<HourEvidence>,
    /// Rule parameters in force (thresholds, durations), by config key.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty", default)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

impl Evidence {
    pub fn param(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.params.insert(key.to_string(), value.into());
        self
    }
}

/// One thing the evaluator found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: RuleName,
    pub severity: Severity,
    pub enterprise: Id,
    /// The outlet or meter; `None` for enterprise-wide rules (orders, totals).
    #[serde(with = "location_serde")]
    pub location: Option<Location>,
    /// The factor judged; empty for rules about a whole location or enterprise
    /// (offline, linkage, orders).
    pub factor: Id,
    /// The period the finding is about: `[start, end)`. For instant rules the
    /// episode's first and last value.
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// When the evaluator decided (data time, not wall time, so replays agree).
    pub at: DateTime<Utc>,
    /// The number judged (an average, a value, a power, a share of a cap).
    pub value: Option<f64>,
    /// The threshold it was judged against.
    pub threshold: Option<f64>,
    /// Distinguishes findings of the same rule and window (a limit's basis, a
    /// linkage id, an emission tier).
    pub detail: String,
    pub message: String,
    pub evidence: Evidence,
}

impl Finding {
    /// The identity under which a finding is stored once. Replaying the same data
    /// (a restart, a recovery after the tap lagged) produces the same key, so it
    /// is never raised twice.
    /// `outlet:DA001`, `meter:M01`, or empty.
    pub fn location_text(&self) -> String {
        self.location
            .as_ref()
            .map(|l| l.to_string())
            .unwrap_or_default()
    }

    pub fn natural_key(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}",
            self.rule.as_str(),
            self.enterprise,
            self.location_text(),
            self.factor,
            self.detail,
            self.window_start.timestamp_millis()
        )
    }
}

mod id_serde {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &Id, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        Ok(Id::from(String::deserialize(d)?))
    }
}

mod location_serde {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(l: &Option<Location>, s: S) -> Result<S::Ok, S::Error> {
        match l {
            Some(l) => s.collect_str(l),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Location>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => parse_location(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("bad location {s:?}"))),
        }
    }
}

/// `outlet:DA001` / `meter:M01` back to a [`Location`].
pub fn parse_location(s: &str) -> Option<Location> {
    match s.split_once(':')? {
        ("outlet", id) => Some(Location::Outlet(id.into())),
        ("meter", id) => Some(Location::Meter(id.into())),
        _ => None,
    }
}
