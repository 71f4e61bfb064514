//! Small value types that config files write as text.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written the way people write it in config: `150ms`, `10s`, `30m`,
/// `4h`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let bad = || {
            format!("invalid duration {s:?}: expected a whole number followed by ms, s, m, h or d (e.g. \"10s\")")
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        let ms_per = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        let ms = n.checked_mul(ms_per).ok_or_else(bad)?;
        Ok(HumanDuration(Duration::from_millis(ms)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, per) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms != 0 && ms.is_multiple_of(per) {
                return write!(f, "{}{unit}", ms / per);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HumanDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A listen address; its parse error repeats what was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenAddr(pub SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(ListenAddr).map_err(|_| {
            serde::de::Error::custom(format!(
                "expected IP:port such as \"127.0.0.1:9180\", got {s:?}"
            ))
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, ms) in [
            ("150ms", 150),
            ("10s", 10_000),
            ("30m", 1_800_000),
            ("4h", 14_400_000),
            ("1d", 86_400_000),
        ] {
            let d = HumanDuration::parse(text).unwrap();
            assert_eq!(d.0, Duration::from_millis(ms));
            assert_eq!(d.to_string(), text);
        }
        assert!(HumanDuration::parse("10")
            .unwrap_err()
            .contains("invalid duration \"10\""));
        assert!(HumanDuration::parse("1.5s").is_err());
        assert!(HumanDuration::parse("s").is_err());
        assert!(HumanDuration::parse("99999999999999999d").is_err());
    }
}

/// `[storage] min_free`: the free disk space below which pollwatch stops
/// accepting data. Written as a size (`"2GiB"`, `"500MB"`, `"0"` to switch the
/// check off), a share of the file system (`"5%"`), or both (`"1GiB or 5%"`: the
/// smaller of the two, the default — 1 GiB is too much to keep free on a 10 GiB
/// volume, 5 % too much on a 4 TiB one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinFree {
    pub bytes: Option<u64>,
    pub percent: Option<f64>,
}

impl Default for MinFree {
    fn default() -> Self {
        MinFree {
            bytes: Some(1 << 30),
            percent: Some(5.0),
        }
    }
}

impl MinFree {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid min_free {s:?}: expected a size (\"1GiB\", \"500MB\", \"0\"), a share (\"5%\") or both (\"1GiB or 5%\")"
            )
        };
        let mut out = MinFree {
            bytes: None,
            percent: None,
        };
        for part in s.split(" or ").map(str::trim) {
            if let Some(p) = part.strip_suffix('%') {
                let p: f64 = p.trim().parse().map_err(|_| bad())?;
                if !(0.0..=100.0).contains(&p) || out.percent.is_some() {
                    return Err(bad());
                }
                out.percent = Some(p);
            } else {
                if out.bytes.is_some() {
                    return Err(bad());
                }
                out.bytes = Some(parse_size(part).ok_or_else(bad)?);
            }
        }
        Ok(out)
    }

    /// The bytes to keep free on a file system of `total` bytes.
    pub fn threshold(&self, total: u64) -> u64 {
        let share = self
            .percent
            .map(|p| (total as f64 * p / 100.0).round() as u64);
        match (self.bytes, share) {
            (Some(b), Some(s)) => b.min(s),
            (Some(b), None) => b,
            (None, Some(s)) => s,
            (None, None) => 0,
        }
    }
}

/// `"1GiB"`, `"500MB"`, `"64k"`, `"1048576"`: binary units for `KiB`/`MiB`/`GiB`/
/// `TiB` (and `k`/`M`/`G`/`T`), decimal for `kB`/`MB`/`GB`/`TB`.
fn parse_size(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let per: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(per)
}

impl fmt::Display for MinFree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.bytes, self.percent) {
            (Some(b), Some(p)) => write!(f, "{b} bytes or {p}%"),
            (Some(b), None) => write!(f, "{b} bytes"),
            (None, Some(p)) => write!(f, "{p}%"),
            (None, None) => write!(f, "0"),
        }
    }
}

impl<'de> Deserialize<'de> for MinFree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MinFree::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod min_free_tests {
    use super::MinFree;

    #[test]
    fn sizes_shares_and_the_smaller_of_both() {
        let gib = 1u64 << 30;
        assert_eq!(MinFree::default().threshold(10 * gib), gib / 2);
        assert_eq!(MinFree::default().threshold(4096 * gib), gib);
        assert_eq!(MinFree::parse("2GiB").unwrap().threshold(gib), 2 * gib);
        assert_eq!(MinFree::parse("500MB").unwrap().threshold(gib), 500_000_000);
        assert_eq!(MinFree::parse("10%").unwrap().threshold(1000), 100);
        assert_eq!(MinFree::parse("0").unwrap().threshold(gib), 0);
        assert_eq!(MinFree::parse("1GiB or 5%").unwrap(), MinFree::default());
        for bad in ["", "5 %%", "110%", "1GiB or 2GiB", "lots"] {
            assert!(MinFree::parse(bad).is_err(), "{bad:?}");
        }
    }
}
