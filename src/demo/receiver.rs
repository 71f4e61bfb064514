//! The duty officer's phone, for the demo: an HTTP endpoint on loopback that the
//! daemon's `webhook` channel posts to. It is a receiver like an SMS gateway
//! would be, so every alert the demo shows went through the real path — finding,
//! alert, outbox, dispatcher, channel, HTTP — and nothing is printed from inside
//! the daemon.
//!
//! The channel's `body` template (see [`BODY_TEMPLATE`]) sends the message's
//! fields as JSON, so the receiver can lay them out and the demo can tell which
//! scenario an alert belongs to without parsing Chinese text.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use crate::clock::Clock;

/// The webhook channel's body: every placeholder as a JSON string (the channel
/// JSON-quotes them), `mobiles` as an array.
pub const BODY_TEMPLATE: &str = r#"{"alert_id": {alert_id}, "title": {title}, "text": {text}, "severity": {severity}, "rule": {rule}, "enterprise": {enterprise}, "enterprise_id": {enterprise_id}, "district": {district}, "outlet": {outlet}, "outlet_id": {outlet_id}, "factor": {factor}, "factor_code": {factor_code}, "value": {value}, "limit": {limit}, "unit": {unit}, "measurement": {measurement}, "window": {window}, "mobiles": {mobiles}}"#;

/// One message as the officer receives it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OfficerMessage {
    pub alert_id: String,
    pub title: String,
    pub text: String,
    /// Chinese label: 严重, 重要, …
    pub severity: String,
    pub rule: String,
    pub enterprise: String,
    pub enterprise_id: String,
    pub district: String,
    pub outlet: String,
    pub outlet_id: String,
    pub factor: String,
    pub factor_code: String,
    pub value: String,
    pub limit: String,
    pub unit: String,
    pub measurement: String,
    pub window: String,
    pub mobiles: Vec<String>,
    /// Simulated time of arrival (set by the receiver, not sent).
    #[serde(skip)]
    pub received_sim: Option<DateTime<Utc>>,
    /// Real time of arrival (set by the receiver, not sent).
    #[serde(skip)]
    pub received_real: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("cannot bind the demo's alert receiver on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
}

pub struct Receiver {
    /// Where the webhook channel posts.
    pub url: String,
    pub messages: mpsc::UnboundedReceiver<OfficerMessage>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    tx: mpsc::UnboundedSender<OfficerMessage>,
    clock: Arc<dyn Clock>,
}

impl Receiver {
    /// Binds 127.0.0.1 on a port the system picks and serves until `stop`.
    pub async fn start(
        clock: Arc<dyn Clock>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Receiver, ReceiverError> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(ReceiverError::Bind)?;
        let addr = listener.local_addr().map_err(ReceiverError::Bind)?;
        let (tx, messages) = mpsc::unbounded_channel();
        let app = Router::new()
            .route("/duty", post(receive))
            .with_state(Arc::new(Shared { tx, clock }));
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "demo alert receiver failed");
            }
        });
        Ok(Receiver {
            url: format!("http://{addr}/duty"),
            messages,
            task,
        })
    }

    pub async fn join(self) {
        let _ = self.task.await;
    }
}

async fn receive(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> StatusCode {
    match serde_json::from_slice::<OfficerMessage>(&body) {
        Ok(mut m) => {
            m.received_sim = Some(shared.clock.now());
            m.received_real = Some(Instant::now());
            // The demo stopped reading: the officer has gone home; still accepted.
            let _ = shared.tx.send(m);
            StatusCode::OK
        }
        Err(e) => {
            tracing::warn!(error = %e, "demo receiver: body is not the demo's JSON");
            StatusCode::BAD_REQUEST
        }
    }
}

/// What a rule is called on a duty officer's screen.
pub fn rule_label(rule: &str) -> &'static str {
    match rule {
        "exceedance" => "超标",
        "early_warning" => "超标预警",
        "projected_exceedance" => "预计超标",
        "missing_data" => "数据缺失",
        "not_judgeable" => "无法判定",
        "data_mismatch" => "数据不一致",
        "offline" => "离线",
        "constant_value" => "数据恒值",
        "zero_value" => "零值",
        "negative_value" => "负值",
        "over_range" => "超量程",
        "maintenance_overuse" => "维护时间过长",
        "flow_mismatch" => "流量异常",
        "treatment_not_running" => "治污设施未运行",
        "treatment_underpowered" => "治污设施低负荷",
        "order_violation" => "违反停限产令",
        "emission_total" => "排放总量预警",
        "low_transmission" => "有效传输率低",
        "disk_low" => "存储空间不足",
        "furnace_temperature" => "炉温低于850℃",
        "clock_skew" => "数采仪时钟异常",
        "dtu_takeover" => "DTU 冒用",
        _ => "告警",
    }
}

impl OfficerMessage {
    /// A digest (several alerts merged by a saturated channel) has no single
    /// enterprise; it is shown as its text.
    pub fn is_digest(&self) -> bool {
        self.enterprise_id.is_empty()
    }

    /// The card printed for the newcomer: what the officer's phone would show.
    pub fn render(&self, tz: Tz, real_elapsed: Option<std::time::Duration>) -> String {
        let when = self
            .received_sim
            .map(|t| t.with_timezone(&tz).format("%m-%d %H:%M").to_string())
            .unwrap_or_default();
        let after = real_elapsed
            .map(|d| format!("（演示开始后 {:.0} 秒）", d.as_secs_f64()))
            .unwrap_or_default();
        if self.is_digest() {
            return format!(
                "┌─ {when} {}{after}\n│ {}\n└─\n",
                self.title,
                indent(&self.text)
            );
        }
        // Rules about silence or validity carry counts, not a measurement.
        let what = if self.rule == "offline" {
            format!(
                "已 {} 分钟无数据（离线判定 {} 分钟）",
                self.value, self.limit
            )
        } else if self.rule == "missing_data" {
            format!("有效数据 {}，要求至少 {}", self.value, self.limit)
        } else {
            format!("监测值：{}", self.measurement)
        };
        let to = if self.mobiles.is_empty() {
            String::new()
        } else {
            format!(" → {}", self.mobiles.join(", "))
        };
        format!(
            "┌─ {when} 【{sev}】告警 #{id}{to}{after}\n\
             │ {ent}（{district}）· {outlet} {outlet_id}\n\
             │ {label}（{rule}）{factor}\n\
             │ {what}\n\
             │ 时段：{window}\n\
             └─ 企业代码 {ent_id}\n",
            sev = self.severity,
            id = self.alert_id,
            ent = self.enterprise,
            district = self.district,
            outlet = self.outlet,
            outlet_id = self.outlet_id,
            label = rule_label(&self.rule),
            rule = self.rule,
            factor = if self.factor_code.is_empty() || self.rule == "offline" {
                String::new()
            } else {
                format!("· {} {}", self.factor, self.factor_code)
            },
            window = self.window,
            ent_id = self.enterprise_id,
        )
    }
}

fn indent(text: &str) -> String {
    text.lines().collect::<Vec<_>>().join("\n│ ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_an_exceedance_with_its_numbers_and_codes() {
        let m: OfficerMessage = serde_json::from_str(
            r#"{"alert_id": "3", "severity": "重要", "rule": "exceedance",
                "enterprise": "东山热电有限公司", "enterprise_id": "91320506MA1PW0001A",
                "district": "吴中区", "outlet": "1#机组烟囱", "outlet_id": "DA001",
                "factor": "二氧化硫", "factor_code": "a21026", "value": "41.2", "limit": "35",
                "measurement": "二氧化硫 小时均值(折算) 41.2 mg/m³，限值 35",
                "window": "2026-11-27 10:00–11:00", "mobiles": ["13800000001"]}"#,
        )
        .unwrap();
        let card = m.render(chrono_tz::Asia::Shanghai, None);
        assert!(card.contains("【重要】告警 #3 → 13800000001"), "{card}");
        assert!(
            card.contains("超标（exceedance）· 二氧化硫 a21026"),
            "{card}"
        );
        assert!(card.contains("41.2 mg/m³，限值 35"), "{card}");
        assert!(card.contains("企业代码 91320506MA1PW0001A"), "{card}");
        assert!(!m.is_digest());
    }

    #[test]
    fn renders_offline_as_minutes_without_data() {
        let m = OfficerMessage {
            rule: "offline".into(),
            enterprise_id: "X".into(),
            value: "38".into(),
            limit: "30".into(),
            ..Default::default()
        };
        let card = m.render(chrono_tz::Asia::Shanghai, None);
        assert!(
            card.contains("已 38 分钟无数据（离线判定 30 分钟）"),
            "{card}"
        );
        assert!(card.contains("离线（offline）"), "{card}");
    }

    #[test]
    fn the_body_template_uses_only_known_placeholders() {
        crate::notify::template::check(BODY_TEMPLATE).unwrap();
    }
}
