//! Backfill (反控): asking a logger for the data it kept while we did not hear it.
//!
//! Two things start a plan ([`super::backfill_plan`], which says what to ask for:
//! hourly data for missing hours, minute data where the outlet judges computed
//! aggregates, daily data for daily limits):
//! - a logger connects (its first authenticated frame on a connection): the
//!   repair window (`backfill_max_age`, default 10 days) is looked over;
//! - while it is connected, an hour of its outlet closes short of its valid
//!   minutes because data never arrived, or a day closes with hours missing
//!   ([`Backfill::wanted`], called by the daemon from the rules engine's
//!   `missing_data` findings and the daily close). The plan waits until the
//!   hour's own data would have arrived (`settle`), so an hourly value sent a
//!   little after the hour is not asked for.
//!
//! The connection task sends the requests itself, one in flight per connection
//! (so per logger), each start paced server-wide (`backfill_rate` per second).
//! A period already queued or in flight is not queued again. The task never
//! waits for an answer: the 9011, the data and the 9012 arrive through the same
//! read loop as real-time uploads, which are stored and answered as usual — a
//! backfill holds nothing up. The data goes through the ordinary upload path (the
//! writer, then the rules engine's late-data judging). A request with no 9012
//! within `backfill_timeout` of its last sign of life ends `timeout` (a 9012
//! with another code, `failed`); while the logger stays connected it is asked
//! again after a backoff ([`retry_backoff`]: twice the timeout, then four
//! times, at most an hour), and by any later plan, at most `MAX_ATTEMPTS` times.
//!
//! Every request and outcome is recorded (`backfill_requests`) by one recorder
//! task, in order, through a bounded queue the connection never waits on.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use super::backfill_plan::{plan, Period, MAX_ATTEMPTS};
use super::codec::time::LocalDateTime;
use super::registry::Endpoint;
use crate::config::Config;
use crate::store::{BackfillOutcome, BackfillState, NewBackfill, Store};

/// Requests queued for recording before new ones are only logged.
const RECORD_QUEUE: usize = 4096;

/// The `[hj212]` backfill settings, resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackfillSettings {
    /// Request starts per second, server-wide.
    pub rate: u32,
    /// Hours older than this are not asked for (the repair window).
    pub max_age: Duration,
    /// No 9011/data/9012 for this long: the request ends `timeout`.
    pub answer_timeout: Duration,
    /// An hour whose data would have arrived by now if the link were up: hours
    /// ending later than `now - settle` are not asked for yet.
    pub settle: Duration,
    /// Local time of the loggers (days for daily data).
    pub tz: Tz,
}

impl BackfillSettings {
    pub fn from_config(cfg: &Config) -> Self {
        let h = &cfg.daemon.hj212;
        BackfillSettings {
            rate: h.backfill_rate.max(1),
            max_age: h.backfill_max_age.0,
            answer_timeout: h.backfill_timeout.0,
            settle: Duration::from_secs(10 * 60),
            tz: cfg.timezone,
        }
    }
}

/// Plans for one connection's session: the logger and what to ask it for.
type PlanTx = mpsc::UnboundedSender<(Arc<Endpoint>, Vec<Period>)>;
/// An outlet: (enterprise, outlet).
type OutletKey = (String, String);

/// Shared by all connections of a server.
pub struct Backfill {
    pub settings: BackfillSettings,
    store: Store,
    /// The next instant a request may start (std mutex: never held across an await).
    next_start: Mutex<Instant>,
    records: mpsc::Sender<Record>,
    /// Connected loggers that may be asked, by (enterprise, outlet).
    live: Mutex<HashMap<OutletKey, (Arc<Endpoint>, PlanTx)>>,
    /// Outlets with a plan waiting to run, and the short hours it will include.
    waiting: Mutex<HashMap<OutletKey, BTreeSet<DateTime<Utc>>>>,
}

enum Record {
    Sent(NewBackfill),
    Finished {
        mn: String,
        qn: String,
        outcome: BackfillOutcome,
    },
}

impl Backfill {
    /// Starts the recorder; it ends when the last connection has dropped its handle.
    pub fn start(store: Store, settings: BackfillSettings) -> Arc<Backfill> {
        let (tx, rx) = mpsc::channel(RECORD_QUEUE);
        tokio::spawn(record(store.clone(), rx));
        Arc::new(Backfill {
            settings,
            store,
            next_start: Mutex::new(Instant::now()),
            records: tx,
            live: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
        })
    }

    /// Data of `enterprise`'s `outlet` is missing while its logger is connected:
    /// `short` hours closed short of their valid minutes (empty: a day closed
    /// with hours missing). If the logger is connected and may be asked, a plan
    /// runs once the last of these hours has settled, as of `now` then, and its
    /// periods go to the logger's connection. Calls for an outlet whose plan is
    /// already waiting join it. Returns whether a plan is (or was) waiting.
    pub fn wanted(
        self: &Arc<Self>,
        enterprise: &str,
        outlet: &str,
        short: &[DateTime<Utc>],
        now: DateTime<Utc>,
    ) -> bool {
        let key = (enterprise.to_string(), outlet.to_string());
        let Some((ep, _)) = lock(&self.live).get(&key).cloned() else {
            return false;
        };
        if !ep.backfill {
            return false;
        }
        let first = {
            let mut waiting = lock(&self.waiting);
            let first = !waiting.contains_key(&key);
            waiting.entry(key.clone()).or_default().extend(short);
            first
        };
        if !first {
            return true;
        }
        let settle = chrono::Duration::from_std(self.settings.settle).unwrap_or_default();
        let due = short
            .iter()
            .map(|h| *h + chrono::Duration::hours(1) + settle)
            .max()
            .unwrap_or(now);
        let wait = (due - now).to_std().unwrap_or_default();
        let shared = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let short = lock(&shared.waiting).remove(&key).unwrap_or_default();
            // The logger may have gone (or come back on another connection).
            let Some((ep, tx)) = lock(&shared.live).get(&key).cloned() else {
                return;
            };
            let at = now + chrono::Duration::from_std(wait).unwrap_or_default();
            shared.plan_for(ep, tx, at, short).await;
        });
        true
    }

    /// Plans `ep`'s backfill as of `now` and hands the periods to its session.
    async fn plan_for(
        &self,
        ep: Arc<Endpoint>,
        tx: PlanTx,
        now: DateTime<Utc>,
        short: BTreeSet<DateTime<Utc>>,
    ) {
        match plan(
            &self.store,
            &ep,
            &self.settings,
            self.settings.tz,
            now,
            &short,
        )
        .await
        {
            Ok(periods) if !periods.is_empty() => {
                tracing::info!(enterprise = %ep.origin.enterprise, outlet = %ep.origin.outlet, mn = %ep.origin.mn, periods = periods.len(), short_hours = short.len(), "hj212 backfill planned");
                let _ = tx.send((ep, periods));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(enterprise = %ep.origin.enterprise, outlet = %ep.origin.outlet, mn = %ep.origin.mn, error = %e, "hj212 backfill: cannot plan")
            }
        }
    }

    /// A request of `ep`'s went unanswered (or failed) on a connection that
    /// stays: unless it was the last attempt, the period is planned again after
    /// [`retry_backoff`], through whatever connection the logger is on by then.
    /// A minute request's hours are passed as short hours, so that they are
    /// asked for again even where they are not missing hours.
    pub fn retry_later(self: &Arc<Self>, ep: &Endpoint, period: &Period, now: DateTime<Utc>) {
        let Some(wait) = retry_backoff(self.settings.answer_timeout, period.attempt) else {
            return;
        };
        let key = (
            ep.origin.enterprise.to_string(),
            ep.origin.outlet.to_string(),
        );
        let mut short = BTreeSet::new();
        if period.cn == super::backfill_plan::MINUTE {
            let mut h = period.begin;
            while h < period.end {
                short.insert(h);
                h += chrono::Duration::hours(1);
            }
        }
        tracing::info!(enterprise = %ep.origin.enterprise, outlet = %ep.origin.outlet, mn = %ep.origin.mn, cn = period.cn, attempt = period.attempt, retry_in_s = wait.as_secs(), "hj212 backfill: asking again later");
        let shared = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let Some((ep, tx)) = lock(&shared.live).get(&key).cloned() else {
                return;
            };
            let at = now + chrono::Duration::from_std(wait).unwrap_or_default();
            shared.plan_for(ep, tx, at, short).await;
        });
    }

    /// How many loggers may be asked right now (connected, backfill on).
    pub fn askable(&self) -> usize {
        lock(&self.live).len()
    }

    /// Reserves a start slot: the instant this request may go.
    fn reserve(&self) -> Instant {
        let interval = Duration::from_secs(1) / self.settings.rate.max(1);
        let now = Instant::now();
        let mut next = lock(&self.next_start);
        let at = (*next).max(now);
        *next = at + interval;
        at
    }

    fn record(&self, r: Record) {
        if self.records.try_send(r).is_err() {
            tracing::warn!("hj212 backfill: record queue full; a request outcome is only logged");
        }
    }
}

/// How long after the `attempt`-th try of a period timed out it is asked
/// again: the answer timeout doubled per attempt (2×, 4×, …), at most an hour;
/// `None` once [`MAX_ATTEMPTS`] tries are spent.
pub fn retry_backoff(answer_timeout: Duration, attempt: u32) -> Option<Duration> {
    (attempt < MAX_ATTEMPTS).then(|| {
        answer_timeout
            .saturating_mul(1 << attempt.min(16))
            .min(Duration::from_secs(3600))
    })
}

/// Locks a std mutex that is never held across an await; a poisoned one is
/// still consistent (every critical section is a single map operation).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn record(store: Store, mut rx: mpsc::Receiver<Record>) {
    let mut ids: HashMap<(String, String), i64> = HashMap::new();
    while let Some(r) = rx.recv().await {
        match r {
            Record::Sent(req) => match store.insert_backfill(&req).await {
                Ok(id) => {
                    ids.insert((req.mn, req.qn), id);
                }
                Err(e) => tracing::error!(error = %e, "hj212 backfill: cannot record request"),
            },
            Record::Finished { mn, qn, outcome } => {
                let Some(id) = ids.remove(&(mn, qn)) else {
                    continue;
                };
                if let Err(e) = store.finish_backfill(id, &outcome).await {
                    tracing::error!(error = %e, "hj212 backfill: cannot record outcome");
                }
            }
        }
    }
}

/// A local time as HJ 212 writes it.
pub fn local(t: DateTime<Utc>, tz: Tz) -> LocalDateTime {
    let t = t.with_timezone(&tz);
    LocalDateTime {
        year: u16::try_from(t.year()).unwrap_or(0),
        month: t.month() as u8,
        day: t.day() as u8,
        hour: t.hour() as u8,
        minute: t.minute() as u8,
        second: t.second() as u8,
    }
}

/// The request a connection is waiting on.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub ep: Arc<Endpoint>,
    pub period: Period,
    pub qn: String,
    pub deadline: Instant,
    pub qn_rtn: Option<i64>,
    pub readings: u64,
}

/// What the connection should do next.
pub enum Wake {
    /// A plan arrived and was queued.
    Planned,
    /// Time to send this request (the pacer's slot has come).
    Send(Arc<Endpoint>, Period),
    /// The request in flight timed out.
    TimedOut,
}

/// One connection's backfill state. Inert (never wakes) when the server has no
/// backfill or no logger on the connection wants one.
pub struct Session {
    pub shared: Option<Arc<Backfill>>,
    plans_tx: mpsc::UnboundedSender<(Arc<Endpoint>, Vec<Period>)>,
    plans_rx: mpsc::UnboundedReceiver<(Arc<Endpoint>, Vec<Period>)>,
    queue: VecDeque<(Arc<Endpoint>, Period)>,
    /// The slot reserved for the head of the queue.
    send_at: Option<Instant>,
    pub in_flight: Option<InFlight>,
    /// Per MN: the ST and protocol version its frames carry (for our requests).
    headers: HashMap<String, (String, u8)>,
    /// The connection has ended.
    closed: bool,
}

impl Session {
    pub fn new(shared: Option<Arc<Backfill>>) -> Session {
        let (plans_tx, plans_rx) = mpsc::unbounded_channel();
        Session {
            shared,
            plans_tx,
            plans_rx,
            queue: VecDeque::new(),
            send_at: None,
            in_flight: None,
            headers: HashMap::new(),
            closed: false,
        }
    }

    /// A logger connected: plan its backfill in the background, and let
    /// [`Backfill::wanted`] reach it here while it stays.
    pub fn connected(&mut self, ep: &Arc<Endpoint>, now: DateTime<Utc>, st: &str, version: u8) {
        self.headers
            .insert(ep.origin.mn.to_string(), (st.to_string(), version));
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if !ep.backfill {
            return;
        }
        let key = (
            ep.origin.enterprise.to_string(),
            ep.origin.outlet.to_string(),
        );
        lock(&shared.live).insert(key, (ep.clone(), self.plans_tx.clone()));
        let ep = ep.clone();
        let tx = self.plans_tx.clone();
        tokio::spawn(async move { shared.plan_for(ep, tx, now, BTreeSet::new()).await });
    }

    /// Queues what a plan asks for, less what is queued or in flight already.
    fn queue_plan(&mut self, ep: Arc<Endpoint>, periods: Vec<Period>) {
        for p in periods {
            let mn = &*ep.origin.mn;
            let same = |e: &Endpoint, q: &Period| &*e.origin.mn == mn && q.covers(&p);
            let busy = self
                .in_flight
                .as_ref()
                .is_some_and(|f| same(&f.ep, &f.period))
                || self.queue.iter().any(|(e, q)| same(e, q));
            if !busy {
                self.queue.push_back((ep.clone(), p));
            }
        }
    }

    /// Waits for the next thing to do; pending forever when there is nothing.
    pub async fn wake(&mut self) -> Wake {
        loop {
            let deadline = match (&self.in_flight, self.queue.front()) {
                (Some(f), _) => Some(f.deadline),
                (None, Some(_)) => {
                    let shared = self.shared.as_ref();
                    let at = *self
                        .send_at
                        .get_or_insert_with(|| shared.map_or_else(Instant::now, |s| s.reserve()));
                    Some(at)
                }
                (None, None) => None,
            };
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some((ep, periods)) = self.plans_rx.recv() => {
                    self.queue_plan(ep, periods);
                    return Wake::Planned;
                }
                () = sleep => {
                    if self.in_flight.is_some() {
                        return Wake::TimedOut;
                    }
                    self.send_at = None;
                    if let Some((ep, p)) = self.queue.pop_front() {
                        return Wake::Send(ep, p);
                    }
                }
            }
        }
    }

    /// The ST and protocol version to address `mn` with.
    pub fn header_of(&self, mn: &str) -> (String, u8) {
        self.headers
            .get(mn)
            .cloned()
            .unwrap_or_else(|| ("32".to_string(), 1))
    }

    /// The request just sent.
    pub fn sent(&mut self, f: InFlight, requested_at: DateTime<Utc>) {
        if let Some(s) = &self.shared {
            s.record(Record::Sent(NewBackfill {
                enterprise: f.ep.origin.enterprise.to_string(),
                outlet: f.ep.origin.outlet.to_string(),
                mn: f.ep.origin.mn.to_string(),
                cn: f.period.cn.to_string(),
                begin: f.period.begin,
                end: f.period.end,
                qn: f.qn.clone(),
                attempt: f.period.attempt,
                requested_at,
            }));
        }
        self.in_flight = Some(f);
    }

    fn timeout(&self) -> Duration {
        self.shared
            .as_ref()
            .map_or(Duration::from_secs(120), |s| s.settings.answer_timeout)
    }

    /// Ends the request in flight. One that timed out or failed while the
    /// connection stays is asked again later ([`Backfill::retry_later`]).
    pub fn finish(
        &mut self,
        state: BackfillState,
        exe_rtn: Option<i64>,
        detail: String,
        at: DateTime<Utc>,
    ) {
        let Some(f) = self.in_flight.take() else {
            return;
        };
        if let Some(s) = &self.shared {
            if !self.closed && matches!(state, BackfillState::Timeout | BackfillState::Failed) {
                s.retry_later(&f.ep, &f.period, at);
            }
        }
        tracing::info!(enterprise = %f.ep.origin.enterprise, outlet = %f.ep.origin.outlet, mn = %f.ep.origin.mn, qn = %f.qn, state = state.as_str(), readings = f.readings, "hj212 backfill request ended");
        if let Some(s) = &self.shared {
            s.record(Record::Finished {
                mn: f.ep.origin.mn.to_string(),
                qn: f.qn,
                outcome: BackfillOutcome {
                    state,
                    qn_rtn: f.qn_rtn,
                    exe_rtn,
                    readings: f.readings,
                    finished_at: at,
                    detail,
                },
            });
        }
    }

    /// An answer (9011/9012) from `mn` with `qn`: acts on it if it is ours.
    pub fn answer(
        &mut self,
        mn: &str,
        cn: &str,
        qn: Option<&str>,
        rtn: Option<&str>,
        at: DateTime<Utc>,
    ) {
        let timeout = self.timeout();
        let Some(f) = self.in_flight.as_mut() else {
            return;
        };
        if &*f.ep.origin.mn != mn || qn != Some(f.qn.as_str()) {
            return;
        }
        let code = rtn.and_then(|r| r.trim().parse::<i64>().ok());
        f.deadline = Instant::now() + timeout;
        match cn {
            "9011" => {
                f.qn_rtn = code;
                if code != Some(1) {
                    let detail = format!(
                        "QnRtn={}: the logger refused the request",
                        rtn.unwrap_or("?")
                    );
                    self.finish(BackfillState::Refused, None, detail, at);
                }
            }
            "9012" => {
                let (state, detail) = match code {
                    Some(1) => (BackfillState::Done, "ExeRtn=1".to_string()),
                    Some(100) => (
                        BackfillState::NoData,
                        "ExeRtn=100: the logger has no data for the period; the hours are confirmed missing".to_string(),
                    ),
                    _ => (
                        BackfillState::Failed,
                        format!("ExeRtn={}", rtn.unwrap_or("?")),
                    ),
                };
                self.finish(state, code, detail, at);
            }
            _ => {}
        }
    }

    /// Data stored from `mn` with CN `cn`: counted for the request in flight.
    pub fn data(&mut self, mn: &str, cn: &str, readings: u64) {
        let timeout = self.timeout();
        if let Some(f) = self.in_flight.as_mut() {
            if &*f.ep.origin.mn == mn && f.period.cn == cn {
                f.readings += readings;
                f.deadline = Instant::now() + timeout;
            }
        }
    }

    /// The connection ends: a request in flight will not be answered here, and
    /// is not retried through it (the logger's next connection plans again).
    pub fn closed(&mut self, at: DateTime<Utc>) {
        self.closed = true;
        self.finish(
            BackfillState::Timeout,
            None,
            "the connection closed before the 9012".into(),
            at,
        );
    }

    /// Resets the answer deadline of the request just sent.
    pub fn deadline_from_now(&self) -> Instant {
        Instant::now() + self.timeout()
    }
}

impl Drop for Session {
    /// The connection ended: its loggers can no longer be asked through it.
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            let tx = &self.plans_tx;
            lock(&shared.live).retain(|_, (_, t)| !t.same_channel(tx));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_stop_at_the_last_attempt() {
        let t = Duration::from_secs(120);
        assert_eq!(retry_backoff(t, 1), Some(Duration::from_secs(240)));
        assert_eq!(retry_backoff(t, 2), Some(Duration::from_secs(480)));
        assert_eq!(retry_backoff(t, MAX_ATTEMPTS), None);
        assert_eq!(
            retry_backoff(Duration::from_secs(3600), 1),
            Some(Duration::from_secs(3600)),
            "at most an hour"
        );
    }
}
