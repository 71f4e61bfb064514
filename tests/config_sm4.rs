//! HJ 212-2025 SM4 keys in config: read from a file or the environment when the
//! config loads, checked for shape, and never shown — not in errors, not in Debug.

use std::path::{Path, PathBuf};

use pollwatch::config::{Config, LoadOptions};

const KEY: &str = "7A3F0C5512E94B6D88A1C4F02B9E6D31";
const REL: &str = "enterprises/xinghe-dyeing.toml";
const LINE: &str = r#"hj212 = { mn = "32050700000201", password = "xh8888" }"#;

fn config_with(hj212: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
        dir.path(),
    );
    let p = dir.path().join(REL);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(LINE));
    std::fs::write(&p, text.replace(LINE, hj212)).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest: PathBuf = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn errors(dir: &Path) -> String {
    Config::load(dir, &LoadOptions::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn key_from_a_file_relative_to_the_config_dir_is_loaded_and_redacted() {
    let dir = config_with(
        r#"hj212 = { mn = "32050700000201", password = "xh8888", sm4_key_file = "keys/ws001.key", require_encryption = true }"#,
    );
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    // Surrounding whitespace and lowercase are fine.
    std::fs::write(
        dir.path().join("keys/ws001.key"),
        format!("  {}\n", KEY.to_lowercase()),
    )
    .unwrap();
    let cfg = Config::load(dir.path(), &LoadOptions::default()).unwrap();
    let h = cfg
        .outlet_by_mn("32050700000201")
        .and_then(|(_, o)| o.hj212.clone())
        .unwrap();
    assert!(h.sm4_key.is_some() && h.require_encryption);
    let shown = format!("{cfg:?}");
    assert!(shown.contains("<redacted>"));
    for k in [KEY, &KEY.to_lowercase()] {
        assert!(!shown.contains(k), "the key must never be shown");
    }
}

/// What check-config prints beyond load errors (it exits 1 on any of them).
fn problems(dir: &Path) -> String {
    let cfg = Config::load(dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    pollwatch::config::secrets::environment_problems(&cfg)
        .iter()
        .map(|d| format!("{d}\n"))
        .collect()
}

#[test]
fn missing_or_malformed_keys_are_named_by_check_config_without_showing_them() {
    // Not load errors: the daemon runs (that logger's encrypted frames become
    // bad_decrypt dead letters) and check-config reports them.
    let dir = config_with(
        r#"hj212 = { mn = "32050700000201", password = "xh8888", sm4_key_file = "keys/missing.key" }"#,
    );
    let cfg = Config::load(dir.path(), &LoadOptions::default()).unwrap();
    let h = cfg
        .outlet_by_mn("32050700000201")
        .unwrap()
        .1
        .hj212
        .clone()
        .unwrap();
    assert!(h.sm4_key.is_none());
    let e = problems(dir.path());
    assert!(
        e.contains("enterprises/xinghe-dyeing.toml: outlets[0].hj212.sm4_key_file: cannot read")
            && e.contains("keys/missing.key"),
        "{e}"
    );

    let bad = "7A3F0C5512E94B6D88A1C4F02B9E6DZZ";
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/missing.key"), bad).unwrap();
    let e = problems(dir.path());
    assert!(e.contains("not a hex digit"), "{e}");
    assert!(!e.contains(bad), "{e}");
    std::fs::write(dir.path().join("keys/missing.key"), &KEY[..30]).unwrap();
    let e = problems(dir.path());
    assert!(e.contains("32 hex digits; found 30 characters"), "{e}");
    std::fs::write(dir.path().join("keys/missing.key"), KEY).unwrap();
    assert!(
        !problems(dir.path()).contains("sm4_key"),
        "a good key is not a problem"
    );

    let dir = config_with(
        r#"hj212 = { mn = "32050700000201", password = "xh8888", sm4_key_env = "PW_TEST_SM4_SURELY_UNSET" }"#,
    );
    let e = problems(dir.path());
    assert!(
        e.contains("sm4_key_env: environment variable PW_TEST_SM4_SURELY_UNSET is not set"),
        "{e}"
    );
}

#[test]
fn mistakes_in_the_file_itself_are_load_errors() {
    let dir = config_with(
        r#"hj212 = { mn = "32050700000201", password = "xh8888", require_encryption = true }"#,
    );
    let e = errors(dir.path());
    assert!(
        e.contains("require_encryption: needs the logger's key"),
        "{e}"
    );

    let dir = config_with(
        r#"hj212 = { mn = "32050700000201", password = "xh8888", sm4_key_file = "a", sm4_key_env = "B" }"#,
    );
    assert!(errors(dir.path()).contains("set sm4_key_file or sm4_key_env, not both"));
}
