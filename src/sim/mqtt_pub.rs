//! An MQTT publisher like a power-monitoring gateway: QoS 1 on a persistent
//! session, so what it published but did not see acknowledged is sent again after
//! a reconnect — including across a broker restart. It counts the broker's
//! PUBACKs, which is what "delivered" means to a gateway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::sources::mqtt::conn::BrokerUrl;
use crate::sources::mqtt::MqttError;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Url(#[from] MqttError),
    #[error("the publisher's event loop has stopped: {0}")]
    Closed(#[from] rumqttc::ClientError),
}

#[derive(Debug, Clone)]
pub struct PublisherOptions {
    pub client_id: String,
    /// Off: the broker keeps our session, and we resend unacknowledged messages.
    pub clean_session: bool,
    /// Messages sent and not yet acknowledged, at most.
    pub inflight: u16,
}

impl PublisherOptions {
    pub fn persistent(client_id: impl Into<String>) -> Self {
        PublisherOptions {
            client_id: client_id.into(),
            clean_session: false,
            inflight: 100,
        }
    }
}

#[derive(Debug, Default)]
pub struct PublisherStats {
    pub acked: AtomicU64,
    pub connects: AtomicU64,
    pub connection_errors: AtomicU64,
}

pub struct MqttPublisher {
    client: AsyncClient,
    stats: Arc<PublisherStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl MqttPublisher {
    pub fn connect(url: &str, opts: &PublisherOptions) -> Result<MqttPublisher, PublishError> {
        let url = BrokerUrl::parse(url)?;
        let mut o = MqttOptions::new(opts.client_id.clone(), url.host, url.port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_session(opts.clean_session);
        o.set_inflight(opts.inflight.max(1));
        let (client, mut events) = AsyncClient::new(o, 1000);
        let stats = Arc::new(PublisherStats::default());
        let (stop, mut stop_rx) = watch::channel(false);
        let st = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = stop_rx.changed() => break,
                    e = events.poll() => e,
                };
                match event {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        st.acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        st.connects.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        // A gateway keeps trying; the messages wait in its session.
                        st.connection_errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(MqttPublisher {
            client,
            stats,
            stop,
            task,
        })
    }

    /// Queues a QoS 1 message; waits only when the publisher's queue is full.
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        payload: Vec<u8>,
    ) -> Result<(), PublishError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await?;
        Ok(())
    }

    pub fn stats(&self) -> &PublisherStats {
        &self.stats
    }

    pub fn acked(&self) -> u64 {
        self.stats.acked.load(Ordering::Relaxed)
    }

    /// Waits until `n` messages in all have been acknowledged; false on timeout.
    pub async fn wait_acked(&self, n: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.acked() < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    pub async fn close(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A message in the default JSON shape pollwatch documents: epoch-millisecond
/// time and factor → value.
pub fn json_message(ts_ms: i64, values: &[(&str, f64)]) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    for (k, v) in values {
        map.insert((*k).to_string(), serde_json::json!(v));
    }
    serde_json::to_vec(&serde_json::json!({ "ts": ts_ms, "values": map })).unwrap_or_default()
}

/// What `pollwatch simulate mqtt` does: a gateway that publishes the same values
/// for each of its meters every `interval`, with the current time.
#[derive(Debug, Clone)]
pub struct GatewayPlan {
    pub url: String,
    /// With `{enterprise}` and `{meter}`, e.g. `power/{enterprise}/{meter}/data`.
    pub topic: String,
    pub enterprise: String,
    pub meters: Vec<String>,
    pub values: Vec<(String, f64)>,
    pub count: u32,
    pub interval: Duration,
}

/// Runs the plan, calling `report(round, acked_so_far)` after each round has
/// been acknowledged by the broker.
pub async fn run_gateway(
    plan: &GatewayPlan,
    mut report: impl FnMut(u32, u64),
) -> Result<(), PublishError> {
    let id = format!("pw-sim-{}-{}", plan.enterprise, std::process::id());
    let publisher = MqttPublisher::connect(&plan.url, &PublisherOptions::persistent(id))?;
    let values: Vec<(&str, f64)> = plan.values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut sent = 0u64;
    for round in 0..plan.count {
        let ts = chrono::Utc::now().timestamp_millis();
        for m in &plan.meters {
            let topic = plan
                .topic
                .replace("{enterprise}", &plan.enterprise)
                .replace("{meter}", m);
            publisher.publish(topic, json_message(ts, &values)).await?;
            sent += 1;
        }
        publisher.wait_acked(sent, Duration::from_secs(30)).await;
        report(round + 1, publisher.acked());
        if round + 1 < plan.count {
            tokio::time::sleep(plan.interval).await;
        }
    }
    publisher.close().await;
    Ok(())
}
