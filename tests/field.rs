//! Field-device polling against simulated devices over real sockets and
//! pseudo-terminals, into a real SQLite store.

mod common;

use common::field::*;
use pollwatch::clock::SystemClock;
use pollwatch::config::{Device, Point, Transport};
use pollwatch::model::{Flag, Location, LocationKind};
use pollwatch::sim::modbus::{serve_rtu, ModbusSim, Point as SimPoint};
use pollwatch::sim::profile::Profile;
use pollwatch::sources::modbus::decode::{DataType, WordOrder};
use pollwatch::sources::modbus::plan::RegisterKind;
use pollwatch::store::{ReadingQuery, StoredReading};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn modbus_tcp_values_of_every_type_land_in_the_store() {
    let mut rig = Rig::new().await;
    let sim = Arc::new(ModbusSim::new(Arc::new(SystemClock)));
    sim.add_unit(7);
    let cases = [
        ("e_ua", DataType::U16, WordOrder::ABCD, 231.0),
        ("e_ub", DataType::I16, WordOrder::ABCD, -12.0),
        ("e_uc", DataType::U32, WordOrder::CDAB, 70_000.0),
        ("e_ia", DataType::I32, WordOrder::DCBA, -70_000.0),
        ("e_ib", DataType::F32, WordOrder::ABCD, 12.5),
        ("e_ic", DataType::F32, WordOrder::BADC, -0.75),
        ("e_ep", DataType::F64, WordOrder::CDAB, 123_456.789),
        ("e_p", DataType::U64, WordOrder::ABCD, 9_000_000_000.0),
        ("e_f", DataType::I64, WordOrder::DCBA, -5_000_000_000.0),
    ];
    let mut points = Vec::new();
    let mut addr = 0u16;
    for (factor, ty, order, value) in cases {
        sim.set(
            7,
            RegisterKind::Holding,
            addr,
            SimPoint::new(Profile::Constant(value), ty, order),
        );
        points.push(point(factor, RegisterKind::Holding, addr, ty, order));
        addr += 4;
    }
    let address = tcp_sim(sim.clone(), false, rig.stop.subscribe()).await;
    let d = device(Transport::Tcp, &address, 7, 200, 150, points);
    let sources = rig.start(vec![field_device("M1", &d)]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    rig.finish(sources).await;
    for (factor, _, _, value) in cases {
        let rows = rig.readings("M1", factor).await;
        assert!(!rows.is_empty(), "{factor} polled");
        assert_eq!(rows[0].value, value, "{factor}");
        assert_eq!(rows[0].flag, Flag::N);
        assert_eq!(rows[0].device, "M1");
    }
    // Nine points, 36 registers, one merged request per poll.
    let stats = sim.stats(7);
    let polls = rig.readings("M1", "e_ua").await.len() as u64;
    assert_eq!(stats.requests, polls, "{stats:?}");
}

/// Largest gap between consecutive reading times.
fn max_gap(rows: &[StoredReading]) -> Duration {
    rows.windows(2)
        .map(|w| (w[1].ts - w[0].ts).to_std().unwrap_or_default())
        .max()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_dead_device_on_a_shared_line_does_not_hold_up_the_live_one() {
    let mut rig = Rig::new().await;
    let sim = Arc::new(ModbusSim::new(Arc::new(SystemClock)));
    for unit in [1, 2] {
        sim.add_unit(unit);
        sim.set(
            unit,
            RegisterKind::Input,
            0,
            SimPoint::new(
                Profile::Constant(100.0 * f64::from(unit)),
                DataType::F32,
                WordOrder::ABCD,
            ),
        );
    }
    sim.set_silent(2, true);
    let address = tcp_sim(sim.clone(), true, rig.stop.subscribe()).await;
    let pts = || {
        vec![point(
            "e_p",
            RegisterKind::Input,
            0,
            DataType::F32,
            WordOrder::ABCD,
        )]
    };
    let (interval, timeout) = (300, 100);
    let live = device(Transport::RtuOverTcp, &address, 1, interval, timeout, pts());
    let dead = device(Transport::RtuOverTcp, &address, 2, interval, timeout, pts());
    let sources = rig.start(vec![
        field_device("LIVE", &live),
        field_device("DEAD", &dead),
    ]);
    let health = sources.health();
    tokio::time::sleep(Duration::from_millis(3000)).await;

    let rows = rig.readings("LIVE", "e_p").await;
    assert!(
        rows.len() >= 8,
        "live device kept polling: {} readings in 3 s",
        rows.len()
    );
    assert!(rows.iter().all(|r| r.value == 100.0));
    // Cadence: interval plus one timeout of the dead neighbour, plus scheduling slack.
    let gap = max_gap(&rows);
    assert!(
        gap <= Duration::from_millis(interval + timeout + 100),
        "live gap {gap:?}"
    );
    let (dead_polls, dead_online) = {
        let h = health.lock().unwrap();
        let d = &h[&("E1".to_string(), "DEAD".to_string())];
        (d.polls, d.online)
    };
    assert!(!dead_online, "dead device reported offline");
    assert!(
        dead_polls <= 7,
        "dead device backed off ({dead_polls} polls in 3 s, 10 without backoff)"
    );

    // It comes back: polled normally again.
    sim.set_silent(2, false);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    rig.finish(sources).await;
    let back = rig.readings("DEAD", "e_p").await;
    assert!(
        back.len() >= 2,
        "revived device polled again: {}",
        back.len()
    );
    assert!(back.iter().all(|r| r.value == 200.0));
    let gap = max_gap(&back[back.len().saturating_sub(3)..]);
    assert!(
        gap <= Duration::from_millis(interval + 100),
        "normal cadence after return: {gap:?}"
    );
    let events = rig.store.status_events(50).await.unwrap();
    let dead: Vec<&str> = events
        .iter()
        .rev()
        .filter(|e| e.device == "DEAD")
        .map(|e| e.status.as_str())
        .collect();
    assert_eq!(dead, vec!["offline", "online"], "{events:?}");
}

#[tokio::test]
async fn a_late_reply_never_becomes_the_next_reading() {
    let mut rig = Rig::new().await;
    let sim = Arc::new(ModbusSim::new(Arc::new(SystemClock)));
    for (unit, value) in [(1, 1111.0), (2, 2222.0)] {
        sim.add_unit(unit);
        sim.set(
            unit,
            RegisterKind::Holding,
            10,
            SimPoint::new(Profile::Constant(value), DataType::F32, WordOrder::ABCD),
        );
    }
    // Unit 1 answers, but only after the poller has given up on it.
    sim.set_delay(1, Duration::from_millis(250));
    let address = tcp_sim(sim.clone(), true, rig.stop.subscribe()).await;
    let pts = || {
        vec![point(
            "e_p",
            RegisterKind::Holding,
            10,
            DataType::F32,
            WordOrder::ABCD,
        )]
    };
    let slow = device(Transport::RtuOverTcp, &address, 1, 200, 100, pts());
    let fast = device(Transport::RtuOverTcp, &address, 2, 200, 100, pts());
    let sources = rig.start(vec![
        field_device("SLOW", &slow),
        field_device("FAST", &fast),
    ]);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    rig.finish(sources).await;
    let fast_rows = rig.readings("FAST", "e_p").await;
    assert!(fast_rows.len() >= 5, "{}", fast_rows.len());
    assert!(
        fast_rows.iter().all(|r| r.value == 2222.0),
        "a late 1111 leaked: {fast_rows:?}"
    );
    assert!(
        rig.readings("SLOW", "e_p").await.is_empty(),
        "timed-out answers are never stored"
    );
}

#[tokio::test]
async fn a_status_register_sets_the_flag_of_the_values() {
    let mut rig = Rig::new().await;
    let sim = Arc::new(ModbusSim::new(Arc::new(SystemClock)));
    sim.add_unit(1);
    sim.set(
        1,
        RegisterKind::Holding,
        0,
        SimPoint::new(Profile::Constant(35.5), DataType::F32, WordOrder::ABCD),
    );
    sim.set(1, RegisterKind::Holding, 100, Profile::Constant(1.0));
    let address = tcp_sim(sim.clone(), false, rig.stop.subscribe()).await;
    let mut d = device(
        Transport::Tcp,
        &address,
        1,
        200,
        150,
        vec![point(
            "a21026",
            RegisterKind::Holding,
            0,
            DataType::F32,
            WordOrder::ABCD,
        )],
    );
    d.status = Some(toml::from_str("register = \"holding\"\naddress = 100\nmap = { codes = { \"0\" = \"N\", \"1\" = \"M\", \"2\" = \"D\", \"3\" = \"C\" } }\n").unwrap());
    let mut fd = field_device("X", &d);
    fd.location = Location::Outlet("DA001".into());
    let sources = rig.start(vec![fd]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.finish(sources).await;
    let rows = rig
        .store
        .readings(&ReadingQuery::new("E1", LocationKind::Outlet, "DA001").factor("a21026"))
        .await
        .unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| r.flag == Flag::M && r.value == 35.5),
        "{rows:?}"
    );
    assert_eq!(&*rows[0].unit, "mg/m³");
}

/// A pseudo-terminal pair: the simulator gets the master end, the poller opens the
/// slave end by its path like a real /dev/ttyUSB0.
fn pty() -> (
    tokio_serial::SerialStream,
    tokio_serial::SerialStream,
    String,
) {
    use tokio_serial::SerialPort;
    let (master, slave) = tokio_serial::SerialStream::pair().expect("pseudo-terminal pair");
    let path = slave.name().expect("pty slave has a path");
    (master, slave, path)
}

fn serial_device(protocol: &str, port: &str, extra: &str) -> Device {
    toml::from_str(&format!(
        "protocol = \"{protocol}\"\ntransport = \"rtu\"\nport = \"{port}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n{extra}"
    ))
    .unwrap()
}

#[tokio::test]
async fn modbus_rtu_over_a_serial_line() {
    let mut rig = Rig::new().await;
    let sim = Arc::new(ModbusSim::new(Arc::new(SystemClock)));
    sim.add_unit(3);
    sim.set(
        3,
        RegisterKind::Input,
        6,
        SimPoint::new(Profile::Constant(4.25), DataType::F32, WordOrder::ABCD),
    );
    let (master, _slave, path) = pty();
    tokio::spawn(serve_rtu(master, sim.clone(), rig.stop.subscribe()));
    let mut d = serial_device("modbus", &path, "unit = 3\n");
    d.points = vec![point(
        "e_ia",
        RegisterKind::Input,
        6,
        DataType::F32,
        WordOrder::ABCD,
    )];
    let sources = rig.start(vec![field_device("M-RTU", &d)]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    rig.finish(sources).await;
    let rows = rig.readings("M-RTU", "e_ia").await;
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r.value == 4.25 && r.protocol == pollwatch::model::Protocol::Modbus));
}

#[tokio::test]
async fn dlt645_meter_over_a_serial_line() {
    use pollwatch::sim::dlt645_meter::{serve, MeterSim};
    let mut rig = Rig::new().await;
    let sim = Arc::new(MeterSim::new(Arc::new(SystemClock)));
    let addr: pollwatch::sources::dlt645::types::MeterAddress = "000000000161".parse().unwrap();
    sim.set(addr, 0x0000_0000, Profile::Constant(123_456.78));
    sim.set(addr, 0x0203_0000, Profile::Constant(-12.3456));
    let (master, _slave, path) = pty();
    tokio::spawn(serve(master, sim.clone(), rig.stop.subscribe()));
    let mut d = serial_device("dlt645", &path, "meter_address = \"000000000161\"\n");
    for (factor, di) in [("e_ep", "00000000"), ("e_p", "02030000")] {
        d.points.push(Point {
            di: Some(di.into()),
            register: None,
            address: None,
            data_type: None,
            ..point(
                factor,
                RegisterKind::Holding,
                0,
                DataType::U16,
                WordOrder::ABCD,
            )
        });
    }
    let sources = rig.start(vec![field_device_any("M-645", &d)]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    rig.finish(sources).await;
    let energy = rig.readings("M-645", "e_ep").await;
    let power = rig.readings("M-645", "e_p").await;
    assert!(!energy.is_empty() && !power.is_empty());
    assert_eq!(energy[0].value, 123_456.78);
    assert_eq!(power[0].value, -12.3456, "sign bit of power");
    assert_eq!(energy[0].protocol, pollwatch::model::Protocol::Dlt645);
    assert_eq!(&*energy[0].unit, "kWh");
}
