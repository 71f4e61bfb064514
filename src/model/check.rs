//! What every source checks before a message's readings may enter a batch.
//!
//! Codes and identifiers come from equipment and networks we do not control. One
//! message holding an empty factor code, a NUL byte (PostgreSQL refuses it in text
//! columns), a control character or a kilobyte-long "code" must cost exactly that
//! message: the source keeps it as a dead letter with the reason from
//! [`Invalid::reason`] and acknowledges it, and the rest of the stream flows. The
//! same checks run at every source boundary (HJ 212 over TCP and MQTT, MQTT JSON,
//! Modbus and DL/T 645 polls) so no path is more trusting than another.
//!
//! A DataTime outside what the logger's clock can plausibly mean is refused too
//! ([`data_time`]): later than now + `clock_tolerance`, or older than
//! `max_data_age`. Such values are not readings; see the README's "Hostile input".

use chrono::{DateTime, Utc};

use super::Reading;

/// Factor codes (`a21026`, `e_p`, `SB1-RS`, mapped MQTT names) at most.
pub const MAX_CODE_CHARS: usize = 64;
/// Enterprise, outlet and meter ids, units, device names (an MQTT topic) at most.
pub const MAX_ID_CHARS: usize = 256;

/// Why a message's readings were refused: a stable dead-letter reason and a
/// human-readable detail (bad text shown escaped, never raw).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Invalid {
    /// `bad_code` (a code or id that is empty, too long or not printable) or
    /// `bad_value` (a value that is not a finite number).
    pub reason: &'static str,
    pub detail: String,
}

/// Checks one piece of text: non-empty unless `may_be_empty`, at most `max`
/// characters, no NUL or other control character.
pub fn text(what: &str, s: &str, max: usize, may_be_empty: bool) -> Result<(), Invalid> {
    // Nearly every code and id is short printable ASCII: one pass over the
    // bytes settles it (this runs for every reading of every source).
    if s.len() <= max
        && (may_be_empty || !s.is_empty())
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Ok(());
    }
    let why = if s.is_empty() && !may_be_empty {
        Some("is empty")
    } else if s.chars().count() > max {
        Some("is too long")
    } else if s.contains('\0') {
        Some("holds a NUL byte")
    } else if s.chars().any(char::is_control) {
        Some("holds a control character")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(Invalid {
            reason: "bad_code",
            detail: format!(
                "{what} {} {why} (at most {max} printable characters)",
                shown(s)
            ),
        }),
    }
}

/// Text for a log line or a dead-letter detail: escaped, cut at 80 characters.
pub fn shown(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    if cut.len() < s.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// Checks everything a reading carries that came from outside.
pub fn reading(r: &Reading) -> Result<(), Invalid> {
    text("enterprise", &r.enterprise, MAX_ID_CHARS, false)?;
    text(
        r.location.kind().as_str(),
        r.location.id(),
        MAX_ID_CHARS,
        false,
    )?;
    text("factor code", &r.factor, MAX_CODE_CHARS, false)?;
    text("unit", &r.unit, MAX_ID_CHARS, true)?;
    text("device", &r.source.device, MAX_ID_CHARS, false)?;
    if !r.value.is_finite() {
        return Err(Invalid {
            reason: "bad_value",
            detail: format!(
                "{} value {} is not a finite number",
                shown(&r.factor),
                r.value
            ),
        });
    }
    Ok(())
}

/// Checks every reading of one message; the first failure refuses the message.
pub fn readings(rs: &[Reading]) -> Result<(), Invalid> {
    rs.iter().try_for_each(reading)
}

/// How far a logger's clock may be from ours before its data is not a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockBounds {
    /// A DataTime later than now + this is refused (default 10 minutes).
    pub tolerance: chrono::Duration,
    /// A DataTime older than now − this is refused (default 35 days).
    pub max_age: chrono::Duration,
}

impl Default for ClockBounds {
    fn default() -> Self {
        ClockBounds {
            tolerance: chrono::Duration::minutes(10),
            max_age: chrono::Duration::days(35),
        }
    }
}

/// A DataTime the logger's clock cannot plausibly mean.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skew {
    #[error("data time {ts} is {ahead} s ahead of now ({now}); clock_tolerance is {tolerance} s")]
    Ahead {
        ts: DateTime<Utc>,
        now: DateTime<Utc>,
        ahead: i64,
        tolerance: i64,
    },
    #[error("data time {ts} is older than max_data_age ({max_age_days} days) at {now}")]
    TooOld {
        ts: DateTime<Utc>,
        now: DateTime<Utc>,
        max_age_days: i64,
    },
}

/// Checks one timestamp against the clock passed in.
pub fn data_time(ts: DateTime<Utc>, now: DateTime<Utc>, b: ClockBounds) -> Result<(), Skew> {
    if ts > now + b.tolerance {
        return Err(Skew::Ahead {
            ts,
            now,
            ahead: (ts - now).num_seconds(),
            tolerance: b.tolerance.num_seconds(),
        });
    }
    if ts < now - b.max_age {
        return Err(Skew::TooOld {
            ts,
            now,
            max_age_days: b.max_age.num_days(),
        });
    }
    Ok(())
}

/// The first reading of a message whose time is out of bounds, if any.
pub fn data_times(rs: &[Reading], now: DateTime<Utc>, b: ClockBounds) -> Result<(), Skew> {
    rs.iter().try_for_each(|r| data_time(r.ts, now, b))
}

/// A message refused for its logger's clock, reported so the daemon can raise a
/// `clock_skew` finding for the outlet (at most once an hour).
#[derive(Debug, Clone, PartialEq)]
pub struct Skewed {
    pub enterprise: super::Id,
    pub location: super::Location,
    /// When it was received (the clock passed in).
    pub at: DateTime<Utc>,
    pub skew: Skew,
}

/// Where sources report [`Skewed`] messages; connected by the daemon, a no-op
/// until then (tests, benchmarks). Never blocks: a full channel drops the report
/// (the dead letter is kept regardless).
#[derive(Debug, Clone, Default)]
pub struct SkewSink(std::sync::Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<Skewed>>>);

impl SkewSink {
    /// Sends reports to `tx` from now on (the first connection counts).
    pub fn connect(&self, tx: tokio::sync::mpsc::Sender<Skewed>) {
        let _ = self.0.set(tx);
    }

    pub fn report(&self, s: Skewed) {
        if let Some(tx) = self.0.get() {
            let _ = tx.try_send(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataKind, Flag, Location, Protocol, SourceRef, Stat};
    use chrono::TimeZone;

    fn r(factor: &str, value: f64) -> Reading {
        Reading {
            enterprise: "E1".into(),
            location: Location::Outlet("W1".into()),
            factor: factor.into(),
            unit: "".into(),
            ts: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            value,
            kind: DataKind::Rtd,
            stat: Stat::Rtd,
            converted: false,
            flag: Flag::N,
            source: SourceRef {
                protocol: Protocol::Mqtt,
                device: "t/E1/W1".into(),
                resend: false,
            },
        }
    }

    #[test]
    fn codes_must_be_printable_bounded_and_present() {
        assert!(reading(&r("w01001", 7.0)).is_ok());
        assert!(reading(&r("氨氮", 7.0)).is_ok());
        // At the limit, in one-byte and in three-byte characters.
        assert!(reading(&r(&"a".repeat(64), 7.0)).is_ok());
        assert!(reading(&r(&"氨".repeat(64), 7.0)).is_ok());
        for (bad, why) in [
            ("", "is empty"),
            ("x\0y", "holds a NUL byte"),
            ("a\nb", "holds a control character"),
            ("a\u{7f}b", "holds a control character"),
            (&"a".repeat(65), "is too long"),
            (&"氨".repeat(65), "is too long"),
        ] {
            let e = reading(&r(bad, 1.0)).unwrap_err();
            assert_eq!(e.reason, "bad_code", "{bad:?}");
            assert!(e.detail.contains(why), "{}", e.detail);
            assert!(!e.detail.contains('\0'), "detail is escaped");
        }
        let e = reading(&r("w01001", f64::NAN)).unwrap_err();
        assert_eq!(e.reason, "bad_value");
        let mut unit = r("w01001", 1.0);
        unit.unit = "".into();
        assert!(reading(&unit).is_ok(), "an empty unit is allowed");
        unit.unit = "mg\0".into();
        assert!(reading(&unit).is_err());
    }

    #[test]
    fn clock_bounds() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
        let b = ClockBounds::default();
        assert!(data_time(now + chrono::Duration::minutes(10), now, b).is_ok());
        assert!(matches!(
            data_time(now + chrono::Duration::minutes(11), now, b),
            Err(Skew::Ahead { ahead: 660, .. })
        ));
        assert!(data_time(now - chrono::Duration::days(35), now, b).is_ok());
        assert!(matches!(
            data_time(now - chrono::Duration::days(36), now, b),
            Err(Skew::TooOld { .. })
        ));
    }
}
