//! `pollwatch evidence init-key` and check-config's view of the evidence key
//! (issue 18), through the binary.

mod common;

/// `pollwatch evidence init-key` makes a private key once; check-config refuses
/// a group-readable one by name and warns when none is set.
#[test]
fn init_key_and_check_config() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("evidence.key");
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pollwatch"))
            .args(args)
            .output()
            .unwrap()
    };
    let made = run(&[
        "evidence".as_ref(),
        "init-key".as_ref(),
        "--out".as_ref(),
        key.as_os_str(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = run(&[
        "evidence".as_ref(),
        "init-key".as_ref(),
        "--out".as_ref(),
        key.as_os_str(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));

    let cfg = common::hj212_config(dir.path(), "");
    let check = || {
        run(&[
            "check-config".as_ref(),
            "--config".as_ref(),
            cfg.dir.as_os_str(),
        ])
    };
    let plain = check();
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert!(String::from_utf8_lossy(&plain.stderr).contains("[evidence] key_file is not set"));

    let toml = cfg.dir.join("pollwatch.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!(
        "\n[evidence]\nkey_file = {:?}\n",
        key.display().to_string()
    ));
    std::fs::write(&toml, text).unwrap();
    let keyed = check();
    assert!(
        keyed.status.success(),
        "{}",
        String::from_utf8_lossy(&keyed.stderr)
    );
    assert!(!String::from_utf8_lossy(&keyed.stderr).contains("not set"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = check();
    assert!(!open.status.success());
    let err = String::from_utf8_lossy(&open.stderr);
    assert!(
        err.contains("evidence.key_file") && err.contains("0644"),
        "{err}"
    );
}
