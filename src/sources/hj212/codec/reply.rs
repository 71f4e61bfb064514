//! Building what a platform sends: answers to uploads and requests to loggers.
//!
//! Builders return the data *segment* as a `String` and [`encode_frame`] wraps
//! it, so a device configured for the swapped-MODBUS CRC can get the same
//! segment through [`encode_frame_with`]. Loggers match an answer to their
//! upload by CN and QN, so answers echo QN, PW and MN exactly as received;
//! values that would change the reply's structure (`;`, `&`, control
//! characters, or absurd lengths) are refused rather than echoed, because an
//! echo is attacker-controlled text going back onto the wire. The answer Flag
//! is always 4 (2017, no reply wanted), as the standard's worked example shows.

use super::crc::CrcMode;
use super::error::{clip, ReplyError};
use super::frame::MAX_FRAME_LEN;
use super::segment::{DataSegment, Flag};
use super::time::LocalDateTime;

/// Longest QN/PW/MN/ST we will echo or send; real values are ≤ 24 characters.
const MAX_FIELD: usize = 128;

/// Wraps a segment as a frame with the standard CRC:
/// `"##"`, byte length, segment, uppercase CRC, `"\r\n"`.
pub fn encode_frame(segment: &str) -> Result<Vec<u8>, ReplyError> {
    encode_frame_with(segment, CrcMode::Hj212)
}

/// Like [`encode_frame`] with a device's configured CRC variant.
pub fn encode_frame_with(segment: &str, mode: CrcMode) -> Result<Vec<u8>, ReplyError> {
    let len = segment.len();
    if len > MAX_FRAME_LEN {
        return Err(ReplyError::TooLong(len));
    }
    let crc = mode.checksum(segment.as_bytes());
    let mut out = Vec::with_capacity(len + 12);
    out.extend_from_slice(format!("##{len:04}").as_bytes());
    out.extend_from_slice(segment.as_bytes());
    out.extend_from_slice(format!("{crc:04X}\r\n").as_bytes());
    Ok(out)
}

/// An HJ 212-2025 frame with an encrypted data area, as loggers send it: the
/// length field and the CRC are those of the plaintext segment (as in the
/// standard's examples), the data area's whole blocks are SM4 ciphertext.
pub fn encode_encrypted_frame(
    segment: &str,
    key: &super::crypt::Sm4Key,
    mode: CrcMode,
) -> Result<Vec<u8>, ReplyError> {
    let len = segment.len();
    if len > MAX_FRAME_LEN {
        return Err(ReplyError::TooLong(len));
    }
    let crc = mode.checksum(segment.as_bytes());
    let sent = super::crypt::encrypt_segment(segment, key);
    Ok(format!("##{len:04}{sent}{crc:04X}\r\n").into_bytes())
}

/// Data answer (CN 9014) to an upload that had Flag bit A set.
pub fn data_answer_9014(upload: &DataSegment<'_>) -> Result<String, ReplyError> {
    answer("9014", upload)
}

/// Notification answer (CN 9013), e.g. to a 1013 time-calibration request.
pub fn notification_answer_9013(upload: &DataSegment<'_>) -> Result<String, ReplyError> {
    answer("9013", upload)
}

/// `QN=<same>;ST=91;CN=<cn>;PW=<same>;MN=<same>;Flag=4;CP=&&&&`. Fields the
/// upload did not have (2005-style frames lack QN) are left out rather than
/// sent empty, since an empty QN would match nothing on the logger either.
fn answer(cn: &str, upload: &DataSegment<'_>) -> Result<String, ReplyError> {
    let mut s = String::with_capacity(96);
    if let Some(qn) = upload.qn {
        s.push_str("QN=");
        s.push_str(safe("QN", qn)?);
        s.push(';');
    }
    s.push_str("ST=91;CN=");
    s.push_str(cn);
    if let Some(pw) = upload.pw {
        s.push_str(";PW=");
        s.push_str(safe("PW", pw)?);
    }
    if let Some(mn) = upload.mn {
        s.push_str(";MN=");
        s.push_str(safe("MN", mn)?);
    }
    s.push_str(";Flag=4;CP=&&&&");
    Ok(s)
}

/// Header of a platform request: the platform picks the QN (see [`make_qn`]),
/// the ST is the station's own system code, and Flag normally asks for a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader<'a> {
    pub qn: &'a str,
    pub st: &'a str,
    pub pw: &'a str,
    pub mn: &'a str,
    pub flag: Flag,
}

/// Request 1012: set the logger's clock (`CP=&&SystemTime=YYYYMMDDhhmmss&&`).
pub fn set_time_1012(h: &RequestHeader<'_>, time: LocalDateTime) -> Result<String, ReplyError> {
    request(h, "1012", &format!("SystemTime={time}"))
}

/// Request 1062: set the real-time upload interval (`CP=&&RtdInterval=N&&`),
/// in seconds. The range a logger accepts is its own business; it answers 9012
/// with a failure result if it refuses.
pub fn set_rtd_interval_1062(h: &RequestHeader<'_>, seconds: u32) -> Result<String, ReplyError> {
    request(h, "1062", &format!("RtdInterval={seconds}"))
}

/// A history request (反控): CN 2031 daily, 2051 minute or 2061 hourly data of the
/// periods starting from `begin` to `end` (both inclusive, the logger's local
/// time), `CP=&&BeginTime=YYYYMMDDhhmmss;EndTime=YYYYMMDDhhmmss&&`. The logger
/// answers 9011 (`QnRtn`), uploads the data, and ends with 9012 (`ExeRtn`).
pub fn history_request(
    h: &RequestHeader<'_>,
    cn: &str,
    begin: LocalDateTime,
    end: LocalDateTime,
) -> Result<String, ReplyError> {
    request(h, cn, &format!("BeginTime={begin};EndTime={end}"))
}

fn request(h: &RequestHeader<'_>, cn: &str, cp: &str) -> Result<String, ReplyError> {
    Ok(format!(
        "QN={};ST={};CN={cn};PW={};MN={};Flag={};CP=&&{cp}&&",
        safe("QN", h.qn)?,
        safe("ST", h.st)?,
        safe("PW", h.pw)?,
        safe("MN", h.mn)?,
        h.flag.0,
    ))
}

/// A QN (`YYYYMMDDhhmmsszzz`) for a platform request; `millis` above 999 is
/// clamped to 999 so the QN keeps its 17 digits.
pub fn make_qn(time: LocalDateTime, millis: u16) -> String {
    format!("{time}{:03}", millis.min(999))
}

fn safe<'v>(field: &'static str, value: &'v str) -> Result<&'v str, ReplyError> {
    let why = if value.len() > MAX_FIELD {
        "longer than 128 bytes"
    } else if value.contains([';', '&']) {
        "contains ';' or '&'"
    } else if value.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(value);
    };
    Err(ReplyError::UnsafeField {
        field,
        value: clip(value),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_9014_reply_is_byte_exact() {
        let upload = DataSegment::parse("QN=20160801085857223;ST=32;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;CP=&&DataTime=20160801085857;w01018-Rtd=1&&").unwrap();
        let frame = encode_frame(&data_answer_9014(&upload).unwrap()).unwrap();
        assert_eq!(
            frame,
            b"##0087QN=20160801085857223;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&3240\r\n"
        );
    }

    #[test]
    fn sample_1062_request_is_byte_exact() {
        let h = RequestHeader {
            qn: "20160801085857223",
            st: "32",
            pw: "100000",
            mn: "010000A8900016F000169DC0",
            flag: Flag(5),
        };
        let frame = encode_frame(&set_rtd_interval_1062(&h, 30).unwrap()).unwrap();
        assert_eq!(
            frame,
            b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80\r\n"
        );
    }

    #[test]
    fn set_time_and_qn() {
        let t = LocalDateTime::new(2024, 2, 29, 8, 5, 9).unwrap();
        assert_eq!(make_qn(t, 7), "20240229080509007");
        assert_eq!(make_qn(t, 5000), "20240229080509999");
        let qn = make_qn(t, 7);
        let h = RequestHeader {
            qn: &qn,
            st: "31",
            pw: "123456",
            mn: "MN1",
            flag: Flag(5),
        };
        assert_eq!(
            set_time_1012(&h, t).unwrap(),
            "QN=20240229080509007;ST=31;CN=1012;PW=123456;MN=MN1;Flag=5;CP=&&SystemTime=20240229080509&&"
        );
    }

    #[test]
    fn answer_9013_and_2005_upload_without_qn() {
        let up = DataSegment::parse("QN=1;CN=1013;PW=p;MN=m;Flag=5;CP=&&&&").unwrap();
        assert_eq!(
            notification_answer_9013(&up).unwrap(),
            "QN=1;ST=91;CN=9013;PW=p;MN=m;Flag=4;CP=&&&&"
        );
        let old = DataSegment::parse("ST=32;CN=2011;PW=p;MN=m;CP=&&a=1&&").unwrap();
        assert_eq!(
            data_answer_9014(&old).unwrap(),
            "ST=91;CN=9014;PW=p;MN=m;Flag=4;CP=&&&&"
        );
    }

    #[test]
    fn refuses_unsafe_echo_and_oversize() {
        let up = DataSegment::parse("QN=1&&x;CN=2011;CP=&&&&").unwrap();
        assert_eq!(
            data_answer_9014(&up).unwrap_err().to_string(),
            "QN \"1&&x\" cannot be put in a reply: contains ';' or '&'"
        );
        let h = RequestHeader {
            qn: "1",
            st: "32",
            pw: "a\r\n",
            mn: "m",
            flag: Flag(5),
        };
        assert!(set_rtd_interval_1062(&h, 30).is_err());
        let big = "x".repeat(10_000);
        assert_eq!(encode_frame(&big).unwrap_err(), ReplyError::TooLong(10_000));
        assert_eq!(encode_frame(&big[..9999]).unwrap().len(), 9999 + 12);
    }

    #[test]
    fn swapped_crc_variant() {
        let f = encode_frame_with("CN=9014;CP=&&&&", CrcMode::ModbusSwapped).unwrap();
        let crc = CrcMode::ModbusSwapped.checksum(b"CN=9014;CP=&&&&");
        assert!(f.ends_with(format!("{crc:04X}\r\n").as_bytes()));
    }
}
