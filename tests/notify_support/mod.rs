//! Local stand-ins for the providers: an HTTP receiver whose answers the test
//! scripts (and which checks what the real endpoint checks), and a small SMTP
//! server. Shared by the `notify_*` tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use axum::routing::any;
use axum::{Json, Router};
use chrono::{DateTime, TimeZone, Utc};
use pollwatch::clock::{Clock, ManualClock};
use pollwatch::config::{ChannelConfig, Duty, Severity};
use pollwatch::notify::AlertFacts;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    /// Query pairs, URL-decoded.
    pub query: Vec<(String, String)>,
    pub raw_query: String,
    /// Header names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    pub raw_body: Vec<u8>,
    /// The simulated clock when the request arrived.
    pub at: DateTime<Utc>,
}

impl Seen {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

type Answer = dyn Fn(&Seen, usize) -> serde_json::Value + Send + Sync;

#[derive(Clone)]
struct Ctx {
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Answer>,
    clock: Arc<ManualClock>,
}

pub struct Receiver {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(
    State(ctx): State<Ctx>,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Json<serde_json::Value> {
    let raw_query = uri.query().unwrap_or("").to_string();
    let query = reqwest::Url::parse(&format!("http://x/?{raw_query}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let seen = Seen {
        path: uri.path().to_string(),
        query,
        raw_query,
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        raw_body: body.to_vec(),
        at: ctx.clock.now(),
    };
    let n = {
        let mut all = ctx.seen.lock().unwrap();
        all.push(seen.clone());
        all.len() - 1
    };
    Json((ctx.answer)(&seen, n))
}

/// An HTTP receiver on 127.0.0.1: `answer(request, index)` is what it replies
/// (always HTTP 200, like the robots).
pub async fn receiver(
    clock: Arc<ManualClock>,
    answer: impl Fn(&Seen, usize) -> serde_json::Value + Send + Sync + 'static,
) -> Receiver {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let ctx = Ctx {
        seen: seen.clone(),
        answer: Arc::new(answer),
        clock,
    };
    let app = Router::new().fallback(any(handle)).with_state(ctx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Receiver {
        url: format!("http://{addr}"),
        seen,
    }
}

/// A mail the SMTP sink accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub rcpt: Vec<String>,
    pub data: String,
}

impl Mail {
    /// The body, decoded from base64 (what the email channel sends).
    pub fn body_text(&self) -> String {
        use base64::Engine as _;
        let (head, body) = self.data.split_once("\r\n\r\n").expect("headers end");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-transfer-encoding: base64"),
            "{head}"
        );
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .expect("base64 body");
        String::from_utf8(bytes).expect("utf-8 body")
    }
}

/// A minimal SMTP server: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT. Recipients
/// at `reject_domain` get `550` (a permanent refusal).
pub async fn smtp_sink(reject_domain: Option<&'static str>) -> (u16, Arc<Mutex<Vec<Mail>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let store = mails.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 sink.test ESMTP\r\n").await.unwrap();
                let mut mail = Mail {
                    from: String::new(),
                    rcpt: Vec::new(),
                    data: String::new(),
                };
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-sink.test\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("HELO") {
                        b"250 sink.test\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        mail.from = line[10..].trim().to_string();
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        let to = line[8..].trim().to_string();
                        if reject_domain.is_some_and(|d| to.contains(d)) {
                            b"550 5.1.1 mailbox unavailable\r\n"
                        } else {
                            mail.rcpt.push(to);
                            b"250 OK\r\n"
                        }
                    } else if upper == "DATA" {
                        w.write_all(b"354 end with .\r\n").await.unwrap();
                        let mut data = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            data.push_str(l.strip_prefix('.').unwrap_or(&l));
                            data.push_str("\r\n");
                        }
                        mail.data = data;
                        store.lock().unwrap().push(mail.clone());
                        b"250 2.0.0 queued as SINK1\r\n"
                    } else if upper == "QUIT" {
                        w.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else if upper == "RSET" || upper == "NOOP" {
                        b"250 OK\r\n"
                    } else {
                        b"502 not implemented\r\n"
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, mails)
}

pub fn t0() -> DateTime<Utc> {
    // 10:00 in Shanghai.
    Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap()
}

pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(t0()))
}

/// The hourly SO2 exceedance of the issue: 41.2 mg/m³ against 35.
pub fn facts(alert_id: &str) -> AlertFacts {
    AlertFacts {
        alert_id: alert_id.to_string(),
        enterprise_id: "91320506MA1PW0001A".into(),
        enterprise_name: "东山热电有限公司".into(),
        district: "吴中区".into(),
        industry: "火力发电".into(),
        positive_list: true,
        outlet_id: "DA001".into(),
        outlet_name: "1#机组烟囱".into(),
        factor_code: "a21026".into(),
        factor_name: "SO2".into(),
        value: 41.2,
        limit: 35.0,
        permit_limit: None,
        unit: "mg/m³".into(),
        basis: "小时均值".into(),
        converted: true,
        window_start: Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap(),
        window_end: Utc.with_ymd_and_hms(2026, 11, 27, 1, 0, 0).unwrap(),
        rule: "permit-limit".into(),
        severity: Severity::Critical,
        link: Some(format!(
            "https://pollwatch.example.gov.cn/alerts/{alert_id}"
        )),
    }
}

pub fn channels(toml_text: &str) -> Vec<ChannelConfig> {
    #[derive(serde::Deserialize)]
    struct F {
        channels: Vec<ChannelConfig>,
    }
    toml::from_str::<F>(toml_text).unwrap().channels
}

pub fn duty(toml_text: &str) -> Duty {
    toml::from_str(toml_text).unwrap()
}

/// Two officers, one team with a daily rotation, one route over the given channels.
pub fn duty_with_route(channels: &[&str]) -> Duty {
    duty(&format!(
        r#"
[[officers]]
id = "zhangwei"
name = "张伟"
mobile = "13800000001"
email = "zhangwei@example.gov.cn"
wecom_user = "ZhangWei"
feishu_user = "ou_zhangwei"

[[officers]]
id = "liuyang"
name = "刘洋"
mobile = "13800000002"
email = "liuyang@example.gov.cn"

[[teams]]
id = "wuzhong"
name = "吴中区执法大队"
members = ["zhangwei", "liuyang"]

[[routes]]
team = "wuzhong"
channels = {channels:?}
"#
    ))
}

pub fn secret_file(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, format!("{content}\n")).unwrap();
    p.display().to_string()
}

pub fn summary(f: &AlertFacts, opened_at: DateTime<Utc>) -> pollwatch::notify::AlertSummary {
    pollwatch::notify::AlertSummary {
        alert_id: f.alert_id.clone(),
        district: f.district.clone(),
        industry: f.industry.clone(),
        rule: f.rule.clone(),
        severity: f.severity,
        opened_at,
        acked_at: None,
    }
}

/// Plans the alert at the clock's time and delivers its first due step.
pub async fn send_one(
    n: &pollwatch::notify::Notifier,
    clock: &ManualClock,
    f: &AlertFacts,
) -> pollwatch::notify::DeliveryReport {
    let now = clock.now();
    let plan = n.plan(&summary(f, now), now).unwrap();
    let d = plan.deliveries.first().expect("a delivery due at opening");
    n.deliver(d, &n.message(f)).await
}

pub fn notifier(
    channels_toml: &str,
    route: &[&str],
    clock: Arc<ManualClock>,
) -> pollwatch::notify::Notifier {
    pollwatch::notify::Notifier::new(
        chrono_tz::Asia::Shanghai,
        &duty_with_route(route),
        &channels(channels_toml),
        clock,
        42,
    )
}
