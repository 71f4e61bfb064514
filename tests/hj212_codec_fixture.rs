//! The 802 real frames from two loggers (`../shared/fixtures/hj212`).
//!
//! The fixtures directory is `$PW_FIXTURES` when set, else `../shared/fixtures`
//! beside the checkout. A missing file fails the test rather than skipping it.

use std::path::PathBuf;

use pollwatch::sources::hj212::codec::crc::crc16;
use pollwatch::sources::hj212::codec::frame::{Frame, FrameDecoder, Quirks};
use pollwatch::sources::hj212::codec::reply::{data_answer_9014, encode_frame};
use pollwatch::sources::hj212::codec::segment::DataSegment;

fn fixture_frames() -> Vec<Vec<u8>> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates: Vec<PathBuf> = match std::env::var_os("PW_FIXTURES") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![manifest.join("../shared/fixtures")],
    };
    let path = candidates
        .iter()
        .map(|d| d.join("hj212/real-traffic.txt"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("real-traffic.txt not found under {candidates:?}; set PW_FIXTURES")
        });
    let text = std::fs::read_to_string(&path).unwrap();
    let frames: Vec<Vec<u8>> = text
        .lines()
        .map(|line| {
            let (status, frame) = line.split_once('\t').expect("ok<TAB>frame");
            assert_eq!(status, "ok");
            frame.as_bytes().to_vec()
        })
        .collect();
    assert_eq!(frames.len(), 802);
    frames
}

/// The segment between the length field and the CRC of a fixture line.
fn segment_of(line: &[u8]) -> &[u8] {
    &line[6..line.len() - 4]
}

/// splitmix64: a seeded, dependency-free source of chunk sizes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn decode_in_chunks(stream: &[u8], seed: u64) -> (Vec<Frame>, Vec<String>) {
    let mut rng = Rng(seed);
    let mut dec = FrameDecoder::new();
    let mut buf = Vec::new();
    let (mut frames, mut errors) = (Vec::new(), Vec::new());
    let mut pos = 0;
    while pos < stream.len() {
        let n = (1 + rng.next() % 4096) as usize;
        let end = (pos + n).min(stream.len());
        buf.extend_from_slice(&stream[pos..end]);
        pos = end;
        while let Some(ev) = dec.decode(&mut buf) {
            match ev {
                Ok(f) => frames.push(f),
                Err(e) => errors.push(e.to_string()),
            }
        }
        assert!(buf.len() <= dec.max_buffered());
    }
    while let Some(ev) = dec.decode_idle(&mut buf) {
        match ev {
            Ok(f) => frames.push(f),
            Err(e) => errors.push(e.to_string()),
        }
    }
    assert!(dec.finish(&mut buf).is_none() && buf.is_empty());
    (frames, errors)
}

#[test]
fn every_frame_decodes_and_parses() {
    let mut with_time = 0;
    for line in fixture_frames() {
        let mut buf = line.clone();
        buf.extend(b"\r\n");
        let mut dec = FrameDecoder::new();
        let frame = dec.decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty() && dec.decode(&mut buf).is_none());
        assert_eq!(frame.segment, segment_of(&line));
        assert_eq!(frame.quirks, Quirks::default());
        assert_eq!(crc16(&frame.segment), frame.crc_sent());
        let text = frame.segment_text();
        let seg = DataSegment::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(seg.mn.is_some() && seg.pw.is_some() && seg.qn.is_some());
        if let Some(t) = seg.data_time().unwrap() {
            assert!(t.year == 2019);
            with_time += 1;
        }
        // Every CP field is either plain or a factor; PolId items relate the
        // i12xxx fields of 3020 to their factor.
        assert!(seg
            .factors()
            .all(|f| !f.code.is_empty() && !f.suffix.is_empty()));
    }
    assert!(with_time > 700);
}

#[test]
fn flag5_frames_get_correct_9014() {
    let mut flag5 = 0;
    for line in fixture_frames() {
        let text = std::str::from_utf8(segment_of(&line)).unwrap();
        let seg = DataSegment::parse(text).unwrap();
        if seg.flag.map(|f| f.0) != Some(5) {
            continue;
        }
        flag5 += 1;
        assert!(seg.reply_wanted());
        let mut reply = encode_frame(&data_answer_9014(&seg).unwrap()).unwrap();
        let answer = FrameDecoder::new().decode(&mut reply).unwrap().unwrap();
        assert_eq!(crc16(&answer.segment), answer.crc_sent());
        assert_eq!(
            answer.crc_text,
            *format!("{:04X}", answer.crc_sent()).as_bytes()
        );
        let answer_text = answer.segment_text();
        let parsed = DataSegment::parse(&answer_text).unwrap();
        assert_eq!((parsed.cn, parsed.st), ("9014", Some("91")));
        assert_eq!(parsed.qn, seg.qn);
        assert_eq!(parsed.mn, seg.mn);
        assert_eq!(parsed.pw, seg.pw);
        assert!(!parsed.reply_wanted());
    }
    assert_eq!(flag5, 274);
}

#[test]
fn whole_file_in_random_chunks_yields_every_frame_once_in_order() {
    let lines = fixture_frames();
    let mut stream = Vec::new();
    for line in &lines {
        stream.extend(line);
        stream.extend(b"\r\n");
    }
    for seed in [1, 2, 3, 42, 2019_0507, 0xDEAD_BEEF] {
        let (frames, errors) = decode_in_chunks(&stream, seed);
        assert!(errors.is_empty(), "seed {seed}: {errors:?}");
        assert_eq!(frames.len(), lines.len(), "seed {seed}");
        for (f, line) in frames.iter().zip(&lines) {
            assert_eq!(f.segment, segment_of(line), "seed {seed}");
        }
    }
}

#[test]
fn whole_file_without_crlf_and_with_scanner_noise() {
    let lines = fixture_frames();
    let mut bare = Vec::new();
    let mut noisy = Vec::new();
    for line in &lines {
        bare.extend(line);
        noisy.extend(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        noisy.extend(line);
        noisy.extend(b"\r\n");
    }
    for seed in [7, 8] {
        let (frames, errors) = decode_in_chunks(&bare, seed);
        assert!(errors.is_empty());
        assert_eq!(frames.len(), lines.len());
        assert!(frames.iter().all(|f| f.quirks.missing_crlf));

        let (frames, errors) = decode_in_chunks(&noisy, seed);
        assert_eq!(frames.len(), lines.len());
        assert_eq!(errors.len(), lines.len());
        for (f, line) in frames.iter().zip(&lines) {
            assert_eq!(f.segment, segment_of(line));
        }
    }
}
