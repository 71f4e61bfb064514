//! Publish alerts to an MQTT topic, for control-room screens and other systems.
//!
//! ```toml
//! [[channels]]
//! id = "mqtt-alerts"
//! kind = "mqtt"
//! url = "mqtt://127.0.0.1:1883"
//! topic = "pollwatch/alerts/{enterprise}"   # {enterprise} = enterprise id, {severity}
//! qos = 1                                   # 1 (default): accepted = broker's PUBACK
//! client_id = "pollwatch-notify"
//! username = "pollwatch"
//! password_env = "PW_MQTT_NOTIFY_PASSWORD"
//! ```
//!
//! The payload is JSON: `alert_ids`, `title`, `text`, `severity`, `link`, `facts`.
//! Each send opens its own short session and waits for the broker's PUBACK (QoS 1)
//! or PUBCOMP (QoS 2) before calling the message accepted. Alerts are a few a
//! minute, so a connection each is cheap, and it means a message is never reported
//! sent while it sits in a client buffer that a broken connection would lose.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::json;

use super::{Body, Channel, Message, Outcome, Recipients, Secret, SendFuture};

#[derive(Debug)]
pub struct Mqtt {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) topic: String,
    pub(crate) qos: QoS,
    pub(crate) client_id: String,
    pub(crate) credentials: Option<(String, Secret)>,
    pub(crate) timeout: Duration,
    pub(crate) body: Body,
    pub(crate) seq: AtomicU64,
}

/// `mqtt://host[:port]` → (host, port).
pub fn parse_url(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("mqtt://")?.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None if !rest.is_empty() => Some((rest.to_string(), 1883)),
        None => None,
    }
}

pub fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

impl Mqtt {
    pub fn topic_for(&self, msg: &Message) -> String {
        let enterprise = match msg.facts.as_slice() {
            [f] => f.enterprise_id.as_str(),
            _ => "digest",
        };
        self.topic
            .replace("{enterprise}", enterprise)
            .replace("{severity}", msg.severity.as_str())
    }

    pub fn payload(&self, msg: &Message, to: &Recipients) -> Vec<u8> {
        json!({
            "alert_ids": msg.alert_ids,
            "title": msg.title,
            "text": self.body.text(msg, to),
            "severity": msg.severity.as_str(),
            "link": msg.link,
            "digest": msg.digest,
            "facts": msg.facts,
        })
        .to_string()
        .into_bytes()
    }

    async fn publish(&self, topic: String, payload: Vec<u8>) -> Outcome {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut opts = MqttOptions::new(
            format!("{}-{}-{n}", self.client_id, std::process::id()),
            self.host.clone(),
            self.port,
        );
        opts.set_clean_session(true);
        opts.set_keep_alive(Duration::from_secs(30));
        if let Some((u, p)) = &self.credentials {
            opts.set_credentials(u.clone(), p.expose().to_string());
        }
        let (client, mut events) = AsyncClient::new(opts, 4);
        if let Err(e) = client.publish(topic, self.qos, false, payload).await {
            return Outcome::retryable("mqtt-client", e.to_string());
        }
        let outcome = loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) if self.qos == QoS::AtLeastOnce => {
                    break Outcome::Accepted { provider_id: None }
                }
                Ok(Event::Incoming(Packet::PubComp(_))) if self.qos == QoS::ExactlyOnce => {
                    break Outcome::Accepted { provider_id: None }
                }
                Ok(Event::Outgoing(Outgoing::Publish(_))) if self.qos == QoS::AtMostOnce => {
                    break Outcome::Accepted { provider_id: None }
                }
                Ok(_) => continue,
                Err(ConnectionError::ConnectionRefused(code)) => {
                    break Outcome::permanent("mqtt-refused", format!("{code:?}"))
                }
                Err(e) => break Outcome::retryable("mqtt", e.to_string()),
            }
        };
        // Best effort: the message is already acknowledged (or failed).
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            while let Ok(ev) = events.poll().await {
                if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
        outcome
    }
}

impl Channel for Mqtt {
    fn send<'a>(&'a self, msg: &'a Message, to: &'a Recipients) -> SendFuture<'a> {
        Box::pin(async move {
            let topic = self.topic_for(msg);
            let payload = self.payload(msg, to);
            match tokio::time::timeout(self.timeout, self.publish(topic, payload)).await {
                Ok(o) => o,
                Err(_) => {
                    Outcome::retryable("timeout", "no acknowledgement from the broker in time")
                }
            }
        })
    }
}
