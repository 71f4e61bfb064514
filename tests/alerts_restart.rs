//! Nothing lost, nothing twice: 500 alerts' notifications queued behind a channel
//! that hangs, the daemon SIGKILLed, the channel answering again after the
//! restart — each alert's message is delivered exactly once.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::Daemon;

const N: usize = 500;

fn write_config(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\nstate_dir = {:?}\n[hj212]\nlisten = \"127.0.0.1:0\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\
             [alerts]\nconsole_url = \"http://console.example\"\n\
             [[channels]]\nid = \"wecom\"\nkind = \"wecom\"\nurl = \"{url}\"\nformat = \"text\"\n\
             timeout = \"60s\"\nrate_limit = 100000\n",
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(cfg.join("duty.toml"), common::console::DUTY_TOML).unwrap();
    let e1 = common::console::e1_outlets(N);
    std::fs::write(cfg.join("enterprises/e1.toml"), e1).unwrap();
    cfg
}

fn hj212_port(daemon: &Daemon) -> u16 {
    daemon
        .field("hj212")
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .port()
}

async fn outbox_counts(db: &std::path::Path) -> HashMap<String, usize> {
    let store =
        pollwatch::store::Store::open(&format!("sqlite://{}", db.display()), &Default::default())
            .await
            .unwrap();
    let mut out = HashMap::new();
    for row in store.outbox(None, None, 10_000).await.unwrap() {
        *out.entry(row.state).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_notifications_queued_at_sigkill_are_delivered_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let hang = Arc::new(AtomicBool::new(true));
    let (url, delivered) = common::wecom::link_counter(hang.clone()).await;
    let cfg = write_config(dir.path(), &url);
    let db = dir.path().join("state/pollwatch.db");
    let mut daemon = Daemon::start(&cfg, Some(&dir.path().join("daemon.log")));
    let port = hj212_port(&daemon);
    for i in 0..N {
        common::console::upload_exceedance_as(port, &format!("MN-{i:03}")).await;
    }
    let t = Instant::now();
    loop {
        let c = outbox_counts(&db).await;
        if c.get("pending").copied().unwrap_or(0) == N || t.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = outbox_counts(&db).await;
    assert_eq!(before.get("pending"), Some(&N), "{before:?}");
    daemon.kill();
    assert!(delivered.lock().unwrap().is_empty(), "nothing answered yet");

    hang.store(false, Ordering::SeqCst);
    let mut daemon = Daemon::start(&cfg, Some(&dir.path().join("daemon2.log")));
    let t = Instant::now();
    while delivered.lock().unwrap().len() < N && t.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Time for a wrong second send to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(daemon.terminate().success());
    let got = delivered.lock().unwrap().clone();
    assert_eq!(got.len(), N, "every alert's message arrived");
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let after = outbox_counts(&db).await;
    assert_eq!(after.get("sent"), Some(&N), "{after:?}");
}
