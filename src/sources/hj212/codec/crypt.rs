//! HJ 212-2025 encrypted data areas (§6.4, appendix A.2): SM4 in ECB mode, no
//! padding, one 16-byte key per logger.
//!
//! Only the CP data area (between `CP=&&` and the closing `&&`) is encrypted, and only
//! its whole 16-byte blocks: a shorter tail stays plaintext. The ciphertext travels as
//! text, `{0xE4,0x3E,…}`, followed by the plaintext tail, so an encrypted segment is
//! still ASCII and its header (QN, ST, CN, PW, MN, Flag) can be read before the key is
//! known — which is how the server finds the key: by the segment's own MN.
//!
//! The CRC is computed over the **plaintext** segment, so the frame finder cannot
//! check it; it hands such a frame over with [`Frame::crc_pending`] set and the
//! caller checks the CRC after [`decrypt_segment`]. This module stays pure (no I/O,
//! no key files): the key arrives as a [`Sm4Key`], which never prints itself.
//!
//! The block cipher is RustCrypto's `sm4`; ECB over whole blocks is nothing more
//! than the block cipher applied to each block in turn, so no mode crate is needed.
//!
//! [`Frame::crc_pending`]: super::frame::Frame::crc_pending

use std::fmt;

use sm4::cipher::generic_array::GenericArray;
use sm4::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use sm4::Sm4;
use thiserror::Error;

/// SM4 block size in bytes.
pub const BLOCK: usize = 16;

/// Where an encrypted data area begins. Plaintext CP items start with a key
/// (`DataTime=…`, `a21026-Rtd=…`), never with `{`.
const OPEN: &[u8] = b"CP=&&{";

/// A logger's 16-byte SM4 key. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Sm4Key([u8; BLOCK]);

impl Sm4Key {
    pub fn new(bytes: [u8; BLOCK]) -> Self {
        Sm4Key(bytes)
    }

    /// 32 hex digits, either case; surrounding whitespace (a trailing newline
    /// from an editor) is ignored. The error never quotes the text.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.len() != 2 * BLOCK {
            return Err(KeyError::Length(text.chars().count()));
        }
        let mut key = [0u8; BLOCK];
        for (i, byte) in key.iter_mut().enumerate() {
            let pair = text
                .get(2 * i..2 * i + 2)
                .filter(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or(KeyError::NotHex)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| KeyError::NotHex)?;
        }
        Ok(Sm4Key(key))
    }

    fn cipher(&self) -> Sm4 {
        Sm4::new(GenericArray::from_slice(&self.0))
    }
}

impl fmt::Debug for Sm4Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sm4Key(<redacted>)")
    }
}

impl fmt::Display for Sm4Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why key text was refused. Says what is wrong, never what the text was.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("an SM4 key is 32 hex digits; found {0} characters")]
    Length(usize),
    #[error("an SM4 key is 32 hex digits; found a character that is not a hex digit")]
    NotHex,
}

/// Why an encrypted data area could not be turned into plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecryptError {
    #[error("data area is not encrypted")]
    NotEncrypted,
    #[error("ciphertext is not written as {{0xNN,…}}: {0}")]
    BadText(&'static str),
    #[error("ciphertext is {0} bytes, not a whole number of 16-byte blocks")]
    NotWholeBlocks(usize),
    /// The usual sign of a wrong key: the blocks decrypt to bytes that are not text.
    #[error("decrypted data area is not text (wrong key?)")]
    NotText,
}

/// True when the segment's data area is written as `{0x…}` ciphertext. Looks only
/// at the `{` bytes (a plaintext segment has none outside `//…//` text).
pub fn is_encrypted(segment: &[u8]) -> bool {
    segment
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'{' && i >= 5 && segment.get(i - 5..i) == Some(&OPEN[..5]))
}

/// The plaintext segment: the header as sent, `CP=&&`, the decrypted blocks, the
/// plaintext tail and the rest. Pure; the caller checks the CRC over the result.
pub fn decrypt_segment(segment: &str, key: &Sm4Key) -> Result<String, DecryptError> {
    let start = segment.find("CP=&&{").ok_or(DecryptError::NotEncrypted)? + 5;
    let (head, area) = segment.split_at(start);
    let area = area.strip_prefix('{').ok_or(DecryptError::NotEncrypted)?;
    let close = area
        .find('}')
        .ok_or(DecryptError::BadText("no closing brace"))?;
    let (hex, rest) = area.split_at(close);
    let rest = rest.get(1..).unwrap_or("");
    let mut bytes = parse_hex_list(hex.as_bytes())?;
    if bytes.is_empty() || bytes.len() % BLOCK != 0 {
        return Err(DecryptError::NotWholeBlocks(bytes.len()));
    }
    let cipher = key.cipher();
    for block in bytes.chunks_exact_mut(BLOCK) {
        cipher.decrypt_block(GenericArray::from_mut_slice(block));
    }
    // A wrong key yields random bytes; real data areas are printable text.
    let plain = String::from_utf8(bytes).map_err(|_| DecryptError::NotText)?;
    if plain.chars().any(char::is_control) {
        return Err(DecryptError::NotText);
    }
    let mut out = String::with_capacity(head.len() + plain.len() + rest.len());
    out.push_str(head);
    out.push_str(&plain);
    out.push_str(rest);
    Ok(out)
}

/// `0xE4,0x3E,…` (either case, spaces around items allowed) as bytes. One pass
/// over the text: this runs for every encrypted frame.
fn parse_hex_list(text: &[u8]) -> Result<Vec<u8>, DecryptError> {
    let mut out = Vec::with_capacity(text.len() / 5 + 1);
    for item in text.split(|&b| b == b',') {
        let item = item.trim_ascii();
        let digits = match item {
            [b'0', b'x' | b'X', d @ ..] => d,
            _ => return Err(DecryptError::BadText("an item lacks 0x")),
        };
        let nibble = |c: u8| char::from(c).to_digit(16);
        let value = match digits {
            [a] => nibble(*a),
            [a, b] => nibble(*a).zip(nibble(*b)).map(|(a, b)| a << 4 | b),
            _ => return Err(DecryptError::BadText("an item is not one byte")),
        };
        let value = value.ok_or(DecryptError::BadText("an item is not hex"))?;
        out.push(u8::try_from(value).map_err(|_| DecryptError::BadText("an item is not hex"))?);
    }
    Ok(out)
}

/// Encrypts a plaintext segment's data area as a 2025 logger does: whole blocks
/// become `{0xNN,…}`, a tail under 16 bytes stays plaintext. For simulators and
/// benchmarks; a segment without a CP area, or one shorter than a block, is
/// returned unchanged.
pub fn encrypt_segment(segment: &str, key: &Sm4Key) -> String {
    let Some(open) = segment.find("CP=&&") else {
        return segment.to_string();
    };
    let start = open + 5;
    let Some(close) = segment.rfind("&&").filter(|&c| c >= start) else {
        return segment.to_string();
    };
    let area = segment.get(start..close).unwrap_or("").as_bytes();
    let whole = area.len() / BLOCK * BLOCK;
    if whole == 0 {
        return segment.to_string();
    }
    let cipher = key.cipher();
    let mut blocks = area.get(..whole).unwrap_or(&[]).to_vec();
    for block in blocks.chunks_exact_mut(BLOCK) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    let hex: Vec<String> = blocks.iter().map(|b| format!("0x{b:02X}")).collect();
    let tail = String::from_utf8_lossy(area.get(whole..).unwrap_or(&[]));
    format!(
        "{}{{{}}}{}{}",
        segment.get(..start).unwrap_or(""),
        hex.join(","),
        tail,
        segment.get(close..).unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text() {
        let k = Sm4Key::from_hex(" 7a3f0c5512E94B6D88A1C4F02B9E6D31\n").unwrap();
        assert_eq!(format!("{k:?} {k}"), "Sm4Key(<redacted>) <redacted>");
        assert_eq!(Sm4Key::from_hex("00"), Err(KeyError::Length(2)));
        let e = Sm4Key::from_hex("7A3F0C5512E94B6D88A1C4F02B9E6DZZ").unwrap_err();
        assert_eq!(e, KeyError::NotHex);
        assert!(!e.to_string().contains("ZZ"));
    }

    #[test]
    fn round_trip_keeps_the_tail_plain() {
        let key = Sm4Key::new([0x30; 16]);
        let seg =
            "QN=1;ST=31;CN=2051;PW=1;MN=M;Flag=9;CP=&&DataTime=20240520210600;a01011-Avg=1.35&&";
        let enc = encrypt_segment(seg, &key);
        assert!(is_encrypted(enc.as_bytes()));
        assert!(enc.ends_with("}vg=1.35&&"), "{enc}");
        assert_eq!(decrypt_segment(&enc, &key).unwrap(), seg);
        let wrong = Sm4Key::new([0x31; 16]);
        assert_eq!(decrypt_segment(&enc, &wrong), Err(DecryptError::NotText));
    }

    #[test]
    fn malformed_ciphertext() {
        let key = Sm4Key::new([0x30; 16]);
        let bad = |s: &str| decrypt_segment(s, &key).unwrap_err();
        assert_eq!(bad("CN=2011;CP=&&a=1&&"), DecryptError::NotEncrypted);
        assert_eq!(bad("CP=&&{0x01,0x02}&&"), DecryptError::NotWholeBlocks(2));
        assert!(matches!(bad("CP=&&{0x01,02}&&"), DecryptError::BadText(_)));
        assert!(matches!(bad("CP=&&{0x01&&"), DecryptError::BadText(_)));
        assert!(matches!(bad("CP=&&{0x123}&&"), DecryptError::BadText(_)));
    }
}
