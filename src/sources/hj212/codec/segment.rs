//! Parsing an HJ 212 data segment (`QN=…;ST=…;CN=…;…;CP=&&…&&`).
//!
//! Fields are looked up **by key, never by position**: real loggers reorder
//! them, leave out QN and Flag (2005-era devices) and use MNs of any shape, so
//! the only field insisted on is CN (without it nothing can be done with the
//! frame). Known header fields may not repeat, because picking one of two MNs
//! or passwords would be a silent guess about who is talking.
//!
//! The CP area is kept as one ordered, flat `Vec` of `key=value` fields, each
//! tagged with the index of the `;`-separated item it belongs to. Order and
//! duplicates are preserved (both happen and both carry meaning, e.g. `PolId`
//! introduces the fields after it), and one flat `Vec` is a single allocation;
//! [`DataSegment::items`] gives the grouped view. Every string borrows from the
//! frame, so parsing copies no text.
//!
//! Text values written `//…//` (such as `i11001-Info=//…//`) are opaque and may
//! contain `;`, `,`, `=` and even `&&`: the CP area therefore ends at the *last*
//! `&&` of the segment, and an opaque value ends at the first `//` that is
//! followed by a separator or the end of the area.

use super::error::{clip, SegmentError};
use super::time::LocalDateTime;

/// The `Flag` header field: bit 0 = reply wanted (A), bit 1 = split packet
/// (D), bits 2–7 = protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flag(pub u8);

/// The protocol generation encoded in bits 2–7 of `Flag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// 0, or no Flag field at all (HJ/T 212-2005).
    V2005,
    /// 1 (HJ 212-2017).
    V2017,
    /// 2 (HJ 212-2025). Some 2017-era firmware already sent it (Flag 8/9 in
    /// 2019 traffic), so treat it as "newer than 2017", not as proof.
    V2025,
    /// Any other value, kept so it can be logged.
    Other(u8),
}

impl Flag {
    /// The sender waits for a data answer (9014) or notification answer.
    pub fn reply_wanted(self) -> bool {
        self.0 & 1 != 0
    }

    /// The upload is one part of a split packet (PNUM/PNO present).
    pub fn split(self) -> bool {
        self.0 & 2 != 0
    }

    /// The raw version number from bits 2–7.
    pub fn version_number(self) -> u8 {
        self.0 >> 2
    }

    /// The version number as a protocol generation.
    pub fn version(self) -> ProtocolVersion {
        match self.version_number() {
            0 => ProtocolVersion::V2005,
            1 => ProtocolVersion::V2017,
            2 => ProtocolVersion::V2025,
            n => ProtocolVersion::Other(n),
        }
    }
}

/// One `key=value` field of the CP area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpField<'a> {
    /// Index of the `;`-separated item (group) this field belongs to.
    pub item: usize,
    pub key: &'a str,
    /// The value as sent, including `//` delimiters of opaque text; empty
    /// when the field had no `=`.
    pub value: &'a str,
}

impl<'a> CpField<'a> {
    /// The value without the `//…//` delimiters of opaque text.
    pub fn text(&self) -> &'a str {
        if self.value.len() >= 4 {
            if let Some(inner) = self
                .value
                .strip_prefix("//")
                .and_then(|v| v.strip_suffix("//"))
            {
                return inner;
            }
        }
        self.value
    }
}

/// A per-factor CP field, `<code>-<suffix>=<value>`, such as `a21026-Rtd=12.3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Factor<'a> {
    /// Index of the CP item, to relate the field to a `PolId` in the same item.
    pub item: usize,
    /// Factor or device code, e.g. `a21026`, `w01018`, `SB1`, `011`.
    pub code: &'a str,
    /// What the value is, e.g. `Rtd`, `ZsAvg`, `Flag`, `RS`, `Info`.
    pub suffix: &'a str,
    pub value: &'a str,
}

/// A parsed data segment, borrowing from the frame's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSegment<'a> {
    /// Request id; echoed exactly in answers.
    pub qn: Option<&'a str>,
    /// System code (31 flue gas, 32 wastewater, 21 surface water, 91 system…).
    pub st: Option<&'a str>,
    /// Command number (2011, 2051, 2061, 9014…).
    pub cn: &'a str,
    pub pw: Option<&'a str>,
    pub mn: Option<&'a str>,
    /// `None` for 2005-style frames, which means "no reply wanted".
    pub flag: Option<Flag>,
    pub pnum: Option<u32>,
    pub pno: Option<u32>,
    /// Text between `CP=&&` and the final `&&`; `None` when there is no CP field.
    pub cp_raw: Option<&'a str>,
    /// The CP fields in order.
    pub cp: Vec<CpField<'a>>,
    /// Header fields this parser does not know, in order.
    pub other: Vec<(&'a str, &'a str)>,
}

impl<'a> DataSegment<'a> {
    /// HJ 212-2025 `RF=1`: the packet is a resend from the logger's backlog. A
    /// real-time packet has no RF at all; other values are not refused, only
    /// not taken as a resend.
    pub fn is_resend(&self) -> bool {
        self.other
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("RF") && v.trim() == "1")
    }

    /// Parses a segment (the bytes between the length field and the CRC).
    pub fn parse(text: &'a str) -> Result<Self, SegmentError> {
        let mut seg = DataSegment {
            qn: None,
            st: None,
            cn: "",
            pw: None,
            mn: None,
            flag: None,
            pnum: None,
            pno: None,
            cp_raw: None,
            cp: Vec::new(),
            other: Vec::new(),
        };
        let mut cn = None;
        let mut rest = text;
        while !rest.is_empty() {
            if rest.get(..3).is_some_and(|k| k.eq_ignore_ascii_case("CP=")) {
                if seg.cp_raw.is_some() {
                    return Err(SegmentError::Duplicate("CP"));
                }
                let body = rest.get(3..).unwrap_or("");
                let open = body.strip_prefix("&&").ok_or(SegmentError::CpNotOpened)?;
                let close = open.rfind("&&").ok_or(SegmentError::CpNotTerminated)?;
                let content = open.get(..close).unwrap_or("");
                seg.cp_raw = Some(content);
                seg.cp = parse_cp(content);
                let after = open.get(close + 2..).unwrap_or("");
                if after.is_empty() {
                    break;
                }
                rest = after
                    .strip_prefix(';')
                    .ok_or_else(|| SegmentError::TextAfterCp(clip(after)))?;
                continue;
            }
            let (field, next) = rest.split_once(';').unwrap_or((rest, ""));
            rest = next;
            if field.is_empty() {
                continue;
            }
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| SegmentError::NoEquals(clip(field)))?;
            seg.set_header(key, value, &mut cn)?;
        }
        seg.cn = cn
            .filter(|c| !c.is_empty())
            .ok_or(SegmentError::MissingCn)?;
        Ok(seg)
    }

    fn set_header(
        &mut self,
        key: &'a str,
        value: &'a str,
        cn: &mut Option<&'a str>,
    ) -> Result<(), SegmentError> {
        fn put<T>(slot: &mut Option<T>, name: &'static str, v: T) -> Result<(), SegmentError> {
            if slot.is_some() {
                return Err(SegmentError::Duplicate(name));
            }
            *slot = Some(v);
            Ok(())
        }
        let is = |name: &str| key.eq_ignore_ascii_case(name);
        if is("QN") {
            put(&mut self.qn, "QN", value)
        } else if is("ST") {
            put(&mut self.st, "ST", value)
        } else if is("CN") {
            put(cn, "CN", value)
        } else if is("PW") {
            put(&mut self.pw, "PW", value)
        } else if is("MN") {
            put(&mut self.mn, "MN", value)
        } else if is("Flag") {
            put(&mut self.flag, "Flag", Flag(number("Flag", value)?))
        } else if is("PNUM") {
            put(&mut self.pnum, "PNUM", number("PNUM", value)?)
        } else if is("PNO") {
            put(&mut self.pno, "PNO", number("PNO", value)?)
        } else {
            self.other.push((key, value));
            Ok(())
        }
    }

    /// Whether the sender wants an answer. A missing Flag (2005 style) means no.
    pub fn reply_wanted(&self) -> bool {
        self.flag.is_some_and(Flag::reply_wanted)
    }

    /// Protocol generation; a missing Flag means 2005.
    pub fn version(&self) -> ProtocolVersion {
        self.flag.map_or(ProtocolVersion::V2005, Flag::version)
    }

    /// The first CP value with this exact key.
    pub fn cp_get(&self, key: &str) -> Option<&'a str> {
        self.cp.iter().find(|f| f.key == key).map(|f| f.value)
    }

    /// The CP fields grouped by item (`;`), in order.
    pub fn items(&self) -> impl Iterator<Item = &[CpField<'a>]> + '_ {
        self.cp.chunk_by(|a, b| a.item == b.item)
    }

    /// `DataTime` from the CP area: `Ok(None)` when absent, an error when it is
    /// present but not a valid `YYYYMMDDhhmmss`.
    pub fn data_time(&self) -> Result<Option<LocalDateTime>, SegmentError> {
        let Some(value) = self.cp_get("DataTime") else {
            return Ok(None);
        };
        LocalDateTime::parse_compact(value)
            .map(Some)
            .map_err(|reason| SegmentError::BadDataTime {
                value: clip(value),
                reason,
            })
    }

    /// All CP fields of the form `<code>-<suffix>`, in order.
    pub fn factors(&self) -> impl Iterator<Item = Factor<'a>> + '_ {
        self.cp.iter().filter_map(|f| {
            let (code, suffix) = f.key.split_once('-')?;
            (!code.is_empty() && !suffix.is_empty()).then_some(Factor {
                item: f.item,
                code,
                suffix,
                value: f.value,
            })
        })
    }
}

/// A header number: plain ASCII digits only (no sign, no spaces), in range.
fn number<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T, SegmentError> {
    let bad = || SegmentError::BadNumber {
        field,
        value: clip(value),
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    value.parse().map_err(|_| bad())
}

/// Splits the CP content into fields. Never fails: odd pieces (no `=`, empty
/// pieces) are kept or skipped rather than rejecting a frame whose CRC is good.
fn parse_cp(content: &str) -> Vec<CpField<'_>> {
    let b = content.as_bytes();
    let mut out = Vec::new();
    let mut item = 0;
    let mut item_used = false;
    let mut pos = 0;
    loop {
        let key_end = scan_until(b, pos, |c| matches!(c, b'=' | b',' | b';'));
        let key = content.get(pos..key_end).unwrap_or("");
        let (value, end) = if b.get(key_end) == Some(&b'=') {
            let start = key_end + 1;
            let end = opaque_end(b, start)
                .unwrap_or_else(|| scan_until(b, start, |c| matches!(c, b',' | b';')));
            (content.get(start..end).unwrap_or(""), end)
        } else {
            ("", key_end)
        };
        if !key.is_empty() || !value.is_empty() {
            out.push(CpField { item, key, value });
            item_used = true;
        }
        match b.get(end) {
            None => break,
            Some(b';') if item_used => {
                item += 1;
                item_used = false;
            }
            Some(_) => {}
        }
        pos = end + 1;
    }
    out
}

/// Index of the first byte at or after `from` matching `stop`, else the end.
fn scan_until(b: &[u8], from: usize, stop: impl Fn(u8) -> bool) -> usize {
    b.get(from..)
        .and_then(|rest| rest.iter().position(|&c| stop(c)))
        .map_or(b.len(), |i| from + i)
}

/// If the value at `start` is `//…//` text, the index just past its closing
/// `//`: the first `//` followed by a separator or the end of the CP area.
/// `None` (parse as a plain value) when there is no such closing.
fn opaque_end(b: &[u8], start: usize) -> Option<usize> {
    if !b.get(start..)?.starts_with(b"//") {
        return None;
    }
    let body = start + 2;
    b.get(body..)?
        .windows(2)
        .enumerate()
        .filter(|(_, w)| *w == b"//")
        .map(|(i, _)| body + i + 2)
        .find(|&end| matches!(b.get(end), None | Some(b',' | b';')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_2061: &str = "QN=20190925181031464;ST=22;CN=2061;PW=BF470F88957588DE902D1A52;MN=Z13401000010301;Flag=5;CP=&&DataTime=20190924220000;a34006-Avg=2.69700,a34006-Flag=N;a34007-Avg=7.96600,a34007-Flag=N;a34048-Avg=3.30600,a34048-Flag=N;a34047-Avg=7.35700,a34047-Flag=N;a34049-Avg=10.66300,a34049-Flag=N&&";

    #[test]
    fn parses_header_by_key() {
        let s = DataSegment::parse(SAMPLE_2061).unwrap();
        assert_eq!(s.qn, Some("20190925181031464"));
        assert_eq!(s.st, Some("22"));
        assert_eq!(s.cn, "2061");
        assert_eq!(s.pw, Some("BF470F88957588DE902D1A52"));
        assert_eq!(s.mn, Some("Z13401000010301"));
        assert_eq!(s.flag, Some(Flag(5)));
        assert!(s.reply_wanted());
        assert_eq!(s.version(), ProtocolVersion::V2017);
        assert_eq!(s.items().count(), 6);
        assert_eq!(s.factors().count(), 10);
        let t = s.data_time().unwrap().unwrap();
        assert_eq!(t.to_string(), "20190924220000");
        let f = s.factors().nth(2).unwrap();
        assert_eq!(
            (f.item, f.code, f.suffix, f.value),
            (2, "a34007", "Avg", "7.96600")
        );
    }

    #[test]
    fn reordered_and_2005_style() {
        let s = DataSegment::parse("ST=32;CN=2011;PW=123456;MN=88888880000001;CP=&&DataTime=20040516021000;B01-Rtd=51.3;011-Rtd=86.4,011-Flag=N&&").unwrap();
        assert_eq!((s.qn, s.flag), (None, None));
        assert!(!s.reply_wanted());
        assert_eq!(s.version(), ProtocolVersion::V2005);
        let codes: Vec<_> = s.factors().map(|f| (f.code, f.suffix)).collect();
        assert_eq!(codes, [("B01", "Rtd"), ("011", "Rtd"), ("011", "Flag")]);
    }

    #[test]
    fn flag_bits() {
        assert_eq!(Flag(9).version(), ProtocolVersion::V2025);
        assert!(Flag(9).reply_wanted());
        assert!(!Flag(8).reply_wanted());
        assert!(Flag(7).split());
        assert_eq!(Flag(4).version(), ProtocolVersion::V2017);
        assert_eq!(Flag(0xFC).version(), ProtocolVersion::Other(63));
    }

    #[test]
    fn opaque_text_keeps_separators() {
        let s = DataSegment::parse(
            "CN=3020;CP=&&DataTime=20190507003500;PolId=w01018,i11001-Info=//a;b,c=d&&e//,i12001-Info=1;x=//http://h//&&",
        )
        .unwrap();
        let info = s.cp.iter().find(|f| f.key == "i11001-Info").unwrap();
        assert_eq!(info.value, "//a;b,c=d&&e//");
        assert_eq!(info.text(), "a;b,c=d&&e");
        assert_eq!(info.item, 1);
        assert_eq!(s.cp_get("i12001-Info"), Some("1"));
        assert_eq!(s.cp_get("x"), Some("//http://h//"));
        let items: Vec<usize> = s.items().map(<[_]>::len).collect();
        assert_eq!(items, [1, 3, 1]);
    }

    #[test]
    fn duplicates_and_odd_pieces_in_cp() {
        let s = DataSegment::parse("CN=2011;CP=&&a-Rtd=1;;a-Rtd=2,flagonly,;=v&&").unwrap();
        let all: Vec<_> = s.cp.iter().map(|f| (f.item, f.key, f.value)).collect();
        assert_eq!(
            all,
            [
                (0, "a-Rtd", "1"),
                (1, "a-Rtd", "2"),
                (1, "flagonly", ""),
                (2, "", "v")
            ]
        );
        assert_eq!(
            DataSegment::parse("CN=9014;CP=&&&&").unwrap().cp_raw,
            Some("")
        );
    }

    #[test]
    fn errors() {
        let e = |t: &str| DataSegment::parse(t).unwrap_err().to_string();
        assert_eq!(e("QN=1;ST=32;CP=&&&&"), "missing CN");
        assert_eq!(e("CN=;CP=&&&&"), "missing CN");
        assert_eq!(e("CN=2011;CP=&&DataTime=1"), "CP area not terminated by &&");
        assert_eq!(e("CN=2011;CP=&&&"), "CP area not terminated by &&");
        assert_eq!(
            e("CN=2011;CP=DataTime=1&&"),
            "CP area does not start with &&"
        );
        assert_eq!(e("CN=2011;MN=1;MN=2;CP=&&&&"), "duplicate field MN");
        assert_eq!(
            e("CN=2011;Flag=x;CP=&&&&"),
            "Flag \"x\" is not a number in range"
        );
        assert_eq!(
            e("CN=2011;Flag=300;CP=&&&&"),
            "Flag \"300\" is not a number in range"
        );
        assert_eq!(e("CN=2011;junk;CP=&&&&"), "field \"junk\" has no \"=\"");
        assert_eq!(
            e("CN=2011;CP=&&&&xyz"),
            "unexpected text after CP area: \"xyz\""
        );
        let s = DataSegment::parse("CN=2011;CP=&&DataTime=2019092422&&").unwrap();
        assert_eq!(
            s.data_time().unwrap_err().to_string(),
            "DataTime \"2019092422\" is not YYYYMMDDhhmmss"
        );
    }

    #[test]
    fn fields_after_cp_and_split_packets() {
        let s = DataSegment::parse("CN=2011;Flag=7;PNUM=3;PNO=2;CP=&&a=1&&;Vendor=x").unwrap();
        assert!(s.flag.unwrap().split());
        assert_eq!((s.pnum, s.pno), (Some(3), Some(2)));
        assert_eq!(s.other, [("Vendor", "x")]);
    }
}
