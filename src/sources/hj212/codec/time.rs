//! The zone-less timestamps HJ 212 carries (`DataTime`, `SystemTime`, QN).
//!
//! Loggers send local wall-clock time (China, UTC+8) without a zone, so this is
//! deliberately a plain calendar value: attaching a zone is the caller's
//! decision, made once with the station's configuration, not guessed here. It
//! is validated on parse (a logger with a dead RTC sends `20000000000000`, and
//! that must be an error rather than a date) and needs no date crate.

use std::fmt;
use std::str::FromStr;

use super::error::DateTimeError;

/// A calendar date and wall-clock time with no zone attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalDateTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl LocalDateTime {
    /// Builds a value, checking ranges and month lengths (leap years included).
    pub fn new(
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
    ) -> Result<Self, DateTimeError> {
        let valid = (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour < 24
            && minute < 60
            && second < 60;
        if !valid {
            return Err(DateTimeError::OutOfRange);
        }
        Ok(LocalDateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// Parses exactly `YYYYMMDDhhmmss` (14 ASCII digits).
    pub fn parse_compact(text: &str) -> Result<Self, DateTimeError> {
        let b = text.as_bytes();
        if b.len() != 14 || !b.iter().all(u8::is_ascii_digit) {
            return Err(DateTimeError::Shape);
        }
        let num = |from: usize, to: usize| {
            b.get(from..to)
                .unwrap_or(&[])
                .iter()
                .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'))
        };
        // Two-digit fields are < 100, so the narrowing cannot truncate.
        let two = |from: usize| num(from, from + 2) as u8;
        Self::new(num(0, 4), two(4), two(6), two(8), two(10), two(12))
    }
}

impl FromStr for LocalDateTime {
    type Err = DateTimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_compact(s)
    }
}

/// Formats as `YYYYMMDDhhmmss`, the form the protocol uses on the wire.
impl fmt::Display for LocalDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        let t = LocalDateTime::parse_compact("20190924220000").unwrap();
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2019, 9, 24, 22, 0, 0)
        );
        assert_eq!(t.to_string(), "20190924220000");
        assert_eq!("20240229235959".parse::<LocalDateTime>().unwrap().day, 29);
    }

    #[test]
    fn rejects_bad_shapes_and_ranges() {
        for bad in [
            "2019092422",
            "201909242200001",
            "2019092422000a",
            "",
            "２０１９０９２４２２００００",
        ] {
            assert_eq!(
                LocalDateTime::parse_compact(bad),
                Err(DateTimeError::Shape),
                "{bad}"
            );
        }
        for bad in [
            "20000000000000",
            "20191301000000",
            "20190230000000",
            "20230229000000",
            "21000229000000",
            "20190101240000",
            "20190101006000",
            "20190101000060",
        ] {
            assert_eq!(
                LocalDateTime::parse_compact(bad),
                Err(DateTimeError::OutOfRange),
                "{bad}"
            );
        }
        assert!(LocalDateTime::parse_compact("20000229000000").is_ok());
    }
}
