//! Live reload (SIGHUP, `POST /-/reload`): load and validate the whole config
//! directory again; on any error change nothing and report every problem; on
//! success apply the [`ConfigDiff`] source by source, so that what did not
//! change keeps its connection (invariant 5).
//!
//! Requests go through one channel to the daemon's main loop, so reloads never
//! overlap and a reload cannot race shutdown.

use tokio::sync::{mpsc, oneshot};

use crate::config::diff::ConfigDiff;
use crate::config::ConfigErrors;

/// What a successful reload did.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    pub hash: String,
    pub diff: ConfigDiff,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new config is invalid; the old one stays in force:\n{0}")]
    Invalid(ConfigErrors),
    #[error("the daemon is shutting down")]
    Stopped,
}

pub type ReloadOutcome = Result<ReloadReport, ReloadError>;

pub struct ReloadRequest {
    /// `signal`, `http`, …: for the log.
    pub origin: &'static str,
    pub reply: Option<oneshot::Sender<ReloadOutcome>>,
}

/// Asks the daemon to reload; cheap to clone.
#[derive(Clone)]
pub struct ReloadHandle {
    tx: mpsc::Sender<ReloadRequest>,
}

/// The daemon's end.
pub struct ReloadRequests {
    pub(super) rx: mpsc::Receiver<ReloadRequest>,
}

pub fn channel() -> (ReloadHandle, ReloadRequests) {
    // Reloads are rare and serialised; a few waiting is plenty.
    let (tx, rx) = mpsc::channel(8);
    (ReloadHandle { tx }, ReloadRequests { rx })
}

impl ReloadHandle {
    /// Reloads and waits for the outcome.
    pub async fn reload(&self, origin: &'static str) -> ReloadOutcome {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(ReloadRequest {
                origin,
                reply: Some(reply),
            })
            .await
            .map_err(|_| ReloadError::Stopped)?;
        wait.await.map_err(|_| ReloadError::Stopped)?
    }

    /// Asks for a reload without waiting (a signal handler); the outcome is logged.
    pub fn request(&self, origin: &'static str) {
        if self
            .tx
            .try_send(ReloadRequest {
                origin,
                reply: None,
            })
            .is_err()
        {
            tracing::warn!(
                origin,
                "reload already pending; this request is folded into it"
            );
        }
    }
}
