//! An HJ 212 server on a real socket with a real store, for the server tests.

use std::sync::Arc;
use std::time::Duration;

use pollwatch::clock::SystemClock;
use pollwatch::config::Config;
use pollwatch::model::LocationKind;
use pollwatch::sim::LoggerSim;
use pollwatch::sources::hj212::{Hj212Server, Hj212Stats, Registry, ServerConfig};
use pollwatch::store::{ReadingQuery, Store, StoredReading, Writer, WriterTask};
use tokio::sync::watch;

pub struct Harness {
    pub server: Option<Hj212Server>,
    pub stats: Arc<Hj212Stats>,
    pub store: Store,
    pub writer: Option<(Writer, WriterTask)>,
    pub stop: watch::Sender<bool>,
    /// Whose readings [`Harness::readings`] reads.
    pub enterprise: String,
    pub _dir: tempfile::TempDir,
}

impl Harness {
    /// The server for `cfg` (its directory lives in `dir`), quiet after 200 ms.
    pub async fn start_with(cfg: Config, dir: tempfile::TempDir, enterprise: &str) -> Harness {
        let (store, writer, task) = super::store_and_writer(&cfg.storage_url).await;
        let (stop, stop_rx) = watch::channel(false);
        let (_tx, registry) = watch::channel(Arc::new(Registry::from_config(&cfg)));
        let mut scfg = ServerConfig::from_config(&cfg);
        scfg.quiet = Duration::from_millis(200);
        let server = Hj212Server::start(
            scfg,
            registry,
            writer.clone(),
            Arc::new(SystemClock),
            stop_rx,
        )
        .await
        .unwrap();
        Harness {
            stats: server.stats(),
            server: Some(server),
            store,
            writer: Some((writer, task)),
            stop,
            enterprise: enterprise.to_string(),
            _dir: dir,
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().local_addr()
    }

    pub fn sim(&self, mn: &str, pw: &str) -> LoggerSim {
        let mut s = LoggerSim::new(self.addr(), mn, pw);
        s.answer_timeout = Duration::from_millis(800);
        s
    }

    /// Stops the server and flushes the writer.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(s) = self.server.take() {
            s.join().await;
        }
        if let Some((w, t)) = self.writer.take() {
            drop(w);
            t.finish(Duration::from_secs(5)).await;
        }
    }

    pub async fn readings(&self, outlet: &str, factor: &str) -> Vec<StoredReading> {
        self.store
            .readings(
                &ReadingQuery::new(&self.enterprise, LocationKind::Outlet, outlet).factor(factor),
            )
            .await
            .unwrap()
    }
}
