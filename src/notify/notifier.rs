//! The facade the dispatcher calls: plan who is due a notification, deliver it
//! under the channel's rate limit with retries and fall-back, and flush digests.
//!
//! ```text
//! let notifier = Notifier::from_config(&config, clock.clone());
//! let plan = notifier.plan(&alert, now)?;            // deliveries due now
//! for d in &plan.deliveries {                        // skip those already sent (d.key())
//!     let msg = notifier.message(&facts);
//!     let report = notifier.deliver(d, &msg).await;  // record report.attempts
//! }
//! // periodically, or at notifier.next_flush_at():
//! for digest in notifier.flush().await { /* mark digest.refs sent if Sent */ }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::digest::{DigestQueue, Pending};
use super::escalation::{self, Escalation};
use super::ratelimit::SlidingWindow;
use super::report::{
    AlertSummary, AttemptRecord, AttemptResult, Delivery, DeliveryReport, DeliveryStatus,
    DigestReport, Plan,
};
use super::retry::{Backoff, Jitter};
use super::roster::Roster;
use super::routing::{self, RouteKey};
use super::template::Templates;
use super::{
    AlertFacts, Channel, ChannelHealth, Message, NotifyError, Outcome, Recipient, Recipients,
};
use crate::clock::Clock;
use crate::config::{ChannelConfig, Config, Duty, EscalationPolicy, Route};

struct Slot {
    id: String,
    /// The channel, or why it could not be built (it is then unavailable and
    /// every attempt over it fails permanently, naming the cause).
    channel: Result<Box<dyn Channel>, String>,
    max_attempts: u32,
    backoff: Backoff,
    digest_wait: chrono::Duration,
    state: Mutex<SlotState>,
}

struct SlotState {
    limiter: Option<SlidingWindow>,
    queue: DigestQueue,
    jitter: Jitter,
}

impl SlotState {
    /// Slots a single message may use; one stays for digests so a saturated queue
    /// is not starved by newcomers.
    fn reserve(&self) -> usize {
        match &self.limiter {
            Some(l) if l.limit() > 1 => 1,
            _ => 0,
        }
    }
}

fn lock(m: &Mutex<SlotState>) -> std::sync::MutexGuard<'_, SlotState> {
    // A panic elsewhere while holding the lock leaves counters that are still
    // meaningful; keep going rather than stop all notification.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Notifier {
    tz: Tz,
    clock: Arc<dyn Clock>,
    roster: Roster,
    routes: Vec<Route>,
    policies: HashMap<String, EscalationPolicy>,
    templates: Templates,
    slots: Vec<Slot>,
    /// The config evidence charts are drawn with; kept only when a channel takes
    /// attachments (e-mail), so others pay nothing.
    evidence: Option<Arc<Config>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("tz", &self.tz)
            .field(
                "channels",
                &self.slots.iter().map(|s| &s.id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Always succeeds: a channel that cannot be built is unavailable (see
    /// [`health`](Self::health)), never a reason to stop alerting.
    pub fn from_config(cfg: &Config, clock: Arc<dyn Clock>) -> Notifier {
        let mut n = Notifier::new(cfg.timezone, &cfg.duty, &cfg.daemon.channels, clock, seed());
        if n.slots.iter().any(|s| s.takes_attachments()) {
            n.evidence = Some(Arc::new(cfg.clone()));
        }
        n
    }

    /// Every channel, and why it cannot send where it cannot.
    pub fn health(&self) -> Vec<ChannelHealth> {
        self.slots
            .iter()
            .map(|s| ChannelHealth {
                channel: s.id.clone(),
                down: s.channel.as_ref().err().cloned(),
            })
            .collect()
    }

    /// The configured channel ids, in config order.
    pub fn channel_ids(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.id.as_str())
    }

    /// The config to draw an alert's evidence chart with, when `delivery` may go
    /// over a channel that carries attachments.
    pub fn evidence_config(&self, delivery: &Delivery) -> Option<&Config> {
        let takes = delivery
            .channels
            .iter()
            .filter_map(|id| self.slot(id))
            .any(Slot::takes_attachments);
        takes.then_some(self.evidence.as_deref()).flatten()
    }

    /// `seed` fixes the retry jitter (tests pass a constant).
    pub fn new(
        tz: Tz,
        duty: &Duty,
        channels: &[ChannelConfig],
        clock: Arc<dyn Clock>,
        seed: u64,
    ) -> Notifier {
        let mut slots = Vec::new();
        for (i, c) in channels.iter().enumerate() {
            let defaults = Backoff::default();
            slots.push(Slot {
                id: c.id.clone(),
                channel: super::build::channel(c, tz).map_err(|e| {
                    tracing::error!(channel = %c.id, error = %e, "notification channel UNAVAILABLE: its routes fall back to their next channel");
                    e.to_string()
                }),
                max_attempts: c.max_attempts.unwrap_or(4).max(1),
                backoff: Backoff {
                    initial: c.backoff.map(|b| b.0).unwrap_or(defaults.initial),
                    max: c.backoff_max.map(|b| b.0).unwrap_or(defaults.max),
                    factor: defaults.factor,
                },
                digest_wait: c
                    .digest_wait
                    .and_then(|d| chrono::Duration::from_std(d.0).ok())
                    .unwrap_or(chrono::Duration::seconds(10)),
                state: Mutex::new(SlotState {
                    limiter: c.rate_limit().map(SlidingWindow::per_minute),
                    queue: DigestQueue::default(),
                    jitter: Jitter::new(seed.wrapping_add(i as u64)),
                }),
            });
        }
        Notifier {
            tz,
            clock,
            roster: Roster::new(duty, tz),
            routes: duty.routes.clone(),
            policies: duty
                .escalation
                .iter()
                .map(|p| (p.id.clone(), p.clone()))
                .collect(),
            templates: Templates::default(),
            slots,
            evidence: None,
        }
    }

    /// The alert rendered with the default (Chinese) templates.
    pub fn message(&self, facts: &AlertFacts) -> Message {
        self.templates.message(facts, self.tz)
    }

    /// Which deliveries are due for `alert` at `now`, resolved against the roster at
    /// `now` (a late dispatcher reaches whoever holds the shift now).
    pub fn plan(&self, alert: &AlertSummary, now: DateTime<Utc>) -> Result<Plan, NotifyError> {
        let key = RouteKey {
            district: &alert.district,
            industry: &alert.industry,
            severity: alert.severity,
            rule: &alert.rule,
        };
        let route = routing::route(&self.routes, &key).ok_or_else(|| NotifyError::NoRoute {
            district: alert.district.clone(),
            severity: alert.severity.as_str().to_string(),
        })?;
        let fallback_policy;
        let policy = match &route.escalation {
            Some(id) => self.policies.get(id).ok_or_else(|| NotifyError::Unknown {
                what: "escalation policy",
                id: id.clone(),
            })?,
            None => {
                fallback_policy = escalation::on_duty_only();
                &fallback_policy
            }
        };
        let esc = escalation::evaluate(policy, alert.opened_at, alert.acked_at, now);
        let mut deliveries = Vec::new();
        if let Escalation::Active { due, .. } = &esc {
            for step in due {
                let Some(level) = policy.levels.get(step.level) else {
                    continue;
                };
                let mut to = Recipients::default();
                if level.on_duty {
                    for o in self.roster.on_duty(&route.team, now) {
                        to.merge(&Recipients(vec![Recipient::from(o)]));
                    }
                }
                for t in &level.teams {
                    for o in self.roster.on_duty(t, now) {
                        to.merge(&Recipients(vec![Recipient::from(o)]));
                    }
                }
                for id in &level.officers {
                    if let Some(o) = self.roster.officer(id) {
                        to.merge(&Recipients(vec![Recipient::from(o)]));
                    }
                }
                deliveries.push(Delivery {
                    alert_id: alert.alert_id.clone(),
                    step: *step,
                    recipients: to,
                    channels: route.channels.clone(),
                });
            }
        }
        Ok(Plan {
            team: route.team.clone(),
            escalation: esc,
            deliveries,
        })
    }

    fn slot(&self, id: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.id == id)
    }

    /// Sends `msg` over the delivery's channels in order until one accepts it or
    /// queues it for a digest. Busy and rate-limited answers are retried on the same
    /// channel after a back-off; permanent refusals move to the next channel.
    pub async fn deliver(&self, delivery: &Delivery, msg: &Message) -> DeliveryReport {
        self.deliver_over(&delivery.channels, &delivery.recipients, msg)
            .await
    }

    async fn deliver_over(
        &self,
        channels: &[String],
        to: &Recipients,
        msg: &Message,
    ) -> DeliveryReport {
        let mut attempts = Vec::new();
        for (i, id) in channels.iter().enumerate() {
            match self
                .try_channel(id, msg, to, &channels[i + 1..], &mut attempts)
                .await
            {
                ChannelResult::Accepted => {
                    return DeliveryReport {
                        status: DeliveryStatus::Sent {
                            channel: id.clone(),
                        },
                        attempts,
                    }
                }
                ChannelResult::Queued => {
                    return DeliveryReport {
                        status: DeliveryStatus::Queued {
                            channel: id.clone(),
                        },
                        attempts,
                    }
                }
                ChannelResult::Failed => {}
            }
        }
        DeliveryReport {
            status: DeliveryStatus::Failed,
            attempts,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        channel: &str,
        to: &Recipients,
        msg: &Message,
        result: AttemptResult,
        code: Option<String>,
        reason: Option<String>,
        provider_id: Option<String>,
    ) -> AttemptRecord {
        AttemptRecord {
            at: self.clock.now(),
            channel: channel.to_string(),
            recipients: to.ids(),
            alert_ids: msg.alert_ids.clone(),
            result,
            code,
            reason,
            provider_id,
        }
    }

    fn outcome_record(
        &self,
        channel: &str,
        to: &Recipients,
        msg: &Message,
        o: &Outcome,
    ) -> AttemptRecord {
        match o {
            Outcome::Accepted { provider_id } => self.record(
                channel,
                to,
                msg,
                AttemptResult::Accepted,
                None,
                None,
                provider_id.clone(),
            ),
            Outcome::Retryable { code, reason, .. } => self.record(
                channel,
                to,
                msg,
                AttemptResult::Retryable,
                Some(code.clone()),
                Some(reason.clone()),
                None,
            ),
            Outcome::Permanent { code, reason } => self.record(
                channel,
                to,
                msg,
                AttemptResult::Permanent,
                Some(code.clone()),
                Some(reason.clone()),
                None,
            ),
        }
    }

    /// One channel of a delivery: its rate limit, its retries with back-off, or
    /// its digest queue. `fallbacks` are the channels a queued message moves to
    /// if the digest is refused. An unknown or unavailable channel fails at once,
    /// with an attempt on record saying why.
    pub async fn try_channel(
        &self,
        id: &str,
        msg: &Message,
        to: &Recipients,
        fallbacks: &[String],
        attempts: &mut Vec<AttemptRecord>,
    ) -> ChannelResult {
        let (code, reason) = match self.slot(id).map(|s| (s, &s.channel)) {
            Some((slot, Ok(channel))) => {
                return self
                    .try_slot(slot, channel.as_ref(), msg, to, fallbacks, attempts)
                    .await
            }
            Some((_, Err(cause))) => (super::UNAVAILABLE, cause.clone()),
            None => ("unknown-channel", format!("no channel {id:?}")),
        };
        attempts.push(self.record(
            id,
            to,
            msg,
            AttemptResult::Permanent,
            Some(code.into()),
            Some(reason),
            None,
        ));
        ChannelResult::Failed
    }

    async fn try_slot(
        &self,
        slot: &Slot,
        channel: &dyn Channel,
        msg: &Message,
        to: &Recipients,
        fallbacks: &[String],
        attempts: &mut Vec<AttemptRecord>,
    ) -> ChannelResult {
        for attempt in 0..slot.max_attempts {
            let now = self.clock.now();
            {
                let mut st = lock(&slot.state);
                let reserve = st.reserve();
                // Newcomers queue behind waiting messages, so order is kept and the
                // queue drains as digests, not as a trickle of singles.
                let saturated = !st.queue.is_empty()
                    || st
                        .limiter
                        .as_mut()
                        .is_some_and(|l| l.available(now) <= reserve);
                if saturated {
                    st.queue.push(Pending {
                        message: msg.clone(),
                        recipients: to.clone(),
                        fallbacks: fallbacks.to_vec(),
                        queued_at: now,
                    });
                    attempts.push(self.record(
                        &slot.id,
                        to,
                        msg,
                        AttemptResult::Deferred,
                        Some("rate-limited".into()),
                        Some("channel saturated: queued for a digest".into()),
                        None,
                    ));
                    return ChannelResult::Queued;
                }
                if let Some(l) = st.limiter.as_mut() {
                    l.record(now);
                }
            }
            let outcome = channel.send(msg, to).await;
            attempts.push(self.outcome_record(&slot.id, to, msg, &outcome));
            match outcome {
                Outcome::Accepted { .. } => return ChannelResult::Accepted,
                Outcome::Permanent { .. } => return ChannelResult::Failed,
                Outcome::Retryable { retry_after, .. } => {
                    if attempt + 1 >= slot.max_attempts {
                        return ChannelResult::Failed;
                    }
                    let delay = {
                        let mut st = lock(&slot.state);
                        slot.backoff.delay(attempt, &mut st.jitter, retry_after)
                    };
                    // A provider that asks for longer than we would ever wait (a
                    // muted DingTalk robot: ten minutes) is as good as down now.
                    if delay > slot.backoff.max {
                        return ChannelResult::Failed;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
        ChannelResult::Failed
    }

    /// Messages waiting in digest queues, over all channels.
    pub fn queued(&self) -> usize {
        self.slots.iter().map(|s| lock(&s.state).queue.len()).sum()
    }

    /// When [`flush`](Self::flush) next has something to send; `None` when no
    /// message waits.
    pub fn next_flush_at(&self) -> Option<DateTime<Utc>> {
        self.slots
            .iter()
            .filter_map(|s| self.slot_flush_at(s))
            .min()
    }

    /// The same for one channel.
    pub fn next_flush_at_for(&self, channel: &str) -> Option<DateTime<Utc>> {
        self.slot(channel).and_then(|s| self.slot_flush_at(s))
    }

    fn slot_flush_at(&self, s: &Slot) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        let mut st = lock(&s.state);
        let oldest = st.queue.oldest_at()?;
        let reserve = st.reserve();
        let Some(l) = st.limiter.as_mut() else {
            return Some(now);
        };
        let free = l.available_at(now, reserve + 1);
        let reserved = l.available_at(now, 1).max(oldest + s.digest_wait);
        Some(free.min(reserved))
    }

    /// Sends digests of queued messages on every channel that has room: freely
    /// when the window has spare slots, on the reserved slot once the oldest queued
    /// message has waited `digest_wait`.
    pub async fn flush(&self) -> Vec<DigestReport> {
        let mut reports = Vec::new();
        for slot in &self.slots {
            reports.extend(self.flush_slot(slot).await);
        }
        reports
    }

    /// The same for one channel, so a hanging channel holds up only its own
    /// digests.
    pub async fn flush_channel(&self, channel: &str) -> Vec<DigestReport> {
        match self.slot(channel) {
            Some(slot) => self.flush_slot(slot).await,
            None => Vec::new(),
        }
    }

    async fn flush_slot(&self, slot: &Slot) -> Vec<DigestReport> {
        let mut reports = Vec::new();
        let Ok(channel) = &slot.channel else {
            return reports;
        };
        loop {
            let now = self.clock.now();
            let taken = {
                let mut st = lock(&slot.state);
                let Some(oldest) = st.queue.oldest_at() else {
                    break;
                };
                let reserve = st.reserve();
                let may = match st.limiter.as_mut() {
                    None => true,
                    Some(l) => {
                        let avail = l.available(now);
                        avail > reserve || (avail > 0 && oldest + slot.digest_wait <= now)
                    }
                };
                if !may {
                    break;
                }
                let Some(taken) = st.queue.take_digest(channel.max_bytes()) else {
                    break;
                };
                if let Some(l) = st.limiter.as_mut() {
                    l.record(now);
                }
                taken
            };
            let (digest, to, entries) = taken;
            let outcome = channel.send(&digest, &to).await;
            let attempts = vec![self.outcome_record(&slot.id, &to, &digest, &outcome)];
            let mut report = DigestReport {
                channel: slot.id.clone(),
                alert_ids: digest.alert_ids.clone(),
                refs: digest.refs.clone(),
                status: DeliveryStatus::Sent {
                    channel: slot.id.clone(),
                },
                attempts,
                rerouted: Vec::new(),
            };
            match outcome {
                Outcome::Accepted { .. } => reports.push(report),
                Outcome::Retryable { .. } => {
                    lock(&slot.state).queue.requeue_front(entries);
                    report.status = DeliveryStatus::Queued {
                        channel: slot.id.clone(),
                    };
                    reports.push(report);
                    break;
                }
                Outcome::Permanent { .. } => {
                    report.status = DeliveryStatus::Failed;
                    for p in entries {
                        let r =
                            Box::pin(self.deliver_over(&p.fallbacks, &p.recipients, &p.message))
                                .await;
                        report.rerouted.push((p.message.refs.clone(), r));
                    }
                    reports.push(report);
                }
            }
        }
        reports
    }
}

/// What one channel did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelResult {
    Accepted,
    /// Waiting in the channel's digest queue (rate limit reached).
    Queued,
    /// Refused for good, out of attempts, or unavailable: try the next channel.
    Failed,
}

impl Slot {
    fn takes_attachments(&self) -> bool {
        self.channel.as_ref().is_ok_and(|c| c.takes_attachments())
    }
}

/// Jitter only has to differ between instances; the time of start-up does that.
fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5EED)
}
