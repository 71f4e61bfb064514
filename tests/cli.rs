//! The `pollwatch` binary as a sysadmin uses it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{reading, t0};
use pollwatch::clock::ManualClock;
use pollwatch::model::{DataKind, Flag, Stat};
use pollwatch::store::{Batch, Store, StoreOptions, Writer, WriterOptions};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pollwatch"))
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// The shipped config with its state in a temporary directory.
fn temp_config() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    for rel in [
        "duty.toml",
        "enterprises/dongshan-power.toml",
        "enterprises/chengnan-wwtp.toml",
        "enterprises/xinghe-dyeing.toml",
    ] {
        std::fs::copy(shipped().join(rel), cfg.join(rel)).unwrap();
    }
    let daemon = std::fs::read_to_string(shipped().join("pollwatch.toml")).unwrap();
    let state = dir.path().join("state");
    let daemon = daemon.replacen(
        "# state_dir = \"/var/lib/pollwatch\"",
        &format!("state_dir = {:?}", state.display().to_string()),
        1,
    );
    assert!(
        daemon.contains("state_dir = \""),
        "pollwatch.toml changed shape"
    );
    std::fs::write(cfg.join("pollwatch.toml"), daemon).unwrap();
    dir
}

/// The shipped config names secret files under /etc/pollwatch/secrets and two
/// environment variables: check-config names each one missing (exit 1), and
/// passes once they are there.
#[test]
fn check_config_names_missing_secret_files_and_variables() {
    let out = bin()
        .args(["check-config", "--config"])
        .arg(shipped())
        .env_remove("PW_DINGTALK_XIANGCHENG_TOKEN")
        .env_remove("PW_DINGTALK_XIANGCHENG_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for want in [
        "channels[0] (wecom-wuzhong).token_file: cannot read /etc/pollwatch/secrets/wecom-wuzhong.key",
        "token_env: environment variable PW_DINGTALK_XIANGCHENG_TOKEN is not set",
        "secret_env: environment variable PW_DINGTALK_XIANGCHENG_SECRET is not set",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in\n{stderr}");
    }

    let dir = temp_config();
    let cfg = dir.path().join("config");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let mut toml = std::fs::read_to_string(cfg.join("pollwatch.toml")).unwrap();
    for name in ["wecom-wuzhong.key", "sms.token", "smtp.password"] {
        std::fs::write(secrets.join(name), "s3cret\n").unwrap();
        toml = toml.replace(
            &format!("/etc/pollwatch/secrets/{name}"),
            &secrets.join(name).display().to_string(),
        );
    }
    std::fs::write(cfg.join("pollwatch.toml"), &toml).unwrap();
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .env("PW_DINGTALK_XIANGCHENG_TOKEN", "t")
        .env("PW_DINGTALK_XIANGCHENG_SECRET", "SECs")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("config OK: 3 enterprises, 4 outlets"),
        "{stdout}"
    );
    assert!(stdout.contains("a21026 ≤35 hour"), "{stdout}");

    // An empty key file is as good as none.
    std::fs::write(secrets.join("sms.token"), "\n").unwrap();
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .env("PW_DINGTALK_XIANGCHENG_TOKEN", "t")
        .env("PW_DINGTALK_XIANGCHENG_SECRET", "SECs")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("sms.token is empty"), "{stderr}");
}

#[test]
fn check_config_names_three_mistakes_in_two_files() {
    let dir = temp_config();
    let cfg = dir.path().join("config");
    let power = cfg.join("enterprises/dongshan-power.toml");
    let text = std::fs::read_to_string(&power)
        .unwrap()
        .replacen("warn_at = 0.8", "warn_at = 1.5", 1)
        .replacen("max = 10.0", "max = 10.0\nmin = 12.0", 1);
    std::fs::write(&power, &text).unwrap();
    let dye = cfg.join("enterprises/xinghe-dyeing.toml");
    let text2 = std::fs::read_to_string(&dye).unwrap().replacen(
        "role = \"production\"",
        "role = \"producton\"",
        1,
    );
    std::fs::write(&dye, &text2).unwrap();
    let line = |t: &str, needle: &str| t[..t.find(needle).unwrap()].matches('\n').count() + 1;

    let out = bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("3 config errors:"), "{stderr}");
    for want in [
        format!("enterprises/dongshan-power.toml:{}: outlets[0].limits[1].warn_at: must be in (0, 1], got 1.5", line(&text, "warn_at = 1.5")),
        format!("enterprises/dongshan-power.toml:{}: outlets[0].limits[0].min: must be below max, got min 12 ≥ max 10", line(&text, "min = 12.0")),
        format!("enterprises/xinghe-dyeing.toml:{}: meters[0].role: unknown variant `producton`", line(&text2, "producton")),
    ] {
        assert!(stderr.contains(&want), "missing {want:?} in\n{stderr}");
    }
}

#[tokio::test]
async fn readings_json_returns_what_was_written() {
    let dir = temp_config();
    let db = dir.path().join("state/pollwatch.db");
    let store = Store::open(
        &format!("sqlite://{}", db.display()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    let (w, task) = Writer::spawn(
        store.clone(),
        WriterOptions::default(),
        Arc::new(ManualClock::new(t0())),
    );
    let mut written = Vec::new();
    for i in 0..3 {
        let mut r = reading("DA001", "a21026", i * 3600, 30.0 + i as f64);
        r.enterprise = "91320506MA1PW0001A".into();
        r.kind = DataKind::Hour;
        r.stat = Stat::Avg;
        r.converted = true;
        r.flag = if i == 1 { Flag::C } else { Flag::N };
        r.source.resend = i == 1;
        written.push(r);
    }
    let mut noise = reading("DA001", "a21002", 0, 40.0);
    noise.enterprise = "91320506MA1PW0001A".into();
    written.push(noise);
    let mut resent = written[0].clone();
    w.write(Batch::readings(written)).await.unwrap();
    // The logger sends 08:00 again with another value: recorded, not stored.
    resent.value = 35.0;
    w.write(Batch::readings(vec![resent])).await.unwrap();
    drop(w);
    task.finish(Duration::from_secs(5)).await;
    store.close().await;

    let out = bin()
        .args(["readings", "--config"])
        .arg(dir.path().join("config"))
        .args([
            "--enterprise",
            "91320506MA1PW0001A",
            "--outlet",
            "DA001",
            "--factor",
            "a21026",
            "--kind",
            "hour",
        ])
        .args([
            "--from",
            "2026-11-27 08:00",
            "--to",
            "2026-11-27T10:00:00+08:00",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[0]["ts"], "2026-11-27T08:00:00+08:00");
    assert_eq!(rows[0]["factor"], "a21026");
    assert_eq!(rows[0]["kind"], "hour");
    assert_eq!(rows[0]["stat"], "avg");
    assert_eq!(rows[0]["converted"], true);
    assert_eq!(rows[0]["value"], 30.0);
    assert_eq!(rows[0]["flag"], "N");
    assert_eq!(rows[1]["ts"], "2026-11-27T09:00:00+08:00");
    assert_eq!(rows[1]["value"], 31.0);
    assert_eq!(rows[1]["flag"], "C");
    assert_eq!(rows[1]["source"]["protocol"], "hj212");
    assert_eq!(rows[0]["source"]["resend"], false);
    assert_eq!(rows[1]["source"]["resend"], true, "HJ 212-2025 RF=1");
    assert_eq!(rows[0]["conflicting_resends"][0]["value"], 35.0);
    assert!(rows[1].get("conflicting_resends").is_none());

    // The text form marks the resend at the end of its line.
    let out = bin()
        .args(["readings", "--config"])
        .arg(dir.path().join("config"))
        .args(["--enterprise", "91320506MA1PW0001A", "--outlet", "DA001"])
        .args(["--factor", "a21026", "--kind", "hour"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[1].ends_with("hj212:MN0001  resend"), "{text}");
    assert!(lines[0].ends_with("hj212:MN0001"), "{text}");
    // Then the conflicting resends of the window: both values, both sources.
    assert_eq!(lines[3], "conflicting resends (the first value stands):");
    assert!(
        lines[4].contains("stored 30 N (hj212:MN0001") && lines[4].contains("resent 35 N"),
        "{text}"
    );
}

#[test]
fn readings_rejects_a_bad_time_clearly() {
    let dir = temp_config();
    let out = bin()
        .args(["readings", "--config"])
        .arg(dir.path().join("config"))
        .args([
            "--enterprise",
            "x",
            "--outlet",
            "y",
            "--from",
            "last tuesday",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("cannot read time \"last tuesday\""),
        "{stderr}"
    );
}

#[test]
fn run_stops_cleanly_on_sigterm() {
    let dir = temp_config();
    let mut child = bin()
        .args(["run", "--config"])
        .arg(dir.path().join("config"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("pollwatch ready"));
    assert!(ready.is_some(), "daemon never became ready");
    assert!(
        dir.path().join("state/pollwatch.db").exists(),
        "SQLite file created on first run"
    );
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}; log: {rest:#?}");
    assert!(
        rest.iter().any(|l| l.contains("stopped cleanly")),
        "{rest:#?}"
    );
}

#[test]
fn run_with_a_broken_config_refuses_to_start() {
    let dir = temp_config();
    let cfg = dir.path().join("config");
    std::fs::write(cfg.join("enterprises/broken.toml"), "id = 1\n").unwrap();
    let out = bin().args(["run", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(
            "enterprises/broken.toml:1: id: invalid type: integer `1`, expected a string"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn findings_lists_what_the_rules_engine_stored() {
    use pollwatch::model::Location;
    use pollwatch::rules::{Evidence, Finding, RuleName, Severity};
    let dir = temp_config();
    let url = format!(
        "sqlite://{}",
        dir.path().join("state/pollwatch.db").display()
    );
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let f = |rule, minutes: i64, message: &str| Finding {
        rule,
        severity: Severity::Violation,
        enterprise: "91320506MA1PW0001A".into(),
        location: Some(Location::Outlet("DA001".into())),
        factor: "a21026".into(),
        window_start: t0() + chrono::Duration::minutes(minutes),
        window_end: t0() + chrono::Duration::minutes(minutes + 60),
        at: t0() + chrono::Duration::minutes(minutes + 60),
        value: Some(41.5),
        threshold: Some(35.0),
        detail: "outlets[0].limits[1]".into(),
        message: message.into(),
        evidence: Evidence::default().param("warn_at", 0.8),
    };
    store
        .insert_findings(
            &[
                f(RuleName::Exceedance, 0, "SO2 hourly mean 41.5 above 35"),
                f(RuleName::EarlyWarning, 60, "SO2 at 80 %"),
            ],
            t0(),
        )
        .await
        .unwrap();
    store.close().await;
    let cfg = dir.path().join("config");
    let out = bin()
        .args(["findings", "--rule", "exceedance", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 1, "{v:#}");
    assert_eq!(list[0]["rule"], "exceedance");
    assert_eq!(list[0]["location"], "outlet:DA001");
    assert_eq!(list[0]["evidence"]["params"]["warn_at"], 0.8);
    let text = bin()
        .args(["findings", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines().next().unwrap().contains("SO2 at 80 %"),
        "newest first: {text}"
    );
    let bad = bin()
        .args(["findings", "--rule", "exceedence", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown rule \"exceedence\""));
}
