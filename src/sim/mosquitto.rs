//! A private Mosquitto broker for tests and benchmarks that must do to a broker
//! what one must never do to a shared one: restart it mid-stream, or tune it for a
//! measurement. It runs the machine's `mosquitto` binary with a config of our own
//! in a directory of our own, on a port of our own.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot write the broker config {path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start `mosquitto` (is the mosquitto package installed?): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("mosquitto did not accept connections on port {port} within {secs} s")]
    NotListening { port: u16, secs: u64 },
    #[error("no free TCP port: {0}")]
    Port(#[source] std::io::Error),
}

/// How the private broker is set up.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Keep sessions and queued messages across a restart (written at shutdown).
    pub persistence: bool,
    /// Messages in flight to one client (mosquitto's default is 20, which caps a
    /// QoS 1 subscriber at 20 messages per commit round trip).
    pub max_inflight: u32,
    /// Lines appended verbatim (a TLS listener, say).
    pub extra: String,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            persistence: true,
            max_inflight: 100,
            extra: String::new(),
        }
    }
}

pub struct Broker {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    /// Starts mosquitto on a free port, with its config, database and log in `dir`.
    pub fn start(dir: &Path, opts: &BrokerOptions) -> Result<Broker, BrokerError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(BrokerError::Port)?
            .port();
        let path = dir.join("mosquitto.conf");
        // Queued messages are unbounded (0): a subscriber that is down must find
        // everything waiting, which is the point of a persistent session.
        let text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence {}\npersistence_location {}/\nautosave_interval 0\nmax_queued_messages 0\nmax_inflight_messages {}\nlog_dest file {}/mosquitto.log\nuser root\n{}\n",
            opts.persistence,
            dir.display(),
            opts.max_inflight,
            dir.display(),
            opts.extra,
        );
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|source| BrokerError::Config {
                path: path.clone(),
                source,
            })?;
        let mut broker = Broker {
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        broker.spawn()?;
        Ok(broker)
    }

    fn spawn(&mut self) -> Result<(), BrokerError> {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(BrokerError::Spawn)?;
        self.child = Some(child);
        let started = Instant::now();
        let limit = Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if started.elapsed() > limit {
                return Err(BrokerError::NotListening {
                    port: self.port,
                    secs: limit.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The broker's own log (connections, session restores, errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Stops the broker the way systemd does (SIGTERM, which saves its database)
    /// and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Stops and starts again on the same port with the same database.
    pub fn restart(&mut self) -> Result<(), BrokerError> {
        self.stop();
        self.spawn()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
