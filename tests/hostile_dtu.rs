//! Hostile peers on the DTU dial-in listener (issue 17): a forged registration of
//! a connected DTU's id from another address, `dtu_allow` and `dtu_secret`, and the
//! per-address connection limit. Real sockets, a real SQLite store; the forger
//! dials from another loopback address (127.0.0.x) than the real DTU.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::field::*;
use pollwatch::clock::SystemClock;
use pollwatch::config::{parse_net, Device};
use pollwatch::sim::dtu::{DtuDevice, DtuSim};
use pollwatch::sim::modbus::{ModbusSim, Point as SimPoint};
use pollwatch::sim::profile::Profile;
use pollwatch::sources::field::dtu::{DtuHub, DtuIdentity, Takeover};
use pollwatch::sources::modbus::decode::{DataType, WordOrder};
use pollwatch::sources::modbus::plan::RegisterKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

const ID: &str = "860000000000042";

async fn listener(
    rig: &Rig,
    identity: DtuIdentity,
) -> (SocketAddr, Arc<DtuHub>, mpsc::Receiver<Takeover>) {
    let (tx, rx) = mpsc::channel(8);
    let mut opts = dtu_options(b"", b"", b"");
    opts.takeovers = Some(tx);
    let known: HashMap<String, DtuIdentity> = [(ID.to_string(), identity)].into();
    let (addr, hub) = dtu_listen(rig, opts, known).await;
    (addr, hub, rx)
}

async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(ip.parse().unwrap(), 0)).unwrap();
    s.connect(to).await.unwrap()
}

/// True when the listener hung up on `s` within `wait`.
async fn hung_up(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(wait, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn meter_sim() -> Arc<ModbusSim> {
    let sim = Arc::new(ModbusSim::new(Arc::new(SystemClock)));
    sim.add_unit(5);
    sim.set(
        5,
        RegisterKind::Holding,
        36,
        SimPoint::new(Profile::Constant(-1234.0), DataType::I32, WordOrder::ABCD),
    );
    sim
}

fn dtu_device() -> Device {
    toml::from_str(&format!(
        "protocol = \"modbus\"\ntransport = \"dtu\"\ndtu_id = \"{ID}\"\nunit = 5\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\n[[points]]\nfactor = \"e_p\"\nregister = \"holding\"\naddress = 36\ntype = \"i32\"\nscale = 0.001\n"
    ))
    .unwrap()
}

#[tokio::test]
async fn a_forged_registration_from_another_address_is_refused_and_the_real_dtu_keeps_its_line() {
    let mut rig = Rig::new().await;
    let identity = DtuIdentity {
        enterprise: "E1".into(),
        ..Default::default()
    };
    let (addr, hub, mut takeovers) = listener(&rig, identity).await;
    let (_dtu_stop, dtu_stop_rx) = watch::channel(false);
    let real = DtuSim::new(ID);
    let real_stats = real.clone();
    tokio::spawn(real.run(addr, DtuDevice::Modbus(meter_sim()), dtu_stop_rx));
    let sources = rig.start_with_dtu(
        vec![field_device("M-DTU", &dtu_device())],
        Some((hub, Vec::new())),
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = rig.readings("M-DTU", "e_p").await.len();
    assert!(before >= 2, "polled over the real DTU: {before}");

    // The forger knows the id and would answer polls with 999 kW.
    let mut forger = connect_from("127.0.0.5", addr).await;
    forger.write_all(ID.as_bytes()).await.unwrap();
    assert!(
        hung_up(&mut forger, Duration::from_secs(3)).await,
        "refused"
    );
    let t = tokio::time::timeout(Duration::from_secs(2), takeovers.recv())
        .await
        .expect("a takeover is reported")
        .unwrap();
    assert_eq!((t.dtu.as_str(), t.enterprise.as_str()), (ID, "E1"));
    assert_eq!(t.peer.ip().to_string(), "127.0.0.5");
    assert_eq!(t.holder.ip().to_string(), "127.0.0.1");

    tokio::time::sleep(Duration::from_millis(1000)).await;
    rig.finish(sources).await;
    let rows = rig.readings("M-DTU", "e_p").await;
    assert!(
        rows.len() > before + 2,
        "the real DTU goes on: {before} → {}",
        rows.len()
    );
    assert!(rows.iter().all(|r| r.value == -1.234), "no forged value");
    assert_eq!(
        real_stats.stats().connections,
        1,
        "the real DTU was never cut off"
    );
    let dead = rig.store.dead_letters(10).await.unwrap();
    let d = dead
        .iter()
        .find(|d| d.reason == "dtu_takeover")
        .expect("dead letter");
    assert!(d.peer.starts_with("127.0.0.5:"), "{}", d.peer);
    assert!(
        d.detail.contains("is connected from 127.0.0.1"),
        "{}",
        d.detail
    );
    // The registration is the provenance of what the line read.
    let events = rig.store.status_events(20).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.status == "connected" && e.detail.starts_with("peer 127.0.0.1:")),
        "{events:?}"
    );
}

#[tokio::test]
async fn allow_and_secret_refuse_registrations_that_do_not_prove_the_dtu() {
    let mut rig = Rig::new().await;
    let identity = DtuIdentity {
        enterprise: "E1".into(),
        allow: vec![parse_net("127.0.0.1").unwrap()],
        secret: Some("s3cret-42x".into()),
    };
    let (addr, hub, _takeovers) = listener(&rig, identity).await;
    let mut outsider = connect_from("127.0.0.6", addr).await;
    outsider
        .write_all(format!("{ID}:s3cret-42x").as_bytes())
        .await
        .unwrap();
    assert!(hung_up(&mut outsider, Duration::from_secs(3)).await);
    let mut guesser = connect_from("127.0.0.1", addr).await;
    guesser
        .write_all(format!("{ID}:guess-1234").as_bytes())
        .await
        .unwrap();
    assert!(hung_up(&mut guesser, Duration::from_secs(3)).await);
    let mut no_secret = connect_from("127.0.0.1", addr).await;
    no_secret.write_all(ID.as_bytes()).await.unwrap();
    assert!(hung_up(&mut no_secret, Duration::from_secs(3)).await);
    assert!(hub.take(ID).is_none(), "none of them got the line");

    let mut real = DtuSim::new(ID);
    real.registration = Some(format!("{ID}:s3cret-42x").into_bytes());
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(real.run(addr, DtuDevice::Modbus(meter_sim()), stop_rx));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while hub.take(ID).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the real DTU registers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = rig.stop.send(true);
    if let Some(w) = rig.writer.take() {
        drop(w);
    }
    if let Some(t) = rig.task.take() {
        t.finish(Duration::from_secs(5)).await;
    }
    let dead = rig.store.dead_letters(10).await.unwrap();
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "dtu_bad_secret").count(),
        2,
        "{reasons:?}"
    );
    assert!(reasons.contains(&"dtu_not_allowed"), "{reasons:?}");
    for d in &dead {
        assert!(
            !String::from_utf8_lossy(&d.raw).contains("guess-1234"),
            "secrets are not kept"
        );
    }
}

#[tokio::test]
async fn connections_per_address_are_limited() {
    let rig = Rig::new().await;
    let (addr, _hub, _t) = listener(&rig, DtuIdentity::default()).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from("127.0.0.7", addr).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut closed = 0;
    for s in &mut held {
        if hung_up(s, Duration::from_millis(5)).await {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 4,
        "16 held (until the registration timeout), 4 refused at once"
    );
    // Another address is served.
    let mut other = connect_from("127.0.0.8", addr).await;
    assert!(!hung_up(&mut other, Duration::from_millis(300)).await);
}
