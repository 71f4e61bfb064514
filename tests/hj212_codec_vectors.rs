//! Byte-exact frame-finder cases: each builds the bytes a logger (or a scanner)
//! would send and checks what comes out, both in one piece and byte by byte.

use pollwatch::sources::hj212::codec::crc::{crc16, CrcMode};
use pollwatch::sources::hj212::codec::error::FrameError;
use pollwatch::sources::hj212::codec::frame::{Frame, FrameDecoder, Quirks};
use pollwatch::sources::hj212::codec::reply::{encode_frame, encode_frame_with};
use pollwatch::sources::hj212::codec::segment::DataSegment;

const SAMPLE_1062: &str = "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&";
const SAMPLE_2061: &str = "QN=20190925181031464;ST=22;CN=2061;PW=BF470F88957588DE902D1A52;MN=Z13401000010301;Flag=5;CP=&&DataTime=20190924220000;a34006-Avg=2.69700,a34006-Flag=N;a34007-Avg=7.96600,a34007-Flag=N;a34048-Avg=3.30600,a34048-Flag=N;a34047-Avg=7.35700,a34047-Flag=N;a34049-Avg=10.66300,a34049-Flag=N&&";
const HTTP: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

type Event = Result<Frame, FrameError>;

fn frame(seg: &str) -> Vec<u8> {
    encode_frame(seg).unwrap()
}

/// Feeds `input` in pieces of `chunk` bytes, drains with `decode`, then lets
/// the line go quiet and closes it, as a server would.
fn run_with(mut dec: FrameDecoder, input: &[u8], chunk: usize) -> Vec<Event> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(ev) = dec.decode(&mut buf) {
            out.push(ev);
        }
        assert!(buf.len() <= dec.max_buffered());
    }
    while let Some(ev) = dec.decode_idle(&mut buf) {
        out.push(ev);
    }
    while let Some(ev) = dec.finish(&mut buf) {
        out.push(ev);
    }
    assert!(buf.is_empty());
    out
}

/// Runs whole and byte by byte; both must agree.
fn run(input: &[u8]) -> Vec<Event> {
    let whole = run_with(FrameDecoder::new(), input, input.len());
    let bytewise = run_with(FrameDecoder::new(), input, 1);
    assert_eq!(whole, bytewise, "result depends on chunking");
    whole
}

fn segments(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e.as_ref().ok())
        .map(|f| f.segment_text().into_owned())
        .collect()
}

fn errors(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e.as_ref().err())
        .map(ToString::to_string)
        .collect()
}

#[test]
fn verified_sample_frames() {
    let mut input = frame(SAMPLE_1062);
    input.extend(frame(SAMPLE_2061));
    assert!(input.starts_with(b"##0101QN="));
    assert!(input.ends_with(b"&&C181\r\n"));
    let ev = run(&input);
    assert_eq!(segments(&ev), [SAMPLE_1062, SAMPLE_2061]);
    let crcs: Vec<u16> = ev.iter().map(|e| e.as_ref().unwrap().crc_sent()).collect();
    assert_eq!(crcs, [0x1C80, 0xC181]);
    for e in &ev {
        let f = e.as_ref().unwrap();
        assert_eq!(f.quirks, Quirks::default());
        assert_eq!(f.declared_len, f.segment.len());
        DataSegment::parse(&f.segment_text()).unwrap();
    }
}

#[test]
fn lowercase_crc_is_accepted_and_noted() {
    let input = format!("##0101{SAMPLE_1062}1c80\r\n");
    let ev = run(input.as_bytes());
    let f = ev[0].as_ref().unwrap();
    assert!(f.quirks.lowercase_crc && !f.quirks.missing_crlf);
    assert_eq!(&f.crc_text, b"1c80");
    assert_eq!(ev.len(), 1);
}

#[test]
fn missing_crlf_between_and_at_end() {
    let mut input = frame(SAMPLE_1062);
    input.truncate(input.len() - 2);
    input.extend(frame(SAMPLE_2061));
    input.truncate(input.len() - 2);
    let ev = run(&input);
    assert_eq!(segments(&ev), [SAMPLE_1062, SAMPLE_2061]);
    assert!(ev.iter().all(|e| e.as_ref().unwrap().quirks.missing_crlf));

    // Without a quiet period the last frame's trailer may still be coming.
    let mut dec = FrameDecoder::new();
    let mut buf = frame(SAMPLE_1062);
    buf.truncate(buf.len() - 2);
    assert!(dec.decode(&mut buf).is_none());
    assert!(dec.decode_idle(&mut buf).unwrap().is_ok());
    assert!(buf.is_empty());
}

#[test]
fn char_counted_length_with_chinese_info() {
    let seg = "QN=20240101000000000;ST=32;CN=3020;PW=123456;MN=M1;Flag=5;CP=&&DataTime=20240101000000;PolId=w01018,i11001-Info=//设备正常;维护=否,提示//&&";
    let chars = seg.chars().count();
    assert!(seg.len() > chars);
    let mut input = format!("##{chars:04}{seg}{:04X}\r\n", crc16(seg.as_bytes())).into_bytes();
    input.extend(frame(SAMPLE_1062));
    let ev = run(&input);
    assert_eq!(segments(&ev), [seg, SAMPLE_1062]);
    let q = ev[0].as_ref().unwrap().quirks;
    assert!(q.char_counted_length && !q.wrong_length && !q.missing_crlf);
    let text = ev[0].as_ref().unwrap().segment_text().into_owned();
    let parsed = DataSegment::parse(&text).unwrap();
    assert_eq!(
        parsed.cp_get("i11001-Info"),
        Some("//设备正常;维护=否,提示//")
    );
}

#[test]
fn wrong_length_found_by_its_end() {
    let input = format!("##0050{SAMPLE_1062}1C80\r\n");
    let ev = run(input.as_bytes());
    assert_eq!(segments(&ev), [SAMPLE_1062]);
    assert!(ev[0].as_ref().unwrap().quirks.wrong_length);
}

#[test]
fn scanner_garbage_before_and_between_frames() {
    let tls_hello = [
        0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
    ];
    let mut input = HTTP.to_vec();
    input.extend(frame(SAMPLE_1062));
    input.extend(HTTP);
    input.extend(frame(SAMPLE_2061));
    input.extend(tls_hello);
    input.extend(frame(SAMPLE_1062));
    input.extend(b"#");
    let ev = run(&input);
    assert_eq!(segments(&ev), [SAMPLE_1062, SAMPLE_2061, SAMPLE_1062]);
    assert_eq!(
        errors(&ev),
        [
            r###"skipped 27 bytes of garbage before "##" (starting "GET / HTTP/1.1\r\nHost: x\r"…)"###,
            r###"skipped 27 bytes of garbage before "##" (starting "GET / HTTP/1.1\r\nHost: x\r"…)"###,
            r###"skipped 11 bytes of garbage before "##" (starting "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")"###,
            r###"skipped 1 bytes of garbage with no frame start after them (starting "#")"###,
        ]
    );
}

#[test]
fn blank_lines_between_frames_are_not_errors() {
    let mut input = b"\r\n".to_vec();
    input.extend(frame(SAMPLE_1062));
    input.extend(b"\r\n\n");
    input.extend(frame(SAMPLE_1062));
    let ev = run(&input);
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(Result::is_ok));
}

#[test]
fn oversize_length_is_refused_and_next_frame_survives() {
    let long = format!("QN=1;CN=2011;CP=&&{}&&", "a=1;".repeat(370));
    let mut input = frame(&long);
    input.extend(frame(SAMPLE_1062));
    let ev = run_with(FrameDecoder::with_config(1024, CrcMode::Hj212), &input, 7);
    assert_eq!(
        errors(&ev),
        [format!("frame length {} exceeds limit 1024", long.len())]
    );
    assert_eq!(segments(&ev), [SAMPLE_1062]);
}

#[test]
fn frame_longer_than_1024_bytes() {
    let long = format!(
        "QN=20190507003800117;ST=32;CN=3020;PW=123456;MN=23040281003022;Flag=5;CP=&&DataTime=20190507003500;i11001-Info=//{}//&&",
        "4e 26 26 37 0d 0a 23 23 ".repeat(80)
    );
    assert!(long.len() > 1024);
    let ev = run(&frame(&long));
    assert_eq!(segments(&ev), [long]);
}

#[test]
fn length_field_with_non_digits() {
    let mut input = format!("##00a1{SAMPLE_1062}1C80\r\n").into_bytes();
    input.extend(frame(SAMPLE_2061));
    let ev = run(&input);
    assert_eq!(
        errors(&ev),
        [r###"length field "00a1" is not 4 decimal digits"###]
    );
    assert_eq!(segments(&ev), [SAMPLE_2061]);
}

#[test]
fn frame_2005_style_without_qn_and_flag() {
    let seg = "ST=32;CN=2011;PW=123456;MN=88888880000001;CP=&&DataTime=20040516021000;B01-Rtd=51.3;011-Rtd=86.4,011-Flag=N&&";
    let ev = run(&frame(seg));
    let f = ev[0].as_ref().unwrap();
    let text = f.segment_text();
    let s = DataSegment::parse(&text).unwrap();
    assert_eq!((s.qn, s.flag, s.reply_wanted()), (None, None, false));
}

#[test]
fn bad_crc_then_good_frame() {
    let mut input = format!("##0101{SAMPLE_1062}1C81\r\n").into_bytes();
    input.extend(frame(SAMPLE_1062));
    let ev = run(&input);
    assert_eq!(errors(&ev), ["bad CRC: frame says 1C81, computed 1C80"]);
    assert_eq!(segments(&ev), [SAMPLE_1062]);
    assert!(ev[0].is_err());
}

#[test]
fn truncated_frame_then_good_frame_needs_no_quiet_period() {
    let long = frame(SAMPLE_2061);
    let mut input = long[..120].to_vec();
    input.extend(frame(SAMPLE_1062));
    let mut dec = FrameDecoder::new();
    let mut buf = input.clone();
    let first = dec.decode(&mut buf).unwrap();
    assert_eq!(
        first.unwrap_err().to_string(),
        r###"frame cut short: length field says 285 bytes, but a new "##" starts after 120 bytes and no valid frame end comes before it"###
    );
    assert_eq!(
        dec.decode(&mut buf).unwrap().unwrap().segment,
        SAMPLE_1062.as_bytes()
    );
    assert!(buf.is_empty());
    assert_eq!(segments(&run(&input)), [SAMPLE_1062]);
}

#[test]
fn short_truncated_frame_then_good_frame() {
    let mut input = b"##0010QN=2016080".to_vec();
    input.extend(frame(SAMPLE_1062));
    input.extend(b"##0101QN=1");
    let ev = run(&input);
    assert_eq!(segments(&ev), [SAMPLE_1062]);
    assert_eq!(
        errors(&ev),
        [
            r###"frame cut short: length field says 10 bytes, but a new "##" starts after 16 bytes and no valid frame end comes before it"###,
            "connection ended inside a frame: 10 bytes left over",
        ]
    );
}

#[test]
fn hashes_just_before_a_frame() {
    for prefix in ["#", "##", "###", "##0", "##01##", "&&1C80\r\n", "##0000"] {
        let mut input = prefix.as_bytes().to_vec();
        input.extend(frame(SAMPLE_1062));
        let ev = run(&input);
        assert_eq!(segments(&ev), [SAMPLE_1062], "prefix {prefix:?}");
    }
}

#[test]
fn swapped_modbus_crc_only_when_configured() {
    let bytes = encode_frame_with(SAMPLE_1062, CrcMode::ModbusSwapped).unwrap();
    let ev = run_with(
        FrameDecoder::with_config(9999, CrcMode::ModbusSwapped),
        &bytes,
        3,
    );
    assert_eq!(segments(&ev), [SAMPLE_1062]);
    let ev = run(&bytes);
    assert!(errors(&ev)[0].starts_with("bad CRC"));
}

#[test]
fn no_end_within_limit_is_given_up() {
    let mut input = b"##0004".to_vec();
    input.extend(vec![b'x'; 300]);
    input.extend(frame(SAMPLE_1062));
    let ev = run_with(FrameDecoder::with_config(256, CrcMode::Hj212), &input, 1);
    assert_eq!(
        errors(&ev),
        [r###"no frame end ("&&" + 4 hex digits) within 256 bytes"###]
    );
    assert_eq!(segments(&ev), [SAMPLE_1062]);
}

#[test]
fn quiet_line_does_not_break_a_frame_still_arriving() {
    // Opaque text with frame-like bytes; the sender pauses mid-frame.
    let seg = "QN=1;ST=32;CN=3020;PW=1;MN=M;Flag=5;CP=&&i11001-Info=//R:##0076\r\n&&ABCD\r\n##//&&";
    let bytes = frame(seg);
    let mut dec = FrameDecoder::new();
    let mut buf = Vec::new();
    for piece in bytes.chunks(9) {
        buf.extend_from_slice(piece);
        assert!(dec.decode_idle(&mut buf).is_none() || buf.is_empty());
    }
    assert!(buf.is_empty());
    assert_eq!(segments(&run(&bytes)), [seg]);
}

#[test]
fn cut_frame_then_frame_without_crlf_and_junk() {
    let good = frame(SAMPLE_1062);
    let mut input = b"##9999QN=cut".to_vec();
    input.extend(&good[..good.len() - 2]);
    input.extend(b"junk");
    let ev = run(&input);
    assert_eq!(segments(&ev), [SAMPLE_1062]);
    assert_eq!(
        errors(&ev),
        [
            r###"frame cut short: length field says 9999 bytes, but a new "##" starts after 12 bytes and no valid frame end comes before it"###,
            r###"skipped 4 bytes of garbage with no frame start after them (starting "junk")"###,
        ]
    );
}

#[test]
fn close_recovers_frames_behind_a_cut_frame() {
    // Only the length field proves a later frame early; a char-counted one
    // behind a cut frame is found when the connection closes.
    let seg = "QN=1;ST=32;CN=3020;PW=1;MN=M;Flag=5;CP=&&i11001-Info=//设备正常//&&";
    let chars = seg.chars().count();
    let mut input = b"##9999QN=cut".to_vec();
    input.extend(format!("##{chars:04}{seg}{:04X}", crc16(seg.as_bytes())).as_bytes());
    let ev = run(&input);
    assert_eq!(segments(&ev), [seg]);
    assert_eq!(
        errors(&ev),
        ["connection ended inside a frame: 12 bytes left over"]
    );
}
