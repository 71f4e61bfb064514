//! Property tests of the frame finder.
//!
//! The guarantee tested (see the `frame` module docs): decoding never panics,
//! never holds more than `max_buffered()` bytes between calls, and an error or
//! a silent trim never consumes the start of a valid frame. So every valid
//! frame comes out, exactly once and in order, unless an earlier `"##"` in the
//! noise began a span that itself passed the CRC check and covered the frame's
//! start. That exception cannot be ruled out (a 16-bit CRC matches by chance),
//! so it is detected exactly — by tracking which stream offsets each event
//! consumed — instead of being hoped away.

use pollwatch::sources::hj212::codec::crc::{crc16, CrcMode};
use pollwatch::sources::hj212::codec::frame::{Frame, FrameDecoder};
use proptest::prelude::*;

/// Noise made of random bytes and the fragments most likely to confuse a
/// frame finder.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop::sample::select(vec![
        &b"##"[..],
        b"#",
        b"##0010",
        b"##0000",
        b"##9999",
        b"##01",
        b"##0a1",
        b"&&",
        b"&&1C80",
        b"&&ffff\r\n",
        b"\r\n",
        b"\r",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"CP=&&",
        b"//",
        b"0",
        b"A",
    ])
    .prop_map(<[u8]>::to_vec);
    let token = prop_oneof![3 => prop::collection::vec(any::<u8>(), 0..24), 2 => fragment];
    prop::collection::vec(token, 0..6).prop_map(|t| t.concat())
}

/// A valid frame as a logger would send it, possibly with quirks.
#[derive(Debug, Clone)]
struct Valid {
    segment: String,
    bytes: Vec<u8>,
}

fn valid_frame() -> impl Strategy<Value = Valid> {
    let cn = prop::sample::select(vec!["2011", "2051", "2061", "3020", "9021"]);
    let field = ("[a-w][0-9]{5}", "Rtd|Avg|Flag|ZsAvg", "[0-9.N]{1,8}");
    (
        any::<u64>(),
        cn,
        "[A-Za-z0-9_]{1,24}",
        0u8..16,
        prop::collection::vec(field, 0..6),
        prop::option::of("[a-f0-9 ;,=#&\r\n]{0,16}"),
        (any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(qn, cn, mn, flag, fields, info, (crlf, lower, by_chars))| {
                let mut cp = String::from("DataTime=20240101000000");
                for (code, suffix, value) in fields {
                    cp.push_str(&format!(";{code}-{suffix}={value}"));
                }
                if let Some(text) = info {
                    // Opaque text may hold frame-like bytes ("##", "&&", CRLF). A
                    // frame is only promised to survive that when its length field
                    // counts bytes: a wrong length sends the finder looking for
                    // "&&CCCC" + terminator, and the text can fake one.
                    let text = if by_chars {
                        text.replace(['#', '&', '\r', '\n'], "x")
                    } else {
                        text
                    };
                    cp.push_str(&format!(";i11001-Info=//设备{text}正常//"));
                }
                let segment =
                    format!("QN={qn};ST=32;CN={cn};PW=123456;MN={mn};Flag={flag};CP=&&{cp}&&");
                let len = if by_chars {
                    segment.chars().count()
                } else {
                    segment.len()
                };
                let crc = crc16(segment.as_bytes());
                let crc = if lower {
                    format!("{crc:04x}")
                } else {
                    format!("{crc:04X}")
                };
                let tail = if crlf { "\r\n" } else { "" };
                let bytes = format!("##{len:04}{segment}{crc}{tail}").into_bytes();
                Valid { segment, bytes }
            },
        )
}

/// How the stream is cut into reads, and after which reads the line goes quiet.
fn reads() -> impl Strategy<Value = Vec<(usize, bool)>> {
    prop::collection::vec((1usize..300, prop::bool::weighted(0.1)), 1..40)
}

/// One decoder call's outcome and the stream offsets it consumed.
struct Consumed {
    from: usize,
    to: usize,
    event: Option<Result<Frame, String>>,
}

fn drive(dec: &mut FrameDecoder, stream: &[u8], reads: &[(usize, bool)]) -> Vec<Consumed> {
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut log = Vec::new();
    let mut call = |dec: &mut FrameDecoder, buf: &mut Vec<u8>, fed: usize, idle: bool| loop {
        let from = fed - buf.len();
        let ev = if idle {
            dec.decode_idle(buf)
        } else {
            dec.decode(buf)
        };
        let done = ev.is_none();
        log.push(Consumed {
            from,
            to: fed - buf.len(),
            event: ev.map(|r| r.map_err(|e| e.to_string())),
        });
        if done {
            assert!(
                buf.len() <= dec.max_buffered(),
                "{} > {}",
                buf.len(),
                dec.max_buffered()
            );
            break;
        }
        assert!(
            log.len() < 4 * stream.len() + 16,
            "decoder makes no progress"
        );
    };
    let mut i = 0;
    while fed < stream.len() {
        let (n, idle) = reads[i % reads.len()];
        i += 1;
        let end = (fed + n).min(stream.len());
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        call(dec, &mut buf, fed, false);
        if idle {
            call(dec, &mut buf, fed, true);
        }
    }
    call(dec, &mut buf, fed, true);
    loop {
        let from = fed - buf.len();
        let ev = dec.finish(&mut buf);
        let done = ev.is_none();
        let event = ev.map(|r| r.map_err(|e| e.to_string()));
        log.push(Consumed {
            from,
            to: fed - buf.len(),
            event,
        });
        if done {
            break;
        }
    }
    assert!(buf.is_empty());
    log
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_or_overfill(
        parts in prop::collection::vec(prop_oneof![noise(), valid_frame().prop_map(|v| v.bytes)], 0..12),
        reads in reads(),
        max_len in 16usize..400,
        swapped in any::<bool>(),
    ) {
        let stream = parts.concat();
        let mode = if swapped { CrcMode::ModbusSwapped } else { CrcMode::Hj212 };
        let mut dec = FrameDecoder::with_config(max_len, mode);
        let log = drive(&mut dec, &stream, &reads);
        // Everything fed was eventually consumed, in contiguous steps.
        let mut at = 0;
        for c in &log {
            prop_assert_eq!(c.from, at);
            at = c.to;
        }
        prop_assert_eq!(at, stream.len());
    }

    #[test]
    fn valid_frames_survive_noise(
        pieces in prop::collection::vec((noise(), valid_frame()), 1..8),
        trailing in noise(),
        reads in reads(),
    ) {
        let mut stream = Vec::new();
        let mut starts = Vec::new();
        for (junk, frame) in &pieces {
            stream.extend(junk);
            starts.push(stream.len());
            stream.extend(&frame.bytes);
        }
        stream.extend(&trailing);
        let log = drive(&mut FrameDecoder::new(), &stream, &reads);

        let mut found = 0;
        let mut swallowed = 0;
        let mut last_event = None;
        for ((_, frame), &start) in pieces.iter().zip(&starts) {
            let (idx, c) = log
                .iter()
                .enumerate()
                .find(|(_, c)| c.from <= start && start < c.to)
                .expect("every byte is consumed by some call");
            match &c.event {
                Some(Ok(f)) if f.segment == frame.segment.as_bytes() => {
                    prop_assert!(last_event < Some(idx), "frames out of order or repeated");
                    last_event = Some(idx);
                    found += 1;
                }
                Some(Ok(_)) => swallowed += 1,
                other => prop_assert!(
                    false,
                    "frame at {} was consumed by {:?} ({}..{})", start, other, c.from, c.to
                ),
            }
        }
        prop_assert_eq!(found + swallowed, pieces.len());
    }
}
