//! Killing the daemon between receipt and 9014 loses nothing: the logger's resend
//! is stored, once.

mod common;

use std::time::Duration;

use pollwatch::model::LocationKind;
use pollwatch::sim::hj212_logger::cp_values;
use pollwatch::sim::{LoggerSim, SimError};
use pollwatch::sources::hj212::codec::reply::encode_frame;
use pollwatch::sources::hj212::codec::time::LocalDateTime;
use pollwatch::store::{ReadingQuery, Store, StoreOptions};
use sqlx::Connection;

#[tokio::test]
async fn sigkill_before_the_answer_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = common::hj212_config(dir.path(), "");
    let toml = cfg.dir.join("pollwatch.toml");
    let text = std::fs::read_to_string(&toml).unwrap().replace(
        "[hj212]\nlisten = \"127.0.0.1:0\"",
        &format!("[hj212]\nlisten = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&toml, text).unwrap();
    let db = dir.path().join("state/pollwatch.db");

    let mut daemon = common::daemon::Daemon::start(&cfg.dir, None);
    // Hold the database so the daemon receives the upload but cannot make it durable.
    let mut lock = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();

    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut logger = LoggerSim::new(addr, "23040281003022", "123456");
    logger.tries = 1;
    logger.answer_timeout = Duration::from_millis(1500);
    let at = LocalDateTime {
        year: 2026,
        month: 11,
        day: 27,
        hour: 10,
        minute: 0,
        second: 0,
    };
    let (qn, seg) = logger.segment("2011", at, &cp_values("Rtd", &[("w01018", 42.5, 'N')]));
    let frame = encode_frame(&seg).unwrap();
    let err = logger.send_until_answered(&qn, &frame).await.unwrap_err();
    assert!(
        matches!(err, SimError::NoAnswer { .. }),
        "no 9014 before it is durable"
    );

    daemon.kill();
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();

    let mut daemon = common::daemon::Daemon::start(&cfg.dir, None);
    logger.disconnect();
    logger.tries = 5;
    let d = logger.send_until_answered(&qn, &frame).await.unwrap();
    assert_eq!(d.attempts, 1);
    // And a resend of an upload already answered (the 9014 got lost on the way).
    logger.send_until_answered(&qn, &frame).await.unwrap();
    assert!(daemon.terminate().success());

    let store = Store::open(
        &format!("sqlite://{}", db.display()),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    let rows = store
        .readings(&ReadingQuery::new("E1", LocationKind::Outlet, "DW001").factor("w01018"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "stored exactly once");
    assert_eq!(rows[0].value, 42.5);
}
