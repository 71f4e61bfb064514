//! HJ 212-2025 encrypted data areas in the pure codec: the standard's test vector,
//! and the six frames of `hj212/2025-encrypted.txt`, built by an implementation
//! independent of pollwatch (Python `cryptography`'s SM4).
//!
//! The fixtures directory is `$PW_FIXTURES` when set, else `../shared/fixtures`
//! beside the checkout. A missing file fails the test rather than skipping it.

use std::path::PathBuf;

use pollwatch::sources::hj212::codec::crc::CrcMode;
use pollwatch::sources::hj212::codec::crypt::{
    decrypt_segment, encrypt_segment, DecryptError, Sm4Key,
};
use pollwatch::sources::hj212::codec::frame::{Frame, FrameDecoder};
use pollwatch::sources::hj212::codec::reply::encode_encrypted_frame;
use pollwatch::sources::hj212::codec::segment::DataSegment;

/// The standard's plaintext example (appendix A.2), key 16 × 0x30.
const VECTOR_1: &str = "QN=20240520210700000;ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&DataTime=20240520210600;a01011-Min=1.35,a01011-Avg=1.35,a01011-Max=1.35,a01011-Flag=N;a01012-Min=9.3,a01012-Avg=9.3,a01012-Max=9.3,a01012-Flag=N;a01014-Min=3.20,a01014-Avg=3.211,a01014-Max=3.212,a01014-Flag=N&&";

fn key_30() -> Sm4Key {
    Sm4Key::new([0x30; 16])
}

fn decode_all(stream: &[u8]) -> Vec<Frame> {
    let mut dec = FrameDecoder::new();
    let mut buf = stream.to_vec();
    let mut out = Vec::new();
    while let Some(r) = dec.finish(&mut buf) {
        out.push(r.unwrap_or_else(|e| panic!("frame error: {e}")));
    }
    out
}

fn hex_bytes(sent: &str) -> Vec<u8> {
    let open = sent.find('{').unwrap();
    let close = sent.find('}').unwrap();
    sent[open + 1..close]
        .split(',')
        .map(|b| u8::from_str_radix(b.trim_start_matches("0x"), 16).unwrap())
        .collect()
}

#[test]
fn the_standards_first_vector_encrypts_frames_and_decrypts() {
    let sent = encrypt_segment(VECTOR_1, &key_30());
    let bytes = hex_bytes(&sent);
    assert_eq!(bytes.len(), 208, "13 whole blocks");
    assert_eq!(
        &bytes[..16],
        &[
            0xE4, 0x3E, 0x15, 0x9A, 0xCF, 0xAB, 0x24, 0x2C, 0xB5, 0x31, 0x55, 0xFB, 0x8B, 0x92,
            0x81, 0xA1
        ]
    );
    assert_eq!(
        &bytes[199..],
        &[0x4A, 0x7B, 0x03, 0x50, 0xA4, 0x8D, 0xBF, 0x8B, 0x41]
    );
    assert!(sent.ends_with(",0x8B,0x41}&&"), "no plaintext tail");

    // As sent: the length field holds the plaintext length (0295), the CRC is
    // the plaintext's (2200); the frame is found by its end.
    let frame = encode_encrypted_frame(VECTOR_1, &key_30(), CrcMode::Hj212).unwrap();
    assert!(frame.starts_with(b"##0295QN=20240520210700000;"));
    assert!(frame.ends_with(b"&&2200\r\n"));
    let frames = decode_all(&frame);
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert!(f.crc_pending && !f.quirks.any(), "{f:?}");
    assert_eq!(f.crc_sent(), 0x2200);
    let plain = decrypt_segment(&f.segment_text(), &key_30()).unwrap();
    assert_eq!(plain, VECTOR_1);
    assert_eq!(CrcMode::Hj212.checksum(plain.as_bytes()), 0x2200);

    // With the transmitted length in the field it is found the same way.
    let body = &frame[6..];
    let mut as_sent = format!("##{:04}", body.len() - 6).into_bytes();
    as_sent.extend_from_slice(body);
    let again = decode_all(&as_sent);
    assert_eq!(again[0].segment, f.segment);
    assert!(again[0].crc_pending);
}

#[test]
fn the_second_examples_shape_whole_blocks_and_a_plaintext_tail() {
    // The standard's second example has a 147-byte area: 9 blocks and 3 bytes
    // ("g=N") left in plaintext. Its plaintext is not printed, so an area of the
    // same shape is used.
    let area = "DataTime=20240520210600;a01011-Min=1.35,a01011-Avg=1.35,a01011-Max=1.35,a01011-Flag=N;a01012-Min=9.30,a01012-Avg=9.30,a01012-Max=9.30,a01012-Flag=N";
    assert_eq!(area.len(), 147);
    let seg = format!("QN=20240520210700000;ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&{area}&&");
    let sent = encrypt_segment(&seg, &key_30());
    assert_eq!(hex_bytes(&sent).len(), 144);
    assert!(sent.ends_with("}g=N&&"), "{sent}");
    let frame = encode_encrypted_frame(&seg, &key_30(), CrcMode::Hj212).unwrap();
    let f = &decode_all(&frame)[0];
    let plain = decrypt_segment(&f.segment_text(), &key_30()).unwrap();
    assert_eq!(plain, seg);
    assert_eq!(CrcMode::Hj212.checksum(plain.as_bytes()), f.crc_sent());
}

pub struct FixtureFrame {
    pub expected: String,
    pub frame: String,
    pub plaintext: String,
}

fn fixture() -> (Sm4Key, Vec<FixtureFrame>) {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = match std::env::var_os("PW_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => manifest.join("../shared/fixtures"),
    };
    let path = dir.join("hj212/2025-encrypted.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; set PW_FIXTURES", path.display()));
    let key_hex = text
        .lines()
        .find_map(|l| l.split("key (32 hex digits) ").nth(1))
        .and_then(|rest| rest.split('.').next())
        .expect("key in the header");
    let frames: Vec<FixtureFrame> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split('\t');
            FixtureFrame {
                expected: parts.next().unwrap().to_string(),
                frame: parts.next().unwrap().to_string(),
                plaintext: parts.next().unwrap().to_string(),
            }
        })
        .collect();
    assert_eq!(frames.len(), 6);
    (Sm4Key::from_hex(key_hex).unwrap(), frames)
}

#[test]
fn fixture_frames_built_independently_decrypt_to_their_plaintext() {
    let (key, frames) = fixture();
    // All six glued together in one stream, as TCP may deliver them.
    let stream: String = frames.iter().map(|f| format!("{}\r\n", f.frame)).collect();
    let found = decode_all(stream.as_bytes());
    assert_eq!(found.len(), 6);
    let mut ok = 0;
    for (fx, f) in frames.iter().zip(&found) {
        assert!(f.crc_pending, "{}", fx.frame);
        let result = decrypt_segment(&f.segment_text(), &key);
        match fx.expected.as_str() {
            "ok" => {
                let plain = result.unwrap();
                assert_eq!(CrcMode::Hj212.checksum(plain.as_bytes()), f.crc_sent());
                let seg = DataSegment::parse(&plain).unwrap();
                assert_eq!(seg.cp_raw, Some(fx.plaintext.as_str()));
                assert_eq!(seg.mn, Some("010000A8900016F000PW0001"));
                ok += 1;
            }
            "bad_decrypt" => assert_eq!(result, Err(DecryptError::NotText)),
            other => panic!("unknown expectation {other}"),
        }
    }
    assert_eq!(ok, 5);
}

#[test]
fn our_encryption_matches_the_independent_one() {
    let (key, frames) = fixture();
    for fx in frames.iter().filter(|f| f.expected == "ok") {
        let f = &decode_all(format!("{}\r\n", fx.frame).as_bytes())[0];
        let plain = decrypt_segment(&f.segment_text(), &key).unwrap();
        assert_eq!(encrypt_segment(&plain, &key), f.segment_text());
    }
}
