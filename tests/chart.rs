//! The evidence chart end to end: readings stored through the writer, judged by
//! the real evaluator, the exceedance recorded on an alert by the alerts engine,
//! then both chart routes fetched over real HTTP — without a token, with one, for
//! an unknown alert — and from the CLI; and the PNG attached to the alert's
//! e-mail through a local SMTP sink. On SQLite, and on PostgreSQL when
//! `PW_TEST_DATABASE_URL` is set.

#[macro_use]
mod common;
mod notify_support;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use pollwatch::alerts::{AlertEngine, Dispatcher};
use pollwatch::api::{self, ApiState, Server};
use pollwatch::clock::{Clock, ManualClock};
use pollwatch::config::Config;
use pollwatch::model::{Flag, Location, Reading};
use pollwatch::notify::escalation::Step;
use pollwatch::notify::{Delivery, Notifier};
use pollwatch::rules::{Evaluator, Finding, Options, Output, Plan, RuleName, Severity};
use pollwatch::store::{Batch, Store, StoredFinding};
use reqwest::StatusCode;
use sha2::Digest;

const VIEWER: &str = "chart-viewer-token-0123456789";

fn config(dir: &std::path::Path, storage: &str) -> Config {
    common::alerting::config(
        dir,
        storage,
        common::alerting::UNUSED_CHANNEL,
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[[http.tokens]]\nname = \"console\"\nrole = \"viewer\"\ntoken = \"{VIEWER}\"\n"
        ),
    )
}

/// Three hours of minute values at 9 % O2 (correction × 15/12): 16 mg/m³
/// measured (20 corrected) for two hours, then 32 (40 corrected, above 35) with
/// five values flagged F (999, excluded) in the third.
fn readings() -> Vec<Reading> {
    let mut out = Vec::new();
    for m in 0..180 {
        let secs = m * 60;
        out.push(common::reading("DA001", "a19001", secs, 9.0));
        let mut so2 = common::reading("DA001", "a21026", secs, if m < 120 { 16.0 } else { 32.0 });
        if (130..135).contains(&m) {
            so2.value = 999.0;
            so2.flag = Flag::F;
        }
        out.push(so2);
    }
    out
}

fn end() -> DateTime<Utc> {
    common::t0() + Duration::hours(3)
}

/// Stores the readings, judges them, records the exceedance on an alert.
async fn alert_from_rules(
    cfg: &Arc<Config>,
    url: &str,
    clock: Arc<dyn Clock>,
) -> (Store, i64, Arc<Notifier>) {
    let (store, writer, task) = common::store_and_writer(url).await;
    let rs = readings();
    for chunk in rs.chunks(60) {
        writer.write(Batch::readings(chunk.to_vec())).await.unwrap();
    }
    drop(writer);
    task.finish(std::time::Duration::from_secs(5)).await;

    let mut ev = Evaluator::new(Plan::new(cfg), Options::default());
    let mut out = Output::default();
    ev.ingest(&rs, &mut out);
    ev.tick(end() + Duration::minutes(10), &mut out);
    let ids = store
        .insert_findings(&out.findings, clock.now())
        .await
        .unwrap();
    let (finding, id) = out
        .findings
        .iter()
        .zip(ids)
        .find(|(f, _)| f.rule == RuleName::Exceedance)
        .unwrap_or_else(|| panic!("no exceedance in {:#?}", out.findings));
    assert_eq!(finding.value, Some(40.0), "{finding:#?}");
    let notifier = Arc::new(Notifier::from_config(cfg, clock.clone()));
    let engine = AlertEngine::new(store.clone(), notifier.clone(), cfg.clone(), clock.clone());
    let rec = engine
        .on_finding(&StoredFinding {
            id: id.expect("a new finding"),
            created: clock.now(),
            finding: finding.clone(),
        })
        .await
        .unwrap();
    (store, rec.alert_id, notifier)
}

async fn serve(
    cfg: Arc<Config>,
    store: Store,
    clock: Arc<dyn Clock>,
) -> (Server, tokio::sync::watch::Sender<bool>) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (_config_tx, config_rx) = tokio::sync::watch::channel(cfg.clone());
    let (_tokens_tx, tokens_rx) =
        tokio::sync::watch::channel(Arc::new(api::auth::Tokens::from_config(&cfg)));
    let state = ApiState {
        store,
        config: config_rx,
        tokens: tokens_rx,
        reload: pollwatch::daemon::reload::channel().0,
        metrics: Default::default(),
        live: api::Live {
            hj212: Default::default(),
            field: Default::default(),
            liveness: Default::default(),
            heartbeat_window: std::time::Duration::from_secs(10),
            listeners: Vec::new(),
        },
        open_alerts: api::no_alerts(),
        plans: None,
        clock,
        console: pollwatch::console::ConsoleState::new(stop_rx.clone(), Default::default()),
        throttle: Default::default(),
        cluster: None,
    };
    let server = Server::start("127.0.0.1:0".parse().unwrap(), state, stop_rx)
        .await
        .unwrap();
    (server, stop_tx)
}

fn with_class<'a>(doc: &'a roxmltree::Document, class: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.attribute("class") == Some(class))
        .collect()
}

/// One chart with the viewer token: 200, its type, inline with a file name.
async fn fetch(
    http: &reqwest::Client,
    base: &str,
    alert: i64,
    ext: &str,
    content_type: &str,
) -> reqwest::Response {
    let r = http
        .get(format!("{base}/{alert}/chart.{ext}"))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "chart.{ext}");
    assert_eq!(r.headers()["content-type"], content_type);
    assert_eq!(
        r.headers()["content-disposition"],
        format!("inline; filename=\"alert-{alert}.{ext}\"").as_str()
    );
    r
}

async fn chart_routes(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Arc::new(config(dir.path(), url));
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(end() + Duration::minutes(30)));
    let (store, alert, notifier) = alert_from_rules(&cfg, url, clock.clone()).await;
    assert!(
        notifier.evidence_config(&delivery(alert)).is_none(),
        "a WeCom-only route draws no chart"
    );
    let offline = offline_alert(&cfg, &store, notifier.clone(), clock.clone()).await;
    let (server, stop) = serve(cfg, store, clock).await;
    let base = format!("http://{}/api/v1/alerts", server.local_addr);
    let http = reqwest::Client::new();

    for ext in ["svg", "png"] {
        let r = http
            .get(format!("{base}/{alert}/chart.{ext}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{ext} without a token"
        );
        let r = http
            .get(format!("{base}/{}/chart.{ext}", alert + 1000))
            .bearer_auth(VIEWER)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{ext} of an unknown alert"
        );
    }

    let svg = fetch(&http, &base, alert, "svg", "image/svg+xml")
        .await
        .text()
        .await
        .unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the chart is XML");
    // The judged hour: 40 corrected, 32 measured, from the minutes the rules kept.
    let corrected: Vec<(String, Option<&str>)> = with_class(&doc, "hour-corrected")
        .iter()
        .map(|n| {
            (
                n.attribute("data-value").unwrap().to_string(),
                n.attribute("data-valid-minutes"),
            )
        })
        .collect();
    assert_eq!(
        corrected,
        [
            ("20".to_string(), Some("60")),
            ("20".to_string(), Some("60")),
            ("40".to_string(), Some("55"))
        ]
    );
    let measured: Vec<&str> = with_class(&doc, "hour-measured")
        .iter()
        .map(|n| n.attribute("data-value").unwrap())
        .collect();
    assert_eq!(measured, ["16", "16", "32"]);
    let exceeding = with_class(&doc, "exceeding");
    assert_eq!(exceeding.len(), 1);
    assert_eq!(exceeding[0].text(), Some("40"));
    assert_eq!(
        with_class(&doc, "limit")[0].attribute("data-value"),
        Some("35")
    );
    assert_eq!(
        with_class(&doc, "warn")[0].attribute("data-value"),
        Some("28")
    );
    let invalid: Vec<&str> = with_class(&doc, "invalid")
        .iter()
        .map(|n| n.attribute("data-flag").unwrap())
        .collect();
    assert_eq!(invalid, ["F"; 5]);
    assert_eq!(with_class(&doc, "alert-span").len(), 1);
    // The same alert charts to the same bytes (for the case file's hash).
    let again = fetch(&http, &base, alert, "svg", "image/svg+xml")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(svg, again);

    let png = fetch(&http, &base, alert, "png", "image/png")
        .await
        .bytes()
        .await
        .unwrap();
    let pixmap = resvg::tiny_skia::Pixmap::decode_png(&png).expect("a PNG");
    assert_eq!((pixmap.width(), pixmap.height()), (1920, 960));

    // An outlet gone silent has no series to draw.
    let r = http
        .get(format!("{base}/{offline}/chart.svg"))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    stop.send(true).unwrap();
    server.join().await;

    // The same chart from the command line, for a case file without the console.
    for ext in ["svg", "png"] {
        let file = dir.path().join(format!("alert.{ext}"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pollwatch"))
            .args(["alerts", "--config"])
            .arg(dir.path().join("config"))
            .args(["chart", &alert.to_string(), "-o"])
            .arg(&file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&file).unwrap();
        let hash: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(stdout.contains(&format!("sha256 {hash}")), "{stdout}");
        if ext == "svg" {
            let text = String::from_utf8(bytes).unwrap();
            let doc = roxmltree::Document::parse(&text).unwrap();
            assert_eq!(with_class(&doc, "exceeding")[0].text(), Some("40"));
        } else {
            let p = resvg::tiny_skia::Pixmap::decode_png(&bytes).unwrap();
            assert_eq!((p.width(), p.height()), (1920, 960));
        }
    }

    // The whole record for a case file, checkable with sha256sum.
    let case = dir.path().join("case");
    let export = |id: i64, out: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pollwatch"))
            .args(["alerts", "--config"])
            .arg(dir.path().join("config"))
            .args(["export", &id.to_string(), "--out"])
            .arg(out)
            .output()
            .unwrap()
    };
    let out = export(alert, &case);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case.join(format!("alert-{alert}.json"))).unwrap())
            .unwrap();
    assert_eq!(record["timeline_intact"], true);
    assert_eq!(record["alert"]["id"], alert);
    assert_eq!(record["findings"][0]["rule"], "exceedance");
    assert_eq!(record["findings"][0]["value"], 40.0);
    assert_eq!(record["readings"]["factor"], "a21026");
    assert!(record["readings"]["values"].as_array().unwrap().len() > 60);
    let check = |dir: &std::path::Path| {
        std::process::Command::new("sha256sum")
            .args(["-c", "SHA256SUMS"])
            .current_dir(dir)
            .output()
            .unwrap()
    };
    let ok = check(&case);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).lines().count(),
        4,
        "json, verification.md, svg, png (no anchor yet)"
    );
    let report = std::fs::read_to_string(case.join("verification.md")).unwrap();
    assert!(
        report.contains("证据核验报告") && report.contains("未加密钥"),
        "{report}"
    );
    // An edited file no longer matches.
    let json = case.join(format!("alert-{alert}.json"));
    let text = std::fs::read_to_string(&json)
        .unwrap()
        .replacen("40.0", "34.0", 1);
    std::fs::write(&json, text).unwrap();
    assert!(!check(&case).status.success());

    // An alert with no series to draw (offline): the record alone, still checkable.
    let plain = dir.path().join("case-offline");
    assert!(export(offline, &plain).status.success());
    let mut files: Vec<String> = std::fs::read_dir(&plain)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "SHA256SUMS".to_string(),
            format!("alert-{offline}.json"),
            "verification.md".to_string()
        ]
    );
    let ok = check(&plain);
    assert!(ok.status.success());
    assert_eq!(String::from_utf8_lossy(&ok.stdout).lines().count(), 2);
    // No such alert: an error that says so, and nothing written.
    let none = export(999_999, &dir.path().join("case-none"));
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no alert #999999"));
    assert!(!dir.path().join("case-none").exists());
}

/// An `offline` alert for the whole outlet, recorded like any finding.
async fn offline_alert(
    cfg: &Arc<Config>,
    store: &Store,
    notifier: Arc<Notifier>,
    clock: Arc<dyn Clock>,
) -> i64 {
    let f = Finding {
        rule: RuleName::Offline,
        severity: Severity::Warning,
        enterprise: "E1".into(),
        location: Some(Location::Outlet("DA001".into())),
        factor: "".into(),
        window_start: end(),
        window_end: end() + Duration::minutes(30),
        at: end() + Duration::minutes(30),
        value: None,
        threshold: None,
        detail: String::new(),
        message: "DA001 离线 30 分钟".into(),
        evidence: Default::default(),
    };
    let ids = store
        .insert_findings(std::slice::from_ref(&f), clock.now())
        .await
        .unwrap();
    let engine = AlertEngine::new(store.clone(), notifier, cfg.clone(), clock.clone());
    let stored = StoredFinding {
        id: ids[0].expect("a new finding"),
        created: clock.now(),
        finding: f,
    };
    engine.on_finding(&stored).await.unwrap().alert_id
}

/// The first notification of `alert` over the route's channel.
fn delivery(alert: i64) -> Delivery {
    Delivery {
        alert_id: alert.to_string(),
        step: Step {
            level: 0,
            round: 0,
            due_at: end(),
        },
        recipients: Default::default(),
        channels: vec!["alerts".into()],
    }
}

/// The e-mail's parts as (headers, body), split at the multipart boundary.
fn mime_parts(data: &str) -> Vec<(String, String)> {
    let (head, body) = data.split_once("\r\n\r\n").expect("headers end");
    let boundary = head
        .split("boundary=")
        .nth(1)
        .and_then(|b| b.split(['\r', ';']).next())
        .map(|b| b.trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("not multipart: {head}"));
    body.split(&format!("--{boundary}"))
        // The closing delimiter is `--boundary--`.
        .filter(|p| !p.starts_with("--"))
        .filter_map(|p| p.trim_start_matches("\r\n").split_once("\r\n\r\n"))
        .map(|(h, b)| (h.to_ascii_lowercase(), b.to_string()))
        .collect()
}

async fn chart_is_attached_to_email(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (port, mails) = notify_support::smtp_sink(None).await;
    let email = format!(
        "kind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"none\"\n\
         from = \"pollwatch <pollwatch@example.gov.cn>\"\nto = [\"duty@example.gov.cn\"]\ntimeout = \"5s\"\n"
    );
    let cfg = Arc::new(common::alerting::config(dir.path(), url, &email, ""));
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(end() + Duration::minutes(30)));
    let (store, alert, notifier) = alert_from_rules(&cfg, url, clock.clone()).await;
    assert!(notifier.evidence_config(&delivery(alert)).is_some());
    let mut dispatcher = Dispatcher::new(store.clone(), notifier, clock);
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);

    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let parts = mime_parts(&mails[0].data);
    assert_eq!(parts.len(), 2, "text and chart: {parts:#?}");
    assert!(parts[0].0.contains("text/plain"), "{}", parts[0].0);
    let (head, body) = &parts[1];
    assert!(head.contains("content-type: image/png"), "{head}");
    assert!(
        head.contains(&format!("filename=\"alert-{alert}.png\"")),
        "{head}"
    );
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .expect("base64 attachment");
    let p = resvg::tiny_skia::Pixmap::decode_png(&png).expect("a PNG");
    assert_eq!((p.width(), p.height()), (1920, 960));
    let alert = store.alert(alert).await.unwrap().unwrap();
    assert!(alert.message.contains("40"), "{}", alert.message);
}

both_backends!(chart_routes, chart_is_attached_to_email);
