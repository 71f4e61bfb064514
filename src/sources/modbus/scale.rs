//! Turning decoded register numbers into reported values: linear scaling
//! (including 4–20 mA count ranges) and status-register → HJ 212 flag maps.
//!
//! Separate from the register codec because these are per-point config
//! with their own validation, applied after any source (Modbus today,
//! possibly MQTT JSON later) has produced a number.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Linear conversion from a raw reading to engineering units.
///
/// `raw_range` (for 4–20 mA analog inputs reported as ADC counts) is applied
/// first, then `scale` and `offset`: `value = mapped × scale + offset`. The
/// CEMS formula `(raw − 5530) / 22118 × range` is `raw_min = 5530`,
/// `raw_max = 27648` (the 20 mA count), `eng_min = 0`, `eng_max = range`.
/// No clamping: a reading below 4 mA means a broken loop, and showing it as
/// a negative value is more honest than pinning it to zero.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scaling {
    pub scale: f64,
    pub offset: f64,
    pub raw_range: Option<RawRange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRange {
    pub raw_min: f64,
    pub raw_max: f64,
    pub eng_min: f64,
    pub eng_max: f64,
}

impl Default for Scaling {
    fn default() -> Self {
        Self {
            scale: 1.0,
            offset: 0.0,
            raw_range: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum ScalingError {
    #[error("scaling field {field} must be a finite number, got {value}")]
    NotFinite { field: &'static str, value: f64 },
    #[error("raw_range raw_min and raw_max are both {value}; nothing can be mapped")]
    EmptyRawRange { value: f64 },
}

impl Scaling {
    /// Kept infallible because it runs on every reading; [`Scaling::validate`]
    /// at config load is what rules out NaN-producing settings.
    pub fn apply(&self, raw: f64) -> f64 {
        let mapped = match &self.raw_range {
            Some(r) => {
                r.eng_min + (raw - r.raw_min) / (r.raw_max - r.raw_min) * (r.eng_max - r.eng_min)
            }
            None => raw,
        };
        mapped * self.scale + self.offset
    }

    pub fn validate(&self) -> Result<(), ScalingError> {
        let mut fields = vec![("scale", self.scale), ("offset", self.offset)];
        if let Some(r) = &self.raw_range {
            fields.extend([
                ("raw_min", r.raw_min),
                ("raw_max", r.raw_max),
                ("eng_min", r.eng_min),
                ("eng_max", r.eng_max),
            ]);
        }
        if let Some((field, value)) = fields.into_iter().find(|(_, v)| !v.is_finite()) {
            return Err(ScalingError::NotFinite { field, value });
        }
        match &self.raw_range {
            Some(r) if r.raw_min == r.raw_max => {
                Err(ScalingError::EmptyRawRange { value: r.raw_min })
            }
            _ => Ok(()),
        }
    }
}

/// HJ 212 data flags: N normal, F stopped, M maintenance, S manually set,
/// D fault, C calibration, T over the upper limit, B communication failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataFlag {
    N,
    F,
    M,
    S,
    D,
    C,
    T,
    B,
}

impl DataFlag {
    pub fn as_char(self) -> char {
        match self {
            DataFlag::N => 'N',
            DataFlag::F => 'F',
            DataFlag::M => 'M',
            DataFlag::S => 'S',
            DataFlag::D => 'D',
            DataFlag::C => 'C',
            DataFlag::T => 'T',
            DataFlag::B => 'B',
        }
    }
}

/// Maps an analyzer's status register to an HJ 212 flag.
///
/// An unmapped code yields [`StatusLookup::Unknown`] carrying the `unknown`
/// flag, default `D`: a state we cannot name must not be reported as valid
/// `N` data, and `D` keeps the value out of compliance averages while the
/// marker lets the caller log the raw code so the map can be fixed.
///
/// Config: `{ codes = { "0" = "N", "1" = "M", "2" = "D", "3" = "C" }, unknown = "D" }`
/// (keys may be strings, as TOML requires, or integers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StatusMapConfig", into = "StatusMapConfig")]
pub struct StatusMap {
    codes: BTreeMap<i64, DataFlag>,
    unknown: DataFlag,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StatusLookup {
    Known(DataFlag),
    Unknown { raw: f64, flag: DataFlag },
}

impl StatusLookup {
    pub fn flag(&self) -> DataFlag {
        match self {
            StatusLookup::Known(flag) | StatusLookup::Unknown { flag, .. } => *flag,
        }
    }

    pub fn is_known(&self) -> bool {
        matches!(self, StatusLookup::Known(_))
    }
}

impl StatusMap {
    pub fn new(codes: impl IntoIterator<Item = (i64, DataFlag)>, unknown: DataFlag) -> Self {
        Self {
            codes: codes.into_iter().collect(),
            unknown,
        }
    }

    /// Takes the decoded register as f64 (what [`decode`] returns); a value
    /// that is not a whole number is unknown rather than rounded.
    pub fn lookup(&self, raw: f64) -> StatusLookup {
        let code = (raw.fract() == 0.0 && raw.abs() < 9.0e18).then_some(raw as i64);
        match code.and_then(|c| self.codes.get(&c)) {
            Some(flag) => StatusLookup::Known(*flag),
            None => StatusLookup::Unknown {
                raw,
                flag: self.unknown,
            },
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusMapConfig {
    codes: BTreeMap<CodeKey, DataFlag>,
    #[serde(default = "unknown_default")]
    unknown: DataFlag,
}

fn unknown_default() -> DataFlag {
    DataFlag::D
}

impl From<StatusMapConfig> for StatusMap {
    fn from(c: StatusMapConfig) -> Self {
        Self::new(c.codes.into_iter().map(|(k, v)| (k.0, v)), c.unknown)
    }
}

impl From<StatusMap> for StatusMapConfig {
    fn from(m: StatusMap) -> Self {
        Self {
            codes: m.codes.into_iter().map(|(k, v)| (CodeKey(k), v)).collect(),
            unknown: m.unknown,
        }
    }
}

/// Map key that accepts `0` or `"0"`: TOML and JSON only have string keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct CodeKey(i64);

impl Serialize for CodeKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CodeKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = CodeKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer status code")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<CodeKey, E> {
                Ok(CodeKey(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<CodeKey, E> {
                i64::try_from(v).map(CodeKey).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CodeKey, E> {
                v.trim()
                    .parse()
                    .map(CodeKey)
                    .map_err(|_| E::custom(format!("status code {v:?} is not an integer")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
#[path = "scale_tests.rs"]
mod tests;
