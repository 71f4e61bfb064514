//! DL/T 645-2007 value formats: which DIs we understand and how their BCD
//! bytes turn into numbers.
//!
//! Kept apart from the frame codec because the table grows with every meter
//! model we meet, while framing never changes. Values are BCD, low byte
//! first, with the +0x33 already removed by the frame decoder. For signed
//! quantities the top bit of the most significant (last) byte is the sign
//! and the remaining bits are still BCD, so the magnitude's top digit can
//! only be 0–7.
//!
//! Non-BCD nibbles are an error, never "best effort": a meter that answers
//! `FF FF` for a value it cannot measure must not become a reading.

use super::frame::Dlt645Error;

/// How one DI's value is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiFormat {
    pub bytes: usize,
    pub decimals: u32,
    pub signed: bool,
    pub name: &'static str,
    pub unit: &'static str,
}

const fn fmt(
    bytes: usize,
    decimals: u32,
    signed: bool,
    name: &'static str,
    unit: &'static str,
) -> DiFormat {
    DiFormat {
        bytes,
        decimals,
        signed,
        name,
        unit,
    }
}

const TABLE: [(u32, DiFormat); 11] = [
    (
        0x0000_0000,
        fmt(4, 2, false, "combined active energy", "kWh"),
    ),
    (
        0x0001_0000,
        fmt(4, 2, false, "forward active energy", "kWh"),
    ),
    (0x0201_0100, fmt(2, 1, false, "phase A voltage", "V")),
    (0x0201_0200, fmt(2, 1, false, "phase B voltage", "V")),
    (0x0201_0300, fmt(2, 1, false, "phase C voltage", "V")),
    (0x0202_0100, fmt(3, 3, true, "phase A current", "A")),
    (0x0202_0200, fmt(3, 3, true, "phase B current", "A")),
    (0x0202_0300, fmt(3, 3, true, "phase C current", "A")),
    (0x0203_0000, fmt(3, 4, true, "total active power", "kW")),
    (0x0206_0000, fmt(2, 3, true, "total power factor", "")),
    (0x0280_0002, fmt(2, 2, false, "grid frequency", "Hz")),
];

pub fn di_format(di: u32) -> Option<DiFormat> {
    TABLE.iter().find(|(d, _)| *d == di).map(|(_, f)| *f)
}

/// Exact powers of ten: dividing an exact integer by an exact power gives
/// the correctly rounded decimal (123456.78 comes out equal to the literal),
/// which multiplying by 0.01 would not.
fn pow10(decimals: u32) -> f64 {
    10f64.powi(decimals as i32)
}

/// Decodes the value bytes of a read reply for `di`.
pub fn decode_value(di: u32, bytes: &[u8]) -> Result<f64, Dlt645Error> {
    let format = di_format(di).ok_or(Dlt645Error::UnknownDi { di })?;
    if bytes.len() != format.bytes {
        return Err(Dlt645Error::ValueLength {
            di,
            expected: format.bytes,
            got: bytes.len(),
        });
    }
    let last = bytes.len().saturating_sub(1);
    let mut negative = false;
    let mut magnitude: u64 = 0;
    for (index, &raw) in bytes.iter().enumerate().rev() {
        let mut byte = raw;
        if format.signed && index == last {
            negative = byte & 0x80 != 0;
            byte &= 0x7F;
        }
        for nibble in [byte >> 4, byte & 0x0F] {
            if nibble > 9 {
                return Err(Dlt645Error::NotBcd {
                    di,
                    byte: index,
                    nibble,
                });
            }
            magnitude = magnitude * 10 + u64::from(nibble);
        }
    }
    let value = magnitude as f64 / pow10(format.decimals);
    // A set sign bit on zero is possible on the wire; report plain 0.
    Ok(if negative && magnitude != 0 {
        -value
    } else {
        value
    })
}

/// Encodes `value` for `di` (BCD, low byte first, sign bit if signed),
/// rounding to the DI's decimals. Used by the simulator.
pub fn encode_value(di: u32, value: f64) -> Result<Vec<u8>, Dlt645Error> {
    let format = di_format(di).ok_or(Dlt645Error::UnknownDi { di })?;
    let scale = pow10(format.decimals);
    let digits = 2 * format.bytes as i32;
    // Signed formats lose the sign bit from the top digit: at most 7.
    let max_units = if format.signed {
        8.0 * 10f64.powi(digits - 1) - 1.0
    } else {
        10f64.powi(digits) - 1.0
    };
    let max = max_units / scale;
    let min = if format.signed { -max } else { 0.0 };
    let units = (value.abs() * scale).round();
    let negative = value < 0.0 && units != 0.0;
    if !value.is_finite() || units > max_units || (negative && !format.signed) {
        return Err(Dlt645Error::ValueOutOfRange {
            di,
            value,
            min,
            max,
        });
    }
    // units ≤ 8×10^7 here, exact in both f64 and u64.
    let mut rest = units as u64;
    let mut out = Vec::with_capacity(format.bytes);
    for _ in 0..format.bytes {
        let pair = (rest % 100) as u8;
        rest /= 100;
        out.push(((pair / 10) << 4) | (pair % 10));
    }
    if negative {
        if let Some(top) = out.last_mut() {
            *top |= 0x80;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn energy_worked_example() {
        assert_eq!(
            decode_value(0, &[0x78, 0x56, 0x34, 0x12]).unwrap(),
            123456.78
        );
        assert_eq!(
            encode_value(0, 123456.78).unwrap(),
            vec![0x78, 0x56, 0x34, 0x12]
        );
        assert_eq!(
            decode_value(0x0001_0000, &[0x00, 0x00, 0x00, 0x00]).unwrap(),
            0.0
        );
    }

    #[test]
    fn each_table_format() {
        assert_eq!(decode_value(0x0201_0100, &[0x05, 0x22]).unwrap(), 220.5);
        assert_eq!(
            decode_value(0x0202_0200, &[0x45, 0x23, 0x01]).unwrap(),
            12.345
        );
        assert_eq!(
            decode_value(0x0203_0000, &[0x56, 0x34, 0x12]).unwrap(),
            12.3456
        );
        assert_eq!(decode_value(0x0206_0000, &[0x99, 0x09]).unwrap(), 0.999);
        assert_eq!(decode_value(0x0280_0002, &[0x02, 0x50]).unwrap(), 50.02);
    }

    #[test]
    fn sign_bit_in_most_significant_byte() {
        assert_eq!(
            decode_value(0x0202_0100, &[0x45, 0x23, 0x81]).unwrap(),
            -12.345
        );
        assert_eq!(
            decode_value(0x0203_0000, &[0x00, 0x50, 0x80]).unwrap(),
            -0.5
        );
        assert_eq!(decode_value(0x0206_0000, &[0x50, 0x88]).unwrap(), -0.85);
        // Sign bit on zero reads as plain zero, not -0.
        assert!(decode_value(0x0203_0000, &[0, 0, 0x80])
            .unwrap()
            .is_sign_positive());
        assert_eq!(encode_value(0x0206_0000, -0.85).unwrap(), vec![0x50, 0x88]);
        assert_eq!(
            encode_value(0x0202_0100, -12.345).unwrap(),
            vec![0x45, 0x23, 0x81]
        );
    }

    #[test]
    fn unsigned_formats_keep_top_bit_as_bcd() {
        // 0x80 in an energy value is the digit 8, not a sign.
        assert_eq!(decode_value(0, &[0, 0, 0, 0x80]).unwrap(), 800000.0);
    }

    #[test]
    fn non_bcd_is_named_with_byte_and_di() {
        let err = decode_value(0x0203_0000, &[0x00, 0x00, 0x8A]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "non-BCD nibble 0xA in byte 2 of DI 02030000"
        );
        let err = decode_value(0x0201_0100, &[0xF0, 0x22]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "non-BCD nibble 0xF in byte 0 of DI 02010100"
        );
        // The "no data" filler some meters send is rejected, not read as a value.
        assert!(decode_value(0, &[0xFF; 4]).is_err());
    }

    #[test]
    fn wrong_length_and_unknown_di() {
        let err = decode_value(0x0201_0100, &[0x05]).unwrap_err();
        assert_eq!(err.to_string(), "DI 02010100 value needs 2 bytes, got 1");
        let err = decode_value(0x1234_5678, &[0x05]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "DI 12345678 is not in the value format table"
        );
        assert!(di_format(0x1234_5678).is_none());
        assert_eq!(di_format(0x0203_0000).unwrap().decimals, 4);
    }

    #[test]
    fn encode_rejects_what_cannot_be_sent() {
        assert!(encode_value(0, -1.0).is_err());
        assert!(encode_value(0, 1_000_000.0).is_err());
        assert!(encode_value(0x0203_0000, 80.0).is_err());
        assert!(encode_value(0x0203_0000, 79.9999).is_ok());
        assert!(encode_value(0x0280_0002, f64::NAN).is_err());
        let err = encode_value(0x0206_0000, 8.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "value 8 does not fit DI 02060000 (allowed -7.999 to 7.999)"
        );
        // Rounds to the DI's resolution.
        assert_eq!(encode_value(0x0201_0100, 230.04).unwrap(), vec![0x00, 0x23]);
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(index in 0usize..TABLE.len(), units in 0u64..80_000_000, neg: bool) {
            let (di, format) = TABLE[index];
            let digits = 2 * format.bytes as u32;
            let limit = if format.signed { 8 * 10u64.pow(digits - 1) } else { 10u64.pow(digits) };
            let units = units % limit;
            let mut value = units as f64 / pow10(format.decimals);
            if neg && format.signed {
                value = -value;
            }
            let bytes = encode_value(di, value).unwrap();
            prop_assert_eq!(bytes.len(), format.bytes);
            prop_assert_eq!(decode_value(di, &bytes).unwrap(), value);
        }
    }
}
