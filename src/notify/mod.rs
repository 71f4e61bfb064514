//! Notification: from an alert to the right phone, with a record of every attempt.
//!
//! Why it is built this way:
//!
//! - **Providers lie with HTTP 200.** WeCom, DingTalk and Feishu answer 200 even when
//!   they refuse a message; the verdict is an error code in the body. Every channel
//!   reads it and returns a typed [`Outcome`]: `Accepted`, `Retryable` (rate limited,
//!   busy: try again after a back-off) or `Permanent` (bad token, signature,
//!   keyword: retrying cannot help, fall back to the next channel of the route). The
//!   dispatcher records each attempt as evidence.
//! - **Robots take 20 messages a minute** and DingTalk then mutes the robot for ten
//!   minutes. Each channel has a sliding-window limiter ([`ratelimit`]); when it is
//!   full, messages wait in a queue and go out merged into one digest that lists
//!   every alert ([`digest`]) — nothing is dropped, nothing exceeds the limit.
//! - **Who is on duty is a function of time.** The roster ([`roster`]) answers "who
//!   holds team T's shift at instant t" from rotations with a local handover time
//!   and date overrides; escalation ([`escalation`]) is a pure function of the policy,
//!   when the alert opened, when it was acknowledged, and now. Both take time as an
//!   argument, so a simulated clock tests midnight handovers and 15-minute
//!   escalations in microseconds.
//! - **Messages are Chinese by default** and carry the numbers an officer acts on:
//!   value against limit with unit and basis, time window, rule, severity, whether
//!   the enterprise is on the positive list, and a link ([`template`]).
//!
//! The dispatcher uses [`Notifier`]: `plan` (which deliveries are due for an alert
//! now), `message` (render the alert), `deliver` (rate limit, retry, fall back) and
//! `flush` (send digests of queued messages when the channel has room again).
//!
//! Config: `[[channels]]` in pollwatch.toml (see `config::channels`), rotations,
//! routes and escalation in duty.toml (see `config::duty`).

mod build;
pub mod digest;
pub mod dingtalk;
pub mod email;
pub mod escalation;
pub mod feishu;
pub mod health;
mod http;
pub mod mqtt;
mod notifier;
pub mod ratelimit;
mod report;
pub mod retry;
pub mod roster;
pub mod routing;
mod secret;
pub mod template;
pub mod webhook;
pub mod wecom;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::config::Severity;
pub use health::{ChannelHealth, HealthBoard, UNAVAILABLE};
pub use notifier::{ChannelResult, Notifier};
pub use report::{
    AlertSummary, AttemptRecord, AttemptResult, Delivery, DeliveryReport, DeliveryStatus,
    DigestReport, Plan,
};
pub use secret::Secret;

/// What an alert says, in numbers: the template turns it into text, and MQTT and
/// webhook receivers get it as JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlertFacts {
    pub alert_id: String,
    pub enterprise_id: String,
    pub enterprise_name: String,
    pub district: String,
    pub industry: String,
    pub positive_list: bool,
    pub outlet_id: String,
    pub outlet_name: String,
    /// HJ 212 code, e.g. `a21026`.
    pub factor_code: String,
    /// As officers say it, e.g. `SO2` or `二氧化硫`.
    pub factor_name: String,
    pub value: f64,
    /// The threshold judged against: the permit limit, or for an early warning
    /// (and a projected exceedance) the warning line.
    pub limit: f64,
    /// The permit limit itself when `limit` is a warning line below it (预警线 28,
    /// 限值 35); absent otherwise and on alerts recorded before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit_limit: Option<f64>,
    pub unit: String,
    /// How the value was formed, e.g. `小时均值`.
    pub basis: String,
    /// Corrected to the reference O2 (折算).
    pub converted: bool,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub rule: String,
    #[serde(serialize_with = "severity_str")]
    pub severity: Severity,
    /// The alert in the console.
    pub link: Option<String>,
}

fn severity_str<S: serde::Serializer>(s: &Severity, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

/// One message to push: rendered text plus the facts it came from. A digest is a
/// message too; `alert_ids` then lists every alert it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub title: String,
    pub text: String,
    pub markdown: String,
    pub severity: Severity,
    pub link: Option<String>,
    /// Every alert this message speaks for (one, or all of a digest's).
    pub alert_ids: Vec<String>,
    /// The facts of each alert, in `alert_ids` order.
    pub facts: Vec<AlertFacts>,
    /// A merge of queued messages (channel templates then do not apply).
    pub digest: bool,
    /// The dispatcher's own key for this message (e.g. its outbox row), echoed in
    /// reports so it can mark exactly the messages a digest carried.
    pub refs: Vec<String>,
    /// Files for channels that carry them ([`Channel::takes_attachments`]): the
    /// alert's evidence chart for e-mail. Digests carry none.
    pub attachments: Vec<Attachment>,
}

/// A file sent with a message.
#[derive(Clone, PartialEq)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    /// Shared: a message is cloned per channel and per digest queue.
    pub data: std::sync::Arc<[u8]>,
}

impl fmt::Debug for Attachment {
    // The bytes would drown a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// Someone a message is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub officer_id: String,
    pub name: String,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub wecom_user: Option<String>,
    pub dingtalk_user: Option<String>,
    pub feishu_user: Option<String>,
}

impl From<&crate::config::Officer> for Recipient {
    fn from(o: &crate::config::Officer) -> Self {
        Recipient {
            officer_id: o.id.clone(),
            name: o.name.clone(),
            mobile: o.mobile.clone(),
            email: o.email.clone(),
            wecom_user: o.wecom_user.clone(),
            dingtalk_user: o.dingtalk_user.clone(),
            feishu_user: o.feishu_user.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients(pub Vec<Recipient>);

impl Recipients {
    pub fn mobiles(&self) -> Vec<String> {
        self.0.iter().filter_map(|r| r.mobile.clone()).collect()
    }

    pub fn emails(&self) -> Vec<String> {
        self.0.iter().filter_map(|r| r.email.clone()).collect()
    }

    pub fn ids(&self) -> Vec<String> {
        self.0.iter().map(|r| r.officer_id.clone()).collect()
    }

    /// Adds recipients not yet present (a digest merges several messages' people).
    pub fn merge(&mut self, other: &Recipients) {
        for r in &other.0 {
            if !self.0.iter().any(|x| x.officer_id == r.officer_id) {
                self.0.push(r.clone());
            }
        }
    }
}

/// What a provider said about one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted {
        provider_id: Option<String>,
    },
    /// Rate limited, busy or unreachable: the same channel may succeed later.
    Retryable {
        code: String,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (bad token, signature, keyword, too long, rejected
    /// recipient): go to the next channel.
    Permanent {
        code: String,
        reason: String,
    },
}

impl Outcome {
    pub fn retryable(code: impl fmt::Display, reason: impl Into<String>) -> Self {
        Outcome::Retryable {
            code: code.to_string(),
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn permanent(code: impl fmt::Display, reason: impl Into<String>) -> Self {
        Outcome::Permanent {
            code: code.to_string(),
            reason: reason.into(),
        }
    }
}

/// A channel's own `template`, when it has one, applied to single-alert messages.
#[derive(Debug, Clone)]
pub struct Body {
    pub template: Option<String>,
    pub tz: chrono_tz::Tz,
}

impl Body {
    fn custom(&self, msg: &Message, to: &Recipients) -> Option<String> {
        let tpl = self.template.as_ref()?;
        match (msg.digest, msg.facts.as_slice()) {
            (false, [f]) => Some(template::render(
                tpl,
                &template::vars(f, self.tz, to),
                template::plain,
            )),
            _ => None,
        }
    }

    pub fn text(&self, msg: &Message, to: &Recipients) -> String {
        self.custom(msg, to).unwrap_or_else(|| msg.text.clone())
    }

    pub fn markdown(&self, msg: &Message, to: &Recipients) -> String {
        self.custom(msg, to).unwrap_or_else(|| msg.markdown.clone())
    }
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// One way of pushing a message. Implementations never panic or return early on
/// provider errors: everything becomes an [`Outcome`].
pub trait Channel: Send + Sync {
    fn send<'a>(&'a self, msg: &'a Message, to: &'a Recipients) -> SendFuture<'a>;

    /// Largest body the provider takes, in bytes (digests are sized to it).
    fn max_bytes(&self) -> Option<usize> {
        None
    }

    /// Whether [`Message::attachments`] reach the recipient (e-mail); for the
    /// others the dispatcher does not render them at all.
    fn takes_attachments(&self) -> bool {
        false
    }
}

/// Building the notifier from config: a secret that cannot be read, a channel that
/// cannot be built. Provider errors are never this type: they are [`Outcome`]s.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("channel {channel}: cannot read {what} from {path}: {source}")]
    SecretFile {
        channel: String,
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("channel {channel}: environment variable {var} ({what}) is not set")]
    SecretEnv {
        channel: String,
        what: &'static str,
        var: String,
    },
    #[error("channel {channel}: {what} from {from} is empty")]
    SecretEmpty {
        channel: String,
        what: &'static str,
        from: String,
    },
    #[error("channel {channel}: {message}")]
    Channel { channel: String, message: String },
    #[error("no route matches the alert (district {district:?}, severity {severity})")]
    NoRoute { district: String, severity: String },
    #[error("unknown {what} {id:?}")]
    Unknown { what: &'static str, id: String },
}
