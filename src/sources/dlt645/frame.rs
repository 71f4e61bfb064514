//! DL/T 645-2007 frame codec for Chinese electricity meters on RS-485.
//!
//! Why a hand-written codec: the frame is tiny and fully specified, and we
//! need behaviour that generic parsers get wrong on real buses — meters and
//! DTUs put `FE` wake-up bytes, line noise or half of a stale reply in front
//! of a frame, and a reply may arrive split over several reads. So [`decode`]
//! scans for a plausible frame start, says "need more bytes" instead of
//! failing on a partial frame, and reports how many bytes it consumed so the
//! caller can keep any remainder.
//!
//! Everything here is pure: no I/O, no clocks. The same functions serve the
//! poller (encode requests, decode replies) and the meter simulator (decode
//! requests, encode replies), so the two can never disagree about the wire.
//!
//! Wire layout: `[FE FE FE FE] 68 A0..A5 68 C L DATA CS 16`, address BCD low
//! byte first, every DATA byte sent +0x33, CS = sum mod 256 of `68 .. DATA`.
//! [`Frame::data`] always holds the data with the 0x33 already removed.

use thiserror::Error;

pub use super::types::{MeterAddress, MeterError, MeterTime};
pub use super::value::{decode_value, di_format, encode_value, DiFormat};

const START: u8 = 0x68;
const END: u8 = 0x16;
const DATA_BIAS: u8 = 0x33;
/// `68 A0..A5 68 C L` + `CS 16`: everything except DATA.
const OVERHEAD: usize = 12;

/// Wake-up bytes many meters need before they notice a request. Replies from
/// a simulator may be prefixed with it to exercise the decoder's skipping.
pub const PREAMBLE: [u8; 4] = [0xFE; 4];

pub const CONTROL_BROADCAST_TIME: u8 = 0x08;
pub const CONTROL_READ: u8 = 0x11;
pub const CONTROL_READ_ADDRESS: u8 = 0x13;
/// Set in every frame sent by a meter.
pub const CONTROL_REPLY: u8 = 0x80;
/// Set when the meter refuses the request; DATA is one error byte.
pub const CONTROL_ERROR: u8 = 0x40;
/// Set when the meter has more data to send (read "follow-up" frames).
pub const CONTROL_MORE: u8 = 0x20;
const FUNCTION_MASK: u8 = 0x1F;

/// Whether to send the `FE FE FE FE` wake-up preamble before a frame. An
/// enum rather than a bool so call sites read as what they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preamble {
    Omit,
    #[default]
    Fe4,
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum Dlt645Error {
    #[error("meter address must be exactly 12 decimal digits, got {len} characters")]
    AddressLength { len: usize },
    #[error("meter address {text:?} has non-digit {ch:?} at position {pos}")]
    AddressNotDigit { text: String, ch: char, pos: usize },
    /// `frame_len` counts from the frame's first 0x68; a stream reader that
    /// wants to resynchronise can drop up to there. A poller should simply
    /// discard its buffer and retry (see the module docs).
    #[error("checksum mismatch: frame says 0x{found:02X}, computed 0x{computed:02X}")]
    ChecksumMismatch {
        found: u8,
        computed: u8,
        frame_len: usize,
    },
    #[error("wrong end byte: frame has 0x{found:02X} where 0x16 belongs")]
    BadEndByte { found: u8, frame_len: usize },
    #[error("frame data of {len} bytes does not fit the one-byte length field")]
    DataTooLong { len: usize },
    #[error("control code 0x{control:02X} is a request, expected a meter reply")]
    NotAReply { control: u8 },
    #[error("control code 0x{control:02X} is a meter reply, expected a request")]
    NotARequest { control: u8 },
    #[error("meter rejected the request (control 0x{control:02X}): {error}")]
    Rejected { control: u8, error: MeterError },
    #[error("frame with control 0x{control:02X} needs {need} data bytes, got {got}")]
    ShortData {
        control: u8,
        need: usize,
        got: usize,
    },
    #[error("expected a read reply, got control code 0x{control:02X}")]
    UnexpectedReply { control: u8 },
    #[error("reply is for DI {got:08X}, but DI {expected:08X} was requested")]
    DiMismatch { expected: u32, got: u32 },
    #[error("reply comes from meter {got}, expected meter {expected}")]
    AddressMismatch {
        expected: MeterAddress,
        got: MeterAddress,
    },
    #[error("DI {di:08X} is not in the value format table")]
    UnknownDi { di: u32 },
    #[error("DI {di:08X} value needs {expected} bytes, got {got}")]
    ValueLength {
        di: u32,
        expected: usize,
        got: usize,
    },
    #[error("non-BCD nibble 0x{nibble:X} in byte {byte} of DI {di:08X}")]
    NotBcd { di: u32, byte: usize, nibble: u8 },
    #[error("value {value} does not fit DI {di:08X} (allowed {min} to {max})")]
    ValueOutOfRange {
        di: u32,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("invalid broadcast time: {field} is {value}, allowed {min} to {max}")]
    InvalidTime {
        field: &'static str,
        value: u16,
        min: u16,
        max: u16,
    },
    #[error("non-BCD byte 0x{byte:02X} in broadcast time field {field}")]
    TimeNotBcd { field: &'static str, byte: u8 },
}

/// One decoded frame. `data` has the +0x33 removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub address: MeterAddress,
    pub control: u8,
    pub data: Vec<u8>,
}

/// What a meter said, once the control code has been interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `value` is still BCD, low byte first; see [`decode_value`].
    Read {
        di: u32,
        value: Vec<u8>,
        more_follows: bool,
    },
    Address(MeterAddress),
    /// A valid reply to a function this module does not interpret.
    Other {
        control: u8,
    },
}

/// What a master asked, for the simulator side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Read { di: u32 },
    ReadAddress,
    BroadcastTime(MeterTime),
    Other { control: u8 },
}

impl Frame {
    pub fn encode(&self, preamble: Preamble) -> Result<Vec<u8>, Dlt645Error> {
        if self.data.len() > usize::from(u8::MAX) {
            return Err(Dlt645Error::DataTooLong {
                len: self.data.len(),
            });
        }
        Ok(build(self.address, self.control, &self.data, preamble))
    }

    pub fn reply(&self) -> Result<Reply, Dlt645Error> {
        let control = self.control;
        if control & CONTROL_REPLY == 0 {
            return Err(Dlt645Error::NotAReply { control });
        }
        if control & CONTROL_ERROR != 0 {
            let Some(&byte) = self.data.first() else {
                return Err(self.short(1));
            };
            return Err(Dlt645Error::Rejected {
                control,
                error: MeterError(byte),
            });
        }
        match control & FUNCTION_MASK {
            CONTROL_READ => {
                let (di, value) = self.split_di()?;
                Ok(Reply::Read {
                    di,
                    value: value.to_vec(),
                    more_follows: control & CONTROL_MORE != 0,
                })
            }
            CONTROL_READ_ADDRESS => {
                let bytes: [u8; 6] = self.data.as_slice().try_into().map_err(|_| self.short(6))?;
                Ok(Reply::Address(MeterAddress::from_wire(bytes)))
            }
            _ => Ok(Reply::Other { control }),
        }
    }

    pub fn request(&self) -> Result<Request, Dlt645Error> {
        let control = self.control;
        if control & CONTROL_REPLY != 0 {
            return Err(Dlt645Error::NotARequest { control });
        }
        match control {
            // Extra bytes after the DI (block or load-profile parameters)
            // are ignored: the simulator answers the plain read.
            CONTROL_READ => Ok(Request::Read {
                di: self.split_di()?.0,
            }),
            CONTROL_READ_ADDRESS => Ok(Request::ReadAddress),
            CONTROL_BROADCAST_TIME => {
                let raw: [u8; 6] = self.data.as_slice().try_into().map_err(|_| self.short(6))?;
                MeterTime::from_wire(raw).map(Request::BroadcastTime)
            }
            _ => Ok(Request::Other { control }),
        }
    }

    /// On a shared bus a late reply from one meter can land while another is
    /// being polled; checking the sender keeps it from being misattributed.
    pub fn check_address(&self, expected: MeterAddress) -> Result<(), Dlt645Error> {
        if self.address == expected {
            Ok(())
        } else {
            Err(Dlt645Error::AddressMismatch {
                expected,
                got: self.address,
            })
        }
    }

    /// The poller's one-call path: interpret a read reply for `expected_di`
    /// and decode its value. A reply for another DI (a stale frame) is an
    /// error, never silently accepted. Pair with [`Frame::check_address`]
    /// (kept separate because wildcard reads accept any sender).
    pub fn read_value(&self, expected_di: u32) -> Result<f64, Dlt645Error> {
        match self.reply()? {
            Reply::Read { di, value, .. } if di == expected_di => decode_value(di, &value),
            Reply::Read { di, .. } => Err(Dlt645Error::DiMismatch {
                expected: expected_di,
                got: di,
            }),
            _ => Err(Dlt645Error::UnexpectedReply {
                control: self.control,
            }),
        }
    }

    fn split_di(&self) -> Result<(u32, &[u8]), Dlt645Error> {
        match self.data.split_first_chunk::<4>() {
            Some((di, rest)) => Ok((u32::from_le_bytes(*di), rest)),
            None => Err(self.short(4)),
        }
    }

    fn short(&self, need: usize) -> Dlt645Error {
        Dlt645Error::ShortData {
            control: self.control,
            need,
            got: self.data.len(),
        }
    }
}

/// Builds wire bytes. Callers guarantee `data.len() <= 255`; anything longer
/// is cut so the length field and the data can never disagree.
fn build(address: MeterAddress, control: u8, data: &[u8], preamble: Preamble) -> Vec<u8> {
    let data = data.get(..usize::from(u8::MAX)).unwrap_or(data);
    let mut out = Vec::with_capacity(PREAMBLE.len() + OVERHEAD + data.len());
    if preamble == Preamble::Fe4 {
        out.extend_from_slice(&PREAMBLE);
    }
    let frame_start = out.len();
    out.push(START);
    out.extend_from_slice(&address.wire_bytes());
    out.push(START);
    out.push(control);
    out.push(data.len() as u8);
    out.extend(data.iter().map(|b| b.wrapping_add(DATA_BIAS)));
    let cs = checksum(out.get(frame_start..).unwrap_or_default());
    out.push(cs);
    out.push(END);
    out
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

/// Read one data item (control 0x11). The DI goes out low byte first.
pub fn encode_read(address: MeterAddress, di: u32, preamble: Preamble) -> Vec<u8> {
    build(address, CONTROL_READ, &di.to_le_bytes(), preamble)
}

/// Ask the (single) meter on the bus for its address (control 0x13 to AA×6).
pub fn encode_read_address(preamble: Preamble) -> Vec<u8> {
    build(MeterAddress::WILDCARD, CONTROL_READ_ADDRESS, &[], preamble)
}

/// Broadcast time sync (control 0x08 to 99×6). Validated here because a
/// meter silently accepts nonsense such as month 13 and then misbills.
pub fn encode_broadcast_time(time: MeterTime, preamble: Preamble) -> Result<Vec<u8>, Dlt645Error> {
    let data = time.to_wire()?;
    Ok(build(
        MeterAddress::BROADCAST,
        CONTROL_BROADCAST_TIME,
        &data,
        preamble,
    ))
}

/// Simulator: a normal read reply (0x91) carrying `value` in the DI's format.
pub fn encode_read_reply(
    address: MeterAddress,
    di: u32,
    value: f64,
) -> Result<Vec<u8>, Dlt645Error> {
    encode_read_reply_bytes(address, di, &encode_value(di, value)?)
}

/// Simulator: a read reply with raw (BCD, low byte first) value bytes, for
/// DIs outside the format table or deliberately malformed values.
pub fn encode_read_reply_bytes(
    address: MeterAddress,
    di: u32,
    value: &[u8],
) -> Result<Vec<u8>, Dlt645Error> {
    let mut data = di.to_le_bytes().to_vec();
    data.extend_from_slice(value);
    Frame {
        address,
        control: CONTROL_READ | CONTROL_REPLY,
        data,
    }
    .encode(Preamble::Omit)
}

/// Simulator: an abnormal reply to a read (0xD1) with one error byte.
pub fn encode_error_reply(address: MeterAddress, error: MeterError) -> Vec<u8> {
    let control = CONTROL_READ | CONTROL_REPLY | CONTROL_ERROR;
    build(address, control, &[error.0], Preamble::Omit)
}

/// Finds and decodes the first frame in `buf`.
///
/// - `Ok(Some((frame, consumed)))`: `consumed` covers any skipped preamble or
///   garbage plus the frame; drop that many bytes and keep the rest.
/// - `Ok(None)`: no complete frame yet. Read more and call again with the
///   whole buffer. Pure garbage is not consumed, so callers cap the buffer
///   (a poller's reply timeout does that naturally).
/// - `Err(..)`: a complete frame whose checksum or end byte is wrong. A
///   poller discards its buffer and retries the request; the error carries
///   `frame_len` for stream readers that prefer to skip just that frame.
///
/// A start is only taken as a frame when a second 0x68 follows the address,
/// so a stray 0x68 in noise is skipped rather than misread.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, Dlt645Error> {
    let mut from = 0;
    loop {
        let Some(start) = buf
            .get(from..)
            .and_then(|rest| rest.iter().position(|&b| b == START))
            .map(|pos| from + pos)
        else {
            return Ok(None);
        };
        let Some(&second) = buf.get(start + 7) else {
            return Ok(None);
        };
        if second != START {
            from = start + 1;
            continue;
        }
        let Some(&len) = buf.get(start + 9) else {
            return Ok(None);
        };
        let frame_len = OVERHEAD + usize::from(len);
        let Some(frame) = buf.get(start..start + frame_len) else {
            return Ok(None);
        };
        let [body @ .., cs, end] = frame else {
            return Ok(None);
        };
        let computed = checksum(body);
        if *cs != computed {
            return Err(Dlt645Error::ChecksumMismatch {
                found: *cs,
                computed,
                frame_len,
            });
        }
        if *end != END {
            return Err(Dlt645Error::BadEndByte {
                found: *end,
                frame_len,
            });
        }
        let (Some(address), Some(&control), Some(data)) = (
            body.get(1..7).and_then(|a| <[u8; 6]>::try_from(a).ok()),
            body.get(8),
            body.get(10..),
        ) else {
            // Cannot happen: frame_len >= OVERHEAD covers all three.
            return Ok(None);
        };
        let frame = Frame {
            address: MeterAddress::from_wire(address),
            control,
            data: data.iter().map(|b| b.wrapping_sub(DATA_BIAS)).collect(),
        };
        return Ok(Some((frame, start + frame_len)));
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
