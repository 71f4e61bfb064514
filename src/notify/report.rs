//! What the dispatcher hands the notifier and gets back: the alert summary, the
//! deliveries due, and the record of every attempt (the evidence trail).

use chrono::{DateTime, Utc};

use super::escalation::{Escalation, Step};
use super::{Recipients, Severity};

/// What routing and escalation need to know about an alert.
#[derive(Debug, Clone)]
pub struct AlertSummary {
    pub alert_id: String,
    pub district: String,
    pub industry: String,
    pub rule: String,
    pub severity: Severity,
    /// When the alert opened, or re-opened after an ack timeout.
    pub opened_at: DateTime<Utc>,
    pub acked_at: Option<DateTime<Utc>>,
}

/// One notification due: a step of the escalation chain for certain people, over
/// channels in fall-back order.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub alert_id: String,
    pub step: Step,
    pub recipients: Recipients,
    pub channels: Vec<String>,
}

impl Delivery {
    /// Stable key for "this step of this alert was sent".
    pub fn key(&self) -> String {
        format!("{}:{}", self.alert_id, self.step.key())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub team: String,
    pub escalation: Escalation,
    /// Every step due by now (the dispatcher skips the keys it has sent).
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Accepted,
    Retryable,
    Permanent,
    /// Not sent: the channel is saturated; the message waits for a digest.
    Deferred,
}

/// One attempt, as evidence: when, where, to whom, for which alerts, and what the
/// provider answered.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub at: DateTime<Utc>,
    pub channel: String,
    pub recipients: Vec<String>,
    pub alert_ids: Vec<String>,
    pub result: AttemptResult,
    pub code: Option<String>,
    pub reason: Option<String>,
    pub provider_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStatus {
    Sent {
        channel: String,
    },
    /// Waiting in `channel`'s digest queue; a later [`Notifier::flush`](super::Notifier::flush)(super::Notifier::flush) reports it.
    Queued {
        channel: String,
    },
    /// Every channel of the route refused or stayed unavailable.
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryReport {
    pub status: DeliveryStatus,
    pub attempts: Vec<AttemptRecord>,
}

/// A digest sent (or tried) by [`Notifier::flush`](super::Notifier::flush)(super::Notifier::flush).
#[derive(Debug, Clone, PartialEq)]
pub struct DigestReport {
    pub channel: String,
    pub alert_ids: Vec<String>,
    /// The dispatcher's keys of the messages the digest carried.
    pub refs: Vec<String>,
    /// `Sent`: all carried messages were delivered. `Queued`: the digest was
    /// refused for now and its messages wait again. `Failed`: refused for good —
    /// each message was then re-delivered over its remaining channels, see
    /// `rerouted`.
    pub status: DeliveryStatus,
    pub attempts: Vec<AttemptRecord>,
    pub rerouted: Vec<(Vec<String>, DeliveryReport)>,
}
