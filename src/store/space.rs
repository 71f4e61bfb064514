//! Free disk space under the SQLite store, watched so that a full disk is seen
//! coming instead of met (issue 16).
//!
//! A full disk fails commits, and a failed commit costs nothing when the writer
//! only acknowledges what committed — but it is still an outage, and worse: the
//! last few megabytes are where SQLite needs room to roll back, checkpoint its
//! WAL and move readings into the archive. So pollwatch stops *before* the disk is
//! full. Below `[storage] min_free` (default: the smaller of 1 GiB and 5 % of the
//! file system) the writer holds new data exactly as it does for a database
//! outage — sources go unanswered and loggers keep their data to resend —,
//! `/readyz` turns 503 and says why, and the daemon raises a `disk_low` alert.
//! The archive move, which needs room for a copy of its slice before it deletes
//! it, stops earlier still, below twice `min_free`. When space returns everything
//! resumes by itself.
//!
//! The space is sampled with `statvfs` (space available to an unprivileged user,
//! as SQLite sees it) once a second by a small task that ends when the last
//! [`SpaceWatch`] is dropped. PostgreSQL's disk belongs to the database server,
//! often another machine; it is not watched here (see the README's storage
//! section for what a full PostgreSQL disk looks like).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::MinFree;

/// One sample of the store's file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes available to pollwatch.
    pub free: u64,
    pub total: u64,
    /// `min_free` resolved against `total`.
    pub min_free: u64,
}

impl Space {
    /// Below `min_free`: the writer holds new data.
    pub fn low(&self) -> bool {
        self.free < self.min_free
    }

    /// Below twice `min_free`: the archive move waits, before the writer has to.
    pub fn archive_paused(&self) -> bool {
        self.free < self.min_free.saturating_mul(2)
    }

    /// Why the writer holds, for logs and `/readyz`.
    pub fn reason(&self) -> String {
        format!(
            "free disk space {} is below [storage] min_free {}: new data is not accepted until space is freed",
            human_bytes(self.free),
            human_bytes(self.min_free)
        )
    }
}

/// `1.5 GiB`, `312.0 MiB`, `900 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// The latest sample, shared by the writer, the archive move, `/readyz` and
/// `/metrics`. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct SpaceWatch {
    rx: watch::Receiver<Option<Space>>,
}

impl SpaceWatch {
    /// Samples `dir` now and then every `every`, until the last clone is dropped.
    pub fn spawn(dir: PathBuf, min_free: MinFree, every: Duration) -> SpaceWatch {
        let first = sample(&dir, min_free).ok();
        let (tx, rx) = watch::channel(first);
        tokio::spawn(run(tx, dir, min_free, every));
        SpaceWatch { rx }
    }

    /// The latest sample; `None` if the file system could not be read.
    pub fn current(&self) -> Option<Space> {
        *self.rx.borrow()
    }

    pub fn low(&self) -> bool {
        self.current().is_some_and(|s| s.low())
    }

    pub fn archive_paused(&self) -> bool {
        self.current().is_some_and(|s| s.archive_paused())
    }

    /// Returns once free space is below `min_free`.
    pub async fn wait_until_low(&mut self) {
        // Never errs while we hold `rx`; if it did, there is nothing to wait for.
        if self
            .rx
            .wait_for(|s| s.is_some_and(|s| s.low()))
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }

    /// Returns once free space is at or above `min_free` again.
    pub async fn wait_until_ok(&mut self) {
        // Errors only when the sampler is gone, i.e. never while we hold `rx`.
        let _ = self.rx.wait_for(|s| !s.is_some_and(|s| s.low())).await;
    }
}

async fn run(tx: watch::Sender<Option<Space>>, dir: PathBuf, min_free: MinFree, every: Duration) {
    let mut was_low = tx.borrow().is_some_and(|s| s.low());
    let mut failing = false;
    if let Some(s) = tx.borrow().filter(|s| s.low()) {
        tracing::error!(dir = %dir.display(), "{}", s.reason());
    }
    loop {
        tokio::time::sleep(every).await;
        if tx.is_closed() {
            return;
        }
        match sample(&dir, min_free) {
            Ok(s) => {
                failing = false;
                if s.low() && !was_low {
                    tracing::error!(dir = %dir.display(), "{}", s.reason());
                } else if !s.low() && was_low {
                    tracing::info!(
                        dir = %dir.display(),
                        free = %human_bytes(s.free),
                        "free disk space is above [storage] min_free again: accepting data"
                    );
                }
                was_low = s.low();
                tx.send_replace(Some(s));
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read the free space of the store's file system");
                    failing = true;
                }
            }
        }
    }
}

fn sample(dir: &Path, min_free: MinFree) -> std::io::Result<Space> {
    let s = rustix::fs::statvfs(dir)?;
    let total = s.f_blocks.saturating_mul(s.f_frsize);
    Ok(Space {
        free: s.f_bavail.saturating_mul(s.f_frsize),
        total,
        min_free: min_free.threshold(total),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_stops_before_the_writer() {
        let s = |free| Space {
            free,
            total: 100,
            min_free: 10,
        };
        assert!(!s(25).archive_paused() && !s(25).low());
        assert!(s(15).archive_paused() && !s(15).low());
        assert!(s(5).archive_paused() && s(5).low());
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[tokio::test]
    async fn samples_a_real_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let w = SpaceWatch::spawn(
            dir.path().to_path_buf(),
            MinFree::default(),
            Duration::from_millis(10),
        );
        let s = w.current().unwrap();
        assert!(s.total > 0 && s.free <= s.total, "{s:?}");
        assert!(s.min_free <= 1 << 30);
    }
}
