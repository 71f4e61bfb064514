//! Escalation as a pure function of (policy, opened, acknowledged, now).
//!
//! The alert's state lives in the store; this module only answers "which steps of
//! the chain are due by now, and when is the next one". Keeping it free of I/O and
//! of the clock is what lets a test walk an alert through an hour of escalation in
//! a few asserts, and lets the dispatcher recompute after a restart and get the same
//! answer. The dispatcher remembers which steps it has sent (by [`Step::key`]) and
//! sends the due ones it has not.
//!
//! Timing: level `i` is due at `opened + after_i`. After the last level, with
//! `repeat_every`, the last level is reminded at `opened + after_last + k ×
//! repeat_every` for k = 1..=max_repeats. An acknowledgement stops everything not
//! yet due at the time of acknowledgement. With `ack_timeout`, an acknowledged alert
//! nobody resolved by `acked + ack_timeout` is [`Escalation::AckExpired`]: the
//! lifecycle re-opens it and starts the chain again from that instant (passing the
//! re-open time as `opened_at`; step keys then repeat, so the dispatcher should
//! qualify them with the cycle, e.g. the re-open time).

use chrono::{DateTime, Duration, Utc};

use crate::config::{EscalationLevel, EscalationPolicy};

/// One notification of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Index into the policy's levels.
    pub level: usize,
    /// 0 for the level's first notification, k for its k-th reminder.
    pub round: u32,
    pub due_at: DateTime<Utc>,
}

impl Step {
    /// Stable across recomputation: what the dispatcher stores as "sent".
    pub fn key(&self) -> String {
        format!("L{}R{}", self.level, self.round)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Escalation {
    /// Not acknowledged: every step due by now (oldest first), and when the next
    /// falls due (`None`: the chain is exhausted).
    Active {
        due: Vec<Step>,
        next_at: Option<DateTime<Utc>>,
    },
    /// Acknowledged: escalation has stopped. With an ack timeout, the alert
    /// re-opens at `reopen_at` unless resolved first.
    Acknowledged { reopen_at: Option<DateTime<Utc>> },
    /// Acknowledged, then left unresolved past the ack timeout: re-open at `since`.
    AckExpired { since: DateTime<Utc> },
}

/// The policy used when a route names none: tell the officer on duty, once.
pub fn on_duty_only() -> EscalationPolicy {
    EscalationPolicy {
        id: "on-duty".into(),
        levels: vec![EscalationLevel {
            after: crate::config::HumanDuration(std::time::Duration::ZERO),
            on_duty: true,
            officers: Vec::new(),
            teams: Vec::new(),
        }],
        ack_timeout: None,
        repeat_every: None,
        max_repeats: 0,
    }
}

fn dur(d: crate::config::HumanDuration) -> Duration {
    Duration::from_std(d.0).unwrap_or(Duration::MAX)
}

/// Every step of the chain, in time order.
pub fn schedule(policy: &EscalationPolicy, opened_at: DateTime<Utc>) -> Vec<Step> {
    let mut steps: Vec<Step> = policy
        .levels
        .iter()
        .enumerate()
        .map(|(level, l)| Step {
            level,
            round: 0,
            due_at: opened_at
                .checked_add_signed(dur(l.after))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        })
        .collect();
    if let (Some(every), Some(last)) = (policy.repeat_every, steps.last().copied()) {
        let every = dur(every);
        for round in 1..=policy.max_repeats {
            let Some(due_at) = every
                .checked_mul(round as i32)
                .and_then(|d| last.due_at.checked_add_signed(d))
            else {
                break;
            };
            steps.push(Step {
                level: last.level,
                round,
                due_at,
            });
        }
    }
    steps.sort_by_key(|s| s.due_at);
    steps
}

pub fn evaluate(
    policy: &EscalationPolicy,
    opened_at: DateTime<Utc>,
    acked_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Escalation {
    // An acknowledgement stamped in the future (clock skew between hosts) is not
    // yet in force.
    if let Some(acked) = acked_at.filter(|a| *a <= now) {
        let reopen_at = policy
            .ack_timeout
            .and_then(|t| acked.checked_add_signed(dur(t)));
        return match reopen_at {
            Some(at) if at <= now => Escalation::AckExpired { since: at },
            _ => Escalation::Acknowledged { reopen_at },
        };
    }
    let steps = schedule(policy, opened_at);
    let due = steps.iter().filter(|s| s.due_at <= now).copied().collect();
    let next_at = steps.iter().find(|s| s.due_at > now).map(|s| s.due_at);
    Escalation::Active { due, next_at }
}
