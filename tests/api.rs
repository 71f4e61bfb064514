//! The HTTP API against the real daemon: every endpoint without a token, with a
//! wrong one, with the wrong role and with the right one; `/metrics` parsed as
//! Prometheus text exposition; reload over HTTP, good and broken.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use pollwatch::sim::hj212_logger::cp_values;
use pollwatch::sim::LoggerSim;
use pollwatch::sources::hj212::codec::time::LocalDateTime;
use reqwest::StatusCode;

use common::console::{OPERATOR, VIEWER};

/// Checks the text exposition format line by line; returns series → value.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut series = BTreeMap::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(valid_name(name), "bad metric name in {line:?}");
            if kw == "TYPE" {
                let t = parts.next().unwrap_or("");
                assert!(
                    ["counter", "gauge", "summary", "histogram", "untyped"].contains(&t),
                    "{line:?}"
                );
                assert!(
                    types.insert(name.to_string(), t.to_string()).is_none(),
                    "TYPE twice: {line:?}"
                );
            } else {
                assert_eq!(kw, "HELP", "{line:?}");
            }
            continue;
        }
        let (name_labels, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let name = name_labels.split('{').next().unwrap();
        assert!(valid_name(name), "{line:?}");
        if let Some(labels) = name_labels.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line:?}");
            let inner = &labels[1..labels.len() - 1];
            // label="value" pairs, values with \\ \" \n escapes only.
            let mut chars = inner.chars().peekable();
            while chars.peek().is_some() {
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                assert!(valid_name(&key), "label {key:?} in {line:?}");
                assert_eq!(chars.next(), Some('"'), "{line:?}");
                loop {
                    match chars.next() {
                        Some('\\') => {
                            assert!(matches!(chars.next(), Some('\\' | '"' | 'n')), "{line:?}")
                        }
                        Some('"') => break,
                        Some(_) => {}
                        None => panic!("unterminated label value in {line:?}"),
                    }
                }
                match chars.next() {
                    Some(',') | None => {}
                    other => panic!("{other:?} after a label value in {line:?}"),
                }
            }
        }
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("value {v:?} in {line:?}")),
        };
        let family = types
            .keys()
            .find(|f| {
                name == f.as_str()
                    || (types[*f] == "summary" || types[*f] == "histogram")
                        && ["_sum", "_count", "_bucket"]
                            .iter()
                            .any(|s| name == format!("{f}{s}"))
            })
            .unwrap_or_else(|| panic!("sample before its TYPE: {line:?}"));
        assert!(!family.is_empty());
        assert!(
            series.insert(name_labels.to_string(), v).is_none(),
            "series twice: {line:?}"
        );
    }
    series
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_with_and_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::hj212_config_with_tokens(dir.path());
    let daemon = Daemon::start(&cfg, None);
    let base = format!("http://{}", daemon.field("http"));
    let addr = daemon.field("hj212").parse().unwrap();
    let mut logger = LoggerSim::new(addr, "23040281003022", "123456");
    let t = LocalDateTime {
        year: 2026,
        month: 11,
        day: 27,
        hour: 10,
        minute: 0,
        second: 0,
    };
    logger
        .upload("2011", t, &cp_values("Rtd", &[("w01018", 42.5, 'N')]))
        .await
        .unwrap();

    let http = reqwest::Client::new();
    let send = |method: &str, path: &str, token: Option<&str>| {
        let url = format!("{base}{path}");
        let mut rq = match method {
            "POST" => http.post(url),
            _ => http.get(url),
        };
        if let Some(t) = token {
            rq = rq.bearer_auth(t);
        }
        rq.send()
    };

    // Open to probes.
    assert_eq!(
        send("GET", "/healthz", None).await.unwrap().status(),
        StatusCode::OK
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        let r = send("GET", "/readyz", None).await.unwrap();
        if r.status() == StatusCode::OK || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["store_writable"], true);
    assert!(ready["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["name"] == "hj212"));
    let hash = ready["config_hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64);

    let readings = "/api/v1/readings?enterprise=E1&outlet=DW001&factor=w01018";
    let guarded = [
        ("GET", "/metrics", false),
        ("GET", "/api/v1/enterprises", false),
        ("GET", readings, false),
        ("POST", "/-/reload", true),
    ];
    for (method, path, operator_only) in guarded {
        let r = send(method, path, None).await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
        assert!(r.headers().contains_key("www-authenticate"), "{path}");
        let r = send(method, path, Some("not-a-token-at-all-xx"))
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} wrong token"
        );
        let r = send(method, path, Some(VIEWER)).await.unwrap();
        let want = if operator_only {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        };
        assert_eq!(r.status(), want, "{method} {path} as viewer");
        let r = send(method, path, Some(OPERATOR)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{method} {path} as operator");
    }

    let body: serde_json::Value = send("GET", readings, Some(VIEWER))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["count"], 1, "{body}");
    assert_eq!(body["readings"][0]["value"], 42.5);
    assert_eq!(body["readings"][0]["source"]["protocol"], "hj212");
    let bad = send("GET", "/api/v1/readings?enterprise=E1", Some(VIEWER))
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let body: serde_json::Value = send("GET", "/api/v1/enterprises", Some(VIEWER))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let e1 = &body["enterprises"][0];
    assert_eq!(e1["id"], "E1");
    let dw = e1["outlets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == "DW001")
        .unwrap();
    assert_eq!(dw["online"], true, "{dw}");
    assert!(dw["last_reading"].is_string(), "{dw}");
    assert_eq!(dw["open_alerts"], 0);
    let da = e1["outlets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == "DA001")
        .unwrap();
    assert_eq!(da["online"], false, "never connected: {da}");

    let text = send("GET", "/metrics", Some(VIEWER))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let m = parse_prometheus(&text);
    assert!(
        m[r#"pollwatch_readings_accepted_total{source="hj212_server",protocol="hj212"}"#] >= 1.0,
        "{text}"
    );
    assert_eq!(m["pollwatch_config_last_reload_successful"], 1.0);
    assert_eq!(m[&format!("pollwatch_config_info{{hash=\"{hash}\"}}")], 1.0);
    assert!(m["pollwatch_store_commits_total"] >= 1.0);
    assert!(m.contains_key(r#"pollwatch_pipeline_queue_depth{stage="store_writer"}"#));
    assert!(m.contains_key("pollwatch_store_commit_seconds_sum"));

    // A broken enterprise file: refused with file, line and key; old config stays.
    let broken = cfg.join("enterprises/zz.toml");
    std::fs::write(
        &broken,
        "id = \"E9\"\nname = \"坏\"\ndistrict = \"x\"\nindustry = \"x\"\ncolour = \"red\"\n",
    )
    .unwrap();
    let r = send("POST", "/-/reload", Some(OPERATOR)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = r.json().await.unwrap();
    let err = &body["errors"][0];
    assert_eq!(err["file"], "enterprises/zz.toml", "{body}");
    assert_eq!(err["line"], 5, "{body}");
    assert!(
        err["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    let m = parse_prometheus(
        &send("GET", "/metrics", Some(VIEWER))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(m["pollwatch_config_last_reload_successful"], 0.0);
    assert_eq!(
        m[r#"pollwatch_config_reloads_total{result="failure"}"#],
        1.0
    );
    assert_eq!(
        m[&format!("pollwatch_config_info{{hash=\"{hash}\"}}")],
        1.0,
        "old config in force"
    );
    assert!(daemon
        .wait_for_log(0, "reload refused", Duration::from_secs(5))
        .unwrap()
        .contains("enterprises/zz.toml:5"));

    std::fs::remove_file(&broken).unwrap();
    let r = send("POST", "/-/reload", Some(OPERATOR)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let m = parse_prometheus(
        &send("GET", "/metrics", Some(VIEWER))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(m["pollwatch_config_last_reload_successful"], 1.0);

    // Tokens never reach the log; names do.
    let log = daemon.log().join("\n");
    assert!(
        !log.contains(VIEWER) && !log.contains(OPERATOR),
        "token in the log"
    );
    assert!(
        log.contains("by=desk") || log.contains("by=\"desk\""),
        "{log}"
    );
}

#[test]
fn token_config_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::hj212_config(dir.path(), "").dir;
    let toml = cfg.join("pollwatch.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(
        "\n[[http.tokens]]\nname = \"short\"\nrole = \"viewer\"\ntoken = \"abc\"\n\
         \n[[http.tokens]]\nname = \"gone\"\nrole = \"operator\"\ntoken_file = \"/nonexistent/token\"\n\
         \n[[http.tokens]]\nname = \"short\"\nrole = \"admin\"\ntoken = \"0123456789abcdef\"\n",
    );
    std::fs::write(&toml, &text).unwrap();
    let errs = pollwatch::config::Config::load(&cfg, &Default::default())
        .unwrap_err()
        .to_string();
    // An unknown role is a parse error and stops the file there; fix it and look again.
    assert!(
        errs.contains("http.tokens[2].role") && errs.contains("admin"),
        "{errs}"
    );
    std::fs::write(&toml, text.replace("\"admin\"", "\"viewer\"")).unwrap();
    let errs = pollwatch::config::Config::load(&cfg, &Default::default())
        .unwrap_err()
        .to_string();
    let line_of = |needle: &str| {
        std::fs::read_to_string(&toml)
            .unwrap()
            .lines()
            .position(|l| l.contains(needle))
            .unwrap()
            + 1
    };
    assert!(
        errs.contains(&format!(
            "pollwatch.toml:{}: http.tokens[0].token: the token must be at least 16",
            line_of("token = \"abc\"")
        )),
        "{errs}"
    );
    assert!(
        errs.contains("http.tokens[1].token_file: cannot read the token"),
        "{errs}"
    );
    assert!(
        errs.contains("http.tokens[2].name: token name \"short\" is used twice"),
        "{errs}"
    );
    assert!(
        !errs.contains("0123456789abcdef"),
        "a secret in an error message: {errs}"
    );
}
