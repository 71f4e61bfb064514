//! HJ 212 bytes → frames → data segments → readings, as a connection reads them.
//! Must never panic, and whatever it accepts must pass the per-message checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pollwatch::model::check;

fuzz_target!(|data: &[u8]| {
    for readings in pollwatch::sources::fuzzing::hj212_stream(data).into_iter().flatten() {
        assert!(check::readings(&readings).is_ok());
    }
});
