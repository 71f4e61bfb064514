//! Value types of DL/T 645-2007 shared by the frame codec, the value
//! table and their callers: meter addresses, the error byte of abnormal
//! replies, and broadcast time.
//!
//! They live apart from the codec so config code can parse and print
//! addresses without pulling in framing, and to keep each file readable.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::frame::Dlt645Error;

/// A 12-digit meter address, held in wire order (low byte first).
///
/// Stored as raw bytes rather than a number because the protocol also uses
/// non-decimal addresses: `AA` bytes are wildcards, so a meter's reply to a
/// wildcard request is the only place its real address shows up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MeterAddress([u8; 6]);

impl MeterAddress {
    /// "Any meter": only safe with exactly one meter on the bus.
    pub const WILDCARD: Self = Self([0xAA; 6]);
    /// Broadcast address used for time sync; meters do not reply to it.
    pub const BROADCAST: Self = Self([0x99; 6]);

    pub fn from_wire(bytes: [u8; 6]) -> Self {
        Self(bytes)
    }

    pub fn wire_bytes(&self) -> [u8; 6] {
        self.0
    }
}

impl FromStr for MeterAddress {
    type Err = Dlt645Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let len = text.chars().count();
        if len != 12 {
            return Err(Dlt645Error::AddressLength { len });
        }
        let mut digits = [0u8; 12];
        for (pos, ch) in text.chars().enumerate() {
            let Some(d) = ch.to_digit(10) else {
                return Err(Dlt645Error::AddressNotDigit {
                    text: text.to_owned(),
                    ch,
                    pos,
                });
            };
            if let Some(slot) = digits.get_mut(pos) {
                *slot = d as u8;
            }
        }
        // The printed address is most significant first; the wire wants the
        // last two digits in the first byte.
        let mut bytes = [0u8; 6];
        for (i, pair) in digits.rchunks(2).enumerate() {
            if let ([hi, lo], Some(slot)) = (pair, bytes.get_mut(i)) {
                *slot = (hi << 4) | lo;
            }
        }
        Ok(Self(bytes))
    }
}

impl TryFrom<String> for MeterAddress {
    type Error = Dlt645Error;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<MeterAddress> for String {
    fn from(address: MeterAddress) -> Self {
        address.to_string()
    }
}

impl fmt::Display for MeterAddress {
    /// BCD printed as hex is the decimal digits, so one rule covers normal
    /// addresses and also shows wildcard bytes honestly as `AA`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().rev().try_for_each(|b| write!(f, "{b:02X}"))
    }
}

/// The error byte of an abnormal reply: a bit set, one bit per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MeterError(pub u8);

impl MeterError {
    pub const OTHER: Self = Self(0x01);
    pub const NO_DATA: Self = Self(0x02);
    pub const UNAUTHORISED: Self = Self(0x04);
    pub const BAUD_NOT_CHANGEABLE: Self = Self(0x08);
    pub const TOO_MANY_YEAR_ZONES: Self = Self(0x10);
    pub const TOO_MANY_DAY_PERIODS: Self = Self(0x20);
    pub const TOO_MANY_RATES: Self = Self(0x40);

    const NAMES: [&'static str; 8] = [
        "other error",
        "no requested data",
        "password error/unauthorised",
        "baud rate not changeable",
        "annual time zone count exceeded",
        "daily period count exceeded",
        "rate count exceeded",
        "reserved bit 7",
    ];

    /// Names of the bits that are set, lowest bit first.
    pub fn reasons(self) -> Vec<&'static str> {
        (0..8)
            .filter(|bit| self.0 & (1 << bit) != 0)
            .filter_map(|bit| Self::NAMES.get(bit).copied())
            .collect()
    }

    /// The meter does not support this DI; polling it again will not help.
    pub fn is_no_data(self) -> bool {
        self.0 & Self::NO_DATA.0 != 0
    }
}

impl fmt::Display for MeterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reasons = self.reasons();
        if reasons.is_empty() {
            write!(f, "error byte 0x{:02X} (no bit set)", self.0)
        } else {
            write!(f, "error byte 0x{:02X} ({})", self.0, reasons.join(", "))
        }
    }
}

/// Plain calendar numbers for broadcast time sync, so this module needs no
/// date library; the caller converts from whatever clock it trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterTime {
    /// 2000–2099: the wire carries only two digits.
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl MeterTime {
    /// Fields in wire order (`ss mm hh DD MM YY`) with their allowed ranges.
    fn wire_fields(&self) -> [(&'static str, u16, u16, u16); 6] {
        [
            ("second", u16::from(self.second), 0, 59),
            ("minute", u16::from(self.minute), 0, 59),
            ("hour", u16::from(self.hour), 0, 23),
            ("day", u16::from(self.day), 1, 31),
            ("month", u16::from(self.month), 1, 12),
            ("year", self.year, 2000, 2099),
        ]
    }

    /// Range-checked because a meter silently accepts nonsense such as
    /// month 13 and then bills against the wrong tariff period.
    pub fn validate(&self) -> Result<(), Dlt645Error> {
        for (field, value, min, max) in self.wire_fields() {
            if !(min..=max).contains(&value) {
                return Err(Dlt645Error::InvalidTime {
                    field,
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }

    /// `ss mm hh DD MM YY` as BCD, before the +0x33.
    pub fn to_wire(&self) -> Result<[u8; 6], Dlt645Error> {
        self.validate()?;
        let mut out = [0u8; 6];
        for (slot, (_, value, _, _)) in out.iter_mut().zip(self.wire_fields()) {
            let two_digits = (value % 100) as u8;
            *slot = ((two_digits / 10) << 4) | (two_digits % 10);
        }
        Ok(out)
    }

    /// Inverse of [`MeterTime::to_wire`], for the simulator.
    pub fn from_wire(raw: [u8; 6]) -> Result<Self, Dlt645Error> {
        const NAMES: [&str; 6] = ["second", "minute", "hour", "day", "month", "year"];
        let mut v = [0u8; 6];
        for ((slot, byte), field) in v.iter_mut().zip(raw).zip(NAMES) {
            let (hi, lo) = (byte >> 4, byte & 0x0F);
            if hi > 9 || lo > 9 {
                return Err(Dlt645Error::TimeNotBcd { field, byte });
            }
            *slot = hi * 10 + lo;
        }
        let [second, minute, hour, day, month, yy] = v;
        let time = MeterTime {
            year: 2000 + u16::from(yy),
            month,
            day,
            hour,
            minute,
            second,
        };
        time.validate()?;
        Ok(time)
    }
}
