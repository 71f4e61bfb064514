//! The bare client `pollwatch bench field --peer-cmd` runs against the same
//! simulators as pollwatch, in the same run, so that pollwatch's CPU per poll is
//! reported as a ratio to a program that does nothing but poll (the issue's
//! yardstick: Node.js + modbus-serial, see `benches/peer/`).
//!
//! The command runs under `sh -c 'exec …'` (so the measured pid is the client's
//! own) with `PEER_HOST`, `PEER_BASE_PORT`, `PEER_GATEWAYS`, `PEER_UNITS` and
//! `PEER_DEVICES` set. It must print, at least once a second, a line
//! `peer polls=<good polls so far> errors=<n> p50_ms=<x> p99_ms=<y>`; its CPU time
//! and peak memory are read from /proc, like pollwatch's own.

use std::fmt;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

use super::procstat::ProcStats;
use super::BenchError;

/// Where the peer polls: the same simulated gateways as pollwatch.
#[derive(Debug, Clone)]
pub struct PeerTarget {
    pub base_port: u16,
    pub gateways: usize,
    pub units: u16,
    pub devices: usize,
}

/// One status line of the peer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeerLine {
    pub polls: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl PeerLine {
    pub fn parse(line: &str) -> Option<PeerLine> {
        let rest = line.trim().strip_prefix("peer ")?;
        let mut out = PeerLine::default();
        let mut seen = 0;
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            match k {
                "polls" => out.polls = v.parse().ok()?,
                "errors" => out.errors = v.parse().ok()?,
                "p50_ms" => out.p50_ms = v.parse().ok()?,
                "p99_ms" => out.p99_ms = v.parse().ok()?,
                _ => continue,
            }
            seen += 1;
        }
        (seen == 4).then_some(out)
    }
}

#[derive(Debug, Clone)]
pub struct PeerReport {
    pub seconds: f64,
    /// Good polls within the measured window.
    pub polls: u64,
    pub errors: u64,
    pub cost: ProcStats,
    pub jitter_p50_ms: f64,
    pub jitter_p99_ms: f64,
}

impl PeerReport {
    pub fn cpu_per_10k(&self) -> f64 {
        per_10k(self.cost.cpu, self.polls)
    }
}

/// CPU seconds per 10,000 polls.
pub fn per_10k(cpu: Duration, polls: u64) -> f64 {
    if polls == 0 {
        return f64::NAN;
    }
    cpu.as_secs_f64() * 10_000.0 / polls as f64
}

impl fmt::Display for PeerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "peer: {} polls in {:.0} s ({} errors): CPU {:.2} s = {:.3} s per 10k polls; {:.2} context switches per poll; peak RSS {:.0} MiB; jitter p50 {:.0} ms, p99 {:.0} ms",
            self.polls,
            self.seconds,
            self.errors,
            self.cost.cpu.as_secs_f64(),
            self.cpu_per_10k(),
            self.cost.context_switches as f64 / self.polls.max(1) as f64,
            self.cost.peak_rss_kib as f64 / 1024.0,
            self.jitter_p50_ms,
            self.jitter_p99_ms,
        )
    }
}

/// Runs `command` against `target`: `warmup`, then `seconds` measured.
pub async fn run(
    command: &str,
    target: &PeerTarget,
    warmup: Duration,
    seconds: u64,
) -> Result<PeerReport, BenchError> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .env("PEER_HOST", "127.0.0.1")
        .env("PEER_BASE_PORT", target.base_port.to_string())
        .env("PEER_GATEWAYS", target.gateways.to_string())
        .env("PEER_UNITS", target.units.to_string())
        .env("PEER_DEVICES", target.devices.to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| BenchError::Setup(format!("starting the peer {command:?}: {e}")))?;
    let pid = child
        .id()
        .ok_or_else(|| BenchError::Setup("the peer exited at once".into()))?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| BenchError::Setup("no peer stdout".into()))?;
    let (tx, mut rx) = watch::channel(None::<PeerLine>);
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(p) = PeerLine::parse(&line) {
                tx.send_replace(Some(p));
            }
        }
    });
    let started = matches!(
        tokio::time::timeout(Duration::from_secs(30), rx.wait_for(Option::is_some)).await,
        Ok(Ok(_))
    );
    if !started {
        return Err(BenchError::Setup(format!(
            "the peer {command:?} printed no `peer polls=…` line within 30 s"
        )));
    }
    tokio::time::sleep(warmup).await;
    let gone = || BenchError::Setup(format!("the peer {command:?} exited during the run"));
    let before = ProcStats::read(Some(pid)).ok_or_else(gone)?;
    let line0 = (*rx.borrow_and_update()).unwrap_or_default();
    let t0 = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = ProcStats::read(Some(pid)).ok_or_else(gone)?;
    let wall = t0.elapsed();
    let line1 = (*rx.borrow_and_update()).unwrap_or_default();
    let _ = child.kill().await;
    Ok(PeerReport {
        seconds: wall.as_secs_f64(),
        polls: line1.polls.saturating_sub(line0.polls),
        errors: line1.errors.saturating_sub(line0.errors),
        cost: after.since(&before),
        jitter_p50_ms: line1.p50_ms,
        jitter_p99_ms: line1.p99_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        assert_eq!(
            PeerLine::parse("peer polls=120 errors=2 p50_ms=1 p99_ms=7.5"),
            Some(PeerLine {
                polls: 120,
                errors: 2,
                p50_ms: 1.0,
                p99_ms: 7.5
            })
        );
        assert_eq!(PeerLine::parse("peer polls=1 errors=0"), None);
        assert_eq!(PeerLine::parse("polls=1 errors=0 p50_ms=1 p99_ms=1"), None);
        assert_eq!(
            PeerLine::parse("peer polls=x errors=0 p50_ms=1 p99_ms=1"),
            None
        );
        assert_eq!(PeerLine::parse(""), None);
    }

    #[test]
    fn cost_per_10k_polls() {
        assert!((per_10k(Duration::from_secs(2), 40_000) - 0.5).abs() < 1e-9);
        assert!(per_10k(Duration::from_secs(2), 0).is_nan());
    }
}
