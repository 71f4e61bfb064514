//! Finding HJ 212 frames in a TCP byte stream.
//!
//! A frame is `"##" LLLL <segment> CCCC "\r\n"`. TCP gives no message
//! boundaries, loggers bend the format, and the port is public, so the finder
//! is built around three promises:
//!
//! 1. **Bad bytes never cost a good frame.** Every error consumes bytes only up
//!    to (never past) the next `"##"` after the one it started at, and garbage is
//!    skipped only up to a `"##"`, so every frame start is looked at. A real
//!    frame can vanish only if an earlier `"##"` begins a span that itself
//!    passes the CRC check and covers it (for random bytes about one chance in
//!    65 536 per such `"##"`); the property tests check exactly this. One
//!    exception is accepted: a frame whose length field is wrong *and* whose
//!    opaque text contains something shaped like a frame end.
//! 2. **Memory is bounded by configuration, not by what the peer claims.**
//!    Nothing is allocated from the length field; bytes are only kept while a
//!    frame of at most `max_len` could still complete, so when `decode` returns
//!    `None` the buffer holds at most [`FrameDecoder::max_buffered`] bytes.
//!    Garbage without a frame start is dropped as it arrives.
//! 3. **Tolerate what real loggers send, and say so.** The length field is
//!    tried first (bytes, as the standard says). If the bytes do not line up
//!    (some senders count characters when Chinese text is inside), the end is
//!    found as `"&&"` + 4 hex digits + a terminator, with one running CRC so the
//!    scan stays linear. Lowercase CRCs and a missing `"\r\n"` are accepted.
//!    Each deviation is recorded in [`Quirks`] so the server can count it.
//!
//! **When is a frame without `"\r\n"` complete?** When its CRC is followed by
//! `"##"`, a lone `"\r"`/`"\n"`, or (if the segment ends with `"&&"`) any other
//! byte. A CRC that is the last byte received is ambiguous — the trailer may be
//! in the next TCP segment — so [`FrameDecoder::decode`] waits, and
//! [`FrameDecoder::decode_idle`], which the caller uses once the peer has been
//! quiet for a while (a second or two; loggers send a frame in one burst),
//! takes the end of the buffer as the frame end. When the connection closes,
//! [`FrameDecoder::finish`] gives up frames that can no longer complete.
//!
//! **Encrypted frames (HJ 212-2025).** Their CRC covers the *plaintext* segment and
//! their length field often holds the plaintext length, so neither can be checked
//! here. A segment whose data area is SM4 ciphertext (`CP=&&{0x…`) and whose end is
//! found with a hard terminator, with no `"##"` inside it, is handed over with
//! [`Frame::crc_pending`] set; the caller decrypts it and checks the CRC then.
//!
//! **A frame cut short** (logger reset, serial glitch behind a DTU) is given up
//! as soon as a later `"##"` already holds a complete valid frame, instead of
//! waiting for its declared length, so the resent frame is answered in time.
//!
//! The decoder is pure: the caller owns the `Vec<u8>`, appends what it reads
//! and calls `decode` until it returns `None`. Between calls the caller must
//! only append to the buffer.

use std::borrow::Cow;

use super::crc::{CrcMode, CrcState};
use super::error::FrameError;
use super::scan::{find, next_start, parse_dec4, shape, GarbageRun, Shape, Term, HEADER};

/// The largest segment length a 4-digit length field can express.
pub const MAX_FRAME_LEN: usize = 9999;

/// Cap on CRC checks of later frame starts per call, so crafted input cannot
/// make waiting for one long frame expensive.
const MAX_PROBES: usize = 4;

/// One frame as received. The segment is kept byte-for-byte as evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The data segment exactly as sent (not necessarily UTF-8).
    pub segment: Vec<u8>,
    /// The four CRC characters as sent (hex, either case).
    pub crc_text: [u8; 4],
    /// The value of the length field.
    pub declared_len: usize,
    /// Deviations from the standard that were tolerated.
    pub quirks: Quirks,
    /// The data area is SM4 ciphertext and the CRC did not match the segment as
    /// sent: it must be checked over the plaintext after decryption.
    pub crc_pending: bool,
}

impl Frame {
    /// The CRC value the sender wrote (it matched the computed one).
    pub fn crc_sent(&self) -> u16 {
        super::scan::parse_hex4(&self.crc_text).unwrap_or(0)
    }

    /// The segment as text for parsing. Borrowed when it is UTF-8 (the normal
    /// case, so no allocation); otherwise invalid bytes — which belong only in
    /// opaque `//…//` text — are replaced, and `segment` keeps the originals.
    pub fn segment_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.segment)
    }
}

/// Tolerated deviations, so the server can count them per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quirks {
    /// The CRC was written with lowercase hex digits.
    pub lowercase_crc: bool,
    /// The length field counted characters, not bytes.
    pub char_counted_length: bool,
    /// The length field matched neither bytes nor characters; the frame was
    /// found by its `&&CCCC` end and accepted because the CRC matched.
    pub wrong_length: bool,
    /// The frame did not end with `"\r\n"`.
    pub missing_crlf: bool,
}

impl Quirks {
    /// True when any deviation was seen.
    pub fn any(&self) -> bool {
        self.lowercase_crc || self.char_counted_length || self.wrong_length || self.missing_crlf
    }
}

/// Stateful frame finder; one per connection.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_len: usize,
    crc_mode: CrcMode,
    run: GarbageRun,
    /// Buffer length at the last search for a later complete frame: frame
    /// starts whose end lay inside it were already judged and are skipped, so
    /// waiting on a long frame costs a scan per read, not a CRC per read.
    probed: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// How much more input the caller expects right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stream,
    Idle,
    Closed,
}

/// Outcome of looking at a frame start.
enum Step {
    Frame(Frame, usize),
    /// An error, the bytes it consumed, and whether the bytes up to the next
    /// `"##"` still belong to it (they had not all arrived).
    Error(FrameError, usize, bool),
    Wait,
}

impl FrameDecoder {
    /// Standard CRC, segments up to 9999 bytes.
    pub fn new() -> Self {
        Self::with_config(MAX_FRAME_LEN, CrcMode::Hj212)
    }

    /// A smaller size limit (capped at 9999) or a device's configured CRC.
    pub fn with_config(max_len: usize, crc_mode: CrcMode) -> Self {
        FrameDecoder {
            max_len: max_len.min(MAX_FRAME_LEN),
            crc_mode,
            run: GarbageRun::default(),
            probed: 0,
        }
    }

    /// Largest accepted segment length.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// CRC variant in use.
    pub fn crc_mode(&self) -> CrcMode {
        self.crc_mode
    }

    /// Upper bound on `buf.len()` whenever a decode call returns `None`:
    /// header, a maximal segment, the CRC and the first byte of a terminator.
    pub fn max_buffered(&self) -> usize {
        HEADER + self.max_len + 4 + 1
    }

    /// Takes the next frame or error from the front of `buf`; `None` means
    /// more bytes are needed.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Option<Result<Frame, FrameError>> {
        self.next(buf, Mode::Stream)
    }

    /// Like [`decode`](Self::decode), once the peer has been quiet for a while:
    /// the end of the buffer may end a frame and a pending garbage run is
    /// reported. An incomplete frame is kept; the sender may still finish it.
    pub fn decode_idle(&mut self, buf: &mut Vec<u8>) -> Option<Result<Frame, FrameError>> {
        self.next(buf, Mode::Idle)
    }

    /// Like [`decode_idle`](Self::decode_idle), after the connection closed:
    /// an incomplete frame is reported as [`FrameError::Truncated`] and the
    /// bytes after it are still searched. Call until `None`; `buf` is then empty.
    pub fn finish(&mut self, buf: &mut Vec<u8>) -> Option<Result<Frame, FrameError>> {
        self.next(buf, Mode::Closed)
    }

    fn next(&mut self, buf: &mut Vec<u8>, mode: Mode) -> Option<Result<Frame, FrameError>> {
        if buf.len() < self.probed {
            self.probed = 0; // the caller replaced the buffer
        }
        loop {
            if buf.starts_with(b"##") {
                if let Some(e) = self.run.take_report(true) {
                    return Some(Err(e));
                }
                return match self.at_start(buf, mode) {
                    Step::Frame(frame, used) => {
                        self.consume(buf, used);
                        Some(Ok(frame))
                    }
                    Step::Error(err, used, continues) => {
                        self.consume(buf, used);
                        self.run.continues_error = continues;
                        Some(Err(err))
                    }
                    Step::Wait => None,
                };
            }
            if let Some(start) = find(buf, b"##") {
                self.run.absorb(buf.get(..start).unwrap_or(&[]));
                self.consume(buf, start);
                continue;
            }
            // No frame start: drop everything except a final '#', which may
            // be the first half of one (unless nothing more will come).
            let keep = usize::from(mode != Mode::Closed && buf.last() == Some(&b'#'));
            let cut = buf.len() - keep;
            self.run.absorb(buf.get(..cut).unwrap_or(&[]));
            self.consume(buf, cut);
            if mode != Mode::Stream {
                if let Some(e) = self.run.take_report(false) {
                    return Some(Err(e));
                }
            }
            return None;
        }
    }

    fn consume(&mut self, buf: &mut Vec<u8>, n: usize) {
        buf.drain(..n.min(buf.len()));
        self.probed = 0;
    }

    /// `buf` starts with `"##"`.
    fn at_start(&mut self, buf: &[u8], mode: Mode) -> Step {
        let quiet = mode != Mode::Stream;
        let field = buf.get(2..buf.len().min(HEADER)).unwrap_or(&[]);
        let digits = field.iter().all(u8::is_ascii_digit);
        // Judge the field only once all four bytes are in (or nothing more is
        // coming now), so the outcome does not depend on how TCP split it.
        if field.len() < 4 && (digits || !quiet) {
            return self.undecided(buf, None, mode);
        }
        let Some(declared) = parse_dec4(field) else {
            let field = field.escape_ascii().to_string();
            return self.fail(buf, None, FrameError::BadLengthField { field });
        };
        if declared > self.max_len {
            let err = FrameError::TooLong {
                len: declared,
                limit: self.max_len,
            };
            return self.fail(buf, None, err);
        }

        let seg_end = HEADER + declared;
        let step = match shape(buf, seg_end, quiet) {
            // Not all declared bytes are here. Only a CRC-valid end found by
            // searching may settle it early (a length field that is too big);
            // rejecting now could break a frame that is still arriving.
            Shape::NeedMore if quiet => self.search_end(buf, declared, quiet, false),
            Shape::NeedMore => Step::Wait,
            Shape::End {
                term,
                term_len,
                sent,
            } => {
                let seg = buf.get(HEADER..seg_end).unwrap_or(&[]);
                let computed = self.crc_mode.checksum(seg);
                if computed == sent && (term.is_hard() || seg.ends_with(b"&&")) {
                    return self.accept(buf, seg_end, (term, term_len), declared, false);
                }
                // Length, hex and terminator all line up: the frame is where
                // it says it is and only the CRC is wrong.
                if computed != sent && term.is_hard() {
                    if encrypted_span(buf, seg_end) {
                        return self.accept(buf, seg_end, (term, term_len), declared, true);
                    }
                    let err = bad_crc(buf, seg_end, computed);
                    return self.fail(buf, Some((seg_end + 4 + term_len, declared)), err);
                }
                self.search_end(buf, declared, quiet, true)
            }
            Shape::NotHex => self.search_end(buf, declared, quiet, true),
        };
        match step {
            Step::Wait => self.undecided(buf, Some(declared), mode),
            step => step,
        }
    }

    /// The length field did not lead to a frame end: look for `&&CCCC` plus a
    /// terminator, extending one CRC as the candidate end moves right.
    /// Without `may_reject`, only a CRC-valid end settles anything.
    fn search_end(&self, buf: &[u8], declared: usize, quiet: bool, may_reject: bool) -> Step {
        let limit_end = HEADER + self.max_len;
        let mut crc = CrcState::new(self.crc_mode);
        let mut hashed = HEADER;
        let mut from = HEADER;
        while let Some(off) = buf.get(from..).and_then(|rest| find(rest, b"&&")) {
            let amp = from + off;
            let seg_end = amp + 2;
            if seg_end > limit_end {
                break;
            }
            match shape(buf, seg_end, quiet) {
                Shape::NeedMore => return Step::Wait,
                Shape::NotHex => {}
                Shape::End {
                    term,
                    term_len,
                    sent,
                } => {
                    crc = crc.update(buf.get(hashed..seg_end).unwrap_or(&[]));
                    hashed = seg_end;
                    let computed = crc.finish();
                    if computed == sent {
                        return self.accept(buf, seg_end, (term, term_len), declared, false);
                    }
                    if term.is_hard() && encrypted_span(buf, seg_end) {
                        return self.accept(buf, seg_end, (term, term_len), declared, true);
                    }
                    if term.is_hard() && may_reject {
                        let err = bad_crc(buf, seg_end, computed);
                        return self.fail(buf, Some((seg_end + 4 + term_len, declared)), err);
                    }
                }
            }
            // In `&&&&CCCC` the end is the last pair, so step by one.
            from = amp + 1;
        }
        if may_reject && buf.len() >= limit_end {
            return self.fail(
                buf,
                None,
                FrameError::NoEnd {
                    limit: self.max_len,
                },
            );
        }
        Step::Wait
    }

    /// No decision yet about the frame start at the front of `buf`.
    fn undecided(&mut self, buf: &[u8], declared: Option<usize>, mode: Mode) -> Step {
        let next = next_start(buf);
        if let (Some(declared), Some(after)) = (declared, next) {
            // Give up only up to the *first* later "##", whichever later
            // frame proved the cut: the bytes between may hold more frames.
            if self.holds_later_frame(buf, mode != Mode::Stream) {
                return Step::Error(FrameError::Interrupted { declared, after }, after, false);
            }
        }
        if mode == Mode::Closed {
            let len = next.unwrap_or(buf.len());
            return Step::Error(FrameError::Truncated { len }, len, false);
        }
        Step::Wait
    }

    /// Does a later `"##"` already hold a complete, CRC-valid frame? Then the
    /// frame at the front was cut short.
    fn holds_later_frame(&mut self, buf: &[u8], quiet: bool) -> bool {
        let judged = std::mem::replace(&mut self.probed, buf.len());
        let mut checks = 0;
        let mut from = 1;
        while let Some(off) = buf.get(from..).and_then(|rest| find(rest, b"##")) {
            let at = from + off;
            from = at + 1;
            let inner = buf.get(at..).unwrap_or(&[]);
            let Some(declared) = inner.get(2..HEADER).and_then(parse_dec4) else {
                continue;
            };
            let seg_end = HEADER + declared;
            // Its CRC and two terminator bytes were already there last time.
            if declared > self.max_len || at + seg_end + 6 <= judged {
                continue;
            }
            if let Shape::End { term, sent, .. } = shape(inner, seg_end, quiet) {
                checks += 1;
                if checks > MAX_PROBES {
                    self.probed = judged; // not all judged: look again next time
                    return false;
                }
                let seg = inner.get(HEADER..seg_end).unwrap_or(&[]);
                if self.crc_mode.checksum(seg) == sent && (term.is_hard() || seg.ends_with(b"&&")) {
                    return true;
                }
            }
        }
        false
    }

    /// `crc_pending`: an encrypted frame whose CRC is checked after decryption;
    /// either length (plaintext or as sent) is normal for it.
    fn accept(
        &self,
        buf: &[u8],
        seg_end: usize,
        (term, term_len): (Term, usize),
        declared: usize,
        crc_pending: bool,
    ) -> Step {
        let segment = buf.get(HEADER..seg_end).unwrap_or(&[]).to_vec();
        let mut crc_text = [b'0'; 4];
        if let Some(text) = buf.get(seg_end..seg_end + 4) {
            crc_text.copy_from_slice(text);
        }
        let counted_chars = segment.len() != declared
            && std::str::from_utf8(&segment).is_ok_and(|s| s.chars().count() == declared);
        let quirks = Quirks {
            lowercase_crc: crc_text.iter().any(u8::is_ascii_lowercase),
            char_counted_length: counted_chars && !crc_pending,
            wrong_length: segment.len() != declared && !counted_chars && !crc_pending,
            missing_crlf: term != Term::Crlf,
        };
        let frame = Frame {
            segment,
            crc_text,
            declared_len: declared,
            quirks,
            crc_pending,
        };
        Step::Frame(frame, seg_end + 4 + term_len)
    }

    /// Consumes a failed frame start without passing the next `"##"`.
    /// `natural` is where the failed frame would have ended, and its declared
    /// length, when known.
    fn fail(&self, buf: &[u8], natural: Option<(usize, usize)>, err: FrameError) -> Step {
        match (natural, next_start(buf)) {
            (Some((end, declared)), Some(after)) if after < end => {
                Step::Error(FrameError::Interrupted { declared, after }, after, false)
            }
            (Some((end, _)), _) => Step::Error(err, end, false),
            (None, Some(after)) => Step::Error(err, after, false),
            (None, None) => {
                // The rest of this frame has not arrived; what comes before the
                // next "##" belongs to this error and is skipped silently.
                let keep = usize::from(buf.last() == Some(&b'#'));
                Step::Error(err, buf.len().saturating_sub(keep).max(1), true)
            }
        }
    }
}

/// Does the span from the frame start to `seg_end` hold an SM4 data area and no
/// later frame start? Only then may it be accepted before its CRC is known:
/// consuming it can never swallow a `"##"`.
fn encrypted_span(buf: &[u8], seg_end: usize) -> bool {
    let seg = buf.get(HEADER..seg_end).unwrap_or(&[]);
    super::crypt::is_encrypted(seg) && next_start(buf).is_none_or(|at| at >= seg_end)
}

fn bad_crc(buf: &[u8], seg_end: usize, computed: u16) -> FrameError {
    let sent = buf.get(seg_end..seg_end + 4).unwrap_or(&[]);
    FrameError::BadCrc {
        sent: String::from_utf8_lossy(sent).into_owned(),
        computed,
        segment: buf.get(HEADER..seg_end).unwrap_or(&[]).to_vec(),
    }
}
