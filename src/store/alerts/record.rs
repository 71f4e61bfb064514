//! Findings onto alerts, in batches; escalation steps queued set-based.
//!
//! A burst of findings (loggers catching up after an outage, a plant tripping
//! every limit at once) is recorded in one transaction per batch, not one per
//! finding: on SQLite with `synchronous = FULL` each commit is an fsync, and a
//! thousand of them would keep the board a thousand fsyncs behind.
//!
//! **Inhibition.** A `missing_data` finding for an hour inside an outage says
//! nothing the location's `offline` alert has not said already. While that alert
//! is live, such findings are recorded on its timeline (`inhibited`) and linked
//! to it, and open no alert of their own and notify nobody — as Alertmanager's
//! inhibit rules silence a target alert while a source alert fires. The outage
//! starts at the offline alert's last data (`window_start` of its facts); hours
//! before it are not inhibited. When data comes back the hourly findings stop,
//! the offline alert resolves after `hold`, and the inhibition ends with it.

use chrono::{DateTime, Duration, Utc};

use super::chain::Window;
use super::{NewAlert, Recorded};
use crate::store::tx::WriteTx;
use crate::store::{to_ms, Store, StoreError};

/// One finding to record.
#[derive(Debug, Clone)]
pub struct FindingOnAlert {
    pub alert: NewAlert,
    pub finding_id: Option<i64>,
    /// The finding as the timeline keeps it (JSON).
    pub evidence: String,
    /// The finding's window start, for inhibition.
    pub window_start: DateTime<Utc>,
    /// The finding's window end: the readings from start to end (inclusive) are
    /// digested into the timeline row.
    pub window_end: DateTime<Utc>,
    /// Steps queued if the finding opens a new alert.
    pub first_steps: Vec<String>,
    /// A live alert of this rule at the same location absorbs the finding.
    pub inhibited_by: Option<&'static str>,
}

/// How findings become alerts.
#[derive(Debug, Clone, Copy)]
pub struct AlertPolicy {
    pub flap_window: Duration,
    pub flap_limit: u32,
    /// Severity order, higher is worse.
    pub rank_of: fn(&str) -> u8,
}

/// The outage's start as the inhibiting alert's facts give it.
fn outage_start(facts: &str) -> Option<DateTime<Utc>> {
    let v: serde_json::Value = serde_json::from_str(facts).ok()?;
    v.get("window_start")?.as_str()?.parse().ok()
}

impl Store {
    /// Records findings on their alerts in one transaction: each updates the
    /// live alert of its key, or opens a new one with its first notifications
    /// queued — unless the key is flapping (`flap_limit` alerts opened within
    /// `flap_window`), when the alert opens without notifications and says so in
    /// its timeline — or is absorbed by an inhibiting alert.
    pub async fn record_findings(
        &self,
        items: &[FindingOnAlert],
        policy: &AlertPolicy,
        now: DateTime<Utc>,
    ) -> Result<Vec<Recorded>, StoreError> {
        on_pool!(self, |pool, Db| {
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                let a = &it.alert;
                let window = Window {
                    enterprise: a.enterprise.clone(),
                    location: a.location.clone(),
                    factor: a.factor.clone(),
                    from: it.window_start,
                    to: it.window_end.max(it.window_start),
                };
                let mut absorbed = None;
                if let Some(rule) = it.inhibited_by {
                    let live: Option<(i64, String)> = sqlx::query_as(
                        "SELECT id, facts FROM alerts WHERE enterprise = $1 AND location = $2 AND rule = $3 AND state <> 'resolved' ORDER BY id DESC LIMIT 1",
                    )
                    .bind(&a.enterprise)
                    .bind(&a.location)
                    .bind(rule)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::db("find inhibiting alert"))?;
                    absorbed = live
                        .filter(|(_, facts)| {
                            outage_start(facts).is_some_and(|s| it.window_start >= s)
                        })
                        .map(|(id, _)| id);
                }
                let recorded = if let Some(id) = absorbed {
                    // Keeps the absorbing alert live while the outage lasts.
                    sqlx::query("UPDATE alerts SET updated_at = $1 WHERE id = $2")
                        .bind(to_ms(now))
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::db("update alert"))?;
                    append_event!(
                        tx,
                        self,
                        id,
                        now,
                        "inhibited",
                        "pollwatch",
                        None,
                        &it.evidence,
                        Some(&window)
                    );
                    Recorded {
                        alert_id: id,
                        opened: false,
                        flapping: false,
                        inhibited: true,
                    }
                } else {
                    let live: Option<(i64, String)> = sqlx::query_as(
                        "SELECT id, severity FROM alerts WHERE akey = $1 AND state <> 'resolved' ORDER BY id DESC LIMIT 1",
                    )
                    .bind(&a.key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::db("find alert"))?;
                    match live {
                        Some((id, severity)) => {
                            let severity = if a.rank > (policy.rank_of)(&severity) {
                                a.severity.clone()
                            } else {
                                severity
                            };
                            sqlx::query("UPDATE alerts SET updated_at = $1, count = count + 1, value = $2, threshold = $3, message = $4, facts = $5, severity = $6 WHERE id = $7")
                                .bind(to_ms(now))
                                .bind(a.value)
                                .bind(a.threshold)
                                .bind(&a.message)
                                .bind(&a.facts)
                                .bind(&severity)
                                .bind(id)
                                .execute(&mut *tx)
                                .await
                                .map_err(StoreError::db("update alert"))?;
                            append_event!(
                                tx,
                                self,
                                id,
                                now,
                                "finding",
                                "pollwatch",
                                None,
                                &it.evidence,
                                Some(&window)
                            );
                            Recorded {
                                alert_id: id,
                                opened: false,
                                flapping: false,
                                inhibited: false,
                            }
                        }
                        None => {
                            let recent: i64 = sqlx::query_scalar(
                                "SELECT count(*) FROM alerts WHERE akey = $1 AND opened_at >= $2",
                            )
                            .bind(&a.key)
                            .bind(to_ms(now - policy.flap_window))
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(StoreError::db("count recent alerts"))?;
                            let flapping = recent >= i64::from(policy.flap_limit);
                            let id: i64 = sqlx::query_scalar(
                                "INSERT INTO alerts (akey, enterprise, location, factor, rule, severity, state, opened_at, updated_at, count, value, threshold, message, facts, flapping) \
                                 VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $7, 1, $8, $9, $10, $11, $12) RETURNING id",
                            )
                            .bind(&a.key)
                            .bind(&a.enterprise)
                            .bind(&a.location)
                            .bind(&a.factor)
                            .bind(&a.rule)
                            .bind(&a.severity)
                            .bind(to_ms(now))
                            .bind(a.value)
                            .bind(a.threshold)
                            .bind(&a.message)
                            .bind(&a.facts)
                            .bind(i64::from(flapping))
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(StoreError::db("open alert"))?;
                            append_event!(
                                tx,
                                self,
                                id,
                                now,
                                "opened",
                                "pollwatch",
                                None,
                                &it.evidence,
                                Some(&window)
                            );
                            if flapping {
                                let why = format!("flapping: {recent} alerts of this kind opened within {} min; notifications suppressed", policy.flap_window.num_minutes());
                                append_event!(
                                    tx,
                                    self,
                                    id,
                                    now,
                                    "flapping",
                                    "pollwatch",
                                    None,
                                    &why,
                                    None
                                );
                            } else {
                                let queued = queue_steps!(tx, id, &it.first_steps, now);
                                if !queued.is_empty() {
                                    append_event!(
                                        tx,
                                        self,
                                        id,
                                        now,
                                        "notification_queued",
                                        "pollwatch",
                                        None,
                                        &queued.join(","),
                                        None
                                    );
                                }
                            }
                            Recorded {
                                alert_id: id,
                                opened: true,
                                flapping,
                                inhibited: false,
                            }
                        }
                    }
                };
                if let Some(fid) = it.finding_id {
                    sqlx::query("INSERT INTO alert_findings (alert_id, finding_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                        .bind(recorded.alert_id)
                        .bind(fid)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::db("link finding"))?;
                }
                out.push(recorded);
            }
            tx.commit("commit alerts").await?;
            Ok(out)
        })
    }

    /// One finding; see [`record_findings`](Self::record_findings).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_finding(
        &self,
        a: &NewAlert,
        finding_id: Option<i64>,
        evidence: &str,
        now: DateTime<Utc>,
        flap_window: Duration,
        flap_limit: u32,
        first_steps: &[String],
        rank_of: fn(&str) -> u8,
    ) -> Result<Recorded, StoreError> {
        let item = FindingOnAlert {
            alert: a.clone(),
            finding_id,
            evidence: evidence.to_string(),
            window_start: now,
            window_end: now,
            first_steps: first_steps.to_vec(),
            inhibited_by: None,
        };
        let policy = AlertPolicy {
            flap_window,
            flap_limit,
            rank_of,
        };
        let mut r = self.record_findings(&[item], &policy, now).await?;
        r.pop()
            .ok_or_else(|| StoreError::Corrupt("recording a finding returned nothing".into()))
    }

    /// Queues the escalation steps that are due, set-based: one read of what
    /// open alerts already have queued, and a write transaction only when some
    /// step is new (with the timeline row saying so). A tick over 10,000 open
    /// alerts with nothing due writes nothing. Returns the new steps per alert.
    pub async fn queue_escalations(
        &self,
        due: &[(i64, Vec<String>)],
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, Vec<String>)>, StoreError> {
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let known: std::collections::HashSet<(i64, String)> = on_pool!(self, |pool, _Db| {
            sqlx::query_as::<_, (i64, String)>(
                "SELECT o.alert_id, o.step FROM outbox o JOIN alerts a ON a.id = o.alert_id WHERE a.state = 'open'",
            )
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("read queued steps"))?
            .into_iter()
            .collect()
        });
        let fresh: Vec<(i64, Vec<String>)> = due
            .iter()
            .map(|(id, steps)| {
                let new: Vec<String> = steps
                    .iter()
                    .filter(|s| !known.contains(&(*id, (*s).clone())))
                    .cloned()
                    .collect();
                (*id, new)
            })
            .filter(|(_, s)| !s.is_empty())
            .collect();
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        on_pool!(self, |pool, Db| {
            let mut tx = WriteTx::<Db>::begin(pool).await?;
            let mut out = Vec::new();
            for (alert_id, steps) in &fresh {
                let state: Option<String> =
                    sqlx::query_scalar("SELECT state FROM alerts WHERE id = $1")
                        .bind(alert_id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(StoreError::db("read alert"))?;
                if state.as_deref() != Some("open") {
                    continue;
                }
                let queued = queue_steps!(tx, *alert_id, steps, now);
                if !queued.is_empty() {
                    append_event!(
                        tx,
                        self,
                        *alert_id,
                        now,
                        "escalated",
                        "pollwatch",
                        None,
                        &queued.join(","),
                        None
                    );
                    out.push((*alert_id, queued));
                }
            }
            tx.commit("commit escalation").await?;
            Ok(out)
        })
    }
}
