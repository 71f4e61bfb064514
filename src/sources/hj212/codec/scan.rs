//! Byte-level helpers of the frame finder (`frame.rs`).
//!
//! Kept apart so `frame.rs` reads as the decision procedure while the small
//! questions it asks ("is this a frame end?", "where is the next `##`?") live
//! here with their own tests. Nothing here allocates except the garbage
//! preview, and nothing indexes in a way that can panic on peer input.

use super::error::FrameError;

/// `"##"` plus the 4-digit length field.
pub(super) const HEADER: usize = 6;
/// How many garbage bytes are quoted in an error: enough to recognise an HTTP
/// request or a TLS hello without copying a whole scan into the logs.
const PREVIEW: usize = 24;

/// What follows the four CRC characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Term {
    Crlf,
    /// A lone `"\r"` or `"\n"`.
    Single,
    /// The next frame's `"##"` directly.
    NextFrame,
    /// End of the buffer while the line is quiet.
    End,
    /// Some other byte: not proof of a frame end on its own.
    Other,
    /// Too few bytes to tell, and more may come.
    Partial,
}

impl Term {
    /// Evidence of a frame end even without a CRC match.
    pub(super) fn is_hard(self) -> bool {
        matches!(
            self,
            Term::Crlf | Term::Single | Term::NextFrame | Term::End
        )
    }
}

/// Classifies the bytes after a CRC; returns the terminator and how many of
/// its bytes belong to the frame. `quiet`: nothing more is expected now.
pub(super) fn classify(rest: &[u8], quiet: bool) -> (Term, usize) {
    match rest {
        [b'\r', b'\n', ..] => (Term::Crlf, 2),
        [b'#', b'#', ..] => (Term::NextFrame, 0),
        [] | [b'#'] if quiet => (Term::End, 0),
        [b'\r'] if quiet => (Term::End, 1),
        [] | [b'#'] | [b'\r'] => (Term::Partial, 0),
        [b'\r', ..] | [b'\n', ..] => (Term::Single, 1),
        _ => (Term::Other, 0),
    }
}

/// What sits at a possible segment end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    NeedMore,
    NotHex,
    End {
        term: Term,
        term_len: usize,
        sent: u16,
    },
}

/// Looks at the 4 bytes at `seg_end` (a CRC?) and what follows them.
pub(super) fn shape(buf: &[u8], seg_end: usize, quiet: bool) -> Shape {
    let Some(text) = buf.get(seg_end..seg_end + 4) else {
        return Shape::NeedMore;
    };
    let Some(sent) = parse_hex4(text) else {
        return Shape::NotHex;
    };
    match classify(buf.get(seg_end + 4..).unwrap_or(&[]), quiet) {
        (Term::Partial, _) => Shape::NeedMore,
        (term, term_len) => Shape::End {
            term,
            term_len,
            sent,
        },
    }
}

/// Garbage seen since the last frame start, so a scan that arrives in many
/// reads is reported once and not once per read.
#[derive(Debug, Clone, Default)]
pub(super) struct GarbageRun {
    pub(super) len: usize,
    preview: Vec<u8>,
    /// Blank lines between frames are common and harmless; only runs with
    /// some other byte are worth an error.
    noisy: bool,
    /// The run is the rest of a frame already reported as bad (its end had not
    /// arrived yet), so reporting it again would count one problem twice.
    pub(super) continues_error: bool,
}

impl GarbageRun {
    pub(super) fn absorb(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
        self.noisy |= bytes.iter().any(|&b| b != b'\r' && b != b'\n');
        let room = PREVIEW.saturating_sub(self.preview.len()).min(bytes.len());
        self.preview
            .extend_from_slice(bytes.get(..room).unwrap_or(&[]));
    }

    /// Ends the run; an error if it is worth one.
    pub(super) fn take_report(&mut self, before_frame: bool) -> Option<FrameError> {
        let run = std::mem::take(self);
        if run.len == 0 || !run.noisy || run.continues_error {
            return None;
        }
        let mut preview = format!("\"{}\"", run.preview.escape_ascii());
        if run.len > run.preview.len() {
            preview.push('…');
        }
        let skipped = run.len;
        Some(if before_frame {
            FrameError::Garbage { skipped, preview }
        } else {
            FrameError::GarbageAtEnd { skipped, preview }
        })
    }
}

/// The first `"##"` after the one the buffer starts with (they may overlap,
/// as in `"###"`).
pub(super) fn next_start(buf: &[u8]) -> Option<usize> {
    buf.get(1..)
        .and_then(|rest| find(rest, b"##"))
        .map(|i| i + 1)
}

pub(super) fn find(hay: &[u8], needle: &[u8; 2]) -> Option<usize> {
    hay.windows(2).position(|w| w == needle)
}

/// Four hex digits, either case.
pub(super) fn parse_hex4(text: &[u8]) -> Option<u16> {
    if text.len() != 4 {
        return None;
    }
    text.iter().try_fold(0u16, |n, &c| {
        let d = char::from(c).to_digit(16)?;
        Some(n << 4 | d as u16)
    })
}

/// Four decimal digits.
pub(super) fn parse_dec4(text: &[u8]) -> Option<usize> {
    if text.len() != 4 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminators() {
        assert_eq!(classify(b"\r\n##", false), (Term::Crlf, 2));
        assert_eq!(classify(b"##00", false), (Term::NextFrame, 0));
        assert_eq!(classify(b"\nx", false), (Term::Single, 1));
        assert_eq!(classify(b"\r#", false), (Term::Single, 1));
        assert_eq!(classify(b"#x", false), (Term::Other, 0));
        for partial in [&b""[..], b"#", b"\r"] {
            assert_eq!(classify(partial, false).0, Term::Partial);
            assert_eq!(classify(partial, true).0, Term::End);
        }
        assert_eq!(classify(b"\r", true), (Term::End, 1));
    }

    #[test]
    fn shapes() {
        assert_eq!(shape(b"xx1C8", 2, true), Shape::NeedMore);
        assert_eq!(shape(b"xx1C8G\r\n", 2, false), Shape::NotHex);
        assert_eq!(
            shape(b"xx1c80\r\n", 2, false),
            Shape::End {
                term: Term::Crlf,
                term_len: 2,
                sent: 0x1C80
            }
        );
        assert_eq!(shape(b"xx1c80", 2, false), Shape::NeedMore);
    }

    #[test]
    fn numbers_and_starts() {
        assert_eq!(parse_hex4(b"aBcD"), Some(0xABCD));
        assert_eq!(parse_hex4(b"+BCD"), None);
        assert_eq!(parse_dec4(b"0101"), Some(101));
        assert_eq!(parse_dec4(b"01a1"), None);
        assert_eq!(next_start(b"###"), Some(1));
        assert_eq!(next_start(b"##0101"), None);
        assert_eq!(next_start(b"##01##"), Some(4));
    }

    #[test]
    fn garbage_runs() {
        let mut run = GarbageRun::default();
        run.absorb(b"\r\n");
        assert_eq!(run.take_report(true), None);
        run.absorb(&[b'x'; 30]);
        let e = run.take_report(false).unwrap().to_string();
        assert!(
            e.starts_with("skipped 30 bytes of garbage with no frame start"),
            "{e}"
        );
        assert_eq!(run.len, 0);
    }
}
