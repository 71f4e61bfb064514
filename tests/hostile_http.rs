//! Hostile clients of the HTTP API and console (issue 17), against the real
//! daemon: a half-sent request is closed after `header_read_timeout`, connections
//! past `max_connections` are closed at once, and wrong bearer tokens share the
//! console's throttle.

mod common;

use std::time::Duration;

use common::console::{client, login, write_config, OPERATOR};
use common::daemon::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// True when the server closed `s` within `wait`.
async fn closed(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_connection_floods_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "header_read_timeout = \"1s\"\nmax_connections = 8\n",
    );
    let mut daemon = Daemon::start(&cfg.dir, Some(&dir.path().join("daemon.log")));
    cfg.bound(&daemon);
    let addr = cfg.base().trim_start_matches("http://").to_string();

    // Half a request, then nothing: closed after the header timeout.
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: pollwatch\r\n")
        .await
        .unwrap();
    assert!(
        closed(&mut half, Duration::from_secs(4)).await,
        "half-sent request held"
    );

    // Eight idle connections take every place; the ninth is closed at once.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ninth = TcpStream::connect(&addr).await.unwrap();
    assert!(
        closed(&mut ninth, Duration::from_millis(500)).await,
        "over the cap"
    );
    // Once the idle ones are cut off by the header timeout, requests are served.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = client()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(idle);
    assert!(daemon.terminate().success(), "stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_bearer_tokens_share_the_console_throttle() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let mut daemon = Daemon::start(&cfg.dir, Some(&dir.path().join("daemon.log")));
    cfg.bound(&daemon);
    let base = cfg.base();
    let c = client();
    for i in 0..5 {
        let r = c
            .get(format!("{base}/api/v1/alerts"))
            .bearer_auth(format!("guess-{i:02}-0123456789"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "guess {i}");
    }
    let r = c
        .get(format!("{base}/api/v1/alerts"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "the right token too, for a while");
    assert!(r.headers().contains_key("retry-after"));
    let (status, _) = login(&c, &base, OPERATOR).await;
    assert_eq!(status, 429, "the console shares the throttle");
    assert!(daemon.terminate().success(), "stops cleanly");
}
