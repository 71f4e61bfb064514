//! The pollwatch binary as a child process, for tests that must kill it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A running daemon; killed if the test ends (or panics) without stopping it, so
/// no test leaves a daemon behind.
pub struct Daemon {
    child: Option<Child>,
    /// Every log line so far, for `wait_for_log`.
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    /// The "pollwatch ready" line.
    pub ready: String,
}

impl Daemon {
    /// Starts `pollwatch run --config <config>` and waits for "pollwatch ready".
    /// Its log is appended to `log` (when given) for post-mortems.
    pub fn start(config: &Path, log: Option<&Path>) -> Daemon {
        Self::start_with(config, log, &[])
    }

    /// As [`Daemon::start`], with extra environment variables.
    pub fn start_with(config: &Path, log: Option<&Path>, envs: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pollwatch"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut file = log.map(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap()
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let lines: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let shared = lines.clone();
        std::thread::spawn(move || {
            let mut ready = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if line.contains("pollwatch ready") {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(line.clone());
                    }
                }
                let (l, cv) = &*shared;
                l.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        let mut d = Daemon {
            child: Some(child),
            lines,
            ready: String::new(),
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => d.ready = line,
            Err(_) => {
                d.kill();
                panic!("daemon not ready within 30 s: {:#?}", d.log());
            }
        }
        d
    }

    /// A `key=value` field of the ready line, e.g. `field("http")`.
    pub fn field(&self, key: &str) -> String {
        let needle = format!("{key}=");
        self.ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&needle))
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.ready))
            .to_string()
    }

    /// The first log line at or after line `from` containing `needle`, waiting up
    /// to `timeout`.
    pub fn wait_for_log(&self, from: usize, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (l, cv) = &*self.lines;
        let mut lines = l.lock().unwrap();
        loop {
            if let Some(found) = lines.iter().skip(from).find(|x| x.contains(needle)) {
                return Some(found.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = cv.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// Log lines so far (to pass as `from` to `wait_for_log`).
    pub fn log_len(&self) -> usize {
        self.lines.0.lock().unwrap().len()
    }

    pub fn log(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().clone()
    }

    /// Sends a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for an exit already asked for (a signal sent with [`Daemon::signal`]).
    pub fn terminate_wait(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        c.wait().unwrap()
    }

    /// SIGTERM, as systemd stops it; returns how it exited.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        c.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
