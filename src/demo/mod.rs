//! `pollwatch demo`: the whole daemon on one machine with a small simulated city,
//! so a newcomer sees readings become alerts on a duty officer's phone in about a
//! minute, with nothing to install or configure.
//!
//! Why it is built from the real parts: a demo that short-circuits the pipeline
//! would show something pollwatch does not do. Here the daemon is
//! [`daemon::run`](crate::daemon::run) with a config written by [`config`] and
//! loaded by the normal loader; data arrive over real sockets from the
//! simulators in [`sims`] (HJ 212 loggers, a Modbus TCP analyzer gateway, DL/T 645
//! meters behind a serial-to-Ethernet converter); alerts leave through the
//! `webhook` channel to [`receiver`], which plays the officer's phone.
//!
//! Time is compressed with a [`ScaledClock`] shared by the daemon and the
//! simulators, so data time, hourly windows, offline detection and alert times
//! agree. Simulated time starts at the top of the current local hour, so the
//! first hourly mean closes after one simulated hour (a minute at the default
//! 60×). Some daemon timers are real (the rules and alerts ticks, 10 s); poll
//! intervals in the generated config are scaled instead.

pub mod config;
pub mod receiver;
pub mod scenarios;
pub mod sims;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::clock::ScaledClock;
use crate::config::{Config, LoadOptions};
use crate::daemon::{Bound, DaemonError, RunOptions};
use receiver::{OfficerMessage, Receiver};

/// Fastest speed: polls every 30 simulated seconds must stay ≥ 100 ms apart
/// (config validation), and faster would outrun the 10 s real rules tick anyway.
pub const MAX_SPEED: f64 = 300.0;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Simulated seconds per real second.
    pub speed: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("--speed must be between 1 and {MAX_SPEED}, got {0}")]
    Speed(f64),
    #[error("cannot create the demo's state directory: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("cannot write the demo's config: {0}")]
    WriteConfig(#[source] std::io::Error),
    #[error("the demo's generated config is invalid (a bug):\n{0}")]
    Config(String),
    #[error(transparent)]
    Receiver(#[from] receiver::ReceiverError),
    #[error(transparent)]
    Sims(#[from] sims::SimsError),
    #[error("daemon: {0}")]
    Daemon(#[from] DaemonError),
    #[error("the daemon stopped on its own")]
    DaemonEnded,
    #[error("cannot make the demo's API tokens: {0}")]
    Token(#[source] crate::console::session::SessionError),
}

/// A running demo. Call [`Demo::stop`] to shut it down cleanly.
pub struct Demo {
    pub speed: f64,
    pub tz: Tz,
    /// Simulated time at the start.
    pub origin: DateTime<Utc>,
    pub started: Instant,
    pub clock: Arc<ScaledClock>,
    pub state_dir: PathBuf,
    pub bound: Bound,
    pub devices: sims::Devices,
    pub viewer_token: String,
    pub operator_token: String,
    receiver: Receiver,
    stop_receiver: watch::Sender<bool>,
    stop_sims: watch::Sender<bool>,
    sims: JoinSet<()>,
    stop_daemon: Option<oneshot::Sender<()>>,
    daemon: Option<JoinHandle<Result<(), DaemonError>>>,
    dir: Option<tempfile::TempDir>,
}

impl Demo {
    pub async fn start(opts: DemoOptions) -> Result<Demo, DemoError> {
        if !(1.0..=MAX_SPEED).contains(&opts.speed) {
            return Err(DemoError::Speed(opts.speed));
        }
        let dir = tempfile::Builder::new()
            .prefix("pollwatch-demo-")
            .tempdir()
            .map_err(DemoError::TempDir)?;
        let tz = chrono_tz::Asia::Shanghai;
        let origin = crate::rules::window::hour_start(Utc::now(), tz);
        let clock = Arc::new(ScaledClock::new(origin, opts.speed));
        let started = Instant::now();

        let (stop_receiver, receiver_stop) = watch::channel(false);
        let receiver = Receiver::start(clock.clone(), receiver_stop).await?;
        let (stop_sims, sims_stop) = watch::channel(false);
        let mut sims = JoinSet::new();
        let devices = sims::start_devices(&clock, origin, &sims_stop, &mut sims).await?;

        let cement_key = crate::console::session::random_hex()
            .map_err(DemoError::Token)?
            .chars()
            .take(32)
            .collect::<String>();
        let setup = config::Setup {
            state_dir: dir.path().join("state"),
            receiver_url: receiver.url.clone(),
            viewer_token: token("viewer")?,
            operator_token: token("operator")?,
            modbus: devices.modbus,
            dlt645: devices.dlt645,
            poll: clock.real(sims::SAMPLE_EVERY_SIM),
            cement_sm4_key: cement_key.clone(),
        };
        let config_dir = dir.path().join("config");
        config::write(&config_dir, &setup).map_err(DemoError::WriteConfig)?;
        let load = LoadOptions {
            default_state_dir: setup.state_dir.clone(),
        };
        let cfg = Config::load(&config_dir, &load).map_err(|e| DemoError::Config(e.to_string()))?;

        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_daemon, daemon_stop) = oneshot::channel::<()>();
        let run_opts = RunOptions {
            load,
            on_ready: Some(ready_tx),
            ..RunOptions::default()
        };
        let mut daemon = tokio::spawn(crate::daemon::run(
            cfg,
            run_opts,
            clock.clone(),
            async move {
                let _ = daemon_stop.await;
            },
        ));
        let bound = tokio::select! {
            ready = ready_rx => match ready {
                Ok(b) => b,
                // The sender went away: the daemon ended before it was ready.
                Err(_) => return Err(ended(daemon.await)),
            },
            r = &mut daemon => return Err(ended(r)),
        };
        let cement_key = crate::sources::hj212::codec::crypt::Sm4Key::from_hex(&cement_key).ok();
        sims::start_loggers(
            bound.hj212,
            &clock,
            origin,
            tz,
            &sims_stop,
            &mut sims,
            cement_key,
        );

        Ok(Demo {
            speed: opts.speed,
            tz,
            origin,
            started,
            clock,
            state_dir: dir.path().to_path_buf(),
            bound,
            devices,
            viewer_token: setup.viewer_token,
            operator_token: setup.operator_token,
            receiver,
            stop_receiver,
            stop_sims,
            sims,
            stop_daemon: Some(stop_daemon),
            daemon: Some(daemon),
            dir: Some(dir),
        })
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.bound.http)
    }

    /// The next message the officer receives; an error if the daemon stopped.
    pub async fn next_message(&mut self) -> Result<OfficerMessage, DemoError> {
        let Some(daemon) = self.daemon.as_mut() else {
            return Err(DemoError::DaemonEnded);
        };
        tokio::select! {
            m = self.receiver.messages.recv() => m.ok_or(DemoError::DaemonEnded),
            r = daemon => {
                self.daemon = None;
                Err(ended(r))
            }
        }
    }

    /// Stops the loggers and devices, then the daemon (which flushes its store and
    /// settles its alerts), then the receiver. The state directory is removed
    /// unless `keep`; the path is returned when kept.
    pub async fn stop(mut self, keep: bool) -> Result<Option<PathBuf>, DemoError> {
        let _ = self.stop_sims.send(true);
        while self.sims.join_next().await.is_some() {}
        if let Some(tx) = self.stop_daemon.take() {
            let _ = tx.send(());
        }
        let result = match self.daemon.take() {
            Some(d) => match d.await {
                Ok(r) => r.map_err(DemoError::Daemon),
                Err(_) => Err(DemoError::DaemonEnded),
            },
            None => Ok(()),
        };
        let _ = self.stop_receiver.send(true);
        self.receiver.join().await;
        let kept = match self.dir.take() {
            Some(dir) if keep => Some(dir.keep()),
            Some(dir) => {
                dir.close().map_err(DemoError::TempDir)?;
                None
            }
            None => None,
        };
        result.map(|()| kept)
    }
}

fn ended(r: Result<Result<(), DaemonError>, tokio::task::JoinError>) -> DemoError {
    match r {
        Ok(Err(e)) => DemoError::Daemon(e),
        _ => DemoError::DaemonEnded,
    }
}

/// A bearer token for this run only, from the operating system's randomness.
fn token(role: &str) -> Result<String, DemoError> {
    let hex = crate::console::session::random_hex().map_err(DemoError::Token)?;
    Ok(format!("demo-{role}-{}", &hex[..24]))
}
