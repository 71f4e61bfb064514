//! The daemon's life: open the store, start the writer (and, as they land, the
//! sources and the rest of the pipeline), run until told to stop, then stop in the
//! order that loses nothing — sources first, so no new input arrives; then the
//! writer, which commits everything it was handed; then the store.
//!
//! Shutdown follows tokio's mini-redis: the caller passes a future that completes on
//! SIGTERM/SIGINT (or whatever a test wants), and every task holding a [`Writer`]
//! drops it on the way out, which is what lets the writer finish.
//!
//! Between start-up and shutdown the main loop serves reloads ([`reload`], applied
//! in [`live`]); systemd hears about all of it ([`systemd`]).

mod anchor;
mod completeness;
mod disk;
mod instrument;
mod leader;
mod live;
pub mod plans;
pub mod reload;
mod skew;
pub mod systemd;
mod takeover;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::api::{self, auth::Tokens, metrics::Metrics, ApiState};
use crate::clock::Clock;
use crate::config::{Config, LoadOptions};
use crate::rules::task::{RulesTask, TaskOptions};
use crate::sources::field::dtu::{DtuHub, DtuOptions};
use crate::sources::field::line::Endpoint;
use crate::sources::field::{FieldDevice, FieldSources};
use crate::sources::hj212::{Hj212Server, Registry, ServerConfig};
use crate::store::{Store, StoreError, StoreOptions, StoreUrl, Writer, WriterOptions};
use live::Live;
use reload::{ReloadHandle, ReloadRequests};

/// How long shutdown waits for an unreachable store before abandoning unwritten
/// batches. systemd's default stop timeout is 90 s; we aim to be gone within 10.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Commits the rules engine may be behind before the writer stops offering it
/// readings (it then recovers from the store; ingest never waits for judging).
pub const RULES_TAP_QUEUE: usize = 4096;

/// Cluster mode: how often a node re-reads the production orders other nodes
/// may have stored.
pub const ORDERS_FOLLOW: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hj212(#[from] crate::sources::hj212::ServerError),
    #[error(transparent)]
    Field(#[from] crate::sources::field::FieldError),
    #[error(transparent)]
    Dtu(#[from] crate::sources::field::dtu::DtuListenError),
    #[error(transparent)]
    Mqtt(#[from] crate::sources::mqtt::MqttError),
    #[error(transparent)]
    Http(#[from] api::ServeError),
}

/// What `run` needs besides the config.
pub struct RunOptions {
    /// How reloads load the config directory again.
    pub load: LoadOptions,
    /// Where reload requests come from; the caller keeps a [`ReloadHandle`] (for
    /// SIGHUP). `None`: the daemon makes its own, used by `POST /-/reload` only.
    pub reload: Option<(ReloadHandle, ReloadRequests)>,
    /// Time allowed to close the store writer at shutdown.
    pub grace: Duration,
    /// Told where the listeners are once the daemon is ready: a caller that asked
    /// for port 0 (the demo, tests) learns the ports the system chose.
    pub on_ready: Option<tokio::sync::oneshot::Sender<Bound>>,
}

/// The addresses the daemon's listeners are bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub hj212: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            load: LoadOptions::default(),
            reload: None,
            grace: SHUTDOWN_GRACE,
            on_ready: None,
        }
    }
}

pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        sqlite_synchronous: config.daemon.storage.sqlite_synchronous,
        min_free: config.daemon.storage.min_free,
        keys: evidence_keys(config),
        pg_idle_in_transaction: config.daemon.cluster.as_ref().map(|c| c.lease.0),
        ..StoreOptions::default()
    }
}

/// The evidence keys of `[evidence]`. A key that cannot be used does not stop
/// the daemon (readings must never stop for it): timelines are chained unkeyed
/// and it says so loudly; check-config names the problem.
pub fn evidence_keys(config: &Config) -> crate::seal::Keyring {
    let ev = &config.daemon.evidence;
    match crate::seal::Keyring::load(ev.key_file.as_deref(), &ev.old_key_files) {
        Ok(k) => {
            if k.current_id().is_empty() {
                tracing::warn!("no [evidence] key_file: alert timelines are chained UNKEYED; alerts verify will say \"not keyed\"");
            }
            k
        }
        Err(e) => {
            tracing::error!(error = %e, "evidence key unusable: alert timelines are chained UNKEYED until it is fixed");
            crate::seal::Keyring::default()
        }
    }
}

pub fn writer_options(config: &Config) -> WriterOptions {
    let s = &config.daemon.storage;
    WriterOptions {
        max_batch: s.max_batch,
        linger: s.linger.0,
        queue: s.queue,
        ..WriterOptions::default()
    }
}

pub async fn open_store(config: &Config) -> Result<Store, StoreError> {
    Store::open(&config.storage_url, &store_options(config)).await
}

/// Runs until `shutdown` completes, then drains and returns.
pub async fn run(
    config: Config,
    opts: RunOptions,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let devices = crate::sources::field::devices(&config)?;
    let store = open_store(&config).await?;
    // Cluster mode (issue 22): the leader's rules engine is fed from the store,
    // not from this node's writer; see crate::cluster.
    let cluster_cfg = config.daemon.cluster.clone();
    // The rules engine judges what the writer has committed (never before).
    let (tap, tap_rx) = tokio::sync::mpsc::channel(RULES_TAP_QUEUE);
    let (writer, writer_task) = Writer::spawn(
        store.clone(),
        WriterOptions {
            tap: cluster_cfg.is_none().then_some(tap),
            ..writer_options(&config)
        },
        clock.clone(),
    );
    // Data refused for a logger's clock: clock_skew findings (connected before
    // any source starts, so no report is missed).
    let (skew_tx, skew_rx) = tokio::sync::mpsc::channel(skew::QUEUE);
    writer.clock_skew().connect(skew_tx);
    let (stop_sources, sources_stop) = watch::channel(false);
    let (config_tx, config_rx) = watch::channel(Arc::new(config.clone()));
    let metrics = Metrics::default();

    let registry = Arc::new(Registry::from_config(&config));
    let (registry_tx, registry_rx) = watch::channel(registry.clone());
    let backfill = crate::sources::hj212::Backfill::start(
        store.clone(),
        crate::sources::hj212::BackfillSettings::from_config(&config),
    );
    let hj212 = Hj212Server::start_with_backfill(
        ServerConfig::from_config(&config),
        registry_rx,
        writer.clone(),
        clock.clone(),
        sources_stop.clone(),
        Some(backfill.clone()),
    )
    .await?;
    let mut listeners = vec![("hj212", hj212.local_addr())];
    let mut dtu = start_dtu(&config, &devices, &writer, &clock, &sources_stop).await?;
    if let Some(d) = &dtu {
        listeners.push(("dtu", d.addr));
    }
    let mqtt_log: instrument::MqttStatsLog = Arc::default();
    let mqtt = live::start_mqtt(&config, &writer, &clock, &mqtt_log)?;
    let polled = devices.len();
    let all_devices = devices.clone();
    let devices = match &cluster_cfg {
        // Leased lines start once this node holds them.
        Some(_) => crate::cluster::lines::owned(&devices, &Default::default()),
        None => devices,
    };
    let field = FieldSources::start(
        devices,
        dtu.as_ref().map(|d| (d.hub.clone(), d.heartbeat.clone())),
        writer.clone(),
        clock.clone(),
        sources_stop,
    );

    // The rules engine follows the writer's commits; alerts follow its findings.
    // Its plan follows reloads and runtime orders.
    let (plans, plan_rx) =
        plans::PlanFeed::start(Arc::new(config.clone()), &store, clock.now()).await?;
    let (findings_tx, findings_rx) = tokio::sync::mpsc::channel(1024);
    let disk_findings = findings_tx.clone();
    let completeness_findings = findings_tx.clone();
    let skew_findings = findings_tx.clone();
    // A single node judges its own commits from the tap; in a cluster only the
    // leader's term does (leader.rs), and findings this node's watchers store
    // reach the leader through the findings table.
    let rules = match &cluster_cfg {
        None => {
            // Hours the rules engine closes short are asked for on the way to
            // alerts. (In a cluster the logger's connection may be on another
            // node; there, backfill runs on reconnect and on the daily close.)
            let (rules_tx, rules_rx) = tokio::sync::mpsc::channel(1024);
            let short =
                completeness::short_hours(rules_rx, findings_tx, backfill.clone(), clock.clone());
            tokio::spawn(short);
            Some(RulesTask::spawn(
                store.clone(),
                plan_rx,
                TaskOptions::default(),
                clock.clone(),
                tap_rx,
                Some(rules_tx),
            ))
        }
        Some(_) => {
            drop((plan_rx, tap_rx, findings_tx));
            None
        }
    };
    let (stop_alerts, alerts_stop) = watch::channel(false);
    let rules_stats: Arc<std::sync::Mutex<Arc<crate::rules::task::TaskStats>>> = Arc::new(
        std::sync::Mutex::new(rules.as_ref().map(|r| r.stats.clone()).unwrap_or_default()),
    );
    let term_rules_stats = rules_stats.clone();
    metrics.collect(move |out| {
        let s = rules_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let s = &s;
        for (name, help, v) in [
            (
                "pollwatch_rules_readings_total",
                "Readings judged by the rules engine.",
                &s.readings,
            ),
            (
                "pollwatch_rules_findings_total",
                "New findings stored by the rules engine.",
                &s.findings_new,
            ),
            (
                "pollwatch_rules_findings_repeated_total",
                "Findings raised again (a replay) and already stored.",
                &s.findings_repeated,
            ),
            (
                "pollwatch_rules_rebuilds_total",
                "Rebuilds of the evaluation state from the store.",
                &s.rebuilds,
            ),
            (
                "pollwatch_rules_gaps_total",
                "Times the rules engine fell behind the writer and recovered from the store.",
                &s.gaps,
            ),
            (
                "pollwatch_rules_plan_swaps_total",
                "Rules plans swapped in (reloads, production orders).",
                &s.replans,
            ),
            (
                "pollwatch_rules_replayed_enterprises_total",
                "Enterprises replayed from the store because a plan swap changed them.",
                &s.replayed,
            ),
            (
                "pollwatch_rules_ticks_deferred_total",
                "Ticks put off while committed readings waited to be judged.",
                &s.ticks_deferred,
            ),
            (
                "pollwatch_rules_late_values_total",
                "Values that came for a period already closed (judged again from the store).",
                &s.late,
            ),
            (
                "pollwatch_rules_rejudged_total",
                "Outlet-days judged again from the store after late data.",
                &s.rejudged,
            ),
            (
                "pollwatch_rules_findings_revised_total",
                "Stored findings revised after late data.",
                &s.revised,
            ),
            (
                "pollwatch_rules_findings_superseded_total",
                "Stored findings superseded after late data.",
                &s.superseded,
            ),
            (
                "pollwatch_rules_store_failures_total",
                "Failed writes of findings or emission hours (retried).",
                &s.store_failures,
            ),
        ] {
            out.counter(
                name,
                help,
                &[],
                v.load(std::sync::atomic::Ordering::Relaxed),
            );
        }
    });
    let channel_health = crate::notify::HealthBoard::default();
    let board = channel_health.clone();
    metrics.collect(move |out| {
        for c in board.get() {
            out.gauge(
                "pollwatch_channel_up",
                "1 when the notification channel could be built, 0 when it is unavailable (missing secret, bad settings).",
                &[("channel", &c.channel)],
                if c.up() { 1.0 } else { 0.0 },
            );
        }
    });
    let alerts = match &cluster_cfg {
        None => Some(crate::alerts::AlertsTask::spawn_from_config(
            store.clone(),
            crate::alerts::AlertsSetup {
                clock: clock.clone(),
                metrics: metrics.clone(),
                health: channel_health.clone(),
                tick: Duration::from_secs(10),
            },
            findings_rx,
            alerts_stop,
            config_rx.clone(),
        )),
        Some(_) => {
            // Stored already; the leader records them from the table.
            tokio::spawn(drain(findings_rx));
            None
        }
    };

    // Proof of life for systemd's watchdog and /readyz.
    let (stop_aux, aux_stop) = watch::channel(false);
    let (period, watchdog) = systemd::heartbeat_period();
    let liveness = systemd::Liveness::default();
    let heartbeat = tokio::spawn(systemd::heartbeat(
        writer.clone(),
        liveness.clone(),
        period,
        watchdog,
        aux_stop.clone(),
    ));

    // Cluster mode: orders issued through another node reach this node's plan.
    let orders_follow = cluster_cfg.as_ref().map(|_| {
        tokio::spawn(plans.clone().follow_orders(
            store.clone(),
            clock.clone(),
            ORDERS_FOLLOW,
            aux_stop.clone(),
        ))
    });

    // The previous day's evidence anchor, outside the database.
    let anchors = tokio::spawn(anchor::daily(
        store.clone(),
        config_rx.clone(),
        clock.clone(),
        aux_stop.clone(),
    ));

    // Refused DTU takeovers: dtu_takeover alerts.
    let takeovers = dtu.as_mut().and_then(|d| d.takeovers.take()).map(|rx| {
        tokio::spawn(takeover::watch(
            store.clone(),
            rx,
            disk_findings.clone(),
            aux_stop.clone(),
        ))
    });
    // Free disk space below [storage] min_free: a disk_low alert (SQLite only).
    let disk = store.space().cloned().map(|space| {
        tokio::spawn(disk::watch(
            store.clone(),
            space,
            disk_findings,
            clock.clone(),
            aux_stop.clone(),
        ))
    });

    // Daily transmission figures and low_transmission (issue #20).
    let completeness = tokio::spawn(completeness::run(
        store.clone(),
        config_rx.clone(),
        completeness_findings,
        clock.clone(),
        Some(backfill),
        aux_stop.clone(),
    ));
    // Logger clocks out of bounds: clock_skew once an hour per outlet (issue #17).
    let skew = tokio::spawn(skew::watch(
        store.clone(),
        skew_rx,
        skew_findings,
        clock.clone(),
        aux_stop.clone(),
    ));

    let reload_status = Arc::new(instrument::ReloadStatus::default());
    reload_status.last_success_unix.store(
        clock.now().timestamp(),
        std::sync::atomic::Ordering::Relaxed,
    );
    instrument::register(
        &metrics,
        instrument::Sources {
            hj212: hj212.stats(),
            mqtt: mqtt_log.clone(),
            field: field.stats(),
            health: field.health(),
            writer: writer.stats_handle(),
            queue: Box::new(writer.queue_probe()),
            config: config_rx.clone(),
            reload: reload_status.clone(),
            space: store.space().cloned(),
        },
    );

    let (reload_handle, mut requests) = opts.reload.unwrap_or_else(reload::channel);
    let (tokens_tx, tokens_rx) = watch::channel(Arc::new(Tokens::from_config(&config)));
    let state = ApiState {
        store: store.clone(),
        config: config_rx,
        tokens: tokens_rx,
        reload: reload_handle,
        metrics: metrics.clone(),
        live: api::Live {
            hj212: hj212.stats(),
            field: field.health(),
            liveness,
            // Two missed heartbeats before we call ourselves unready.
            heartbeat_window: period * 2 + Duration::from_secs(1),
            listeners: listeners.clone(),
        },
        open_alerts: api::alerts::open_alerts_hook(),
        plans: Some(plans.clone()),
        clock: clock.clone(),
        console: crate::console::ConsoleState {
            // In the store: a restart or a failover does not log officers out.
            sessions: crate::console::Sessions::persistent(store.clone()),
            ..crate::console::ConsoleState::new(aux_stop.clone(), channel_health.clone())
        },
        throttle: Default::default(),
        cluster: None,
    };
    let cluster_info = cluster_cfg.as_ref().map(|c| api::cluster::ClusterInfo {
        node: c.node_id.clone(),
        lease: c.lease.0,
        stats: Default::default(),
    });
    let state = ApiState {
        cluster: cluster_info.clone(),
        ..state
    };
    let http = api::Server::start(config.daemon.http.listen.0, state, aux_stop).await?;
    let cluster = cluster_cfg.as_ref().map(|c| {
        crate::cluster::Cluster::start(
            store.clone(),
            crate::cluster::ClusterOptions {
                node: c.node_id.clone(),
                lease: c.lease.0,
                http: http.local_addr.to_string(),
                started: clock.now(),
            },
            crate::cluster::lines::names(&all_devices),
            cluster_info
                .as_ref()
                .map(|i| i.stats.clone())
                .unwrap_or_default(),
        )
    });
    let feed_stats: Arc<crate::cluster::feed::FeedStats> = Arc::default();
    if let Some(info) = &cluster_info {
        api::cluster::register_metrics(&metrics, info, feed_stats.clone());
    }
    let terms = cluster.as_ref().map(|c| leader::TermCtx {
        node: c.node.clone(),
        store: store.clone(),
        plans: plans.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        health: channel_health.clone(),
        config: config_tx.subscribe(),
        belief: c.belief.clone(),
        rules_stats: term_rules_stats.clone(),
        feed_stats: feed_stats.clone(),
    });

    let mut live = Live {
        config: Arc::new(config),
        load: opts.load,
        config_tx,
        plans: plans.clone(),
        registry_tx,
        tokens_tx,
        field,
        mqtt,
        mqtt_log,
        writer: writer.clone(),
        clock,
        metrics,
        status: reload_status,
        dtu_ids: dtu.as_ref().map(|d| d.ids.clone()).unwrap_or_default(),
        devices: all_devices,
        cluster_lines: cluster
            .as_ref()
            .map(|c| (c.lines.clone(), c.wanted.clone())),
    };
    systemd::ready("ready");
    if let Some(tx) = opts.on_ready {
        // A caller that stopped waiting has nothing to learn; the daemon runs on.
        let _ = tx.send(Bound {
            hj212: hj212.local_addr(),
            http: http.local_addr,
        });
    }
    tracing::info!(
        store = %StoreUrl::redacted(&live.config.storage_url),
        enterprises = live.config.enterprises.len(),
        hj212 = %hj212.local_addr(),
        http = %http.local_addr,
        loggers = registry.len(),
        polled_devices = polled,
        timezone = %live.config.timezone,
        config_hash = %live.config.hash,
        watchdog = watchdog,
        "pollwatch ready"
    );

    tokio::pin!(shutdown);
    let mut role = cluster.as_ref().map(|c| c.role.clone());
    let mut lines = cluster.as_ref().map(|c| c.lines.clone());
    let mut term: Option<leader::Term> = None;
    let mut reconcile = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(req) = requests.rx.recv() => {
                let outcome = live.reload(req.origin).await;
                if let Some(reply) = req.reply {
                    let _ = reply.send(outcome);
                }
            }
            Some(()) = changed(&mut role) => {
                term = follow_role(term, role.as_ref(), terms.as_ref(), opts.grace).await;
            }
            Some(()) = changed(&mut lines) => live.apply_lines(),
            // A term that failed to start (the store was down) is tried again.
            _ = reconcile.tick(), if terms.is_some() => {
                term = follow_role(term, role.as_ref(), terms.as_ref(), opts.grace).await;
            }
        }
    }

    systemd::stopping();
    tracing::info!("shutting down: no new input; finishing in-flight frames");
    // Reload requests still queued are answered "stopped" by dropping them.
    drop(requests);
    let _ = stop_sources.send(true);
    let _ = stop_aux.send(true);
    hj212.join().await;
    live.stop_sources().await;
    if let Some(d) = dtu {
        let _ = d.task.await;
    }
    let _ = heartbeat.await;
    let _ = anchors.await;
    if let Some(t) = orders_follow {
        let _ = t.await;
    }
    if let Some(d) = disk {
        let _ = d.await;
    }
    let _ = completeness.await;
    let _ = skew.await;
    if let Some(t) = takeovers {
        let _ = t.await;
    }
    http.join().await;
    tracing::info!("flushing the store writer");
    drop(writer);
    writer_task.finish(opts.grace).await;
    tracing::info!("judging the last committed readings");
    if let Some(rules) = rules {
        rules.join(opts.grace).await;
    }
    // The findings channel is closed now; the task settles what it holds.
    if let Some(alerts) = alerts {
        alerts.join().await;
    }
    drop(stop_alerts);
    // A leader's term ends before its lease is released, so the next leader
    // starts from what this one saved.
    if let Some(t) = term {
        t.stop(Duration::from_secs(1)).await;
    }
    if let Some(c) = cluster {
        c.stop().await;
    }
    store.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

struct Dtu {
    /// Refused takeovers, to become `dtu_takeover` findings.
    takeovers: Option<tokio::sync::mpsc::Receiver<crate::sources::field::dtu::Takeover>>,
    hub: Arc<DtuHub>,
    heartbeat: Vec<u8>,
    ids: HashSet<String>,
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// The DTU dial-in listener, bound only when some device dials in.
async fn start_dtu(
    config: &Config,
    devices: &[FieldDevice],
    writer: &Writer,
    clock: &Arc<dyn Clock>,
    stop: &watch::Receiver<bool>,
) -> Result<Option<Dtu>, DaemonError> {
    let ids = dtu_ids(devices);
    if ids.is_empty() {
        return Ok(None);
    }
    let section = &config.daemon.dtu;
    let heartbeat = section.heartbeat_bytes().unwrap_or_default();
    let (takeovers_tx, takeovers) = tokio::sync::mpsc::channel(64);
    let opts = DtuOptions {
        listen: section.listen.0,
        registration_timeout: section.registration_timeout.0,
        registration_prefix: section.registration_prefix.as_bytes().to_vec(),
        registration_suffix: section.registration_suffix.as_bytes().to_vec(),
        heartbeat: heartbeat.clone(),
        max_connections: section.max_connections,
        max_connections_per_address: section.max_connections_per_address,
        dead_letters_per_minute: section.dead_letters_per_minute,
        takeovers: Some(takeovers_tx),
    };
    let hub = Arc::new(DtuHub::default());
    let (addr, task) = crate::sources::field::dtu::listen(
        opts,
        dtu_identities(devices),
        hub.clone(),
        writer.clone(),
        clock.clone(),
        stop.clone(),
    )
    .await?;
    tracing::info!(dtu = %addr, "DTU listener bound");
    Ok(Some(Dtu {
        hub,
        heartbeat,
        ids,
        addr,
        task,
        takeovers: Some(takeovers),
    }))
}

/// Each DTU's enterprise and what proves its registrations (`dtu_allow`,
/// `dtu_secret`; check-config makes devices behind one DTU agree).
fn dtu_identities(
    devices: &[FieldDevice],
) -> std::collections::HashMap<String, crate::sources::field::dtu::DtuIdentity> {
    let mut out = std::collections::HashMap::new();
    for d in devices {
        let Endpoint::Dtu(id) = &d.endpoint else {
            continue;
        };
        let e: &mut crate::sources::field::dtu::DtuIdentity = out.entry(id.clone()).or_default();
        e.enterprise = d.enterprise.to_string();
        for a in &d.config.dtu_allow {
            match crate::config::parse_net(a) {
                Some(net) if !e.allow.contains(&net) => e.allow.push(net),
                _ => {}
            }
        }
        if e.secret.is_none() {
            e.secret = d.config.dtu_secret.clone();
        }
    }
    out
}

fn dtu_ids(devices: &[FieldDevice]) -> HashSet<String> {
    devices
        .iter()
        .filter_map(|d| match &d.endpoint {
            Endpoint::Dtu(id) => Some(id.clone()),
            _ => None,
        })
        .collect()
}

/// Waits for a change on an optional watch: `None` (never ready) without one.
async fn changed<T>(rx: &mut Option<watch::Receiver<T>>) -> Option<()> {
    match rx {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

/// Starts, keeps or ends the leader's term so that it matches the role.
async fn follow_role(
    term: Option<leader::Term>,
    role: Option<&watch::Receiver<crate::cluster::Role>>,
    terms: Option<&leader::TermCtx>,
    grace: Duration,
) -> Option<leader::Term> {
    let (Some(role), Some(ctx)) = (role, terms) else {
        return term;
    };
    let want = match &*role.borrow() {
        crate::cluster::Role::Leader { epoch, .. } => Some(*epoch),
        crate::cluster::Role::Follower => None,
    };
    if term.as_ref().map(leader::Term::epoch) == want {
        return term;
    }
    if let Some(t) = term {
        t.stop(grace.min(Duration::from_secs(1))).await;
    }
    let epoch = want?;
    match ctx.start(epoch).await {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(epoch, error = %e, "cannot start the leader's term; trying again");
            None
        }
    }
}

/// Takes findings nobody on this node judges (cluster followers): they are
/// stored already, and the leader records them from the table.
async fn drain(mut rx: tokio::sync::mpsc::Receiver<Vec<crate::store::StoredFinding>>) {
    while rx.recv().await.is_some() {}
}
