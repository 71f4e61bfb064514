//! Each channel against a local receiver that checks what the real endpoint checks
//! (body shape, byte limits, signatures), an SMTP sink, and the real Mosquitto.

mod notify_support;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use notify_support::*;
use pollwatch::notify::{AttemptResult, DeliveryStatus};
use serde_json::json;
use sha2::Sha256;

const MEASUREMENT: &str = "SO2 小时均值(折算) 41.2 mg/m³，限值 35";

fn b64_hmac(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// What the WeCom robot endpoint checks.
fn wecom_answer(key: &'static str) -> impl Fn(&Seen, usize) -> serde_json::Value {
    move |s, _| {
        if s.path != "/cgi-bin/webhook/send" || s.param("key") != Some(key) {
            return json!({"errcode": 93000, "errmsg": "invalid webhook url"});
        }
        let b = &s.body;
        match b["msgtype"].as_str() {
            Some("text") => {
                let Some(c) = b["text"]["content"].as_str() else {
                    return json!({"errcode": 40008, "errmsg": "invalid message type"});
                };
                if c.len() > 2048 {
                    return json!({"errcode": 40058, "errmsg": "text.content exceed max length 2048"});
                }
                if !b["text"]["mentioned_mobile_list"].is_array()
                    && !b["text"]["mentioned_mobile_list"].is_null()
                {
                    return json!({"errcode": 40058, "errmsg": "invalid mentioned_mobile_list"});
                }
            }
            Some("markdown") => {
                let Some(c) = b["markdown"]["content"].as_str() else {
                    return json!({"errcode": 40008, "errmsg": "invalid message type"});
                };
                if c.len() > 4096 {
                    return json!({"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"});
                }
            }
            _ => return json!({"errcode": 40008, "errmsg": "invalid message type"}),
        }
        json!({"errcode": 0, "errmsg": "ok"})
    }
}

fn wecom_channel(url: &str, key_file: &str, format: &str) -> String {
    format!(
        r#"[[channels]]
id = "wecom"
kind = "wecom"
url = "{url}/cgi-bin/webhook/send?key={{token}}"
token_file = "{key_file}"
format = "{format}"
"#
    )
}

#[tokio::test]
async fn wecom_text_carries_the_numbers_and_mentions_by_mobile() {
    let clock = clock();
    let rx = receiver(clock.clone(), wecom_answer("KEY-123")).await;
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(&dir, "wecom.key", "KEY-123");
    let n = notifier(
        &wecom_channel(&rx.url, &key, "text"),
        &["wecom"],
        clock.clone(),
    );

    let report = send_one(&n, &clock, &facts("A-1")).await;
    assert_eq!(
        report.status,
        DeliveryStatus::Sent {
            channel: "wecom".into()
        }
    );
    let seen = rx.seen();
    assert_eq!(seen.len(), 1);
    let body = &seen[0].body;
    assert_eq!(body["msgtype"], "text");
    let content = body["text"]["content"].as_str().unwrap();
    assert!(content.contains(MEASUREMENT), "{content}");
    assert!(content.contains("东山热电有限公司"), "{content}");
    assert!(content.contains("正面清单"), "{content}");
    assert!(
        content.contains("2026-11-27 08:00–09:00"),
        "window in Shanghai time: {content}"
    );
    assert!(content.contains("https://pollwatch.example.gov.cn/alerts/A-1"));
    assert!(content.contains("【严重】"));
    assert_eq!(
        body["text"]["mentioned_mobile_list"],
        json!(["13800000001", "13800000002"])
    );
    assert_eq!(report.attempts.len(), 1);
    assert_eq!(report.attempts[0].result, AttemptResult::Accepted);
    assert_eq!(report.attempts[0].recipients, ["zhangwei", "liuyang"]);
    assert_eq!(report.attempts[0].alert_ids, ["A-1"]);
}

#[tokio::test]
async fn wecom_byte_limits_are_kept_on_character_boundaries() {
    let clock = clock();
    let rx = receiver(clock.clone(), wecom_answer("K")).await;

    // The receiver really refuses oversize content, as WeCom does.
    let raw = reqwest::Client::new()
        .post(format!("{}/cgi-bin/webhook/send?key=K", rx.url))
        .json(&json!({"msgtype": "text", "text": {"content": "超".repeat(683)}}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(
        raw["errcode"], 40058,
        "683 × 3 = 2049 bytes must be refused"
    );

    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(&dir, "k", "K");
    let mut f = facts("A-long");
    f.enterprise_name = "超长企业名称".repeat(400);
    for format in ["text", "markdown"] {
        let n = notifier(
            &wecom_channel(&rx.url, &key, format),
            &["wecom"],
            clock.clone(),
        );
        let report = send_one(&n, &clock, &f).await;
        assert_eq!(
            report.status,
            DeliveryStatus::Sent {
                channel: "wecom".into()
            },
            "{format}: {:?}",
            report.attempts
        );
    }
    let seen = rx.seen();
    let text = seen[1].body["text"]["content"].as_str().unwrap();
    let md = seen[2].body["markdown"]["content"].as_str().unwrap();
    assert!(text.len() <= 2048 && text.len() > 2000, "{}", text.len());
    assert!(md.len() <= 4096 && md.len() > 4000, "{}", md.len());
    assert!(text.ends_with('…') && md.ends_with('…'));
}

#[tokio::test]
async fn wecom_markdown_mentions_by_wecom_user() {
    let clock = clock();
    let rx = receiver(clock.clone(), wecom_answer("K")).await;
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(&dir, "k", "K");
    let n = notifier(
        &wecom_channel(&rx.url, &key, "markdown"),
        &["wecom"],
        clock.clone(),
    );
    let report = send_one(&n, &clock, &facts("A-2")).await;
    assert!(matches!(report.status, DeliveryStatus::Sent { .. }));
    let body = &rx.seen()[0].body;
    assert_eq!(body["msgtype"], "markdown");
    let c = body["markdown"]["content"].as_str().unwrap();
    assert!(c.contains(&format!("**{MEASUREMENT}**")), "{c}");
    assert!(c.contains("<@ZhangWei>"), "{c}");
}

/// What DingTalk checks: access token, a timestamp within an hour of its clock,
/// and sign = urlencode(base64(HMAC-SHA256(secret, "ts\nsecret"))).
fn dingtalk_answer(secret: &'static str) -> impl Fn(&Seen, usize) -> serde_json::Value {
    move |s, _| {
        if s.path != "/robot/send" || s.param("access_token") != Some("TOKEN-9") {
            return json!({"errcode": 300001, "errmsg": "token is not exist"});
        }
        let (Some(ts), Some(sign)) = (s.param("timestamp"), s.param("sign")) else {
            return json!({"errcode": 310000, "errmsg": "sign not match"});
        };
        let ts_ms: i64 = ts.parse().unwrap_or(0);
        let now_ms = chrono::Utc::now().timestamp_millis();
        if (now_ms - ts_ms).abs() > 3_600_000 {
            return json!({"errcode": 310000, "errmsg": "timestamp is not within one hour"});
        }
        let want = b64_hmac(secret.as_bytes(), format!("{ts}\n{secret}").as_bytes());
        // The raw query must carry the signature URL-encoded (base64 has + / =).
        let raw_sign = s
            .raw_query
            .split('&')
            .find_map(|kv| kv.strip_prefix("sign="))
            .unwrap_or("");
        if sign != want || raw_sign.contains(['+', '/', '=']) {
            return json!({"errcode": 310000, "errmsg": "sign not match"});
        }
        json!({"errcode": 0, "errmsg": "ok"})
    }
}

fn dingtalk_channel(url: &str, secret: &str) -> String {
    format!(
        r#"[[channels]]
id = "dingtalk"
kind = "dingtalk"
url = "{url}/robot/send?access_token={{token}}"
token_env = "PW_TEST_DINGTALK_TOKEN"
secret_file = "{secret}"
"#
    )
}

#[tokio::test]
async fn dingtalk_signature_is_verified_and_wrong_secret_is_permanent() {
    // SAFETY of set_var: this is the only test in this binary that reads or writes
    // this variable.
    unsafe { std::env::set_var("PW_TEST_DINGTALK_TOKEN", "TOKEN-9") };
    let clock = clock();
    let rx = receiver(clock.clone(), dingtalk_answer("SECabc+/=123")).await;
    let dir = tempfile::tempdir().unwrap();
    let good = secret_file(&dir, "good", "SECabc+/=123");
    let n = notifier(
        &dingtalk_channel(&rx.url, &good),
        &["dingtalk"],
        clock.clone(),
    );
    let report = send_one(&n, &clock, &facts("A-3")).await;
    assert_eq!(
        report.status,
        DeliveryStatus::Sent {
            channel: "dingtalk".into()
        },
        "{:?}",
        report.attempts
    );
    let body = &rx.seen()[0].body;
    assert_eq!(body["msgtype"], "markdown");
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(text.contains(MEASUREMENT), "{text}");
    assert!(text.contains("@13800000001"), "{text}");
    assert_eq!(
        body["at"]["atMobiles"],
        json!(["13800000001", "13800000002"])
    );
    assert_eq!(body["at"]["isAtAll"], false);

    let bad = secret_file(&dir, "bad", "SECwrong");
    let n = notifier(
        &dingtalk_channel(&rx.url, &bad),
        &["dingtalk"],
        clock.clone(),
    );
    let report = send_one(&n, &clock, &facts("A-4")).await;
    assert_eq!(report.status, DeliveryStatus::Failed);
    assert_eq!(report.attempts.len(), 1, "a permanent error is not retried");
    assert_eq!(report.attempts[0].result, AttemptResult::Permanent);
    assert_eq!(report.attempts[0].code.as_deref(), Some("310000"));
}

#[tokio::test]
async fn feishu_signature_in_body_is_verified() {
    let clock = clock();
    let secret = "feishu-secret";
    let rx = receiver(clock.clone(), move |s, _| {
        let b = &s.body;
        let ts = b["timestamp"].as_str().unwrap_or("");
        let ts_s: i64 = ts.parse().unwrap_or(0);
        let fresh = (chrono::Utc::now().timestamp() - ts_s).abs() <= 3600;
        // Key "ts\nsecret", empty message — not DingTalk's scheme.
        let want = b64_hmac(format!("{ts}\n{secret}").as_bytes(), b"");
        if !fresh || b["sign"].as_str() != Some(want.as_str()) {
            return json!({"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"});
        }
        if b["msg_type"] != "text" || !b["content"]["text"].is_string() {
            return json!({"code": 9499, "msg": "Bad Request"});
        }
        json!({"code": 0, "msg": "success", "data": {}})
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let tok = secret_file(&dir, "tok", "hook-token");
    let good = secret_file(&dir, "good", secret);
    let bad = secret_file(&dir, "bad", "other");
    let cfg = |s: &str| {
        format!(
            r#"[[channels]]
id = "feishu"
kind = "feishu"
url = "{}/open-apis/bot/v2/hook/{{token}}"
token_file = "{tok}"
secret_file = "{s}"
"#,
            rx.url
        )
    };
    let n = notifier(&cfg(&good), &["feishu"], clock.clone());
    let report = send_one(&n, &clock, &facts("A-5")).await;
    assert_eq!(
        report.status,
        DeliveryStatus::Sent {
            channel: "feishu".into()
        },
        "{:?}",
        report.attempts
    );
    let seen = rx.seen();
    assert_eq!(seen[0].path, "/open-apis/bot/v2/hook/hook-token");
    let text = seen[0].body["content"]["text"].as_str().unwrap();
    assert!(text.contains(MEASUREMENT));
    // Mentioned by open_id; the officer without one is not.
    assert!(
        text.ends_with(" <at user_id=\"ou_zhangwei\">张伟</at>"),
        "{text}"
    );
    assert_eq!(text.matches("<at ").count(), 1, "{text}");

    let n = notifier(&cfg(&bad), &["feishu"], clock.clone());
    let report = send_one(&n, &clock, &facts("A-6")).await;
    assert_eq!(report.status, DeliveryStatus::Failed);
    assert_eq!(report.attempts[0].code.as_deref(), Some("19021"));
}

#[tokio::test]
async fn webhook_body_template_and_gateway_status() {
    let clock = clock();
    let rx = receiver(clock.clone(), |s, _| {
        if s.header("authorization") != Some("Bearer sms-token") {
            return json!({"code": "InvalidAccessKeyId"});
        }
        match s.body["phones"].as_array() {
            Some(p) if p.iter().any(|x| x == "13800000002") => json!({"code": "OK", "bizId": "B1"}),
            _ => json!({"code": "isv.MOBILE_NUMBER_ILLEGAL"}),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let tok = secret_file(&dir, "tok", "sms-token");
    let cfg = format!(
        r#"[[channels]]
id = "sms"
kind = "webhook"
url = "{}/api/send"
headers = {{ Authorization = "Bearer {{token}}" }}
token_file = "{tok}"
body = '{{"phones": {{mobiles}}, "text": {{text}}, "alert": {{alert_id}}, "value": {{value}}}}'
ok_field = "code"
ok_values = ["OK"]
template = "【{{severity}}】{{enterprise}} {{measurement}}"
"#,
        rx.url
    );
    let n = notifier(&cfg, &["sms"], clock.clone());
    let report = send_one(&n, &clock, &facts("A-7")).await;
    assert_eq!(
        report.status,
        DeliveryStatus::Sent {
            channel: "sms".into()
        },
        "{:?}",
        report.attempts
    );
    let b = &rx.seen()[0].body;
    assert_eq!(b["text"], format!("【严重】东山热电有限公司 {MEASUREMENT}"));
    assert_eq!(b["alert"], "A-7");
    assert_eq!(b["value"], "41.2");
    assert_eq!(b["phones"], json!(["13800000001", "13800000002"]));

    // The same gateway refusing: its own code, permanent.
    let cfg2 = cfg.replace("Bearer {token}", "Bearer x{token}");
    let n = notifier(&cfg2, &["sms"], clock.clone());
    let report = send_one(&n, &clock, &facts("A-8")).await;
    assert_eq!(report.status, DeliveryStatus::Failed);
    assert_eq!(
        report.attempts[0].code.as_deref(),
        Some("InvalidAccessKeyId")
    );
}

fn email_channel(port: u16) -> String {
    format!(
        r#"[[channels]]
id = "email"
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {port}
tls = "none"
from = "pollwatch <pollwatch@example.gov.cn>"
to = ["duty@example.gov.cn"]
timeout = "5s"
"#
    )
}

#[tokio::test]
async fn email_reaches_the_smtp_sink_with_the_numbers() {
    let clock = clock();
    let (port, mails) = smtp_sink(None).await;
    let n = notifier(&email_channel(port), &["email"], clock.clone());
    let report = send_one(&n, &clock, &facts("A-9")).await;
    assert_eq!(
        report.status,
        DeliveryStatus::Sent {
            channel: "email".into()
        },
        "{:?}",
        report.attempts
    );
    assert!(report.attempts[0]
        .provider_id
        .as_deref()
        .unwrap_or("")
        .contains("SINK1"));
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.from, "<pollwatch@example.gov.cn>");
    let mut rcpt = m.rcpt.clone();
    rcpt.sort();
    assert_eq!(
        rcpt,
        [
            "<duty@example.gov.cn>",
            "<liuyang@example.gov.cn>",
            "<zhangwei@example.gov.cn>"
        ]
    );
    let text = m.body_text();
    assert!(text.contains(MEASUREMENT), "{text}");
    assert!(text.contains("告警编号：A-9"), "{text}");
}

#[tokio::test]
async fn email_permanent_refusal_is_not_retried() {
    let clock = clock();
    let (port, mails) = smtp_sink(Some("example.gov.cn")).await;
    let n = notifier(&email_channel(port), &["email"], clock.clone());
    let report = send_one(&n, &clock, &facts("A-10")).await;
    assert_eq!(report.status, DeliveryStatus::Failed);
    assert_eq!(report.attempts.len(), 1);
    assert_eq!(report.attempts[0].result, AttemptResult::Permanent);
    assert_eq!(report.attempts[0].code.as_deref(), Some("smtp-550"));
    assert!(mails.lock().unwrap().is_empty());
}

#[tokio::test]
async fn mqtt_publishes_to_the_broker() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let Some(url) = mqtt_url("mqtt_publishes_to_the_broker") else {
        return;
    };
    let clock = clock();
    let (host, port) = pollwatch::notify::mqtt::parse_url(&url).unwrap();
    let base = format!("pw-test/{}/{}", std::process::id(), rand_tag());
    let mut opts = MqttOptions::new(format!("pw-sub-{}", rand_tag()), host, port);
    opts.set_clean_session(true);
    let (sub, mut events) = AsyncClient::new(opts, 16);
    sub.subscribe(format!("{base}/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = events.poll().await.unwrap() {
            break;
        }
    }
    let cfg = format!(
        r#"[[channels]]
id = "mqtt"
kind = "mqtt"
url = "{url}"
topic = "{base}/{{enterprise}}"
qos = 1
timeout = "5s"
"#
    );
    let n = notifier(&cfg, &["mqtt"], clock.clone());
    let report = send_one(&n, &clock, &facts("A-11")).await;
    assert_eq!(
        report.status,
        DeliveryStatus::Sent {
            channel: "mqtt".into()
        },
        "{:?}",
        report.attempts
    );
    let publish = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::Publish(p)) = events.poll().await.unwrap() {
                break p;
            }
        }
    })
    .await
    .expect("the alert reaches a subscriber");
    assert_eq!(publish.topic, format!("{base}/91320506MA1PW0001A"));
    let v: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
    assert_eq!(v["alert_ids"], json!(["A-11"]));
    assert_eq!(v["facts"][0]["value"], 41.2);
    assert_eq!(v["facts"][0]["limit"], 35.0);
    assert_eq!(v["facts"][0]["unit"], "mg/m³");
    assert_eq!(v["severity"], "critical");
}

fn mqtt_url(test: &str) -> Option<String> {
    match std::env::var("PW_TEST_MQTT_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var("PW_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: PW_TEST_MQTT_URL is not set but PW_REQUIRE_SERVICES=1");
            }
            eprintln!("SKIPPED {test}: set PW_TEST_MQTT_URL to run it against a broker");
            None
        }
    }
}

fn rand_tag() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}
