//! Modbus register values: raw 16-bit words to numbers, and back for the
//! simulator.
//!
//! Why this exists: every vendor lays multi-register values out differently
//! and a wrong word order does not fail, it yields plausible garbage (a
//! 230 V reading becoming 1.1e-41). So the orders are defined exactly here,
//! decoding is bit-exact, and `encode` is the precise inverse, which the
//! property tests hold it to.
//!
//! ## Byte and word orders
//! Letters name the bytes of the value from most to least significant
//! (`A` first); the string says in which order they sit in the registers as
//! read off the wire. Two independent transforms generate all four:
//!
//! | order | words reversed | bytes swapped in each word | 32-bit | 64-bit     |
//! |-------|----------------|----------------------------|--------|------------|
//! | ABCD  | no             | no                         | ABCD   | ABCDEFGH   |
//! | CDAB  | yes            | no                         | CDAB   | GHEFCDAB   |
//! | BADC  | no             | yes                        | BADC   | BADCFEHG   |
//! | DCBA  | yes            | yes                        | DCBA   | HGFEDCBA   |
//!
//! For 64-bit types "words reversed" reverses all four words, the same
//! generalisation Telegraf uses. One-register types only see the byte swap
//! (BADC/DCBA read a u16 as `BA`).
//!
//! ## Exactness
//! [`decode`] returns `f64`, which is exact for every 8/16/32-bit type and
//! for f32/f64, but u64/i64 beyond ±2^53 are rounded. Energy counters rarely
//! get there, but [`decode_raw`] / [`encode_raw`] keep the integer (and NaN
//! payloads) exact for anyone who needs it.
//!
//! Scaling and status-flag maps live in the sibling `modbus_scale` and are
//! re-exported here, since config treats them as part of a point.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use super::scale::{DataFlag, RawRange, Scaling, ScalingError, StatusLookup, StatusMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    /// One register, true when non-zero (for status words used as flags).
    Bool,
}

impl DataType {
    pub fn name(self) -> &'static str {
        match self {
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::U64 => "u64",
            DataType::I64 => "i64",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
            DataType::Bool => "bool",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// See the module docs for the exact meaning of each order.
// The names are byte positions copied from device manuals, not acronyms.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum WordOrder {
    #[default]
    ABCD,
    DCBA,
    BADC,
    CDAB,
}

impl WordOrder {
    fn words_reversed(self) -> bool {
        matches!(self, WordOrder::CDAB | WordOrder::DCBA)
    }

    fn bytes_swapped(self) -> bool {
        matches!(self, WordOrder::BADC | WordOrder::DCBA)
    }
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum DecodeError {
    #[error("need {need} registers for {ty}, got {got}")]
    RegisterCount {
        ty: DataType,
        need: usize,
        got: usize,
    },
    #[error("need {need} bytes for {bits} bits, got {got}")]
    BitBytes { bits: u16, need: usize, got: usize },
    #[error("value {value} out of range for {ty}")]
    OutOfRange { value: f64, ty: DataType },
    #[error("value {value:?} cannot be stored as {ty}")]
    WrongKind { value: RawValue, ty: DataType },
}

pub fn register_count(ty: DataType) -> u16 {
    match ty {
        DataType::U16 | DataType::I16 | DataType::Bool => 1,
        DataType::U32 | DataType::I32 | DataType::F32 => 2,
        DataType::U64 | DataType::I64 | DataType::F64 => 4,
    }
}

/// A decoded value without the trip through f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawValue {
    Unsigned(u64),
    Signed(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
}

impl RawValue {
    pub fn to_f64(self) -> f64 {
        match self {
            RawValue::Unsigned(v) => v as f64,
            RawValue::Signed(v) => v as f64,
            RawValue::F32(v) => f64::from(v),
            RawValue::F64(v) => v,
            RawValue::Bool(v) => f64::from(u8::from(v)),
        }
    }
}

/// Joins the registers into one big-endian integer of `16 × regs` bits.
fn join(regs: &[u16], order: WordOrder) -> u64 {
    let word = |w: &u16| {
        if order.bytes_swapped() {
            w.swap_bytes()
        } else {
            *w
        }
    };
    let fold = |acc: u64, w: u16| (acc << 16) | u64::from(w);
    if order.words_reversed() {
        regs.iter().rev().map(word).fold(0, fold)
    } else {
        regs.iter().map(word).fold(0, fold)
    }
}

/// Inverse of [`join`].
fn split(bits: u64, count: u16, order: WordOrder) -> Vec<u16> {
    let mut regs: Vec<u16> = (0..count)
        .rev()
        .map(|i| (bits >> (16 * u32::from(i))) as u16)
        .map(|w| {
            if order.bytes_swapped() {
                w.swap_bytes()
            } else {
                w
            }
        })
        .collect();
    if order.words_reversed() {
        regs.reverse();
    }
    regs
}

/// `regs` must be exactly the point's registers: a longer slice is refused
/// because it almost always means an address or type mistake in config.
pub fn decode_raw(regs: &[u16], ty: DataType, order: WordOrder) -> Result<RawValue, DecodeError> {
    let need = usize::from(register_count(ty));
    if regs.len() != need {
        return Err(DecodeError::RegisterCount {
            ty,
            need,
            got: regs.len(),
        });
    }
    let bits = join(regs, order);
    // The `as` casts below keep exactly the low bits `join` produced.
    Ok(match ty {
        DataType::U16 | DataType::U32 | DataType::U64 => RawValue::Unsigned(bits),
        DataType::I16 => RawValue::Signed(i64::from(bits as u16 as i16)),
        DataType::I32 => RawValue::Signed(i64::from(bits as u32 as i32)),
        DataType::I64 => RawValue::Signed(bits as i64),
        DataType::F32 => RawValue::F32(f32::from_bits(bits as u32)),
        DataType::F64 => RawValue::F64(f64::from_bits(bits)),
        DataType::Bool => RawValue::Bool(bits != 0),
    })
}

pub fn decode(regs: &[u16], ty: DataType, order: WordOrder) -> Result<f64, DecodeError> {
    decode_raw(regs, ty, order).map(RawValue::to_f64)
}

/// Exact inverse of [`decode_raw`]; integers are range-checked for `ty`.
pub fn encode_raw(
    value: RawValue,
    ty: DataType,
    order: WordOrder,
) -> Result<Vec<u16>, DecodeError> {
    let wrong = || DecodeError::WrongKind { value, ty };
    let bits = match (ty, value) {
        (DataType::F32, RawValue::F32(v)) => u64::from(v.to_bits()),
        (DataType::F64, RawValue::F64(v)) => v.to_bits(),
        (DataType::Bool, RawValue::Bool(v)) => u64::from(v),
        (_, RawValue::Unsigned(v)) => int_bits(i128::from(v), ty).ok_or_else(wrong)?,
        (_, RawValue::Signed(v)) => int_bits(i128::from(v), ty).ok_or_else(wrong)?,
        _ => return Err(wrong()),
    };
    Ok(split(bits, register_count(ty), order))
}

/// Two's-complement bits of `v` for an integer `ty`, or None if it does not
/// fit (or `ty` is not an integer type).
fn int_bits(v: i128, ty: DataType) -> Option<u64> {
    let (min, max): (i128, i128) = match ty {
        DataType::U16 => (0, u16::MAX.into()),
        DataType::I16 => (i16::MIN.into(), i16::MAX.into()),
        DataType::U32 => (0, u32::MAX.into()),
        DataType::I32 => (i32::MIN.into(), i32::MAX.into()),
        DataType::U64 => (0, u64::MAX.into()),
        DataType::I64 => (i64::MIN.into(), i64::MAX.into()),
        _ => return None,
    };
    // Truncating to the type's width is what two's complement means; the
    // split keeps only the low 16 × count bits.
    (min..=max).contains(&v).then_some(v as u64)
}

/// Encodes an engineering-side `f64` for the simulator. Integers are rounded
/// to nearest (so 230.1 V ÷ 0.1 = 2301.0000000000005 still becomes 2301) and
/// must fit the type; f32 takes the nearest f32; anything non-zero is true.
pub fn encode(value: f64, ty: DataType, order: WordOrder) -> Result<Vec<u16>, DecodeError> {
    let out_of_range = DecodeError::OutOfRange { value, ty };
    let raw = match ty {
        DataType::F64 => RawValue::F64(value),
        DataType::F32 => {
            let narrow = value as f32;
            if value.is_finite() && !narrow.is_finite() {
                return Err(out_of_range);
            }
            RawValue::F32(narrow)
        }
        DataType::Bool if value.is_nan() => return Err(out_of_range),
        DataType::Bool => RawValue::Bool(value != 0.0),
        _ => {
            let rounded = value.round();
            // ±2^65 bounds keep the i128 conversion exact; int_bits does
            // the real per-type check.
            if rounded.is_nan() || rounded.abs() >= 3.7e19 {
                return Err(out_of_range);
            }
            let bits = int_bits(rounded as i128, ty).ok_or(out_of_range)?;
            return Ok(split(bits, register_count(ty), order));
        }
    };
    encode_raw(raw, ty, order)
}

/// Unpacks coil / discrete-input bytes as they appear in a Modbus reply:
/// least significant bit of the first byte is the first address.
pub fn decode_bits(bytes: &[u8], count: u16) -> Result<Vec<bool>, DecodeError> {
    let need = usize::from(count).div_ceil(8);
    if bytes.len() != need {
        return Err(DecodeError::BitBytes {
            bits: count,
            need,
            got: bytes.len(),
        });
    }
    Ok((0..usize::from(count))
        .map(|i| bytes.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0))
        .collect())
}

/// Inverse of [`decode_bits`], for the simulator. Padding bits are zero.
pub fn encode_bits(bits: &[bool]) -> Vec<u8> {
    bits.chunks(8)
        .map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .fold(0u8, |acc, (i, &b)| acc | (u8::from(b) << i))
        })
        .collect()
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
