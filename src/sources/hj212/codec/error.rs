//! Error types of the codec, one enum per layer.
//!
//! They live together so the server can match on all of them in one place,
//! and each `Display` says what was wrong in the operator's terms (what the
//! frame said versus what was expected) because these strings end up in logs
//! that are read while a logger vendor is on the phone. Values quoted from the
//! wire are clipped and escaped so a hostile peer cannot flood or forge log lines.

use thiserror::Error;

/// Why bytes were thrown away. The bytes are already consumed when this is
/// returned; the caller records it and keeps decoding.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Bytes that were not a frame came before a frame start.
    #[error("skipped {skipped} bytes of garbage before \"##\" (starting {preview})")]
    Garbage { skipped: usize, preview: String },
    /// Bytes that were not a frame, after which the sender went quiet or closed.
    #[error(
        "skipped {skipped} bytes of garbage with no frame start after them (starting {preview})"
    )]
    GarbageAtEnd { skipped: usize, preview: String },
    /// The four characters after `"##"` are not all decimal digits.
    #[error("length field \"{field}\" is not 4 decimal digits")]
    BadLengthField { field: String },
    /// The length field is larger than the configured limit.
    #[error("frame length {len} exceeds limit {limit}")]
    TooLong { len: usize, limit: usize },
    /// The frame is complete but its CRC does not match its segment.
    #[error("bad CRC: frame says {sent}, computed {computed:04X}")]
    BadCrc {
        sent: String,
        computed: u16,
        /// The data segment as received: kept as evidence, and re-checked by the
        /// server against a per-device CRC variant.
        segment: Vec<u8>,
    },
    /// A later `"##"` came before this frame's valid end: a cut frame, or a bad
    /// one whose text holds `"##"` (errors never consume past a `"##"`).
    #[error("frame cut short: length field says {declared} bytes, but a new \"##\" starts after {after} bytes and no valid frame end comes before it")]
    Interrupted { declared: usize, after: usize },
    /// No `&&` + CRC + terminator within the size limit.
    #[error("no frame end (\"&&\" + 4 hex digits) within {limit} bytes")]
    NoEnd { limit: usize },
    /// The connection ended inside a frame.
    #[error("connection ended inside a frame: {len} bytes left over")]
    Truncated { len: usize },
}

/// Why a data segment could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SegmentError {
    /// Every segment must say which command it carries.
    #[error("missing CN")]
    MissingCn,
    /// A header field appeared twice; which one counts would be a guess.
    #[error("duplicate field {0}")]
    Duplicate(&'static str),
    /// A header piece between `;` has no `=`.
    #[error("field \"{0}\" has no \"=\"")]
    NoEquals(String),
    /// A numeric header field (Flag, PNUM, PNO) is not a plain number.
    #[error("{field} \"{value}\" is not a number in range")]
    BadNumber { field: &'static str, value: String },
    /// `CP=` is not followed by `&&`.
    #[error("CP area does not start with &&")]
    CpNotOpened,
    /// `CP=&&` has no closing `&&`.
    #[error("CP area not terminated by &&")]
    CpNotTerminated,
    /// Something other than `;field=value` follows the CP area.
    #[error("unexpected text after CP area: \"{0}\"")]
    TextAfterCp(String),
    /// `DataTime` is malformed.
    #[error("DataTime \"{value}\" is {reason}")]
    BadDataTime {
        value: String,
        reason: DateTimeError,
    },
}

/// Why a `YYYYMMDDhhmmss` value was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DateTimeError {
    /// Not 14 ASCII digits.
    #[error("not YYYYMMDDhhmmss")]
    Shape,
    /// 14 digits, but no such date or time (month 13, 30 February, hour 24…).
    #[error("not a real date and time")]
    OutOfRange,
}

/// Why a reply could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplyError {
    /// The segment does not fit the 4-digit length field.
    #[error("segment is {0} bytes; a frame holds at most 9999")]
    TooLong(usize),
    /// A value to be echoed could corrupt the reply's structure.
    #[error("{field} \"{value}\" cannot be put in a reply: {why}")]
    UnsafeField {
        field: &'static str,
        value: String,
        why: &'static str,
    },
}

/// Quotes wire text for an error message: escaped, and clipped so a hostile
/// peer cannot put megabytes or fake log lines into our logs.
pub(super) fn clip(text: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = text
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}
