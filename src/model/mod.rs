//! The one vocabulary every source speaks (invariant 2).
//!
//! Whatever the protocol — HJ 212 text, Modbus registers, DL/T 645 BCD, MQTT JSON —
//! a source turns what it received into [`Reading`]s: HJ 212-2017 factor codes (or
//! our `e_*` codes for electrical quantities), a data kind, a statistic, an HJ 212
//! data flag, and a UTC timestamp. Rules, alerts and the store never see protocol
//! details, so a new protocol never touches them.

pub mod check;
mod factors;

pub use factors::{factor, factor_by_alias, Factor, FactorClass, FACTORS};

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Identifiers (enterprise, outlet, meter, device) are shared by every reading a
/// source produces; `Arc<str>` makes cloning them into each reading a pointer copy.
pub type Id = Arc<str>;

/// Where a reading was measured: an outlet (排放口) or a power-usage meter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    Outlet(Id),
    Meter(Id),
}

impl Location {
    pub fn kind(&self) -> LocationKind {
        match self {
            Location::Outlet(_) => LocationKind::Outlet,
            Location::Meter(_) => LocationKind::Meter,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Location::Outlet(id) | Location::Meter(id) => id,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind().as_str(), self.id())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LocationKind {
    Outlet,
    Meter,
}

impl LocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LocationKind::Outlet => "outlet",
            LocationKind::Meter => "meter",
        }
    }
}

/// Error for the small enums below when text from a store, a CLI flag or a frame does
/// not name a known variant. It says what was given and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}; expected one of {}", expected.join(", "))]
pub struct UnknownVariant {
    pub what: &'static str,
    pub given: String,
    pub expected: &'static [&'static str],
}

/// Declares a fieldless enum with a stable lower-case text form used in config, the
/// store, the API and the CLI alike, so the spelling lives in one place.
macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        what: $what,
                        given: s.to_string(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
    };
}

text_enum!(
    /// How a value was aggregated before it reached us (HJ 212 CN 2011/2051/2061/2031,
    /// or our own aggregation of polled values).
    DataKind, "data kind" {
        /// Real-time (instantaneous) value.
        Rtd = "rtd",
        Min = "min",
        Hour = "hour",
        Day = "day",
    }
);

text_enum!(
    /// Which statistic of the period the value is: HJ 212's `-Rtd`, `-Avg`, `-Min`,
    /// `-Max`, `-Cou` suffixes. Whether it was oxygen-corrected (折算, `Zs`) is kept
    /// separately in [`Reading::converted`].
    Stat, "statistic" {
        Rtd = "rtd",
        Avg = "avg",
        Min = "min",
        Max = "max",
        /// Discharge amount in the period (kg for pollutants, m³ for flow).
        Cou = "cou",
    }
);

text_enum!(
    /// The protocol a reading arrived by; with the device id it names the source.
    Protocol, "protocol" {
        Hj212 = "hj212",
        Modbus = "modbus",
        Dlt645 = "dlt645",
        Mqtt = "mqtt",
        /// Built-in simulators (demo, tests, benchmarks).
        Sim = "sim",
        /// Entered by a person (e.g. corrected through the API).
        Manual = "manual",
    }
);

/// HJ 212-2017 data flag. Invalid data is stored all the same: it is part of the
/// record; only judging skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Flag {
    /// Normal.
    N,
    /// Stopped (停运).
    F,
    /// Maintenance.
    M,
    /// Manual value.
    S,
    /// Fault.
    D,
    /// Calibrating.
    C,
    /// Over range.
    T,
    /// Logger–instrument communication fault.
    B,
}

impl Flag {
    pub const ALL: [Flag; 8] = [
        Flag::N,
        Flag::F,
        Flag::M,
        Flag::S,
        Flag::D,
        Flag::C,
        Flag::T,
        Flag::B,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Flag::N => "N",
            Flag::F => "F",
            Flag::M => "M",
            Flag::S => "S",
            Flag::D => "D",
            Flag::C => "C",
            Flag::T => "T",
            Flag::B => "B",
        }
    }

    /// HJ 75/76-2017: F, M, C, D and B values are excluded from judging; T and S are
    /// judged but marked.
    pub fn valid_for_judging(self) -> bool {
        matches!(self, Flag::N | Flag::S | Flag::T)
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flag {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Flag::ALL
            .iter()
            .copied()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownVariant {
                what: "data flag",
                given: s.to_string(),
                expected: &["N", "F", "M", "S", "D", "C", "T", "B"],
            })
    }
}

/// Which protocol and which device a reading came from — evidence of provenance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceRef {
    pub protocol: Protocol,
    /// MN for HJ 212, device id for polled devices, client/topic for MQTT.
    pub device: Id,
    /// Sent from the device's backlog, not as it was measured (HJ 212-2025 `RF=1`).
    /// Such values arrive late and out of time order; the mark stays with the
    /// stored reading and with the evidence a finding keeps of it.
    pub resend: bool,
}

/// One measured or supplied value, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub enterprise: Id,
    pub location: Location,
    /// HJ 212-2017 code (`a21026`), our electrical code (`e_p`), or an unknown code
    /// kept as received.
    pub factor: Id,
    /// Unit as measured; empty when the source did not say and the catalogue has none.
    pub unit: Id,
    /// UTC. For minute/hour/day data this is the period start, as in HJ 212.
    pub ts: DateTime<Utc>,
    pub value: f64,
    pub kind: DataKind,
    pub stat: Stat,
    /// Oxygen-corrected (折算, HJ 212 `Zs…`) value.
    pub converted: bool,
    pub flag: Flag,
    pub source: SourceRef,
}

impl Reading {
    /// The identity under which a reading is stored once: loggers resend, and the same
    /// (location, factor, kind, statistic, time) must never become two rows.
    pub fn series_key(&self) -> SeriesKey {
        SeriesKey {
            enterprise: self.enterprise.clone(),
            location: self.location.clone(),
            factor: self.factor.clone(),
            kind: self.kind,
            stat: self.stat,
            converted: self.converted,
        }
    }
}

/// Everything that identifies a time series except time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub enterprise: Id,
    pub location: Location,
    pub factor: Id,
    pub kind: DataKind,
    pub stat: Stat,
    pub converted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        for k in DataKind::ALL {
            assert_eq!(k.as_str().parse::<DataKind>().unwrap(), *k);
        }
        for s in Stat::ALL {
            assert_eq!(s.as_str().parse::<Stat>().unwrap(), *s);
        }
        for f in Flag::ALL {
            assert_eq!(f.as_str().parse::<Flag>().unwrap(), f);
        }
        let err = "hourly".parse::<DataKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown data kind \"hourly\"; expected one of rtd, min, hour, day"
        );
    }

    #[test]
    fn judging_validity_follows_hj75() {
        let valid: Vec<_> = Flag::ALL.iter().filter(|f| f.valid_for_judging()).collect();
        assert_eq!(valid, vec![&Flag::N, &Flag::S, &Flag::T]);
    }
}
