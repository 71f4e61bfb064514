//! The two paths from untrusted bytes to readings, as plain functions: what the
//! fuzz targets in `fuzz/` drive, and what `tests/fuzz_corpus.rs` feeds every
//! committed corpus file through (so the corpus is checked by `cargo test`).
//! Each does what its source does per message — parse, map, then the checks of
//! [`crate::model::check`] — without sockets or a store. Neither may panic on any
//! input; an `Err` is what the source would keep as a dead letter.

use chrono::{TimeZone, Utc};

use super::hj212::codec::frame::FrameDecoder;
use super::hj212::codec::segment::DataSegment;
use super::hj212::mapping::{self, Command, Origin};
use super::mqtt::payload;
use crate::config::MqttSubscription;
use crate::model::check::{self, ClockBounds};
use crate::model::{Id, Location, Reading};

/// An MQTT JSON message (the documented default shape) to checked readings, or
/// the dead-letter reason and detail.
pub fn mqtt_json(bytes: &[u8]) -> Result<Vec<Reading>, (&'static str, String)> {
    let sub: MqttSubscription =
        toml::from_str("topic = \"f/{enterprise}/{meter}\"\nformat = \"json\"\n")
            .map_err(|e| ("config", e.to_string()))?;
    let e: Id = "E1".into();
    let loc = Location::Meter("M1".into());
    let dev: Id = "f/E1/M1".into();
    let parsed = payload::parse_json(bytes, &sub, &e, &loc, &dev)
        .map_err(|e| ("bad_payload", e.to_string()))?;
    check::readings(&parsed.readings).map_err(|e| (e.reason, e.detail))?;
    check_time(&parsed.readings)?;
    Ok(parsed.readings)
}

/// HJ 212 bytes as they arrive on a connection: every frame found, each to
/// checked readings or a dead-letter reason.
pub fn hj212_stream(bytes: &[u8]) -> Vec<Result<Vec<Reading>, (&'static str, String)>> {
    let mut buf = bytes.to_vec();
    let mut decoder = FrameDecoder::new();
    let mut out = Vec::new();
    // At most one result per input byte: the decoder consumes as it goes.
    for _ in 0..=bytes.len() {
        let Some(found) = decoder.decode(&mut buf) else {
            break;
        };
        out.push(match found {
            Ok(frame) => hj212_segment(&frame.segment_text()),
            Err(e) => Err(("bad_frame", e.to_string())),
        });
    }
    if let Some(found) = decoder.finish(&mut buf) {
        out.push(match found {
            Ok(frame) => hj212_segment(&frame.segment_text()),
            Err(e) => Err(("bad_frame", e.to_string())),
        });
    }
    out
}

/// One HJ 212 data segment (text between `##dddd` and the CRC) to checked readings.
pub fn hj212_segment(text: &str) -> Result<Vec<Reading>, (&'static str, String)> {
    let seg = DataSegment::parse(text).map_err(|e| ("bad_segment", e.to_string()))?;
    let origin = Origin {
        enterprise: "E1".into(),
        outlet: "DW001".into(),
        mn: seg.mn.unwrap_or("MN").into(),
    };
    let tz = chrono_tz::Asia::Shanghai;
    let mapped = match Command::of(seg.cn) {
        Command::Data(kind) => mapping::map_values(&seg, kind, &origin, tz),
        Command::DeviceStatus | Command::DeviceRunTime => mapping::map_devices(&seg, &origin, tz),
        _ => return Ok(Vec::new()),
    }
    .map_err(|e| ("bad_data_time", e.to_string()))?;
    check::readings(&mapped.readings).map_err(|e| (e.reason, e.detail))?;
    check_time(&mapped.readings)?;
    Ok(mapped.readings)
}

/// The clock check at a fixed "now" (2026-11-27 08:00 UTC), so results do not
/// depend on when the corpus runs.
fn check_time(readings: &[Reading]) -> Result<(), (&'static str, String)> {
    let now = Utc
        .with_ymd_and_hms(2026, 11, 27, 8, 0, 0)
        .single()
        .unwrap_or_default();
    check::data_times(readings, now, ClockBounds::default())
        .map_err(|e| ("clock_skew", e.to_string()))
}
