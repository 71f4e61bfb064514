//! Every committed fuzz corpus file (`fuzz/corpus/<target>/`) goes through the same
//! functions the fuzz targets drive, so the corpus is checked by `cargo test` even
//! where cargo-fuzz is not installed. Besides "no panic", the seeds pin what each
//! known-hostile input becomes.

use std::path::Path;

use pollwatch::model::check;
use pollwatch::sources::fuzzing;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "a few seed files per target");
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn mqtt_json_corpus() {
    for (name, bytes) in corpus("mqtt_json") {
        let out = fuzzing::mqtt_json(&bytes);
        if let Ok(readings) = &out {
            assert!(check::readings(readings).is_ok(), "{name}");
        }
        let reason = out.as_ref().err().map(|e| e.0);
        match name.as_str() {
            "default_shape.json" => assert_eq!(out.map(|r| r.len()), Ok(2), "{name}"),
            "empty_key.json" | "nul_key.json" => assert_eq!(reason, Some("bad_code"), "{name}"),
            "year_2030.json" => assert_eq!(reason, Some("clock_skew"), "{name}"),
            "not_json.txt" => assert_eq!(reason, Some("bad_payload"), "{name}"),
            _ => {}
        }
    }
}

#[test]
fn hj212_frame_corpus() {
    for (name, bytes) in corpus("hj212_frame") {
        let out = fuzzing::hj212_stream(&bytes);
        for readings in out.iter().flatten() {
            assert!(check::readings(readings).is_ok(), "{name}");
        }
        let reasons: Vec<_> = out
            .iter()
            .map(|r| r.as_ref().map(Vec::len).map_err(|e| e.0))
            .collect();
        match name.as_str() {
            "rtd_ok.hj212" => assert_eq!(reasons, vec![Ok(2)], "{name}"),
            "hour_ok.hj212" => assert_eq!(reasons, vec![Ok(4)], "{name}"),
            "nul_code.hj212" => assert_eq!(reasons, vec![Err("bad_code")], "{name}"),
            "year_2030.hj212" => assert_eq!(reasons, vec![Err("clock_skew")], "{name}"),
            "two_frames_and_garbage.hj212" => {
                assert!(
                    reasons.contains(&Ok(2)) && reasons.contains(&Ok(4)),
                    "{name}: {reasons:?}"
                )
            }
            "bad_crc.hj212" => assert!(reasons.iter().all(|r| r.is_err()), "{name}: {reasons:?}"),
            _ => {}
        }
    }
}
