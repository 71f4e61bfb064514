//! Delivery behaviour: back-off on busy answers, fall-back on permanent ones, and
//! a robot's 20-a-minute limit met with digests that lose nothing.

mod notify_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Duration;
use notify_support::*;
use pollwatch::clock::{Clock, ManualClock};
use pollwatch::notify::{AttemptResult, DeliveryStatus, Notifier, Secret};
use serde_json::json;

fn wecom(id: &str, url: &str, key_file: &str, extra: &str) -> String {
    format!(
        r#"[[channels]]
id = "{id}"
kind = "wecom"
url = "{url}/cgi-bin/webhook/send?key={{token}}"
token_file = "{key_file}"
format = "text"
backoff = "5ms"
backoff_max = "50ms"
{extra}
"#
    )
}

/// A WeCom-robot stand-in that refuses texts over 2,048 bytes, as WeCom does.
async fn wecom_robot(clock: Arc<ManualClock>) -> Receiver {
    receiver(clock, |s, _| {
        let c = s.body["text"]["content"].as_str().unwrap_or("");
        if c.len() > 2048 {
            json!({"errcode": 40058, "errmsg": "text.content exceed max length 2048"})
        } else {
            json!({"errcode": 0, "errmsg": "ok"})
        }
    })
    .await
}

/// Runs the simulated clock on until every queued message has left over channel
/// `w`, each digest accepted; returns the outbox refs the digests settled.
async fn drain(n: &Notifier, clock: &ManualClock) -> Vec<String> {
    let mut refs = Vec::new();
    let mut guard = 0;
    while n.queued() > 0 {
        let next = n
            .next_flush_at()
            .expect("queued messages have a flush time");
        clock.set(next.max(clock.now()));
        for d in n.flush().await {
            assert_eq!(
                d.status,
                DeliveryStatus::Sent {
                    channel: "w".into()
                }
            );
            refs.extend(d.refs);
        }
        guard += 1;
        assert!(guard < 100, "flushing makes progress");
    }
    refs
}

#[tokio::test]
async fn rate_limited_answer_is_retried_after_backoff_and_delivered_once() {
    let clock = clock();
    let rx = receiver(clock.clone(), |_, n| {
        if n == 0 {
            json!({"errcode": 45009, "errmsg": "api freq out of limit"})
        } else {
            json!({"errcode": 0, "errmsg": "ok"})
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(&dir, "k", "K");
    let n = std::sync::Arc::new(notifier(
        &wecom("w", &rx.url, &key, ""),
        &["w"],
        clock.clone(),
    ));
    // The dispatcher runs deliveries on its own tasks: the future must be Send.
    let report = tokio::spawn({
        let (n, clock) = (n.clone(), clock.clone());
        async move { send_one(&n, &clock, &facts("R-1")).await }
    })
    .await
    .unwrap();
    assert_eq!(
        report.status,
        DeliveryStatus::Sent {
            channel: "w".into()
        }
    );
    let results: Vec<_> = report.attempts.iter().map(|a| a.result).collect();
    assert_eq!(results, [AttemptResult::Retryable, AttemptResult::Accepted]);
    assert_eq!(report.attempts[0].code.as_deref(), Some("45009"));
    let seen = rx.seen();
    assert_eq!(
        seen.len(),
        2,
        "one refused try, one accepted: delivered once"
    );
    assert_eq!(
        seen[0].body, seen[1].body,
        "the retry sends the same message"
    );
}

#[tokio::test]
async fn busy_until_attempts_run_out_then_falls_back() {
    let clock = clock();
    let busy = receiver(
        clock.clone(),
        |_, _| json!({"errcode": -1, "errmsg": "system busy"}),
    )
    .await;
    let ok = receiver(clock.clone(), |_, _| json!({"errcode": 0, "errmsg": "ok"})).await;
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(&dir, "k", "K");
    let cfg = wecom("busy", &busy.url, &key, "max_attempts = 3") + &wecom("ok", &ok.url, &key, "");
    let n = notifier(&cfg, &["busy", "ok"], clock.clone());
    let report = send_one(&n, &clock, &facts("R-2")).await;
    assert_eq!(
        report.status,
        DeliveryStatus::Sent {
            channel: "ok".into()
        }
    );
    assert_eq!(busy.seen().len(), 3);
    assert_eq!(ok.seen().len(), 1);
    let by_channel: Vec<(&str, AttemptResult)> = report
        .attempts
        .iter()
        .map(|a| (a.channel.as_str(), a.result))
        .collect();
    assert_eq!(
        by_channel,
        [
            ("busy", AttemptResult::Retryable),
            ("busy", AttemptResult::Retryable),
            ("busy", AttemptResult::Retryable),
            ("ok", AttemptResult::Accepted)
        ]
    );
}

#[tokio::test]
async fn a_muted_dingtalk_robot_is_skipped_at_once() {
    let clock = clock();
    let muted = receiver(
        clock.clone(),
        |_, _| json!({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}),
    )
    .await;
    let ok = receiver(clock.clone(), |_, _| json!({"errcode": 0, "errmsg": "ok"})).await;
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(&dir, "k", "K");
    let cfg = format!(
        r#"[[channels]]
id = "ding"
kind = "dingtalk"
url = "{}/robot/send?access_token=T"
"#,
        muted.url
    ) + &wecom("ok", &ok.url, &key, "");
    let n = notifier(&cfg, &["ding", "ok"], clock.clone());
    let report = send_one(&n, &clock, &facts("R-4")).await;
    assert_eq!(
        report.status,
        DeliveryStatus::Sent {
            channel: "ok".into()
        }
    );
    assert_eq!(muted.seen().len(), 1, "no retry into a ten-minute mute");
    assert_eq!(report.attempts[0].code.as_deref(), Some("130101"));
    assert_eq!(report.attempts[0].result, AttemptResult::Retryable);
}

#[tokio::test]
async fn permanent_failure_falls_back_without_retrying() {
    let clock = clock();
    let dead = receiver(
        clock.clone(),
        |_, _| json!({"errcode": 93000, "errmsg": "invalid webhook url, hint: [..]"}),
    )
    .await;
    let keyword = receiver(
        clock.clone(),
        |_, _| json!({"errcode": 310000, "errmsg": "keywords not in content"}),
    )
    .await;
    let (port, mails) = smtp_sink(None).await;
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(&dir, "k", "K");
    let cfg = wecom("dead", &dead.url, &key, "")
        + &format!(
            r#"[[channels]]
id = "ding"
kind = "dingtalk"
url = "{}/robot/send?access_token=T"
[[channels]]
id = "email"
kind = "email"
smtp_host = "localhost"
smtp_port = {port}
tls = "none"
from = "pollwatch@example.gov.cn"
"#,
            keyword.url
        );
    let n = notifier(&cfg, &["dead", "ding", "email"], clock.clone());
    let report = send_one(&n, &clock, &facts("R-3")).await;
    assert_eq!(
        report.status,
        DeliveryStatus::Sent {
            channel: "email".into()
        }
    );
    assert_eq!(dead.seen().len(), 1);
    assert_eq!(keyword.seen().len(), 1);
    let codes: Vec<_> = report.attempts.iter().map(|a| a.code.clone()).collect();
    assert_eq!(codes, [Some("93000".into()), Some("310000".into()), None]);
    assert_eq!(mails.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn fifty_alerts_in_a_minute_to_a_20_per_minute_robot() {
    let clock = clock();
    let t0 = clock.now();
    let rx = wecom_robot(clock.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(&dir, "k", "K");
    let n = notifier(
        &wecom("w", &rx.url, &key, "rate_limit = 20\ndigest_wait = \"10s\""),
        &["w"],
        clock.clone(),
    );

    let ids: Vec<String> = (0..50).map(|i| format!("F-{i:02}")).collect();
    let mut delivered_refs = BTreeSet::new();
    let mut queued = 0;
    for (i, id) in ids.iter().enumerate() {
        clock.set(t0 + Duration::milliseconds(1200 * i as i64));
        let f = facts(id);
        let plan = n.plan(&summary(&f, clock.now()), clock.now()).unwrap();
        let mut msg = n.message(&f);
        msg.refs = vec![format!("outbox-{i}")];
        let report = n.deliver(&plan.deliveries[0], &msg).await;
        match report.status {
            DeliveryStatus::Sent { .. } => {
                delivered_refs.insert(format!("outbox-{i}"));
            }
            DeliveryStatus::Queued { .. } => queued += 1,
            DeliveryStatus::Failed => panic!("{id} failed: {:?}", report.attempts),
        }
        for d in n.flush().await {
            assert_eq!(
                d.status,
                DeliveryStatus::Sent {
                    channel: "w".into()
                }
            );
            delivered_refs.extend(d.refs);
        }
    }
    assert!(queued > 0, "the limit was reached");
    // Let the simulated clock run on until every queued message has left.
    delivered_refs.extend(drain(&n, &clock).await);

    let seen = rx.seen();
    let in_first_minute = seen
        .iter()
        .filter(|s| s.at < t0 + Duration::seconds(60))
        .count();
    assert!(
        in_first_minute <= 20,
        "{in_first_minute} requests in the first minute"
    );
    for s in &seen {
        let window = seen
            .iter()
            .filter(|o| o.at >= s.at && o.at < s.at + Duration::seconds(60))
            .count();
        assert!(
            window <= 20,
            "{window} requests in the minute from {}",
            s.at
        );
    }
    // Every alert reached the group, in a message of its own or a digest.
    let contents: Vec<&str> = seen
        .iter()
        .map(|s| s.body["text"]["content"].as_str().unwrap())
        .collect();
    for id in &ids {
        assert!(
            contents.iter().any(|c| c.contains(id.as_str())),
            "{id} was lost"
        );
    }
    assert!(contents.iter().any(|c| c.contains("告警汇总")));
    // And the dispatcher was told so for each of its outbox rows.
    assert_eq!(delivered_refs.len(), 50, "{delivered_refs:?}");
    eprintln!(
        "50 alerts over 58.8 s: {} requests in all ({} digests), {} in the first minute, last at +{} s",
        seen.len(),
        contents.iter().filter(|c| c.contains("告警汇总")).count(),
        in_first_minute,
        (seen.last().unwrap().at - t0).num_milliseconds() as f64 / 1000.0
    );
}

#[tokio::test]
async fn a_burst_of_fifty_arrives_as_at_most_twenty_messages() {
    let clock = clock();
    let t0 = clock.now();
    let rx = wecom_robot(clock.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(&dir, "k", "K");
    let n = notifier(&wecom("w", &rx.url, &key, ""), &["w"], clock.clone());
    // 50 alerts within two seconds (a plant trips and every factor goes over).
    for i in 0..50 {
        clock.set(t0 + Duration::milliseconds(40 * i));
        let f = facts(&format!("B-{i:02}"));
        let plan = n.plan(&summary(&f, clock.now()), clock.now()).unwrap();
        let report = n.deliver(&plan.deliveries[0], &n.message(&f)).await;
        assert_ne!(report.status, DeliveryStatus::Failed);
        n.flush().await;
    }
    drain(&n, &clock).await;
    let seen = rx.seen();
    assert!(seen.len() <= 20, "{} requests", seen.len());
    assert!(seen.iter().all(|s| s.at < t0 + Duration::seconds(60)));
    for i in 0..50 {
        let id = format!("B-{i:02}");
        assert!(
            seen.iter()
                .any(|s| s.body["text"]["content"].as_str().unwrap().contains(&id)),
            "{id} was lost"
        );
    }
    eprintln!("burst of 50: {} requests", seen.len());
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let s = Secret::new("SEC0123456789");
    assert_eq!(format!("{s:?}"), "<redacted>");
    assert_eq!(format!("{s}"), "<redacted>");
}

#[tokio::test]
async fn a_refused_digest_sends_its_alerts_over_the_next_channel() {
    let clock = clock();
    // The robot takes one message, then its webhook is deleted.
    let rx = receiver(clock.clone(), |_, n| {
        if n == 0 {
            json!({"errcode": 0, "errmsg": "ok"})
        } else {
            json!({"errcode": 93000, "errmsg": "invalid webhook url"})
        }
    })
    .await;
    let (port, mails) = smtp_sink(None).await;
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(&dir, "k", "K");
    let cfg = wecom("w", &rx.url, &key, "rate_limit = 2\ndigest_wait = \"1s\"")
        + &format!(
            r#"[[channels]]
id = "email"
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {port}
tls = "none"
from = "pollwatch@example.gov.cn"
"#
        );
    let n = notifier(&cfg, &["w", "email"], clock.clone());
    let statuses: Vec<DeliveryStatus> = {
        let mut v = Vec::new();
        for id in ["D-1", "D-2", "D-3"] {
            v.push(send_one(&n, &clock, &facts(id)).await.status);
        }
        v
    };
    assert_eq!(
        statuses,
        [
            DeliveryStatus::Sent {
                channel: "w".into()
            },
            DeliveryStatus::Queued {
                channel: "w".into()
            },
            DeliveryStatus::Queued {
                channel: "w".into()
            },
        ]
    );
    assert!(
        n.flush().await.is_empty(),
        "the digest waits for digest_wait"
    );
    clock.advance(Duration::seconds(1));
    let reports = n.flush().await;
    assert_eq!(reports.len(), 1);
    let d = &reports[0];
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.alert_ids, ["D-2", "D-3"]);
    assert_eq!(d.attempts[0].code.as_deref(), Some("93000"));
    assert_eq!(d.rerouted.len(), 2);
    for (_, r) in &d.rerouted {
        assert_eq!(
            r.status,
            DeliveryStatus::Sent {
                channel: "email".into()
            }
        );
    }
    let bodies: Vec<String> = mails
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.body_text())
        .collect();
    assert_eq!(bodies.len(), 2);
    assert!(bodies[0].contains("D-2") && bodies[1].contains("D-3"));
    assert_eq!(n.queued(), 0);
}
