//! Tests for scaling and status-flag mapping, including config parsing.

use super::*;
use serde::de::value::{Error as DeError, MapDeserializer};

#[test]
fn scaling_examples() {
    // Acrel ADW300 voltage: u16 × 0.1.
    let volts = Scaling {
        scale: 0.1,
        ..Scaling::default()
    };
    assert!((volts.apply(2301.0) - 230.1).abs() < 1e-9);
    assert_eq!(Scaling::default().apply(42.5), 42.5);
    assert_eq!(
        Scaling {
            offset: -40.0,
            ..Scaling::default()
        }
        .apply(65.0),
        25.0
    );
    // CEMS 4–20 mA counts: (raw − 5530) / 22118 × range, range 500 mg/m³.
    let cems = Scaling {
        raw_range: Some(RawRange {
            raw_min: 5530.0,
            raw_max: 27648.0,
            eng_min: 0.0,
            eng_max: 500.0,
        }),
        ..Scaling::default()
    };
    assert_eq!(cems.apply(5530.0), 0.0);
    assert_eq!(cems.apply(27648.0), 500.0);
    assert_eq!(cems.apply(16589.0), 250.0);
    // Below 4 mA (broken loop) stays visible as negative, not clamped.
    assert!(cems.apply(5000.0) < 0.0);
    assert!(cems.validate().is_ok());
}

#[test]
fn scaling_validation() {
    let bad = Scaling {
        scale: f64::NAN,
        ..Scaling::default()
    };
    assert_eq!(
        bad.validate().unwrap_err().to_string(),
        "scaling field scale must be a finite number, got NaN"
    );
    let empty = Scaling {
        raw_range: Some(RawRange {
            raw_min: 5530.0,
            raw_max: 5530.0,
            eng_min: 0.0,
            eng_max: 1.0,
        }),
        ..Scaling::default()
    };
    assert_eq!(
        empty.validate().unwrap_err().to_string(),
        "raw_range raw_min and raw_max are both 5530; nothing can be mapped"
    );
}

#[test]
fn status_map_lookup() {
    let map = StatusMap::new(
        [
            (0, DataFlag::N),
            (1, DataFlag::M),
            (2, DataFlag::D),
            (3, DataFlag::C),
        ],
        DataFlag::D,
    );
    assert_eq!(map.lookup(0.0), StatusLookup::Known(DataFlag::N));
    assert_eq!(map.lookup(3.0).flag().as_char(), 'C');
    let unknown = map.lookup(7.0);
    assert_eq!(
        unknown,
        StatusLookup::Unknown {
            raw: 7.0,
            flag: DataFlag::D
        }
    );
    assert!(!unknown.is_known());
    assert!(!map.lookup(1.5).is_known());
    assert!(!map.lookup(f64::NAN).is_known());
}

#[test]
fn scaling_serde_defaults() {
    let de: MapDeserializer<_, DeError> = MapDeserializer::new([("scale", 0.1f64)].into_iter());
    assert_eq!(
        Scaling::deserialize(de).unwrap(),
        Scaling {
            scale: 0.1,
            offset: 0.0,
            raw_range: None
        }
    );
    let de: MapDeserializer<_, DeError> = MapDeserializer::new([("scael", 0.1f64)].into_iter());
    assert!(Scaling::deserialize(de).is_err());
}

#[test]
fn status_map_serde_accepts_string_and_integer_keys() {
    let codes: MapDeserializer<_, DeError> =
        MapDeserializer::new([("0", "N"), (" 3 ", "C")].into_iter());
    let de: MapDeserializer<_, DeError> = MapDeserializer::new([("codes", codes)].into_iter());
    let map = StatusMap::deserialize(de).unwrap();
    assert_eq!(
        map,
        StatusMap::new([(0, DataFlag::N), (3, DataFlag::C)], DataFlag::D)
    );
    let codes: MapDeserializer<_, DeError> = MapDeserializer::new([(1i64, "M")].into_iter());
    let de: MapDeserializer<_, DeError> = MapDeserializer::new([("codes", codes)].into_iter());
    assert_eq!(
        StatusMap::deserialize(de).unwrap().lookup(1.0).flag(),
        DataFlag::M
    );
    let codes: MapDeserializer<_, DeError> = MapDeserializer::new([("x", "M")].into_iter());
    let de: MapDeserializer<_, DeError> = MapDeserializer::new([("codes", codes)].into_iter());
    let err = StatusMap::deserialize(de).unwrap_err();
    assert!(
        err.to_string()
            .contains("status code \"x\" is not an integer"),
        "{err}"
    );
}
