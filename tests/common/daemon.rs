//! The pollwatch binary as a child process, for tests that must kill it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A running daemon; killed if the test ends (or panics) without stopping it, so
/// no test leaves a daemon behind.
pub struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    /// Starts `pollwatch run --config <config>` and waits for "pollwatch ready".
    /// Its log is appended to `log` (when given) for post-mortems.
    pub fn start(config: &Path, log: Option<&Path>) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pollwatch"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
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
        std::thread::spawn(move || {
            let mut ready = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if line.contains("pollwatch ready") {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        let mut d = Daemon { child: Some(child) };
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            d.kill();
            panic!("daemon not ready within 30 s");
        }
        d
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
