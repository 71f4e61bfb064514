//! Telling a refusal of the data from a failing database.
//!
//! The writer retries what may succeed later (see [`StoreError::is_transient`]) and
//! isolates what never will: a request whose data the database refuses becomes a
//! dead letter instead of blocking every request behind it (see [`super::writer`]).

use super::{DeadLetter, Received, StoreError};
use crate::model::Protocol;

impl StoreError {
    /// The database refused the data itself — a data exception or a constraint
    /// (PostgreSQL SQLSTATE classes 22 and 23, e.g. `invalid byte sequence for
    /// encoding "UTF8": 0x00`; SQLite TOOBIG, CONSTRAINT, MISMATCH, RANGE), or the
    /// driver could not encode a value. Retrying the same request can never
    /// succeed; the writer isolates it instead (see [`writer`]).
    pub fn is_data_refusal(&self) -> bool {
        let StoreError::Db { source, .. } = self else {
            return false;
        };
        match source {
            sqlx::Error::Encode(_) => true,
            sqlx::Error::Database(e) => {
                let code = e.code().unwrap_or_default();
                // PostgreSQL's SQLSTATE may be all digits too: ask the backend.
                if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    return code
                        .parse::<i32>()
                        .is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25));
                }
                code.starts_with("22") || code.starts_with("23")
            }
            _ => false,
        }
    }
}

/// Text that goes into a TEXT column without the database refusing it: NUL (which
/// PostgreSQL cannot hold) is written as `\0`. Dead letters and device events keep
/// what a sender wrote, so their text is cleaned here rather than refused.
pub(crate) fn storable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\\0"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// The dead letter that stands for a request the database refused: what it
/// carried, as escaped text (the raw bytes of the original message are what the
/// source had; the writer has the parsed request).
pub(super) fn refused_letter(part: &Received, e: &StoreError) -> DeadLetter {
    use std::fmt::Write as _;
    let b = &part.batch;
    let mut raw = String::new();
    for r in &b.readings {
        let _ = writeln!(
            raw,
            "reading {:?} {:?} {:?} {} {} {} {} {} {:?}",
            &*r.enterprise,
            r.location.to_string(),
            &*r.factor,
            r.kind,
            r.stat,
            r.ts.to_rfc3339(),
            r.value,
            r.flag,
            &*r.source.device
        );
    }
    for ev in &b.status_events {
        let _ = writeln!(
            raw,
            "status_event {:?} {:?} {:?} {:?}",
            ev.enterprise, ev.device, ev.status, ev.detail
        );
    }
    for d in &b.dead_letters {
        let _ = writeln!(
            raw,
            "dead_letter {:?} {:?} {:?} raw={:?}",
            d.peer,
            d.reason,
            d.detail,
            String::from_utf8_lossy(&d.raw)
        );
    }
    let (protocol, peer) = if let Some(r) = b.readings.first() {
        (r.source.protocol, r.source.device.to_string())
    } else if let Some(d) = b.dead_letters.first() {
        (d.protocol, d.peer.clone())
    } else if let Some(ev) = b.status_events.first() {
        (Protocol::Manual, format!("{}/{}", ev.enterprise, ev.device))
    } else {
        (Protocol::Manual, String::new())
    };
    DeadLetter {
        at: part.at,
        protocol,
        peer,
        reason: "store_refused".into(),
        detail: e.to_string(),
        raw: raw.into_bytes(),
    }
}
