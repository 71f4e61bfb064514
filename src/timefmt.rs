//! Local time at the edges. Inside, every time is UTC; people and loggers speak
//! local time (China: UTC+8, no daylight saving, but the zone is configurable), so
//! conversion happens only where text comes in or goes out.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("cannot read time {0:?}: use RFC 3339 (2026-11-27T08:00:00+08:00) or local \"YYYY-MM-DD[ HH:MM[:SS]]\"")]
    Unparsable(String),
    #[error("local time {time} does not exist or is ambiguous in {zone}")]
    NotUnique { time: String, zone: String },
}

/// Parses a time given by a person: RFC 3339 with an offset, or a local date/time
/// in `tz`.
pub fn parse_user_time(s: &str, tz: Tz) -> Result<DateTime<Utc>, TimeError> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(|| TimeError::Unparsable(s.to_string()))?;
    local_to_utc(naive, tz)
}

/// A wall-clock time in `tz` as UTC. Rejects times that a DST change skips or
/// repeats rather than guessing: evidence must not depend on a guess.
pub fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> Result<DateTime<Utc>, TimeError> {
    tz.from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| TimeError::NotUnique {
            time: naive.to_string(),
            zone: tz.to_string(),
        })
}

/// RFC 3339 in the configured zone, e.g. `2026-11-27T08:00:00+08:00`.
pub fn rfc3339_local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Asia::Shanghai;

    #[test]
    fn local_and_rfc3339_inputs() {
        let want = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap();
        assert_eq!(parse_user_time("2026-11-27 08:00", Shanghai).unwrap(), want);
        assert_eq!(
            parse_user_time("2026-11-27T08:00:00", Shanghai).unwrap(),
            want
        );
        assert_eq!(
            parse_user_time("2026-11-27T00:00:00Z", Shanghai).unwrap(),
            want
        );
        assert_eq!(
            parse_user_time("2026-11-27", Shanghai).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 26, 16, 0, 0).unwrap()
        );
        assert_eq!(rfc3339_local(want, Shanghai), "2026-11-27T08:00:00+08:00");
        assert!(matches!(
            parse_user_time("yesterday", Shanghai),
            Err(TimeError::Unparsable(_))
        ));
    }

    #[test]
    fn skipped_local_times_are_refused() {
        let ny: Tz = "America/New_York".parse().unwrap();
        assert!(matches!(
            parse_user_time("2026-03-08 02:30", ny),
            Err(TimeError::NotUnique { .. })
        ));
    }
}
