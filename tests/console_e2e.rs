//! The console end to end in Debian's headless Chromium, driven by
//! `tests/e2e/console.mjs` (playwright-core) against the real daemon:
//!
//! - live: log in, see the board; an exceeding HJ 212 hourly mean arrives over
//!   the real listener and its alert appears without a reload; open it, the
//!   evidence chart loads, acknowledge it with a note; the acknowledgement is
//!   then found through the JSON API with a bearer token.
//! - load: 1,000 open alerts seeded through the store; the board renders and a
//!   filter works. Timings are printed for the report, not asserted.
//!
//! Screenshots go to `<target>/e2e/`. Without `/usr/bin/chromium`, node or
//! `tests/e2e/node_modules` the tests print SKIPPED (and fail when
//! `PW_REQUIRE_SERVICES=1`): `apt-get install chromium` and `npm ci` in
//! `tests/e2e` (see `.ci/run`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::console::{
    open_store, seed_alert, start, upload_exceedance, write_config, ConsoleConfig, OPERATOR,
};
use common::daemon::Daemon;
use tokio::io::{AsyncBufReadExt, BufReader};

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e")
}

/// Whether the browser, node and playwright-core are installed.
fn browser(test: &str) -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing: Vec<&str> = [
        (
            Path::new("/usr/bin/chromium").exists(),
            "/usr/bin/chromium (apt-get install chromium)",
        ),
        (node, "node"),
        (
            e2e_dir().join("node_modules/playwright-core").exists(),
            "tests/e2e/node_modules (npm ci in tests/e2e)",
        ),
    ]
    .into_iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, what)| what)
    .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("PW_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{test}: missing {missing:?} but PW_REQUIRE_SERVICES=1");
    }
    eprintln!("SKIPPED {test}: missing {missing:?}");
    false
}

fn shots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("e2e")
}

/// Runs the script's `scenario`; `on_step` does what a `STEP` line asks. Returns
/// the script's stdout lines; panics with its output if it fails.
async fn run_script<F, Fut>(
    cfg: &ConsoleConfig,
    dir: &Path,
    scenario: &str,
    mut on_step: F,
) -> Vec<String>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut child = tokio::process::Command::new("node")
        .arg(e2e_dir().join("console.mjs"))
        .env("PW_URL", cfg.base())
        .env("PW_TOKEN", OPERATOR)
        .env("PW_SCENARIO", scenario)
        .env("PW_SHOTS", shots_dir())
        .env("PW_STEP_FILE", dir.join("step"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let line = tokio::time::timeout_at(deadline, stdout.next_line())
            .await
            .expect("the browser script finishes within 180 s")
            .unwrap();
        let Some(line) = line else { break };
        println!("e2e: {line}");
        if let Some(rest) = line.strip_prefix("STEP ") {
            let (name, done) = rest.split_once(' ').expect("STEP name file");
            on_step(name.to_string()).await;
            std::fs::write(done, "").unwrap();
        }
        lines.push(line);
    }
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser script failed ({}):\n{}\n{stderr}",
        out.status,
        lines.join("\n")
    );
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exceedance_appears_live_and_is_acknowledged_in_the_browser() {
    if !browser("console_e2e::live") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let (wecom, _seen) = common::wecom::receiver(false).await;
    cfg.with_wecom(&wecom);
    // A keyed evidence chain, as in production: the page shows it verified.
    let key = dir.path().join("evidence.key");
    std::fs::write(
        &key,
        (0..32u8)
            .map(|i| i.wrapping_mul(37) ^ 0x5a)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut toml = std::fs::read_to_string(cfg.toml()).unwrap();
    toml.push_str(&format!(
        "\n[evidence]\nkey_file = {:?}\n",
        key.display().to_string()
    ));
    std::fs::write(cfg.toml(), toml).unwrap();
    let log = dir.path().join("daemon.log");
    let mut daemon = Daemon::start(&cfg.dir, Some(&log));
    cfg.bound(&daemon);
    let port = cfg.hj212_port();
    let lines = run_script(&cfg, dir.path(), "live", |step| async move {
        assert_eq!(step, "exceedance");
        upload_exceedance(port).await;
    })
    .await;
    for shot in ["board.png", "detail.png"] {
        let p = shots_dir().join(shot);
        assert!(
            lines.iter().any(|l| l == &format!("SHOT {}", p.display())),
            "{shot}"
        );
        assert!(
            std::fs::metadata(&p).unwrap().len() > 1000,
            "{} is a real picture",
            p.display()
        );
        println!("screenshot: {}", p.display());
    }

    // The acknowledgement and the resolution from the overview, as another
    // program sees them.
    let list =
        common::console::api_json(&format!("{}/api/v1/alerts?state=resolved", cfg.base())).await;
    let a = &list[0];
    assert_eq!(
        (a["enterprise"].as_str(), a["acked_by"].as_str()),
        (Some("E1"), Some("desk")),
        "{list:#}"
    );
    let rec = common::console::api_json(&format!("{}/api/v1/alerts/{}", cfg.base(), a["id"])).await;
    let timeline = rec["timeline"].as_array().cloned().unwrap_or_default();
    let (acked, resolved) = match timeline.as_slice() {
        [.., a, r] => (a.clone(), r.clone()),
        _ => panic!("{rec:#}"),
    };
    assert_eq!(
        (resolved["kind"].as_str(), resolved["actor"].as_str()),
        (Some("resolved"), Some("desk")),
        "{rec:#}"
    );
    let last = acked;
    assert_eq!(last["kind"], "acknowledged", "{rec:#}");
    assert_eq!(last["actor"], "desk");
    assert!(
        last["detail"]
            .as_str()
            .unwrap_or("")
            .contains("已电话联系企业环保负责人"),
        "{last}"
    );
    assert_eq!(rec["timeline_intact"], true);
    assert!(daemon.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_and_filters_1000_open_alerts() {
    if !browser("console_e2e::load") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cfg, mut daemon) = start(dir.path());
    let store = open_store(&cfg.db).await;
    let now = chrono::Utc::now();
    let t = Instant::now();
    for i in 0..1000i64 {
        let (e, loc) = if i % 2 == 0 {
            ("E1", "outlet:DA001")
        } else {
            ("E2", "outlet:DW001")
        };
        let severity = ["critical", "major", "minor", "warning"][(i % 4) as usize];
        let rule = if i % 3 == 0 { "offline" } else { "exceedance" };
        let at = now - chrono::Duration::seconds(1000 - i);
        seed_alert(
            &store,
            e,
            loc,
            &format!("f{i:04}"),
            rule,
            severity,
            40.0 + i as f64 / 10.0,
            at,
        )
        .await;
    }
    println!("seeded 1000 alerts in {:?}", t.elapsed());

    // The page's server time without a browser: the median of five.
    let c = common::console::client();
    let cookie = common::console::session(&c, &cfg.base(), OPERATOR).await;
    let mut ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (status, body) = common::console::get(&c, &format!("{}/", cfg.base()), &cookie).await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200);
        assert!(body.contains("未确认 1000"));
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "TIMING board page, 1000 open alerts, server (reqwest, median of 5): {:.1} ms",
        ms[2]
    );

    let lines = run_script(&cfg, dir.path(), "load", |step| async move {
        panic!("unexpected step {step}");
    })
    .await;
    let timing = lines
        .iter()
        .find(|l| l.starts_with("TIMING "))
        .expect("timings");
    println!("browser {timing}");
    assert!(daemon.terminate().success());
}
