//! MQTT JSON payload → readings: parse, map, per-message checks. Must never panic,
//! and whatever it accepts must pass the checks the store writer relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pollwatch::model::check;

fuzz_target!(|data: &[u8]| {
    if let Ok(readings) = pollwatch::sources::fuzzing::mqtt_json(data) {
        assert!(check::readings(&readings).is_ok());
    }
});
