//! The HTTP API (axum), on `[http] listen` (default `127.0.0.1:9180`).
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /healthz` | anyone | the process answers |
//! | `GET /readyz` | anyone | store writable (a writer round trip within the heartbeat window), listeners bound |
//! | `GET /metrics` | viewer | Prometheus text ([`metrics`]) |
//! | `GET /api/v1/cluster` | viewer | nodes, heartbeats, leader, line owners ([`cluster`]; 404 without `[cluster]`) |
//! | `GET /api/v1/enterprises` | viewer | config with each outlet's and meter's live status |
//! | `GET /api/v1/readings?enterprise=&outlet=\|meter=&factor=&kind=&stat=&from=&to=&limit=` | viewer | stored readings |
//! | `GET /api/v1/reports/transmission?from=&to=&enterprise=`, `GET /api/v1/backfill?enterprise=&limit=` | viewer | data completeness ([`reports`]) |
//! | `POST /-/reload` | operator | reload the config (as SIGHUP), answer with the outcome |
//! | `GET /api/v1/alerts…`, `POST /api/v1/alerts/{id}/ack\|resolve` | viewer / operator | [`alerts`] |
//! | `GET /api/v1/orders`, `POST /api/v1/orders`, `DELETE /api/v1/orders/{id}` | viewer / operator | runtime production orders ([`orders`]) |
//! | `GET /`, `/alerts/{id}`, `/enterprises…`, `/login`, `/console/…` | console session | the web console ([`crate::console`]) |
//! | `GET /api/v1/alerts/{id}/chart.svg\|chart.png` | viewer | the alert's evidence chart ([`chart`]) |
//!
//! `/healthz` and `/readyz` are open because probes (systemd, load balancers)
//! carry no credentials and the answers say nothing but "up"; everything else
//! needs a token ([`auth`]); with no `[[http.tokens]]` configured, only the probes
//! answer (and no one can log in to the console). Prometheus scrapes with
//! `authorization.credentials_file`. Every viewer/operator route also accepts
//! the console's session cookie, with a CSRF token on state changes ([`auth`]).
//!
//! Adding routes: write a `pub fn routes() -> Router<ApiState>` in a sub-module,
//! take [`auth::Viewer`] or [`auth::Operator`] in each handler, and merge it in
//! [`router`].
//!
//! ```toml
//! [http]
//! listen = "127.0.0.1:9180"
//! [[http.tokens]]
//! name = "prometheus"
//! role = "viewer"
//! token_file = "/etc/pollwatch/tokens/prometheus"
//! ```

pub mod alerts;
pub mod auth;
pub mod chart;
pub mod cluster;
pub mod enterprises;
pub mod health;
pub mod metrics;
pub mod orders;
pub mod readings;
pub mod reload;
pub mod report_monthly;
pub mod reports;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::watch;

use crate::config::Config;
use crate::daemon::reload::ReloadHandle;
use crate::daemon::systemd::Liveness;
use crate::sources::field::HealthMap;
use crate::sources::hj212::Hj212Stats;
use crate::store::{Store, StoreError};

/// Open alerts per (enterprise, `outlet:ID` | `meter:ID`).
pub type OpenAlertCounts = HashMap<(String, String), u64>;

/// Counts open alerts for the status API; the alerts module supplies it. Until it
/// does, [`no_alerts`] reports none.
pub type OpenAlertsHook = Arc<
    dyn Fn(Store) -> Pin<Box<dyn Future<Output = Result<OpenAlertCounts, StoreError>> + Send>>
        + Send
        + Sync,
>;

pub fn no_alerts() -> OpenAlertsHook {
    Arc::new(|_| Box::pin(async { Ok(OpenAlertCounts::new()) }))
}

/// What the sources report live, for status and readiness.
#[derive(Clone)]
pub struct Live {
    pub hj212: Arc<Hj212Stats>,
    pub field: HealthMap,
    pub liveness: Liveness,
    /// A writer round trip within this long means the store is writable.
    pub heartbeat_window: std::time::Duration,
    /// Addresses the daemon listens on (HJ 212, DTU), bound before the API starts.
    pub listeners: Vec<(&'static str, SocketAddr)>,
}

/// Shared by every handler; cloning is a handful of `Arc` increments. The daemon
/// builds it once (see `daemon::run`); `open_alerts` is where the alerts module
/// plugs in its query.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// The config in force; changes on every successful reload.
    pub config: watch::Receiver<Arc<Config>>,
    pub tokens: watch::Receiver<Arc<auth::Tokens>>,
    pub reload: ReloadHandle,
    pub metrics: metrics::Metrics,
    pub live: Live,
    pub open_alerts: OpenAlertsHook,
    /// Where runtime production orders go; `None` where no rules engine runs.
    pub plans: Option<crate::daemon::plans::PlanFeed>,
    /// Time of acknowledgements and resolutions, and of console sessions.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// The web console's sessions (also accepted by [`auth`]'s extractors).
    pub console: crate::console::ConsoleState,
    /// Wrong bearer tokens and wrong console logins per client address: one
    /// throttle for both doors ([`crate::throttle`]).
    pub throttle: Arc<crate::throttle::AuthThrottle>,
    /// This node in a cluster (issue 22); `None` on a single node.
    pub cluster: Option<cluster::ClusterInfo>,
}

/// Every route, with `state`: the API and the web console.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .merge(crate::console::routes())
        .merge(alerts::routes())
        .merge(chart::routes())
        .merge(health::routes())
        .merge(cluster::routes())
        .merge(metrics_routes())
        .merge(enterprises::routes())
        .merge(readings::routes())
        .merge(orders::routes())
        .merge(reports::routes())
        .merge(reload::routes())
        .merge(report_monthly::routes())
        .with_state(state)
}

fn metrics_routes() -> Router<ApiState> {
    use axum::extract::State;
    async fn render(_: auth::Viewer, State(s): State<ApiState>) -> Response {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s.metrics.render(),
        )
            .into_response()
    }
    Router::new().route("/metrics", axum::routing::get(render))
}

/// A JSON error body with a status.
pub(crate) fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": msg.to_string() })),
    )
        .into_response()
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// `[http]` limits of the server loop.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request's headers must arrive within this long.
    pub header_read_timeout: std::time::Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let h = crate::config::HttpSection::default();
        Limits {
            header_read_timeout: h.header_read_timeout.0,
            max_connections: h.max_connections,
        }
    }
}

/// A bound API server; serves until `stop` turns true.
pub struct Server {
    pub local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(
        addr: SocketAddr,
        state: ApiState,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Server, ServeError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        let limits = {
            let cfg = state.config.borrow();
            Limits {
                header_read_timeout: cfg.daemon.http.header_read_timeout.0,
                max_connections: cfg.daemon.http.max_connections,
            }
        };
        let app = router(state);
        let task = tokio::spawn(async move {
            serve(listener, app, limits, &mut stop).await;
        });
        tracing::info!(listen = %local_addr, "http api listening");
        Ok(Server { local_addr, task })
    }

    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Accepts until `stop`: at most `max_connections` at once (more are closed at
/// once), each client's address in its requests (`ConnectInfo`, for the auth
/// throttle), headers within `header_read_timeout` (else the connection is
/// closed). At `stop`, connections finish their requests (up to 5 s).
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    stop: &mut watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let logs = crate::ratelimit::LogLimiter::new(std::time::Duration::from_secs(60));
    loop {
        let stopped = async {
            let _ = stop.wait_for(|s| *s).await;
        };
        let (stream, peer) = tokio::select! {
            _ = stopped => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if logs.allow("connection_limit").is_some() {
                tracing::warn!(peer = %peer, limit = limits.max_connections, "http: connection limit reached; refusing");
            }
            continue;
        };
        let app = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let service = hyper_util::service::TowerToHyperService::new(app);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(peer = %peer, error = %e, "http connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("http: connections still open after 5 s; closing them");
    }
}
