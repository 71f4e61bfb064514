//! Devices behind 4G DTUs that dial in: registration, heartbeats, reconnects.

mod common;

use common::field::*;
use pollwatch::clock::SystemClock;
use pollwatch::config::{Device, Point};
use pollwatch::sim::modbus::{ModbusSim, Point as SimPoint};
use pollwatch::sim::profile::Profile;
use pollwatch::sources::field::dtu::DtuHub;
use pollwatch::sources::modbus::decode::{DataType, WordOrder};
use pollwatch::sources::modbus::plan::RegisterKind;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A DTU listener on an ephemeral port that knows one DTU id.
async fn dtu_listener(
    rig: &Rig,
    id: &str,
    prefix: &[u8],
    suffix: &[u8],
    heartbeat: &[u8],
) -> (std::net::SocketAddr, Arc<DtuHub>) {
    let known = [(id.to_string(), Default::default())].into_iter().collect();
    dtu_listen(rig, dtu_options(prefix, suffix, heartbeat), known).await
}

/// A peer that connects and says nothing is closed after the registration
/// timeout; the listener goes on serving DTUs that do register.
#[tokio::test]
async fn a_silent_connection_is_closed_after_the_registration_timeout() {
    use tokio::io::AsyncReadExt;
    let rig = Rig::new().await;
    let (addr, hub) = dtu_listener(&rig, "860000000000009", b"", b"", b"").await;
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("closed by the listener, not left open")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "not before the 2 s timeout"
    );
    let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut ok, b"860000000000009")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while hub.take("860000000000009").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "registration after a silent peer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn devices_behind_a_dtu_that_dials_in_with_heartbeats_and_reconnects() {
    use pollwatch::sim::dtu::{DtuDevice, DtuSim};
    let mut rig = Rig::new().await;
    let heartbeat = b"HB-860000000000001".to_vec();
    let (addr, hub) = dtu_listener(&rig, "860000000000001", b"", b"", &heartbeat).await;

    // A Modbus meter behind the DTU; the DTU heartbeats every 50 ms when idle.
    let sim = Arc::new(ModbusSim::new(Arc::new(SystemClock)));
    sim.add_unit(5);
    sim.set(
        5,
        RegisterKind::Holding,
        36,
        SimPoint::new(Profile::Constant(-1234.0), DataType::I32, WordOrder::ABCD),
    );
    let mut dtu = DtuSim::new("860000000000001");
    dtu.heartbeat = Some((Duration::from_millis(50), heartbeat.clone()));
    let (dtu_stop, dtu_stop_rx) = watch::channel(false);
    let stats = dtu.clone();
    tokio::spawn(dtu.run(addr, DtuDevice::Modbus(sim.clone()), dtu_stop_rx));
    // A stranger: recorded as a dead letter and hung up on.
    let mut stranger = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stranger, b"999999999999999")
        .await
        .unwrap();

    let d: Device = toml::from_str(
        "protocol = \"modbus\"\ntransport = \"dtu\"\ndtu_id = \"860000000000001\"\nunit = 5\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\n[[points]]\nfactor = \"e_p\"\nregister = \"holding\"\naddress = 36\ntype = \"i32\"\nscale = 0.001\n",
    )
    .unwrap();
    let sources = rig.start_with_dtu(
        vec![field_device("M-DTU", &d)],
        Some((hub.clone(), heartbeat)),
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        stats.stats().heartbeats > 0,
        "heartbeats were sent and had to be filtered"
    );
    let before = rig.readings("M-DTU", "e_p").await.len();
    assert!(before >= 3, "polled over the DTU: {before}");

    // The DTU drops and dials in again: the new connection replaces the old one.
    let _ = dtu_stop.send(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = DtuSim::new("860000000000001");
    again.heartbeat = None;
    let (_stop2, stop2_rx) = watch::channel(false);
    tokio::spawn(again.run(addr, DtuDevice::Modbus(sim.clone()), stop2_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    rig.finish(sources).await;
    let rows = rig.readings("M-DTU", "e_p").await;
    assert!(
        rows.len() > before + 2,
        "polling resumed on the new connection: {} → {}",
        before,
        rows.len()
    );
    assert!(rows.iter().all(|r| r.value == -1.234), "{rows:?}");
    let dead = rig.store.dead_letters(10).await.unwrap();
    assert!(
        dead.iter()
            .any(|d| d.reason == "unknown_dtu" && d.raw == b"999999999999999"),
        "{dead:?}"
    );
}

#[tokio::test]
async fn dlt645_meter_behind_a_dtu() {
    use pollwatch::sim::dlt645_meter::MeterSim;
    use pollwatch::sim::dtu::{DtuDevice, DtuSim};
    let mut rig = Rig::new().await;
    let (addr, hub) = dtu_listener(&rig, "DTU-A", b"REG:", b"\r\n", &[0xFE]).await;
    let meter = Arc::new(MeterSim::new(Arc::new(SystemClock)));
    let address: pollwatch::sources::dlt645::types::MeterAddress = "000000000001".parse().unwrap();
    meter.set(address, 0x0000_0000, Profile::Constant(123_456.78));
    let mut dtu = DtuSim::new("DTU-A");
    dtu.registration = Some(b"REG:DTU-A\r\n".to_vec());
    dtu.heartbeat = Some((Duration::from_millis(40), vec![0xFE]));
    let (_dtu_stop, dtu_stop_rx) = watch::channel(false);
    tokio::spawn(dtu.run(addr, DtuDevice::Meter(meter), dtu_stop_rx));
    let mut d: Device = toml::from_str("protocol = \"dlt645\"\ntransport = \"dtu\"\ndtu_id = \"DTU-A\"\nmeter_address = \"000000000001\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n").unwrap();
    d.points.push(Point {
        di: Some("00000000".into()),
        register: None,
        address: None,
        data_type: None,
        ..point(
            "e_ep",
            RegisterKind::Holding,
            0,
            DataType::U16,
            WordOrder::ABCD,
        )
    });
    let sources = rig.start_with_dtu(
        vec![field_device_any("M-645-DTU", &d)],
        Some((hub, vec![0xFE])),
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    rig.finish(sources).await;
    let rows = rig.readings("M-645-DTU", "e_ep").await;
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.value == 123_456.78));
}
