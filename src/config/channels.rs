//! `[[channels]]` in `pollwatch.toml`: where alert messages can be pushed. Routes in
//! `duty.toml` name channels by `id`, in fallback order.
//!
//! One flat table per channel: `kind` says which keys apply, and validation rejects a
//! key that belongs to another kind (an `smtp_host` on a WeCom robot is a mistake,
//! not something to ignore). Secrets never sit in this file: tokens and passwords are
//! read from `*_file` or `*_env`, and a `{token}` in `url` is replaced by the token.
//!
//! ```toml
//! [[channels]]
//! id = "wecom-wuzhong"
//! kind = "wecom"                      # group robot
//! url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={token}"
//! token_file = "/etc/pollwatch/secrets/wecom-wuzhong.key"
//! format = "markdown"                 # or "text" (text can @mention by mobile)
//! mention = true                      # @ the officers on duty
//! rate_limit = 20                     # messages per minute (WeCom and DingTalk: 20)
//!
//! [[channels]]
//! id = "dingtalk-xiangcheng"
//! kind = "dingtalk"                   # custom robot with 加签
//! url = "https://oapi.dingtalk.com/robot/send?access_token={token}"
//! token_env = "PW_DINGTALK_TOKEN"
//! secret_env = "PW_DINGTALK_SECRET"   # SEC… signing secret
//!
//! [[channels]]
//! id = "feishu"
//! kind = "feishu"
//! url = "https://open.feishu.cn/open-apis/bot/v2/hook/{token}"
//! token_file = "/etc/pollwatch/secrets/feishu.token"
//! secret_file = "/etc/pollwatch/secrets/feishu.secret"
//!
//! [[channels]]
//! id = "sms"
//! kind = "webhook"                    # any HTTP API, e.g. an SMS gateway
//! url = "https://sms.example.gov.cn/api/send"
//! headers = { Authorization = "Bearer {token}" }
//! token_file = "/etc/pollwatch/secrets/sms.token"
//! body = '{"phones": {mobiles}, "text": {text}}'   # placeholders are JSON-quoted
//! ok_field = "code"                   # the gateway's own status field …
//! ok_values = ["OK"]                  # … and the values that mean "sent"
//! retry_values = ["Throttling"]       # values worth retrying; others are permanent
//!
//! [[channels]]
//! id = "email"
//! kind = "email"
//! smtp_host = "smtp.example.gov.cn"
//! smtp_port = 587
//! tls = "starttls"                    # "tls" (implicit, port 465) or "none" (loopback only)
//! username = "pollwatch@example.gov.cn"
//! password_file = "/etc/pollwatch/secrets/smtp.password"
//! from = "pollwatch <pollwatch@example.gov.cn>"
//! to = ["duty@example.gov.cn"]        # always copied, besides the officers' own addresses
//!
//! [[channels]]
//! id = "mqtt-alerts"
//! kind = "mqtt"
//! url = "mqtt://127.0.0.1:1883"
//! topic = "pollwatch/alerts/{enterprise}"   # {enterprise} and {severity} are filled in
//! qos = 1
//! ```
//!
//! Every kind also takes `rate_limit` (per minute), `timeout`, `max_attempts`,
//! `backoff` and `backoff_max` (retries of busy/rate-limited answers), `digest_wait`
//! (how long a message may wait for a saturated channel before the reserved slot
//! sends a digest) and `template` (the message body; see `notify::template`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::units::HumanDuration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Wecom,
    Dingtalk,
    Feishu,
    Webhook,
    Email,
    Mqtt,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Wecom => "wecom",
            ChannelKind::Dingtalk => "dingtalk",
            ChannelKind::Feishu => "feishu",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Email => "email",
            ChannelKind::Mqtt => "mqtt",
        }
    }

    /// The providers' documented limits: WeCom and DingTalk robots take 20 a minute
    /// (DingTalk then blocks the robot for 10 minutes), Feishu 100.
    pub fn default_rate_limit(self) -> Option<u32> {
        match self {
            ChannelKind::Wecom | ChannelKind::Dingtalk => Some(20),
            ChannelKind::Feishu => Some(100),
            _ => None,
        }
    }

    /// The kind-specific keys; validation rejects the others.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            ChannelKind::Wecom => &["url", "token_file", "token_env", "format", "mention"],
            ChannelKind::Dingtalk => &[
                "url",
                "token_file",
                "token_env",
                "secret_file",
                "secret_env",
                "format",
                "mention",
            ],
            ChannelKind::Feishu => &[
                "url",
                "token_file",
                "token_env",
                "secret_file",
                "secret_env",
                "mention",
            ],
            ChannelKind::Webhook => &[
                "url",
                "token_file",
                "token_env",
                "method",
                "headers",
                "body",
                "ok_field",
                "ok_values",
                "retry_values",
            ],
            ChannelKind::Email => &[
                "smtp_host",
                "smtp_port",
                "tls",
                "username",
                "password_file",
                "password_env",
                "from",
                "to",
            ],
            ChannelKind::Mqtt => &[
                "url",
                "topic",
                "qos",
                "client_id",
                "username",
                "password_file",
                "password_env",
            ],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    #[default]
    Markdown,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only accepted for a loopback relay (a local MTA).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Post,
    Put,
}

/// One `[[channels]]` entry. Optional keys that do not apply to `kind` must be
/// absent (checked by validation, with the line of the stray key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub id: String,
    pub kind: ChannelKind,

    // Robots, webhook, MQTT.
    pub url: Option<String>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    pub format: Option<MessageFormat>,
    pub mention: Option<bool>,

    // Webhook.
    pub method: Option<HttpMethod>,
    pub headers: Option<BTreeMap<String, String>>,
    pub body: Option<String>,
    pub ok_field: Option<String>,
    pub ok_values: Option<Vec<String>>,
    pub retry_values: Option<Vec<String>>,

    // Email.
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub tls: Option<SmtpTls>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub from: Option<String>,
    pub to: Option<Vec<String>>,

    // MQTT.
    pub topic: Option<String>,
    pub qos: Option<u8>,
    pub client_id: Option<String>,

    // Every kind.
    pub rate_limit: Option<u32>,
    pub timeout: Option<HumanDuration>,
    pub max_attempts: Option<u32>,
    pub backoff: Option<HumanDuration>,
    pub backoff_max: Option<HumanDuration>,
    pub digest_wait: Option<HumanDuration>,
    pub template: Option<String>,
}

impl ChannelConfig {
    /// Which optional keys are set, by their config name (for the kind check).
    pub fn keys_set(&self) -> Vec<&'static str> {
        let present: [(&'static str, bool); 24] = [
            ("url", self.url.is_some()),
            ("token_file", self.token_file.is_some()),
            ("token_env", self.token_env.is_some()),
            ("secret_file", self.secret_file.is_some()),
            ("secret_env", self.secret_env.is_some()),
            ("format", self.format.is_some()),
            ("mention", self.mention.is_some()),
            ("method", self.method.is_some()),
            ("headers", self.headers.is_some()),
            ("body", self.body.is_some()),
            ("ok_field", self.ok_field.is_some()),
            ("ok_values", self.ok_values.is_some()),
            ("retry_values", self.retry_values.is_some()),
            ("smtp_host", self.smtp_host.is_some()),
            ("smtp_port", self.smtp_port.is_some()),
            ("tls", self.tls.is_some()),
            ("username", self.username.is_some()),
            ("password_file", self.password_file.is_some()),
            ("password_env", self.password_env.is_some()),
            ("from", self.from.is_some()),
            ("to", self.to.is_some()),
            ("topic", self.topic.is_some()),
            ("qos", self.qos.is_some()),
            ("client_id", self.client_id.is_some()),
        ];
        present
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(k, _)| k)
            .collect()
    }

    pub fn rate_limit(&self) -> Option<u32> {
        self.rate_limit.or(self.kind.default_rate_limit())
    }
}
