//! Byte-vector tests for the DL/T 645 frame codec. Expected frames were
//! checked by hand (checksum = byte sum from the first 0x68 through DATA).

use super::*;
use proptest::prelude::*;
use serde::de::IntoDeserializer;
use serde::Deserialize;

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn meter(text: &str) -> MeterAddress {
    text.parse().unwrap()
}

const READ_EXAMPLE: &str = "FE FE FE FE 68 01 00 00 00 00 00 68 11 04 33 33 33 33 B2 16";
const REPLY_EXAMPLE: &str = "68 01 00 00 00 00 00 68 91 08 33 33 33 33 AB 89 67 45 16 16";

#[test]
fn worked_example_read_request() {
    let addr = meter("000000000001");
    assert_eq!(encode_read(addr, 0, Preamble::Fe4), hex(READ_EXAMPLE));
    assert_eq!(encode_read(addr, 0, Preamble::Omit), hex(READ_EXAMPLE)[4..]);
}

#[test]
fn worked_example_reply_decodes() {
    let bytes = hex(REPLY_EXAMPLE);
    let (frame, consumed) = decode(&bytes).unwrap().unwrap();
    assert_eq!(consumed, 20);
    assert_eq!(frame.address, meter("000000000001"));
    assert_eq!(frame.control, 0x91);
    assert_eq!(frame.data, vec![0, 0, 0, 0, 0x78, 0x56, 0x34, 0x12]);
    assert_eq!(frame.read_value(0).unwrap(), 123456.78);
    assert!(frame.check_address(meter("000000000001")).is_ok());
    let err = frame.check_address(meter("000000000161")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "reply comes from meter 000000000001, expected meter 000000000161"
    );
}

#[test]
fn worked_example_reply_encodes() {
    let bytes = encode_read_reply(meter("000000000001"), 0, 123456.78).unwrap();
    assert_eq!(bytes, hex(REPLY_EXAMPLE));
}

#[test]
fn preamble_and_garbage_are_skipped_and_consumed() {
    // Noise with a stray 0x68 (not followed by a second 0x68), then wake-up bytes.
    let mut bytes = hex("00 13 68 FF 01 02 FE FE FE FE");
    let prefix = bytes.len();
    bytes.extend(hex(REPLY_EXAMPLE));
    let (frame, consumed) = decode(&bytes).unwrap().unwrap();
    assert_eq!(consumed, prefix + 20);
    assert_eq!(frame.read_value(0).unwrap(), 123456.78);
    // The request with its own preamble decodes too.
    let (request, consumed) = decode(&hex(READ_EXAMPLE)).unwrap().unwrap();
    assert_eq!(consumed, 20);
    assert_eq!(request.request().unwrap(), Request::Read { di: 0 });
}

#[test]
fn split_frame_needs_more_bytes_at_every_cut() {
    let mut bytes = hex("FE FE");
    bytes.extend(hex(REPLY_EXAMPLE));
    for cut in 0..bytes.len() {
        assert_eq!(decode(&bytes[..cut]).unwrap(), None, "cut at {cut}");
    }
    assert!(decode(&bytes).unwrap().is_some());
    assert_eq!(decode(&[]).unwrap(), None);
    assert_eq!(decode(&hex("FE FE 00 11")).unwrap(), None);
}

#[test]
fn back_to_back_frames_leave_the_rest() {
    let mut bytes = hex(REPLY_EXAMPLE);
    bytes.extend(encode_error_reply(
        meter("000000000001"),
        MeterError::NO_DATA,
    ));
    bytes.extend(hex("FE FE"));
    let (first, used) = decode(&bytes).unwrap().unwrap();
    assert_eq!(first.control, 0x91);
    let (second, used2) = decode(&bytes[used..]).unwrap().unwrap();
    assert_eq!(second.control, 0xD1);
    assert_eq!(decode(&bytes[used + used2..]).unwrap(), None);
}

#[test]
fn bad_checksum_is_reported_exactly() {
    let mut bytes = hex(REPLY_EXAMPLE);
    bytes[18] = 0x17;
    let err = decode(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "checksum mismatch: frame says 0x17, computed 0x16"
    );
    assert!(matches!(
        err,
        Dlt645Error::ChecksumMismatch { frame_len: 20, .. }
    ));
    // A corrupted data byte shows up the same way.
    let mut bytes = hex(READ_EXAMPLE);
    bytes[14] = 0x34;
    let err = decode(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "checksum mismatch: frame says 0xB2, computed 0xB3"
    );
}

#[test]
fn wrong_end_byte_is_reported() {
    let mut bytes = hex(REPLY_EXAMPLE);
    bytes[19] = 0x17;
    let err = decode(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "wrong end byte: frame has 0x17 where 0x16 belongs"
    );
}

#[test]
fn error_reply_names_the_bit() {
    let addr = meter("000000000001");
    let bytes = encode_error_reply(addr, MeterError::NO_DATA);
    assert_eq!(bytes, hex("68 01 00 00 00 00 00 68 D1 01 35 D8 16"));
    let (frame, _) = decode(&bytes).unwrap().unwrap();
    let err = frame.reply().unwrap_err();
    assert_eq!(
        err.to_string(),
        "meter rejected the request (control 0xD1): error byte 0x02 (no requested data)"
    );
    match err {
        Dlt645Error::Rejected { error, .. } => assert!(error.is_no_data()),
        other => panic!("unexpected {other:?}"),
    }
    assert!(frame.read_value(0).is_err());
}

#[test]
fn meter_error_display() {
    assert_eq!(
        MeterError(0x05).to_string(),
        "error byte 0x05 (other error, password error/unauthorised)"
    );
    assert_eq!(MeterError(0x00).to_string(), "error byte 0x00 (no bit set)");
    assert_eq!(
        MeterError(0x80).to_string(),
        "error byte 0x80 (reserved bit 7)"
    );
    assert_eq!(
        MeterError(0x78).reasons(),
        vec![
            "baud rate not changeable",
            "annual time zone count exceeded",
            "daily period count exceeded",
            "rate count exceeded"
        ]
    );
    // An error frame without its error byte is malformed, not a rejection.
    let frame = Frame {
        address: MeterAddress::WILDCARD,
        control: 0xD1,
        data: vec![],
    };
    assert_eq!(
        frame.reply().unwrap_err().to_string(),
        "frame with control 0xD1 needs 1 data bytes, got 0"
    );
}

#[test]
fn signed_current_reply_from_simulator() {
    let addr = meter("000000000001");
    let bytes = encode_read_reply(addr, 0x0202_0100, -12.345).unwrap();
    assert_eq!(
        bytes,
        hex("68 01 00 00 00 00 00 68 91 07 33 34 35 35 78 56 B4 BC 16")
    );
    let (frame, _) = decode(&bytes).unwrap().unwrap();
    assert_eq!(frame.read_value(0x0202_0100).unwrap(), -12.345);
}

#[test]
fn more_follows_flag() {
    let frame = Frame {
        address: meter("000000000001"),
        control: 0xB1,
        data: vec![0, 0, 0, 0, 1, 0, 0, 0],
    };
    let (decoded, _) = decode(&frame.encode(Preamble::Omit).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        decoded.reply().unwrap(),
        Reply::Read {
            di: 0,
            value: vec![1, 0, 0, 0],
            more_follows: true
        }
    );
    assert_eq!(decoded.read_value(0).unwrap(), 0.01);
}

#[test]
fn reply_checks() {
    let (frame, _) = decode(&hex(REPLY_EXAMPLE)).unwrap().unwrap();
    let err = frame.read_value(0x0001_0000).unwrap_err();
    assert_eq!(
        err.to_string(),
        "reply is for DI 00000000, but DI 00010000 was requested"
    );
    let short = Frame {
        address: frame.address,
        control: 0x91,
        data: vec![0, 0],
    };
    assert_eq!(
        short.reply().unwrap_err().to_string(),
        "frame with control 0x91 needs 4 data bytes, got 2"
    );
    let request = Frame {
        address: frame.address,
        control: 0x11,
        data: vec![0; 4],
    };
    assert_eq!(
        request.reply().unwrap_err().to_string(),
        "control code 0x11 is a request, expected a meter reply"
    );
    assert_eq!(
        frame.request().unwrap_err().to_string(),
        "control code 0x91 is a meter reply, expected a request"
    );
    let other = Frame {
        address: frame.address,
        control: 0x94,
        data: vec![],
    };
    assert_eq!(other.reply().unwrap(), Reply::Other { control: 0x94 });
    assert_eq!(
        other.read_value(0).unwrap_err().to_string(),
        "expected a read reply, got control code 0x94"
    );
}

#[test]
fn read_address_round_trip() {
    assert_eq!(
        encode_read_address(Preamble::Fe4),
        hex("FE FE FE FE 68 AA AA AA AA AA AA 68 13 00 DF 16")
    );
    let (req, _) = decode(&encode_read_address(Preamble::Omit))
        .unwrap()
        .unwrap();
    assert_eq!(req.request().unwrap(), Request::ReadAddress);
    let reply = hex("68 61 01 00 00 00 00 68 93 06 94 34 33 33 33 33 5F 16");
    let (frame, _) = decode(&reply).unwrap().unwrap();
    assert_eq!(
        frame.reply().unwrap(),
        Reply::Address(meter("000000000161"))
    );
}

#[test]
fn broadcast_time_bytes_and_round_trip() {
    let time = MeterTime {
        year: 2024,
        month: 3,
        day: 15,
        hour: 12,
        minute: 34,
        second: 56,
    };
    let bytes = encode_broadcast_time(time, Preamble::Omit).unwrap();
    assert_eq!(
        bytes,
        hex("68 99 99 99 99 99 99 68 08 06 89 67 45 48 36 57 7E 16")
    );
    let (frame, _) = decode(&bytes).unwrap().unwrap();
    assert_eq!(frame.address, MeterAddress::BROADCAST);
    assert_eq!(frame.request().unwrap(), Request::BroadcastTime(time));
    let bad = MeterTime { month: 13, ..time };
    assert_eq!(
        encode_broadcast_time(bad, Preamble::Omit)
            .unwrap_err()
            .to_string(),
        "invalid broadcast time: month is 13, allowed 1 to 12"
    );
    assert!(encode_broadcast_time(MeterTime { year: 1999, ..time }, Preamble::Omit).is_err());
    let garbled = Frame {
        address: MeterAddress::BROADCAST,
        control: 0x08,
        data: vec![0x5A, 0, 0, 1, 1, 0],
    };
    assert_eq!(
        garbled.request().unwrap_err().to_string(),
        "non-BCD byte 0x5A in broadcast time field second"
    );
}

#[test]
fn address_parse_and_print() {
    let addr = meter("000000000161");
    assert_eq!(addr.wire_bytes(), [0x61, 0x01, 0, 0, 0, 0]);
    assert_eq!(addr.to_string(), "000000000161");
    assert_eq!(
        meter("123456789012").wire_bytes(),
        [0x12, 0x90, 0x78, 0x56, 0x34, 0x12]
    );
    assert_eq!(MeterAddress::WILDCARD.to_string(), "AAAAAAAAAAAA");
    assert_eq!(MeterAddress::from_wire([0x61, 1, 0, 0, 0, 0]), addr);
    let err = "00000000016A".parse::<MeterAddress>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "meter address \"00000000016A\" has non-digit 'A' at position 11"
    );
    let err = "161".parse::<MeterAddress>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "meter address must be exactly 12 decimal digits, got 3 characters"
    );
    assert!("00000000016٣".parse::<MeterAddress>().is_err());
    assert!(" 00000000161".parse::<MeterAddress>().is_err());
}

#[test]
fn address_from_config_string() {
    let de: serde::de::value::StringDeserializer<serde::de::value::Error> =
        "000000000161".to_owned().into_deserializer();
    assert_eq!(
        MeterAddress::deserialize(de).unwrap(),
        meter("000000000161")
    );
    let de: serde::de::value::StringDeserializer<serde::de::value::Error> =
        "x".to_owned().into_deserializer();
    assert!(MeterAddress::deserialize(de).is_err());
}

#[test]
fn oversized_frame_is_refused() {
    let frame = Frame {
        address: MeterAddress::WILDCARD,
        control: 0x91,
        data: vec![0; 256],
    };
    assert_eq!(
        frame.encode(Preamble::Omit).unwrap_err().to_string(),
        "frame data of 256 bytes does not fit the one-byte length field"
    );
    let frame = Frame {
        data: vec![0; 255],
        ..frame
    };
    let bytes = frame.encode(Preamble::Omit).unwrap();
    assert_eq!(decode(&bytes).unwrap().unwrap(), (frame, 267));
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn frames_survive_garbage_and_splitting(
        addr in any::<[u8; 6]>(),
        control in any::<u8>(),
        data in proptest::collection::vec(any::<u8>(), 0..60),
        garbage in proptest::collection::vec(any::<u8>().prop_filter("no start byte", |b| *b != 0x68), 0..20),
        cut in any::<proptest::sample::Index>(),
    ) {
        let frame = Frame { address: MeterAddress::from_wire(addr), control, data };
        let mut bytes = garbage.clone();
        bytes.extend(frame.encode(Preamble::Fe4).unwrap());
        let cut = cut.index(bytes.len());
        prop_assert_eq!(decode(&bytes[..cut]).unwrap(), None);
        prop_assert_eq!(decode(&bytes).unwrap(), Some((frame, bytes.len())));
    }
}
