//! Register-vector tests for value decoding, scaling and status mapping.

use super::*;
use proptest::prelude::*;
use serde::de::value::Error as DeError;
use serde::de::IntoDeserializer;

const ORDERS: [WordOrder; 4] = [
    WordOrder::ABCD,
    WordOrder::DCBA,
    WordOrder::BADC,
    WordOrder::CDAB,
];

#[test]
fn u32_in_each_order() {
    let cases = [
        (WordOrder::ABCD, [0x1122, 0x3344]),
        (WordOrder::CDAB, [0x3344, 0x1122]),
        (WordOrder::BADC, [0x2211, 0x4433]),
        (WordOrder::DCBA, [0x4433, 0x2211]),
    ];
    for (order, regs) in cases {
        assert_eq!(
            decode(&regs, DataType::U32, order).unwrap(),
            0x1122_3344 as f64,
            "{order:?}"
        );
        assert_eq!(
            encode(0x1122_3344 as f64, DataType::U32, order).unwrap(),
            regs,
            "{order:?}"
        );
    }
}

#[test]
fn u64_in_each_order() {
    let v = 0x1122_3344_5566_7788u64;
    let cases = [
        (WordOrder::ABCD, [0x1122, 0x3344, 0x5566, 0x7788]),
        (WordOrder::CDAB, [0x7788, 0x5566, 0x3344, 0x1122]),
        (WordOrder::BADC, [0x2211, 0x4433, 0x6655, 0x8877]),
        (WordOrder::DCBA, [0x8877, 0x6655, 0x4433, 0x2211]),
    ];
    for (order, regs) in cases {
        assert_eq!(
            decode_raw(&regs, DataType::U64, order).unwrap(),
            RawValue::Unsigned(v),
            "{order:?}"
        );
        assert_eq!(
            encode_raw(RawValue::Unsigned(v), DataType::U64, order).unwrap(),
            regs,
            "{order:?}"
        );
    }
}

#[test]
fn sixteen_bit_types_only_see_byte_swap() {
    assert_eq!(
        decode(&[0xFFFE], DataType::I16, WordOrder::ABCD).unwrap(),
        -2.0
    );
    assert_eq!(
        decode(&[0xFFFE], DataType::U16, WordOrder::CDAB).unwrap(),
        65534.0
    );
    assert_eq!(
        decode(&[0xFEFF], DataType::I16, WordOrder::BADC).unwrap(),
        -2.0
    );
    assert_eq!(
        decode(&[0x0100], DataType::U16, WordOrder::DCBA).unwrap(),
        1.0
    );
    assert_eq!(
        decode(&[0x0000], DataType::Bool, WordOrder::ABCD).unwrap(),
        0.0
    );
    assert_eq!(
        decode(&[0x0100], DataType::Bool, WordOrder::DCBA).unwrap(),
        1.0
    );
}

#[test]
fn signed_and_float_vectors() {
    assert_eq!(
        decode(&[0xFFFF, 0xFFFF], DataType::I32, WordOrder::ABCD).unwrap(),
        -1.0
    );
    assert_eq!(
        decode(&[0x8000, 0x0000], DataType::I32, WordOrder::ABCD).unwrap(),
        i32::MIN as f64
    );
    assert_eq!(
        decode(&[0xFFFF; 4], DataType::I64, WordOrder::ABCD).unwrap(),
        -1.0
    );
    // SDM630 voltage: 230.0 as float32 ABCD.
    assert_eq!(
        decode(&[0x4366, 0x0000], DataType::F32, WordOrder::ABCD).unwrap(),
        230.0
    );
    assert_eq!(
        decode(&[0x0000, 0x4366], DataType::F32, WordOrder::CDAB).unwrap(),
        230.0
    );
    assert_eq!(
        decode(&[0xC2F6, 0xE979], DataType::F32, WordOrder::ABCD).unwrap(),
        f64::from(-123.456f32)
    );
    assert_eq!(
        decode(
            &[0x405E, 0xDD2F, 0x1A9F, 0xBE77],
            DataType::F64,
            WordOrder::ABCD
        )
        .unwrap(),
        123.456
    );
    assert_eq!(
        encode(-123.456, DataType::F32, WordOrder::BADC).unwrap(),
        vec![0xF6C2, 0x79E9]
    );
}

#[test]
fn register_counts_and_errors() {
    let counts = [
        (DataType::U16, 1),
        (DataType::Bool, 1),
        (DataType::F32, 2),
        (DataType::I32, 2),
        (DataType::F64, 4),
        (DataType::U64, 4),
    ];
    for (ty, n) in counts {
        assert_eq!(register_count(ty), n);
    }
    let err = decode(&[0x4366], DataType::F32, WordOrder::ABCD).unwrap_err();
    assert_eq!(err.to_string(), "need 2 registers for f32, got 1");
    let err = decode(&[1, 2, 3], DataType::F32, WordOrder::ABCD).unwrap_err();
    assert_eq!(err.to_string(), "need 2 registers for f32, got 3");
    assert_eq!(
        decode(&[], DataType::U16, WordOrder::ABCD)
            .unwrap_err()
            .to_string(),
        "need 1 registers for u16, got 0"
    );
}

#[test]
fn encode_range_checks() {
    assert_eq!(
        encode(70000.0, DataType::U16, WordOrder::ABCD)
            .unwrap_err()
            .to_string(),
        "value 70000 out of range for u16"
    );
    assert!(encode(-1.0, DataType::U32, WordOrder::ABCD).is_err());
    assert!(encode(32768.0, DataType::I16, WordOrder::ABCD).is_err());
    assert!(encode(f64::NAN, DataType::I32, WordOrder::ABCD).is_err());
    assert!(encode(f64::INFINITY, DataType::U64, WordOrder::ABCD).is_err());
    assert!(encode(1.8446744073709552e19, DataType::U64, WordOrder::ABCD).is_err());
    assert!(encode(1e39, DataType::F32, WordOrder::ABCD).is_err());
    assert!(encode(f64::NAN, DataType::Bool, WordOrder::ABCD).is_err());
    assert_eq!(
        encode(-32768.0, DataType::I16, WordOrder::ABCD).unwrap(),
        vec![0x8000]
    );
    // Rounds to nearest: scaled engineering values are rarely exact.
    assert_eq!(
        encode(230.1 / 0.1, DataType::U16, WordOrder::ABCD).unwrap(),
        vec![2301]
    );
    assert_eq!(
        encode(2.0, DataType::Bool, WordOrder::ABCD).unwrap(),
        vec![1]
    );
    let err = encode_raw(RawValue::F32(1.0), DataType::U16, WordOrder::ABCD).unwrap_err();
    assert_eq!(err.to_string(), "value F32(1.0) cannot be stored as u16");
    assert!(encode_raw(RawValue::Signed(-1), DataType::U64, WordOrder::ABCD).is_err());
}

#[test]
fn bits() {
    // Coils 0..10: bits 0, 2, 8 set; LSB of the first byte is the first coil.
    let bits = decode_bits(&[0b0000_0101, 0b0000_0001], 10).unwrap();
    let expected = [
        true, false, true, false, false, false, false, false, true, false,
    ];
    assert_eq!(bits, expected);
    assert_eq!(encode_bits(&expected), vec![0b0000_0101, 0b0000_0001]);
    assert_eq!(
        decode_bits(&[0x01], 10).unwrap_err().to_string(),
        "need 2 bytes for 10 bits, got 1"
    );
    assert_eq!(decode_bits(&[], 0).unwrap(), Vec::<bool>::new());
}

#[test]
fn serde_names() {
    let ty = |s: &'static str| {
        DataType::deserialize(s.into_deserializer() as serde::de::value::StrDeserializer<DeError>)
    };
    assert_eq!(ty("u16").unwrap(), DataType::U16);
    assert_eq!(ty("f64").unwrap(), DataType::F64);
    assert_eq!(ty("bool").unwrap(), DataType::Bool);
    assert!(ty("U16").is_err());
    let order = |s: &'static str| {
        WordOrder::deserialize(s.into_deserializer() as serde::de::value::StrDeserializer<DeError>)
    };
    assert_eq!(order("CDAB").unwrap(), WordOrder::CDAB);
    assert!(order("cdab").is_err());
    let flag = |s: &'static str| {
        DataFlag::deserialize(s.into_deserializer() as serde::de::value::StrDeserializer<DeError>)
    };
    assert_eq!(flag("M").unwrap(), DataFlag::M);
}

fn order() -> impl Strategy<Value = WordOrder> {
    proptest::sample::select(ORDERS.to_vec())
}

/// f64 holds integers exactly up to 2^53; the f64 API is tested there and
/// the raw API over the full 64-bit range.
const EXACT: i64 = 1 << 53;

proptest! {
    #[test]
    fn small_ints_round_trip(v in any::<i64>(), order in order()) {
        let cases = [
            (DataType::U16, (v as u16) as f64),
            (DataType::I16, (v as i16) as f64),
            (DataType::U32, (v as u32) as f64),
            (DataType::I32, (v as i32) as f64),
            (DataType::U64, (v.rem_euclid(EXACT)) as f64),
            (DataType::I64, (v % EXACT) as f64),
        ];
        for (ty, value) in cases {
            let regs = encode(value, ty, order).unwrap();
            prop_assert_eq!(regs.len(), usize::from(register_count(ty)));
            prop_assert_eq!(decode(&regs, ty, order).unwrap(), value);
        }
    }

    #[test]
    fn full_range_64_bit_round_trip(u in any::<u64>(), i in any::<i64>(), order in order()) {
        let regs = encode_raw(RawValue::Unsigned(u), DataType::U64, order).unwrap();
        prop_assert_eq!(decode_raw(&regs, DataType::U64, order).unwrap(), RawValue::Unsigned(u));
        let regs = encode_raw(RawValue::Signed(i), DataType::I64, order).unwrap();
        prop_assert_eq!(decode_raw(&regs, DataType::I64, order).unwrap(), RawValue::Signed(i));
    }

    #[test]
    fn floats_round_trip_bit_exact(bits32 in any::<u32>(), bits64 in any::<u64>(), order in order()) {
        let f = f32::from_bits(bits32);
        let d = f64::from_bits(bits64);
        // Raw path: every bit pattern, NaN payloads included.
        let regs = encode_raw(RawValue::F32(f), DataType::F32, order).unwrap();
        prop_assert_eq!(decode_raw(&regs, DataType::F32, order).unwrap().to_f64().to_bits(), f64::from(f).to_bits());
        let regs = encode_raw(RawValue::F64(d), DataType::F64, order).unwrap();
        match decode_raw(&regs, DataType::F64, order).unwrap() {
            RawValue::F64(back) => prop_assert_eq!(back.to_bits(), bits64),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
        // f64 path: bit-exact for everything but NaN (whose f32<->f64 payload
        // handling is platform-defined), including negatives and infinities.
        if !f.is_nan() {
            let regs = encode(f64::from(f), DataType::F32, order).unwrap();
            prop_assert_eq!(decode(&regs, DataType::F32, order).unwrap().to_bits(), f64::from(f).to_bits());
        }
        if !d.is_nan() {
            let regs = encode(d, DataType::F64, order).unwrap();
            prop_assert_eq!(decode(&regs, DataType::F64, order).unwrap().to_bits(), bits64);
        }
    }

    #[test]
    fn bools_round_trip(b: bool, order in order()) {
        let regs = encode(f64::from(u8::from(b)), DataType::Bool, order).unwrap();
        prop_assert_eq!(decode(&regs, DataType::Bool, order).unwrap(), f64::from(u8::from(b)));
    }

    #[test]
    fn bits_round_trip(bits in proptest::collection::vec(any::<bool>(), 0..100)) {
        let bytes = encode_bits(&bits);
        prop_assert_eq!(decode_bits(&bytes, bits.len() as u16).unwrap(), bits);
    }
}
