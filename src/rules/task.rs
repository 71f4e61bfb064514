//! The evaluation task: the daemon's bridge between the store writer and the
//! evaluator.
//!
//! It rebuilds the evaluator from the store, then judges each commit offered by the
//! writer's tap and ticks every few seconds on the daemon's clock. Findings go to
//! the `findings` table — whose natural key turns a replayed finding into a no-op —
//! and those that are new are handed on (the alerts engine, when it lands).
//!
//! When the tap's numbers show a gap (the writer dropped batches because this task
//! was behind) the task logs it and rebuilds from the store, which holds every
//! committed reading: evaluation may run late, but it never judges on partial data.
//!
//! Values for a period already closed come back from the evaluator as
//! [`Reopened`](super::Reopened) periods; the task merges them per outlet and day
//! and, once no late value for that day came for `rejudge_quiet` and no committed
//! readings wait, judges the day again from the store ([`super::rejudge`]):
//! findings are revised or superseded in place, new ones handed on.
//!
//! A new plan (a config reload, an order issued over the API) arrives on a watch
//! channel. Enterprises whose plan did not change keep their state; the others are
//! replayed from the store alone. Commits still queued on the tap were read by the
//! replay too and are judged again; the windows keep one value per series and
//! instant, so they count once (`readings_judged_twice_count_once` in
//! tests/rules_store.rs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Sleeps until `t` (forever when `None`; the branch is disabled then).
async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
use tokio::task::JoinHandle;

use super::eval::{Evaluator, Options, Output};
use super::plan::Plan;
use super::rebuild::{rebuild, replay};
use super::rejudge::{self, Job};
use crate::clock::Clock;
use crate::store::{Committed, Store, StoredFinding};

#[derive(Debug, Clone)]
pub struct TaskOptions {
    pub eval: Options,
    /// How often time-driven rules (offline, windows closing) run.
    pub tick: Duration,
    /// Attempts to store a set of findings before giving up on it (they come back
    /// on the next rebuild if their data is still in the replay window).
    pub store_attempts: u32,
    /// A day that late values came for is judged again once none came for it
    /// this long: a burst of backfill is judged once, not once per value.
    pub rejudge_quiet: Duration,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            eval: Options::default(),
            tick: Duration::from_secs(10),
            store_attempts: 8,
            rejudge_quiet: Duration::from_secs(2),
        }
    }
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct TaskStats {
    pub readings: AtomicU64,
    pub findings_new: AtomicU64,
    pub findings_repeated: AtomicU64,
    pub rebuilds: AtomicU64,
    /// Plan swaps (reloads, runtime orders) applied.
    pub replans: AtomicU64,
    /// Enterprises replayed from the store because a plan swap changed them.
    pub replayed: AtomicU64,
    /// Ticks put off because committed readings were still waiting to be judged.
    pub ticks_deferred: AtomicU64,
    pub gaps: AtomicU64,
    pub store_failures: AtomicU64,
    /// Values for periods already closed.
    pub late: AtomicU64,
    /// Outlet-days judged again after late data.
    pub rejudged: AtomicU64,
    pub revised: AtomicU64,
    pub superseded: AtomicU64,
}

/// Days waiting to be judged again, by (enterprise, outlet, day), with when the
/// last late value for each came.
type PendingJobs = std::collections::BTreeMap<
    (
        crate::model::Id,
        crate::model::Id,
        chrono::DateTime<chrono::Utc>,
    ),
    (Job, tokio::time::Instant),
>;

pub struct RulesTask {
    handle: JoinHandle<()>,
    pub stats: Arc<TaskStats>,
}

impl RulesTask {
    /// Starts the task. It ends when the tap closes (the writer has finished).
    /// `plans` carries the plan in force; a new value is applied as it comes.
    pub fn spawn(
        store: Store,
        plans: watch::Receiver<Arc<Plan>>,
        opts: TaskOptions,
        clock: Arc<dyn Clock>,
        tap: mpsc::Receiver<Committed>,
        forward: Option<mpsc::Sender<Vec<StoredFinding>>>,
    ) -> RulesTask {
        let stats = Arc::new(TaskStats::default());
        let run = Run {
            store,
            opts,
            clock,
            forward,
            stats: stats.clone(),
        };
        RulesTask {
            handle: tokio::spawn(run.run(tap, plans)),
            stats,
        }
    }

    /// Waits for the task to judge what the tap delivered and store its findings.
    pub async fn join(self, grace: Duration) {
        let mut handle = self.handle;
        if tokio::time::timeout(grace, &mut handle).await.is_err() {
            tracing::error!("rules engine did not finish in time; aborting it");
            handle.abort();
        }
    }
}

struct Run {
    store: Store,
    opts: TaskOptions,
    clock: Arc<dyn Clock>,
    forward: Option<mpsc::Sender<Vec<StoredFinding>>>,
    stats: Arc<TaskStats>,
}

impl Run {
    async fn run(self, mut tap: mpsc::Receiver<Committed>, mut plans: watch::Receiver<Arc<Plan>>) {
        // The plan in force, kept so a gap's rebuild need not copy the evaluator's.
        let mut plan = plans.borrow_and_update().clone();
        let Some(mut ev) = self.rebuild(&mut tap, &plan).await else {
            return;
        };
        let mut plans_open = true;
        // The writer numbers from 1: batches dropped before the first one arrives
        // show as a gap too.
        let mut next_seq: Option<u64> = Some(1);
        let mut ticker = tokio::time::interval(self.opts.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut out = Output::default();
        let mut pending = PendingJobs::new();
        loop {
            let next_job = pending
                .values()
                .map(|(_, t)| *t + self.opts.rejudge_quiet)
                .min();
            tokio::select! {
                msg = tap.recv() => {
                    let Some(c) = msg else { break };
                    if next_seq.is_some_and(|n| c.seq != n) {
                        self.stats.gaps.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            expected = next_seq,
                            got = c.seq,
                            "rules engine missed committed readings; rebuilding from the store"
                        );
                        match self.rebuild(&mut tap, &plan).await {
                            Some(fresh) => ev = fresh,
                            None => return,
                        }
                    } else {
                        self.stats.readings.fetch_add(c.readings.len() as u64, Ordering::Relaxed);
                        ev.ingest(&c.readings, &mut out);
                    }
                    next_seq = Some(c.seq + 1);
                }
                changed = plans.changed(), if plans_open => {
                    if changed.is_err() {
                        plans_open = false;
                        continue;
                    }
                    plan = plans.borrow_and_update().clone();
                    if let Err(e) = self.replan(&mut ev, &plan, &mut out).await {
                        tracing::error!(error = %e, "replaying changed enterprises failed; rebuilding everything");
                        match self.rebuild(&mut tap, &plan).await {
                            Some(fresh) => ev = fresh,
                            None => return,
                        }
                    }
                }
                // Time moves on only once everything committed so far is judged:
                // a tick while commits wait on the tap could close an hour before
                // its last values are counted (they would then be "late"). Behind
                // a backlog, ticks wait until it is drained.
                _ = ticker.tick() => {
                    if tap.is_empty() {
                        ev.tick(self.clock.now(), &mut out);
                    } else {
                        self.stats.ticks_deferred.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Late data is judged only while nothing committed waits: real
                // time first. One day of one outlet per round.
                _ = sleep_until(next_job), if next_job.is_some() && tap.is_empty() => {
                    let now = tokio::time::Instant::now();
                    let ready = pending
                        .iter()
                        .find(|(_, (_, t))| *t + self.opts.rejudge_quiet <= now)
                        .map(|(k, _)| k.clone());
                    if let Some((job, _)) = ready.and_then(|k| pending.remove(&k)) {
                        self.rejudge(&mut ev, &plan, &job).await;
                    }
                }
            }
            self.take_reopened(&mut out, &mut pending);
            if !out.is_empty() {
                self.persist(std::mem::take(&mut out)).await;
            }
        }
        // The writer has finished: everything it committed was offered; close the
        // windows that the clock says are over, and judge what came late.
        ev.tick(self.clock.now(), &mut out);
        self.take_reopened(&mut out, &mut pending);
        self.persist(out).await;
        for (job, _) in std::mem::take(&mut pending).into_values() {
            self.rejudge(&mut ev, &plan, &job).await;
        }
        tracing::debug!(
            ingested = ev.ingested,
            late = ev.late,
            unknown = ev.unknown,
            "rules engine stopped"
        );
    }

    /// Merges the periods late values reopened into the jobs waiting.
    fn take_reopened(&self, out: &mut Output, pending: &mut PendingJobs) {
        if out.reopened.is_empty() {
            return;
        }
        let now = tokio::time::Instant::now();
        self.stats
            .late
            .fetch_add(out.reopened.len() as u64, Ordering::Relaxed);
        for r in out.reopened.drain(..) {
            let key = (r.enterprise.clone(), r.outlet.clone(), r.day);
            match pending.get_mut(&key) {
                Some((job, t)) => {
                    job.add(&r);
                    *t = now;
                }
                None => {
                    pending.insert(key, (Job::new(&r), now));
                }
            }
        }
    }

    /// Judges one outlet-day again from the store and revises what is stored.
    async fn rejudge(&self, ev: &mut Evaluator, plan: &Plan, job: &Job) {
        let started = std::time::Instant::now();
        let (from, to) = job.span(plan, &self.opts.eval);
        let readings = match self
            .retry("late readings", || {
                self.store
                    .outlet_readings(&job.enterprise, &job.outlet, from, to)
            })
            .await
        {
            Some(r) => r,
            None => {
                tracing::error!(enterprise = %job.enterprise, outlet = %job.outlet, day = %job.day, "reading a reopened day failed; its late data stays unjudged until it is sent again");
                return;
            }
        };
        let v = rejudge::rejudge(plan, &self.opts.eval, job, &readings);
        self.stats.rejudged.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now();
        let mut added = Vec::with_capacity(v.findings.len() + v.extra.len());
        added.extend(v.findings.iter().cloned());
        added.extend(v.extra);
        // The reopened hours' emission replaces what the live run counted for
        // them, in the year-to-date totals too (which may cross a tier).
        let mut caps = Output::default();
        ev.record_emissions(&v.emissions, &mut caps);
        added.extend(caps.findings);
        // New verdicts are stored (and handed on) first; the stored ones that
        // now say something else are revised after.
        self.persist(Output {
            findings: added,
            emissions: v.emissions,
            reopened: Vec::new(),
        })
        .await;
        match self
            .retry("revisions", || {
                self.store.revise_findings(&v.periods, &v.findings, now)
            })
            .await
        {
            Some(r) => {
                self.stats
                    .revised
                    .fetch_add(r.revised.len() as u64, Ordering::Relaxed);
                self.stats
                    .superseded
                    .fetch_add(r.superseded.len() as u64, Ordering::Relaxed);
                tracing::info!(
                    enterprise = %job.enterprise,
                    outlet = %job.outlet,
                    day = %job.day,
                    readings = readings.len(),
                    revised = r.revised.len(),
                    superseded = r.superseded.len(),
                    resolved_alerts = r.resolved_alerts.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "late data judged"
                );
            }
            None => {
                tracing::error!(enterprise = %job.enterprise, outlet = %job.outlet, day = %job.day, "revising findings after late data failed")
            }
        }
    }

    /// Rebuilds from the store, retrying while it is unreachable. `None` when the
    /// tap closed meanwhile (shutdown).
    async fn rebuild(
        &self,
        tap: &mut mpsc::Receiver<Committed>,
        plan: &Arc<Plan>,
    ) -> Option<Evaluator> {
        let mut delay = Duration::from_millis(100);
        loop {
            let now = self.clock.now();
            let started = std::time::Instant::now();
            match rebuild(&self.store, Plan::clone(plan), self.opts.eval.clone(), now).await {
                Ok((ev, out, stats)) => {
                    self.stats.rebuilds.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        readings = stats.readings,
                        enterprises = stats.enterprises,
                        findings = out.findings.len(),
                        took_ms = started.elapsed().as_millis() as u64,
                        "rules engine state rebuilt from the store"
                    );
                    self.persist(out).await;
                    return Some(ev);
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "rebuilding rules state failed");
                    if tap.is_closed() && tap.is_empty() {
                        return None;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Applies a new plan, replaying only the enterprises it changed.
    async fn replan(
        &self,
        ev: &mut Evaluator,
        plan: &Arc<Plan>,
        out: &mut Output,
    ) -> Result<(), crate::store::StoreError> {
        let started = std::time::Instant::now();
        let ids = ev.replace_plan(Plan::clone(plan));
        let (found, stats) = replay(&self.store, ev, &ids, self.clock.now()).await?;
        self.stats.replans.fetch_add(1, Ordering::Relaxed);
        self.stats
            .replayed
            .fetch_add(stats.enterprises as u64, Ordering::Relaxed);
        tracing::info!(
            enterprises = plan.enterprises.len(),
            replayed = stats.enterprises,
            readings = stats.readings,
            findings = found.findings.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "rules plan swapped"
        );
        out.findings.extend(found.findings);
        out.emissions.extend(found.emissions);
        out.reopened.extend(found.reopened);
        Ok(())
    }

    /// Stores findings, hands the new ones on, then stores the emission hours.
    /// The two writes are retried apart: retrying both after the emissions
    /// failed would find the findings already stored and report none as new, so
    /// they would never reach the alerts engine.
    async fn persist(&self, out: Output) {
        if out.is_empty() {
            return;
        }
        let now = self.clock.now();
        if !out.findings.is_empty() {
            let stored = self
                .retry("findings", || {
                    self.store.insert_findings(&out.findings, now)
                })
                .await;
            match stored {
                Some(ids) => self.forward_new(&out, ids, now).await,
                None => tracing::error!(
                    findings = out.findings.len(),
                    "findings could not be stored; they are raised again at the next rebuild if their data is still replayed"
                ),
            }
        }
        if !out.emissions.is_empty()
            && self
                .retry("emission hours", || {
                    self.store.upsert_emissions(&out.emissions)
                })
                .await
                .is_none()
        {
            tracing::error!(
                emissions = out.emissions.len(),
                "emission hours could not be stored; the next rebuild computes them again"
            );
        }
    }

    /// `write` until it succeeds, at most `store_attempts` times.
    async fn retry<T, F, Fut>(&self, what: &str, mut write: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, crate::store::StoreError>>,
    {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=self.opts.store_attempts.max(1) {
            match write().await {
                Ok(v) => return Some(v),
                Err(e) => {
                    self.stats.store_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, attempt, what, "storing failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        None
    }

    async fn forward_new(
        &self,
        out: &Output,
        ids: Vec<Option<i64>>,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let new: Vec<StoredFinding> = out
            .findings
            .iter()
            .zip(ids)
            .filter_map(|(f, id)| {
                Some(StoredFinding {
                    id: id?,
                    created: now,
                    finding: f.clone(),
                })
            })
            .collect();
        let repeated = out.findings.len() - new.len();
        self.stats
            .findings_repeated
            .fetch_add(repeated as u64, Ordering::Relaxed);
        self.stats
            .findings_new
            .fetch_add(new.len() as u64, Ordering::Relaxed);
        for s in &new {
            let f = &s.finding;
            tracing::info!(
                id = s.id,
                rule = f.rule.as_str(),
                severity = f.severity.as_str(),
                enterprise = %f.enterprise,
                location = %f.location_text(),
                factor = %f.factor,
                window_start = %f.window_start,
                "{}",
                f.message
            );
        }
        if let (Some(fwd), false) = (&self.forward, new.is_empty()) {
            // The alerts engine reads the table too; a closed receiver only
            // means it is shutting down.
            let _ = fwd.send(new).await;
        }
    }
}
