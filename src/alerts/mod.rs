//! From findings to alerts, and from alerts to the officer on duty.
//!
//! A finding opens an alert keyed by (enterprise, outlet or meter, factor, rule), or
//! updates the live one of its key: count, last value, and a severity that may only
//! rise. An alert resolves by itself once no finding has come for `hold`, or when an
//! officer resolves it; a finding after that opens a new alert. Keys that keep
//! opening and resolving (`flap_limit` within `flap_window`) open without
//! notifications, and their timeline says why.
//!
//! Everything that happens to an alert is a row in its timeline, hash-chained, and
//! written in the same transaction as the change and the notifications it queues
//! (the outbox, invariant 3). [`Dispatcher`] sends from the outbox; escalation is
//! [`AlertEngine::tick`] queuing the next steps of the route's policy while nobody
//! has acknowledged.

mod dispatch;
mod facts;
mod task;

pub use dispatch::{DispatchTask, Dispatcher, Gate, DEFAULT_CONCURRENCY};
pub use facts::facts_for;
pub use task::{AlertsSetup, AlertsTask, LeaderHooks};

use std::sync::Arc;

use chrono::Duration;

use crate::clock::Clock;
use crate::config::Config;
use crate::notify::escalation::Escalation;
use crate::notify::{AlertFacts, AlertSummary, Notifier, NotifyError};
use crate::rules::RuleName;
use crate::store::{
    AlertPolicy, AlertRow, AlertState, FindingOnAlert, NewAlert, Recorded, Store, StoreError,
    StoredFinding,
};

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error("alert {0} has unreadable facts: {1}")]
    Facts(i64, String),
}

/// Higher is worse; [`Severity`] lists the most urgent first.
pub fn rank(severity: &str) -> u8 {
    match severity {
        "critical" => 4,
        "major" => 3,
        "minor" => 2,
        "warning" => 1,
        _ => 0,
    }
}

pub struct AlertEngine {
    store: Store,
    notifier: Arc<Notifier>,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    metrics: Option<crate::api::metrics::Metrics>,
}

/// What a tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub resolved: Vec<i64>,
    /// Acknowledged alerts re-opened by their policy's ack timeout.
    pub reopened: Vec<i64>,
    pub escalated: Vec<(i64, Vec<String>)>,
}

impl AlertEngine {
    pub fn new(
        store: Store,
        notifier: Arc<Notifier>,
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
    ) -> AlertEngine {
        AlertEngine {
            store,
            notifier,
            config,
            clock,
            metrics: None,
        }
    }

    /// A reload's config and the notifier built from it.
    pub fn reconfigure(&mut self, config: Arc<Config>, notifier: Arc<Notifier>) {
        self.config = config;
        self.notifier = notifier;
    }

    /// Counts findings by rule and alerts opened by rule and severity.
    pub fn with_metrics(mut self, metrics: crate::api::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The store alerts live in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Records one stored finding on its alert.
    pub async fn on_finding(&self, f: &StoredFinding) -> Result<Recorded, AlertError> {
        let mut r = self.on_findings(std::slice::from_ref(f)).await?;
        r.pop()
            .ok_or_else(|| AlertError::Facts(0, "no alert recorded for the finding".into()))
    }

    /// Records stored findings on their alerts in one transaction.
    pub async fn on_findings(&self, batch: &[StoredFinding]) -> Result<Vec<Recorded>, AlertError> {
        let now = self.clock.now();
        let items = batch
            .iter()
            .map(|f| self.prepare(f, now))
            .collect::<Result<Vec<_>, _>>()?;
        let a = &self.config.daemon.alerts;
        let w = |d: crate::config::HumanDuration| Duration::from_std(d.0).unwrap_or(Duration::MAX);
        let policy = AlertPolicy {
            flap_window: w(a.flap_window),
            flap_limit: a.flap_limit,
            rank_of: rank,
        };
        let recorded = self.store.record_findings(&items, &policy, now).await?;
        for (it, rec) in items.iter().zip(&recorded) {
            self.count(&it.alert, rec);
        }
        Ok(recorded)
    }

    /// Records a batch as the daemon does: in chunks, each one transaction; a
    /// chunk that fails is retried finding by finding, a busy database with
    /// back-off. What still fails is logged and caught up from the findings
    /// table at the next start ([`catch_up`](Self::catch_up)); one bad finding
    /// never holds up the others.
    pub async fn on_findings_retrying(&self, batch: &[StoredFinding]) {
        for chunk in batch.chunks(200) {
            match self.on_findings(chunk).await {
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(findings = chunk.len(), error = %e, "recording a batch of findings failed; one by one")
                }
            }
            for f in chunk {
                let mut delay = std::time::Duration::from_millis(50);
                for attempt in 1..=6 {
                    match self.on_finding(f).await {
                        Ok(_) => break,
                        Err(e) if attempt < 6 => {
                            tracing::warn!(finding = f.id, attempt, error = %e, "recording a finding failed; retrying");
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                        Err(e) => {
                            tracing::error!(finding = f.id, error = %e, "finding not recorded as an alert; it is caught up at the next start")
                        }
                    }
                }
            }
        }
    }

    /// What a finding contributes to its alert, and who is told first.
    fn prepare(
        &self,
        f: &StoredFinding,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<FindingOnAlert, AlertError> {
        let a = &self.config.daemon.alerts;
        let positive = self
            .config
            .enterprise(&f.finding.enterprise)
            .is_some_and(|e| e.positive_list);
        let mut severity = a.severity_of(f.finding.rule.as_str(), positive);
        // A finding that is itself the breach of a rule that otherwise only warns
        // (the furnace's sixth low mean of a day) is at least major, unless
        // [alerts.severity] sets that rule's severity explicitly.
        if f.finding.severity == crate::rules::Severity::Violation
            && !a.severity.contains_key(f.finding.rule.as_str())
        {
            severity = severity.min(crate::config::Severity::Major);
        }
        let facts = facts_for(&self.config, &f.finding, severity);
        let new = NewAlert {
            key: format!(
                "{}|{}|{}|{}",
                f.finding.enterprise,
                f.finding.location_text(),
                f.finding.factor,
                f.finding.rule.as_str()
            ),
            enterprise: f.finding.enterprise.to_string(),
            location: f.finding.location_text(),
            factor: f.finding.factor.to_string(),
            rule: f.finding.rule.as_str().to_string(),
            severity: severity.as_str().to_string(),
            rank: rank(severity.as_str()),
            value: f.finding.value,
            threshold: f.finding.threshold,
            message: f.finding.message.clone(),
            facts: serde_json::to_string(&facts)
                .map_err(|e| AlertError::Facts(0, e.to_string()))?,
        };
        // The first steps are those due at opening (normally the on-duty officer).
        // An alert no route matches is still recorded — it is on the board and in
        // the evidence — and the gap in duty.toml is reported loudly.
        let first_steps: Vec<String> = match self.notifier.plan(&summary(0, &facts, now), now) {
            Ok(plan) => plan.deliveries.iter().map(|d| d.step.key()).collect(),
            Err(e) => {
                tracing::error!(enterprise = %f.finding.enterprise, district = %facts.district, rule = f.finding.rule.as_str(), error = %e, "alert recorded but NOBODY IS NOTIFIED; add a route for it to duty.toml (a route without a match catches all)");
                if let Some(m) = &self.metrics {
                    m.counter(
                        "pollwatch_alerts_unrouted_total",
                        "Alert findings no duty route matched (nobody notified).",
                        &[],
                    )
                    .inc();
                }
                Vec::new()
            }
        };
        let evidence = serde_json::json!({
            "finding_id": f.id,
            "rule": f.finding.rule.as_str(),
            "factor": f.finding.factor,
            "window_start": f.finding.window_start,
            "window_end": f.finding.window_end,
            "value": f.finding.value,
            "threshold": f.finding.threshold,
            "message": f.finding.message,
            "evidence": f.finding.evidence,
            // Values from a logger's backlog (HJ 212-2025 RF=1): the timeline says
            // the finding was made on resent data, which arrived late.
            "resend": f.finding.evidence.values.iter().any(|v| v.resend),
        })
        .to_string();
        Ok(FindingOnAlert {
            alert: new,
            finding_id: Some(f.id),
            evidence,
            window_start: f.finding.window_start,
            window_end: f.finding.window_end,
            first_steps,
            // Hours missing inside an outage belong to the offline alert.
            inhibited_by: (f.finding.rule == RuleName::MissingData)
                .then_some(RuleName::Offline.as_str()),
        })
    }

    fn count(&self, new: &NewAlert, rec: &Recorded) {
        if let Some(m) = &self.metrics {
            m.counter(
                "pollwatch_findings_total",
                "Findings of the rules engine recorded on alerts, by rule.",
                &[("rule", &new.rule)],
            )
            .inc();
            if rec.inhibited {
                m.counter(
                    "pollwatch_findings_inhibited_total",
                    "Findings absorbed by an inhibiting alert (missing data while offline), by rule.",
                    &[("rule", &new.rule)],
                )
                .inc();
            }
            if rec.opened {
                m.counter(
                    "pollwatch_alerts_opened_total",
                    "Alerts opened, by rule and severity.",
                    &[("rule", &new.rule), ("severity", &new.severity)],
                )
                .inc();
            }
        }
        if rec.opened {
            tracing::info!(alert = rec.alert_id, enterprise = %new.enterprise, location = %new.location, factor = %new.factor, rule = %new.rule, flapping = rec.flapping, "alert opened");
        }
    }

    /// Findings stored but on no alert (the process stopped between the two, or
    /// recording one failed while later ones succeeded): recorded now, oldest
    /// first. One that fails again is logged and left for the next start; it
    /// does not hold up the others. Returns how many were recorded.
    pub async fn catch_up(&self) -> Result<usize, AlertError> {
        let mut missed = self
            .store
            .findings(&crate::store::FindingQuery {
                unalerted: true,
                limit: 100_000,
                ..Default::default()
            })
            .await?;
        missed.sort_by_key(|f| f.id);
        let mut recorded = 0;
        for f in &missed {
            match self.on_finding(f).await {
                Ok(_) => recorded += 1,
                Err(e) => {
                    tracing::error!(finding = f.id, error = %e, "finding still not recorded on an alert; tried again at the next start")
                }
            }
        }
        Ok(recorded)
    }

    /// Time-driven work: alerts clear for `hold` resolve; open alerts escalate.
    pub async fn tick(&self) -> Result<TickReport, AlertError> {
        let now = self.clock.now();
        let hold = Duration::from_std(self.config.daemon.alerts.hold.0).unwrap_or(Duration::MAX);
        let mut report = TickReport::default();
        for id in self.store.stale_alerts(now - hold).await? {
            let note = format!("no new finding for {}", self.config.daemon.alerts.hold);
            if self
                .store
                .transition_alert(id, AlertState::Resolved, "pollwatch", &note, now)
                .await?
                .is_some()
            {
                report.resolved.push(id);
            }
        }
        // Acknowledged, but nobody resolved it within the policy's ack timeout:
        // open again, and escalation starts over from that instant.
        let acked = self
            .store
            .alerts(&crate::store::AlertQuery {
                state: Some(AlertState::Acknowledged),
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        for alert in &acked {
            let Some(facts) = readable(alert) else {
                continue;
            };
            let plan = match self.notifier.plan(&summary_of(alert, &facts), now) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(alert = alert.id, error = %e, "cannot evaluate the alert's escalation");
                    continue;
                }
            };
            if let Escalation::AckExpired { since } = plan.escalation {
                if self
                    .store
                    .reopen_alert(alert.id, since, now)
                    .await?
                    .is_some()
                {
                    tracing::warn!(alert = alert.id, acked_by = ?alert.acked_by, "acknowledged alert not resolved in time; re-opened");
                    report.reopened.push(alert.id);
                }
            }
        }
        let open = self
            .store
            .alerts(&crate::store::AlertQuery {
                state: Some(AlertState::Open),
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        let mut due = Vec::new();
        for alert in open.iter().filter(|a| !a.flapping) {
            let Some(facts) = readable(alert) else {
                continue;
            };
            // One alert without a route must not stop the others' escalation.
            let plan = match self.notifier.plan(&summary_of(alert, &facts), now) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(alert = alert.id, error = %e, "cannot plan the alert's escalation");
                    continue;
                }
            };
            let steps: Vec<String> = plan
                .deliveries
                .iter()
                .map(|d| alert.step_key(&d.step.key()))
                .collect();
            if !steps.is_empty() {
                due.push((alert.id, steps));
            }
        }
        report.escalated = self.store.queue_escalations(&due, now).await?;
        Ok(report)
    }

    pub async fn acknowledge(
        &self,
        id: i64,
        by: &str,
        note: &str,
    ) -> Result<Option<AlertRow>, AlertError> {
        self.transition(id, AlertState::Acknowledged, by, note)
            .await
    }

    pub async fn resolve(
        &self,
        id: i64,
        by: &str,
        note: &str,
    ) -> Result<Option<AlertRow>, AlertError> {
        self.transition(id, AlertState::Resolved, by, note).await
    }

    async fn transition(
        &self,
        id: i64,
        to: AlertState,
        by: &str,
        note: &str,
    ) -> Result<Option<AlertRow>, AlertError> {
        let now = self.clock.now();
        Ok(self.store.transition_alert(id, to, by, note, now).await?)
    }
}

/// What the notifier routes and escalates by, for an alert not stored yet.
pub(crate) fn summary(
    alert_id: i64,
    facts: &AlertFacts,
    opened_at: chrono::DateTime<chrono::Utc>,
) -> AlertSummary {
    AlertSummary {
        alert_id: alert_id.to_string(),
        district: facts.district.clone(),
        industry: facts.industry.clone(),
        rule: facts.rule.clone(),
        severity: facts.severity,
        opened_at,
        acked_at: None,
    }
}

/// The same for a stored alert: escalation runs from its current cycle, and an
/// acknowledged one is judged against its policy's ack timeout.
pub(crate) fn summary_of(alert: &AlertRow, facts: &AlertFacts) -> AlertSummary {
    AlertSummary {
        acked_at: alert.acked_at,
        ..summary(alert.id, facts, alert.cycle_start())
    }
}

/// The alert's facts, or `None` with the reason logged: one unreadable alert
/// must not stop the others' escalation.
fn readable(alert: &AlertRow) -> Option<AlertFacts> {
    parse_facts(alert)
        .map_err(
            |e| tracing::error!(alert = alert.id, error = %e, "alert facts unreadable; skipped"),
        )
        .ok()
}

pub fn parse_facts(alert: &AlertRow) -> Result<AlertFacts, AlertError> {
    let mut facts: AlertFacts = serde_json::from_str(&alert.facts)
        .map_err(|e| AlertError::Facts(alert.id, e.to_string()))?;
    facts.alert_id = alert.id.to_string();
    facts.link = facts.link.map(|base| format!("{base}/alerts/{}", alert.id));
    Ok(facts)
}
