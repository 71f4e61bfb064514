//! Alerting config: the shipped channels, routes and escalation load; mistakes in
//! them are placed by file, line and key like every other config error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pollwatch::config::{ChannelKind, Config, LoadOptions};
use pollwatch::notify::Notifier;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn copy_config() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped(), dir.path());
    dir
}

fn edit(dir: &Path, rel: &str, from: &str, to: &str) {
    let p = dir.join(rel);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "{from:?} not in {rel}");
    std::fs::write(p, text.replacen(from, to, 1)).unwrap();
}

fn line_of(dir: &Path, rel: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(dir.join(rel)).unwrap();
    let at = text.find(needle).unwrap();
    text[..at].matches('\n').count() + 1
}

fn load(dir: &Path) -> Result<Config, pollwatch::config::ConfigErrors> {
    Config::load(dir, &LoadOptions::default())
}

fn errors(dir: &Path) -> Vec<String> {
    load(dir)
        .unwrap_err()
        .0
        .iter()
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn shipped_alerting_config_is_valid() {
    let cfg = load(&shipped()).unwrap();
    let kinds: Vec<ChannelKind> = cfg.daemon.channels.iter().map(|c| c.kind).collect();
    assert!(kinds.contains(&ChannelKind::Wecom));
    assert!(kinds.contains(&ChannelKind::Dingtalk));
    assert!(kinds.contains(&ChannelKind::Webhook));
    assert!(kinds.contains(&ChannelKind::Email));
    assert!(cfg.duty.rotations.len() >= 2);
    assert!(!cfg.duty.routes.is_empty());
    assert!(!cfg.duty.escalation.is_empty());
    assert!(
        cfg.summary().contains("alerting: 4 channels"),
        "{}",
        cfg.summary()
    );
}

#[test]
fn channel_and_duty_mistakes_are_placed() {
    let dir = copy_config();
    let d = dir.path();
    let pw = "pollwatch.toml";
    edit(
        d,
        pw,
        "mention = true\n",
        "mention = true\nsmtp_host = \"smtp.x\"\n",
    );
    edit(d, pw, "tls = \"starttls\"", "tls = \"none\"");
    edit(
        d,
        pw,
        "template = \"【{severity}】",
        "template = \"【{severity_zh}】",
    );
    let duty = "duty.toml";
    edit(
        d,
        duty,
        "channels = [\"wecom-wuzhong\", \"sms\", \"email\"]",
        "channels = [\"wecom-wuzhong\", \"smss\", \"email\"]",
    );
    edit(
        d,
        duty,
        "officers = [\"chenjing\"]",
        "officers = [\"nobody\"]",
    );
    edit(d, duty, "until = \"2026-12-25\"", "until = \"2026-12-01\"");
    let errs = errors(d);
    let want = [
        format!(
            "{pw}:{}: channels[0].smtp_host: is not a key of a wecom channel",
            line_of(d, pw, "smtp_host = \"smtp.x\"")
        ),
        format!(
            "{pw}:{}: channels[3].tls: \"none\" is only allowed for a loopback relay, not \"smtp.example.gov.cn\": use \"starttls\" or \"tls\"",
            line_of(d, pw, "tls = \"none\"")
        ),
        format!(
            "{duty}:{}: routes[0].channels[1]: no channel \"smss\" in pollwatch.toml [[channels]]",
            line_of(d, duty, "\"smss\"")
        ),
        format!(
            "{duty}:{}: escalation[0].levels[1].officers[0]: no officer with id \"nobody\"",
            line_of(d, duty, "\"nobody\"")
        ),
    ];
    for w in &want {
        assert!(errs.contains(w), "missing {w}\n got {errs:#?}");
    }
    assert!(
        errs.iter().any(|e| e.starts_with(&format!(
            "{pw}:{}: channels[2].template: unknown placeholder {{severity_zh}}",
            line_of(d, pw, "{severity_zh}")
        ))),
        "{errs:#?}"
    );
    assert!(
        errs.contains(&format!(
            "{duty}:{}: overrides[0].until: must not be before from",
            line_of(d, duty, "until = \"2026-12-01\"")
        )),
        "{errs:#?}"
    );
}

#[test]
fn bad_handover_time_and_unknown_channel_key_are_placed() {
    let dir = copy_config();
    let d = dir.path();
    edit(
        d,
        "duty.toml",
        "handover = \"08:30\"",
        "handover = \"8:30pm\"",
    );
    let errs = errors(d);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with(&format!(
            "duty.toml:{}: rotations[0].handover: expected a local time \"HH:MM\"",
            line_of(d, "duty.toml", "8:30pm")
        )),
        "{errs:#?}"
    );

    let dir = copy_config();
    let d = dir.path();
    edit(
        d,
        "pollwatch.toml",
        "format = \"text\"",
        "fromat = \"text\"",
    );
    let errs = errors(d);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].contains("unknown field `fromat`"), "{errs:#?}");
    assert!(
        errs[0].starts_with(&format!(
            "pollwatch.toml:{}:",
            line_of(d, "pollwatch.toml", "fromat")
        )),
        "{errs:#?}"
    );
}

#[test]
fn a_missing_secret_makes_its_channel_unavailable_not_the_notifier() {
    let cfg = load(&shipped()).unwrap();
    let clock = Arc::new(pollwatch::clock::SystemClock);
    let n = Notifier::from_config(&cfg, clock);
    let health = n.health();
    let wecom = health
        .iter()
        .find(|c| c.channel == "wecom-wuzhong")
        .expect("the shipped wecom channel");
    let why = wecom.down.as_deref().expect("down without its key file");
    assert!(
        why.contains("/etc/pollwatch/secrets/wecom-wuzhong.key"),
        "{why}"
    );
    // The other channels were built or failed for their own reasons, each named.
    assert!(health.len() > 1);
    for c in health.iter().filter(|c| !c.up()) {
        assert!(c.down.as_deref().unwrap().contains(&c.channel), "{c:?}");
    }
}

#[test]
fn notifier_builds_from_the_shipped_config_with_its_secrets() {
    let dir = copy_config();
    let d = dir.path();
    let secrets = tempfile::tempdir().unwrap();
    for name in ["wecom-wuzhong.key", "sms.token", "smtp.password"] {
        std::fs::write(secrets.path().join(name), "s3cret\n").unwrap();
        edit(
            d,
            "pollwatch.toml",
            &format!("/etc/pollwatch/secrets/{name}"),
            &secrets.path().join(name).display().to_string(),
        );
    }
    // SAFETY of set_var: these variables are only used by this test.
    unsafe {
        std::env::set_var("PW_DINGTALK_XIANGCHENG_TOKEN", "tok");
        std::env::set_var("PW_DINGTALK_XIANGCHENG_SECRET", "SECsecret");
    }
    let cfg = load(d).unwrap();
    let n = Notifier::from_config(&cfg, Arc::new(pollwatch::clock::SystemClock));
    assert!(n.health().iter().all(|c| c.up()), "{:?}", n.health());
    let debug = format!("{n:?}");
    assert!(debug.contains("wecom-wuzhong"));
    assert!(
        !debug.contains("s3cret") && !debug.contains("SECsecret"),
        "{debug}"
    );
}
