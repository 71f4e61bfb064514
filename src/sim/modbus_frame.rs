//! Modbus framing for the simulator side: request PDUs in, response PDUs out,
//! wrapped as RTU (unit, PDU, CRC-16/MODBUS) or TCP (MBAP header).
//!
//! Why our own instead of tokio-modbus's server: its RTU server only runs on
//! a `SerialStream` (a simulated DTU needs an in-memory duplex) and answers
//! strictly in order, while the simulator must answer late, not at all, or
//! out of order to reproduce the failures pollers have to survive. Framing
//! is small and pure, so it lives here with byte-vector tests.
//!
//! RTU has no length field: a slave finds a request's end from its function
//! code. For function codes we do not know, the first CRC-valid prefix is
//! taken as the frame so the answer can be "Illegal Function" rather than
//! silence, which is what the devices we mimic do. Noise is skipped a byte
//! at a time until a frame lines up.

use crate::sources::modbus::decode::encode_bits;
use crate::sources::modbus::plan::{RegisterKind, MAX_BITS, MAX_REGISTERS};

/// Longest RTU frame (address + PDU + CRC) the standard allows.
pub const MAX_RTU_FRAME: usize = 256;
/// MBAP header: transaction, protocol, length, unit.
const MBAP_LEN: usize = 7;

/// The exception codes the simulator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exception {
    IllegalFunction = 0x01,
    IllegalDataAddress = 0x02,
    IllegalDataValue = 0x03,
    ServerDeviceFailure = 0x04,
    /// A TCP gateway's answer for a unit id it has nothing behind.
    GatewayTargetDevice = 0x0B,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Read {
        kind: RegisterKind,
        address: u16,
        count: u16,
    },
    /// FC 06.
    WriteRegister { address: u16, value: u16 },
    /// FC 16.
    WriteRegisters { address: u16, values: Vec<u16> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Words(Vec<u16>),
    Bits(Vec<bool>),
    /// The echo of a write: address and value (FC 06) or count (FC 16).
    Written {
        address: u16,
        value: u16,
    },
    Exception(Exception),
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([*pair.first()?, *pair.get(1)?]))
}

/// Parses a request PDU (function code first). Malformed lengths and counts
/// get the exception a device would send for them.
pub fn decode_request(pdu: &[u8]) -> Result<Request, Exception> {
    let bad = Exception::IllegalDataValue;
    let function = *pdu.first().ok_or(bad)?;
    let kind = match function {
        0x01 => Some(RegisterKind::Coil),
        0x02 => Some(RegisterKind::Discrete),
        0x03 => Some(RegisterKind::Holding),
        0x04 => Some(RegisterKind::Input),
        0x06 | 0x10 => None,
        _ => return Err(Exception::IllegalFunction),
    };
    let address = be16(pdu, 1).ok_or(bad)?;
    let second = be16(pdu, 3).ok_or(bad)?;
    if let Some(kind) = kind {
        let max = if kind.is_bit() {
            MAX_BITS
        } else {
            MAX_REGISTERS
        };
        if pdu.len() != 5 || second == 0 || second > max {
            return Err(bad);
        }
        if u32::from(address) + u32::from(second) > 0x1_0000 {
            return Err(Exception::IllegalDataAddress);
        }
        return Ok(Request::Read {
            kind,
            address,
            count: second,
        });
    }
    if function == 0x06 {
        return match pdu.len() {
            5 => Ok(Request::WriteRegister {
                address,
                value: second,
            }),
            _ => Err(bad),
        };
    }
    let byte_count = usize::from(*pdu.get(5).ok_or(bad)?);
    // FC 16 carries at most 123 registers so the request fits one frame.
    if second == 0 || second > 123 || byte_count != 2 * usize::from(second) {
        return Err(bad);
    }
    if pdu.len() != 6 + byte_count {
        return Err(bad);
    }
    if u32::from(address) + u32::from(second) > 0x1_0000 {
        return Err(Exception::IllegalDataAddress);
    }
    let values = (0..byte_count / 2)
        .map(|i| be16(pdu, 6 + 2 * i).ok_or(bad))
        .collect::<Result<_, _>>()?;
    Ok(Request::WriteRegisters { address, values })
}

/// The response PDU for a request with `function`.
pub fn encode_response(function: u8, response: &Response) -> Vec<u8> {
    match response {
        Response::Words(words) => {
            let mut out = vec![function, (2 * words.len()) as u8];
            out.extend(words.iter().flat_map(|w| w.to_be_bytes()));
            out
        }
        Response::Bits(bits) => {
            let packed = encode_bits(bits);
            let mut out = vec![function, packed.len() as u8];
            out.extend(packed);
            out
        }
        Response::Written { address, value } => {
            let mut out = vec![function];
            out.extend(address.to_be_bytes());
            out.extend(value.to_be_bytes());
            out
        }
        Response::Exception(e) => vec![function | 0x80, *e as u8],
    }
}

/// CRC-16/MODBUS (reflected 0xA001, init 0xFFFF); sent low byte first.
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0xFFFF, |mut crc, &b| {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
        crc
    })
}

pub fn rtu_encode(unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pdu.len() + 3);
    out.push(unit);
    out.extend_from_slice(pdu);
    out.extend(crc16(&out).to_le_bytes());
    out
}

/// What the front of a receive buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// A whole frame of `len` bytes; `transaction` is 0 on RTU.
    Frame {
        unit: u8,
        transaction: u16,
        pdu: Vec<u8>,
        len: usize,
    },
    /// Possibly the start of a frame: read more.
    Incomplete,
    /// Not a frame here: drop this many bytes and look again.
    Skip(usize),
    /// The stream cannot be resynchronised (TCP only): close it.
    Broken,
}

/// Finds an RTU request at the start of `buf`.
pub fn rtu_scan(buf: &[u8]) -> Scan {
    let (Some(&unit), Some(&function)) = (buf.first(), buf.get(1)) else {
        return Scan::Incomplete;
    };
    let len = match function {
        0x01..=0x06 => 8,
        0x0F | 0x10 => match buf.get(6) {
            Some(&byte_count) => 9 + usize::from(byte_count),
            None => return Scan::Incomplete,
        },
        // Masters write a request in one go, so an unknown function's frame
        // is whole in the buffer or this is noise; waiting for more would let
        // one noise byte hold up the real request behind it.
        _ => {
            let longest = buf.len().min(MAX_RTU_FRAME);
            return match (4..=longest).find(|&n| crc_ok(buf.get(..n).unwrap_or_default())) {
                Some(len) => frame(unit, buf, len),
                None => Scan::Skip(1),
            };
        }
    };
    match buf.get(..len) {
        None => Scan::Incomplete,
        Some(bytes) if crc_ok(bytes) => frame(unit, buf, len),
        Some(_) => Scan::Skip(1),
    }
}

fn crc_ok(frame: &[u8]) -> bool {
    match frame {
        [body @ .., lo, hi] if !body.is_empty() => crc16(body) == u16::from_le_bytes([*lo, *hi]),
        _ => false,
    }
}

fn frame(unit: u8, buf: &[u8], len: usize) -> Scan {
    Scan::Frame {
        unit,
        transaction: 0,
        pdu: buf
            .get(1..len.saturating_sub(2))
            .unwrap_or_default()
            .to_vec(),
        len,
    }
}

/// Finds a Modbus TCP request at the start of `buf`. A wrong protocol id or
/// length means we lost the framing, and TCP devices close the connection.
pub fn tcp_scan(buf: &[u8]) -> Scan {
    let (Some(transaction), Some(protocol), Some(length), Some(&unit)) =
        (be16(buf, 0), be16(buf, 2), be16(buf, 4), buf.get(6))
    else {
        return Scan::Incomplete;
    };
    let length = usize::from(length);
    if protocol != 0 || !(2..=254).contains(&length) {
        return Scan::Broken;
    }
    let len = MBAP_LEN - 1 + length;
    match buf.get(MBAP_LEN..len) {
        Some(pdu) => Scan::Frame {
            unit,
            transaction,
            pdu: pdu.to_vec(),
            len,
        },
        None => Scan::Incomplete,
    }
}

pub fn tcp_encode(transaction: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MBAP_LEN + pdu.len());
    out.extend(transaction.to_be_bytes());
    out.extend([0, 0]);
    out.extend(((pdu.len() + 1) as u16).to_be_bytes());
    out.push(unit);
    out.extend_from_slice(pdu);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value_and_known_request() {
        assert_eq!(crc16(b"123456789"), 0x4B37);
        // The textbook "read 10 holding registers from 0 on slave 1".
        let req = rtu_encode(1, &[0x03, 0x00, 0x00, 0x00, 0x0A]);
        assert_eq!(req, [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD]);
        assert_eq!(
            rtu_scan(&req),
            Scan::Frame {
                unit: 1,
                transaction: 0,
                pdu: vec![0x03, 0x00, 0x00, 0x00, 0x0A],
                len: 8
            }
        );
    }

    #[test]
    fn rtu_partial_bad_crc_and_unknown_function() {
        let req = rtu_encode(1, &[0x03, 0x00, 0x00, 0x00, 0x0A]);
        assert_eq!(rtu_scan(&req[..5]), Scan::Incomplete);
        let mut bad = req.clone();
        bad[7] ^= 0xFF;
        assert_eq!(rtu_scan(&bad), Scan::Skip(1));
        let fc16 = rtu_encode(7, &[0x10, 0x00, 0x01, 0x00, 0x01, 0x02, 0x12, 0x34]);
        assert_eq!(rtu_scan(&fc16[..6]), Scan::Incomplete);
        assert!(matches!(
            rtu_scan(&fc16),
            Scan::Frame {
                unit: 7,
                len: 11,
                ..
            }
        ));
        // FC 0x2B (device identification) is found by its CRC.
        let odd = rtu_encode(2, &[0x2B, 0x0E, 0x01, 0x00]);
        let mut buf = odd.clone();
        buf.extend([0x02, 0x03]);
        assert!(matches!(
            rtu_scan(&buf),
            Scan::Frame {
                unit: 2,
                len: 7,
                ..
            }
        ));
        assert_eq!(rtu_scan(&odd[..5]), Scan::Skip(1));
        // Noise, then a request: skipped a byte at a time until it lines up.
        let mut noisy = vec![0x00, 0xFF];
        noisy.extend(&req);
        assert_eq!(rtu_scan(&noisy), Scan::Skip(1));
        assert_eq!(rtu_scan(&noisy[1..]), Scan::Skip(1));
        assert!(matches!(rtu_scan(&noisy[2..]), Scan::Frame { unit: 1, .. }));
    }

    #[test]
    fn tcp_frames() {
        let req = [
            0x00, 0x07, 0x00, 0x00, 0x00, 0x06, 0x11, 0x04, 0x00, 0x10, 0x00, 0x02,
        ];
        assert_eq!(
            tcp_scan(&req),
            Scan::Frame {
                unit: 0x11,
                transaction: 7,
                pdu: vec![0x04, 0x00, 0x10, 0x00, 0x02],
                len: 12
            }
        );
        assert_eq!(tcp_scan(&req[..9]), Scan::Incomplete);
        let mut wrong_protocol = req;
        wrong_protocol[3] = 1;
        assert_eq!(tcp_scan(&wrong_protocol), Scan::Broken);
        let reply = encode_response(0x04, &Response::Words(vec![0x1234, 0x5678]));
        assert_eq!(
            tcp_encode(7, 0x11, &reply),
            [0x00, 0x07, 0x00, 0x00, 0x00, 0x07, 0x11, 0x04, 0x04, 0x12, 0x34, 0x56, 0x78]
        );
    }

    #[test]
    fn requests_and_their_exceptions() {
        assert_eq!(
            decode_request(&[0x01, 0x00, 0x13, 0x00, 0x0A]),
            Ok(Request::Read {
                kind: RegisterKind::Coil,
                address: 0x13,
                count: 10
            })
        );
        assert_eq!(
            decode_request(&[0x06, 0x00, 0x01, 0xAB, 0xCD]),
            Ok(Request::WriteRegister {
                address: 1,
                value: 0xABCD
            })
        );
        assert_eq!(
            decode_request(&[0x10, 0x00, 0x02, 0x00, 0x02, 0x04, 0, 1, 0, 2]),
            Ok(Request::WriteRegisters {
                address: 2,
                values: vec![1, 2]
            })
        );
        let err = |pdu: &[u8]| decode_request(pdu).unwrap_err();
        assert_eq!(
            err(&[0x03, 0x00, 0x00, 0x00, 0x7E]),
            Exception::IllegalDataValue
        );
        assert_eq!(
            err(&[0x03, 0x00, 0x00, 0x00, 0x00]),
            Exception::IllegalDataValue
        );
        assert_eq!(
            err(&[0x04, 0xFF, 0xFF, 0x00, 0x02]),
            Exception::IllegalDataAddress
        );
        assert_eq!(err(&[0x2B, 0x0E]), Exception::IllegalFunction);
        assert_eq!(
            err(&[0x10, 0, 0, 0, 2, 3, 0, 1, 0]),
            Exception::IllegalDataValue
        );
    }

    #[test]
    fn response_pdus() {
        let bits = vec![
            true, false, true, true, false, false, true, true, true, true,
        ];
        assert_eq!(
            encode_response(0x01, &Response::Bits(bits)),
            [0x01, 0x02, 0xCD, 0x03]
        );
        assert_eq!(
            encode_response(0x03, &Response::Exception(Exception::IllegalDataAddress)),
            [0x83, 0x02]
        );
        assert_eq!(
            encode_response(
                0x10,
                &Response::Written {
                    address: 2,
                    value: 2
                }
            ),
            [0x10, 0x00, 0x02, 0x00, 0x02]
        );
    }
}
