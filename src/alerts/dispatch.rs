//! Sends what the outbox holds. A row is marked `sent` only after a channel
//! accepted it, in the same transaction as its attempts and the timeline row
//! saying so; a row whose message waits in a channel's digest queue is `queued`,
//! and turns `pending` again after a restart (the queue was in memory). So a
//! restart resends what was not accepted, and never what was.
//!
//! A delivery that may go by e-mail carries the alert's evidence chart as PNG
//! ([`crate::evidence`]); drawing it costs tens of milliseconds, so it is done
//! only for such deliveries.

use std::sync::Arc;

use super::{parse_facts, AlertError};
use crate::clock::Clock;
use crate::notify::{AttemptRecord, AttemptResult, DeliveryReport, DeliveryStatus, Notifier};
use crate::store::{AlertState, Attempt, Store};

pub struct Dispatcher {
    store: Store,
    pub(super) notifier: Arc<Notifier>,
    pub(super) clock: Arc<dyn Clock>,
    metrics: Option<crate::api::metrics::Metrics>,
}

fn attempt(outbox_id: i64, a: &AttemptRecord) -> Attempt {
    Attempt {
        outbox_id,
        at: a.at,
        channel: a.channel.clone(),
        recipients: a.recipients.join(","),
        alert_ids: a.alert_ids.join(","),
        result: match a.result {
            AttemptResult::Accepted => "accepted",
            AttemptResult::Retryable => "retryable",
            AttemptResult::Permanent => "permanent",
            AttemptResult::Deferred => "deferred",
        }
        .to_string(),
        code: a.code.clone(),
        reason: a.reason.clone(),
        provider_id: a.provider_id.clone(),
    }
}

impl Dispatcher {
    pub fn new(store: Store, notifier: Arc<Notifier>, clock: Arc<dyn Clock>) -> Dispatcher {
        Dispatcher {
            store,
            notifier,
            clock,
            metrics: None,
        }
    }

    /// Counts notification attempts by channel and result.
    pub fn with_metrics(mut self, metrics: crate::api::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// A row settled without any attempt.
    fn not_sent() -> DeliveryReport {
        DeliveryReport {
            status: DeliveryStatus::Failed,
            attempts: Vec::new(),
        }
    }

    /// At start-up: what waited in memory is pending again.
    pub async fn recover(&self) -> Result<u64, AlertError> {
        Ok(self.store.requeue_outbox().await?)
    }

    async fn finish(&self, outbox_id: i64, report: &DeliveryReport) -> Result<(), AlertError> {
        let attempts: Vec<Attempt> = report
            .attempts
            .iter()
            .map(|a| attempt(outbox_id, a))
            .collect();
        let (state, channel) = match &report.status {
            DeliveryStatus::Sent { channel } => ("sent", Some(channel.as_str())),
            DeliveryStatus::Queued { channel } => ("queued", Some(channel.as_str())),
            DeliveryStatus::Failed => ("failed", None),
        };
        if let Some(m) = &self.metrics {
            for a in &attempts {
                m.counter(
                    "pollwatch_notification_attempts_total",
                    "Notification attempts by channel and result (accepted, retryable, permanent, deferred).",
                    &[("channel", &a.channel), ("result", &a.result)],
                )
                .inc();
            }
        }
        if state == "failed" {
            tracing::error!(
                outbox_id,
                "notification failed on every channel of its route"
            );
        }
        self.store
            .finish_outbox(outbox_id, state, channel, &attempts, self.clock.now())
            .await?;
        Ok(())
    }

    /// Sends every pending notification, then any digest that is due. Returns how
    /// many outbox rows it settled.
    pub async fn run_once(&self) -> Result<usize, AlertError> {
        let mut settled = 0;
        for row in self.store.outbox(Some("pending"), None, 200).await? {
            let Some(alert) = self.store.alert(row.alert_id).await? else {
                continue;
            };
            // The opening message goes out even if the alert was resolved
            // meanwhile; escalations only while it is open.
            if alert.state != AlertState::Open && row.step != alert.step_key("L0R0") {
                continue;
            }
            let facts = match parse_facts(&alert) {
                Ok(f) => f,
                // One unreadable alert must not hold up every row behind it.
                Err(e) => {
                    tracing::error!(alert = alert.id, outbox_id = row.id, error = %e, "notification cannot be rendered; marked failed");
                    self.finish(row.id, &Self::not_sent()).await?;
                    settled += 1;
                    continue;
                }
            };
            let now = self.clock.now();
            // Planned as if unacknowledged: a queued step is still delivered
            // (acknowledging cancels what is queued, so none waits for such an alert).
            let summary = super::summary(alert.id, &facts, alert.cycle_start());
            let plan = self.notifier.plan(&summary, now);
            if let Err(e) = &plan {
                tracing::error!(alert = alert.id, outbox_id = row.id, error = %e, "queued notification has no route any more (duty.toml changed)");
            }
            let Some(delivery) = plan
                .iter()
                .flat_map(|p| &p.deliveries)
                .find(|d| alert.step_key(&d.step.key()) == row.step)
            else {
                // The route or policy changed under a queued step: say so on record.
                self.finish(row.id, &Self::not_sent()).await?;
                settled += 1;
                continue;
            };
            let mut msg = self.notifier.message(&facts);
            msg.refs = vec![row.id.to_string()];
            if let Some(cfg) = self.notifier.evidence_config(delivery) {
                msg.attachments
                    .extend(chart_attachment(&self.store, cfg, alert.id, now).await);
            }
            let report = self.notifier.deliver(delivery, &msg).await;
            self.finish(row.id, &report).await?;
            settled += 1;
        }
        if self
            .notifier
            .next_flush_at()
            .is_some_and(|t| t <= self.clock.now())
        {
            for digest in self.notifier.flush().await {
                let report = DeliveryReport {
                    status: digest.status.clone(),
                    attempts: digest.attempts.clone(),
                };
                for r in &digest.refs {
                    if let Ok(id) = r.parse::<i64>() {
                        self.finish(id, &report).await?;
                        settled += 1;
                    }
                }
                for (refs, rep) in &digest.rerouted {
                    for r in refs {
                        if let Ok(id) = r.parse::<i64>() {
                            self.finish(id, rep).await?;
                        }
                    }
                }
            }
        }
        Ok(settled)
    }
}

/// The alert's evidence chart for channels that carry files. A chart that cannot
/// be drawn must not hold up the alert: the message goes without it, and the log
/// says why.
async fn chart_attachment(
    store: &Store,
    cfg: &crate::config::Config,
    alert: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<crate::notify::Attachment> {
    match crate::evidence::alert_png(store, cfg, alert, now).await {
        Ok(Some(png)) => Some(crate::notify::Attachment {
            filename: format!("alert-{alert}.png"),
            content_type: "image/png".to_string(),
            data: png.into(),
        }),
        // Offline, linkage and order alerts have no single series to draw.
        Ok(None) | Err(crate::evidence::EvidenceError::NotChartable { .. }) => None,
        Err(e) => {
            tracing::warn!(alert, error = %e, "notification sent without its evidence chart");
            None
        }
    }
}
