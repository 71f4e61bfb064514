//! The device simulators against real clients over real sockets and
//! pseudo-terminals: tokio-modbus as TCP and RTU master, the crate's DL/T 645
//! codec as meter master, and a plain TcpListener as the DTU's server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use pollwatch::clock::{Clock, ManualClock};
use pollwatch::sim::dlt645_meter::{self, MeterSim};
use pollwatch::sim::dtu::{DtuDevice, DtuSim};
use pollwatch::sim::modbus::{serve_rtu, serve_tcp, ModbusSim, Point, Profile, RegisterKind};
use pollwatch::sim::modbus_frame::{rtu_encode, tcp_encode};
use pollwatch::sources::dlt645::frame::{self as dlt, MeterAddress, MeterError, Preamble};
use pollwatch::sources::modbus::decode::{decode, register_count, DataType, WordOrder};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_modbus::client::{rtu, tcp, Context, Reader, Writer};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};
use tokio_serial::SerialStream;

const TYPES: [DataType; 9] = [
    DataType::U16,
    DataType::I16,
    DataType::U32,
    DataType::I32,
    DataType::U64,
    DataType::I64,
    DataType::F32,
    DataType::F64,
    DataType::Bool,
];
const ORDERS: [WordOrder; 4] = [
    WordOrder::ABCD,
    WordOrder::DCBA,
    WordOrder::BADC,
    WordOrder::CDAB,
];
/// Long enough to be sure on a loaded machine; only "answers at all" or
/// "stays silent" is ever judged against it.
const ANSWER: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap(),
    ))
}

async fn tcp_sim(sim: Arc<ModbusSim>) -> (SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(serve_tcp(listener, sim, stop_rx));
    (addr, stop)
}

/// `f`'s output, failing the test if there is none within [`ANSWER`].
async fn within<T>(f: impl Future<Output = T>) -> T {
    timeout(ANSWER, f).await.expect("answer in time")
}

/// Whether `f` is still waiting after [`QUIET`]: nobody answered.
async fn stays_quiet<T>(f: impl Future<Output = T>) -> bool {
    timeout(QUIET, f).await.is_err()
}

async fn read_n<S: AsyncRead + Unpin>(stream: &mut S, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    within(stream.read_exact(&mut buf)).await.unwrap();
    buf
}

async fn holding(ctx: &mut Context, address: u16, count: u16) -> Vec<u16> {
    let read = within(ctx.read_holding_registers(address, count)).await;
    read.expect("transport").expect("no exception")
}

async fn input(ctx: &mut Context, address: u16, count: u16) -> Vec<u16> {
    let read = within(ctx.read_input_registers(address, count)).await;
    read.expect("transport").expect("no exception")
}

/// A value every type can hold exactly, from random bits.
fn exact_value(ty: DataType, bits: u64) -> f64 {
    let v = match ty {
        DataType::U16 => f64::from(bits as u16),
        DataType::I16 => f64::from(bits as u16 as i16),
        DataType::U32 => f64::from(bits as u32),
        DataType::I32 => f64::from(bits as u32 as i32),
        DataType::U64 => (bits >> 11) as f64,
        DataType::I64 => ((bits as i64) >> 11) as f64,
        DataType::F32 => f64::from(f32::from_bits(bits as u32)),
        DataType::F64 => f64::from_bits(bits),
        DataType::Bool => (bits & 1) as f64,
    };
    if v.is_finite() {
        v
    } else {
        f64::from(bits as u16)
    }
}

#[tokio::test]
async fn tcp_every_type_and_order_decodes_back() {
    let sim = Arc::new(ModbusSim::new(clock()));
    let samples = [
        0xDEAD_BEEF_1234_5678u64,
        0x8000_0001_C0FF_EE00,
        0x4069_C000_0000_0001,
    ];
    let mut expected = Vec::new();
    let mut address = 0u16;
    for ty in TYPES {
        for order in ORDERS {
            for bits in samples {
                let value = exact_value(ty, bits);
                let point = Point::new(Profile::Constant(value), ty, order);
                sim.set(1, RegisterKind::Holding, address, point.clone());
                sim.set(1, RegisterKind::Input, address, point);
                expected.push((address, ty, order, value));
                address += register_count(ty);
            }
        }
    }
    let (addr, _stop) = tcp_sim(Arc::clone(&sim)).await;
    let mut ctx = tcp::connect_slave(addr, Slave(1)).await.unwrap();
    for (address, ty, order, value) in expected {
        let n = register_count(ty);
        let regs = holding(&mut ctx, address, n).await;
        assert_eq!(decode(&regs, ty, order).unwrap(), value, "{ty} {order:?}");
        let regs = input(&mut ctx, address, n).await;
        assert_eq!(decode(&regs, ty, order).unwrap(), value, "{ty} {order:?}");
    }
    // One request across many points returns each one's words in place.
    let regs = holding(&mut ctx, 0, 100).await;
    assert_eq!(
        decode(&regs[12..13], DataType::I16, WordOrder::ABCD).unwrap(),
        exact_value(DataType::I16, samples[0])
    );
    assert!(sim.stats(1).requests >= 2 * 108);
}

#[test]
fn tcp_random_values_round_trip() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = Arc::new(ModbusSim::new(clock()));
    let ctx = rt.block_on(async {
        let (addr, stop) = tcp_sim(Arc::clone(&sim)).await;
        // Kept running for the whole test.
        std::mem::forget(stop);
        tcp::connect_slave(addr, Slave(3)).await.unwrap()
    });
    let ctx = tokio::sync::Mutex::new(ctx);
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..TYPES.len(), 0..ORDERS.len(), any::<u64>(), 0u16..1000);
    runner
        .run(&strategy, |(t, o, bits, address)| {
            let (ty, order) = (TYPES[t], ORDERS[o]);
            let value = exact_value(ty, bits);
            let point = Point::new(Profile::Constant(value), ty, order);
            sim.set(3, RegisterKind::Holding, address, point);
            let regs = rt.block_on(async {
                let mut ctx = ctx.lock().await;
                holding(&mut ctx, address, register_count(ty)).await
            });
            // Leave no point behind to overlap the next case's registers.
            sim.remove(3, RegisterKind::Holding, address);
            prop_assert_eq!(decode(&regs, ty, order).unwrap(), value);
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn tcp_profiles_follow_the_injected_clock() {
    let clock = clock();
    let t0 = clock.now();
    let sim = Arc::new(ModbusSim::new(clock.clone()));
    let f32abcd = |p| Point::new(p, DataType::F32, WordOrder::ABCD);
    let ramp = Profile::Ramp {
        start: 100.0,
        per_sec: 0.5,
    };
    sim.set(1, RegisterKind::Input, 0, f32abcd(ramp));
    let step = Profile::Step {
        before: 0.0,
        after: 2.0,
        at: t0 + chrono::Duration::seconds(30),
    };
    sim.set(1, RegisterKind::Input, 2, step);
    let script = Profile::Script(vec![
        (t0 + chrono::Duration::seconds(10), 7.0),
        (t0 + chrono::Duration::seconds(50), 9.0),
    ]);
    sim.set(1, RegisterKind::Input, 3, script);
    let sine = Profile::Sine {
        mean: 50.0,
        amplitude: 10.0,
        period_secs: 240.0,
    };
    sim.set(1, RegisterKind::Input, 4, f32abcd(sine));
    let (addr, _stop) = tcp_sim(Arc::clone(&sim)).await;
    let mut ctx = tcp::connect_slave(addr, Slave(1)).await.unwrap();

    // Before the script's first entry the device has no value: a fault.
    let early = within(ctx.read_input_registers(0, 6)).await;
    assert_eq!(early.unwrap(), Err(ExceptionCode::ServerDeviceFailure));

    clock.advance(chrono::Duration::seconds(60));
    let regs = input(&mut ctx, 0, 6).await;
    assert_eq!(
        decode(&regs[0..2], DataType::F32, WordOrder::ABCD).unwrap(),
        130.0
    );
    assert_eq!(regs[2..4], [2, 9]);
    let sine = decode(&regs[4..6], DataType::F32, WordOrder::ABCD).unwrap();
    assert!((sine - 60.0).abs() < 1e-4, "{sine}");

    // A runtime change is seen by the next read.
    sim.set(1, RegisterKind::Input, 2, Profile::Constant(42.0));
    assert_eq!(input(&mut ctx, 2, 1).await, [42]);
}

#[tokio::test]
async fn tcp_bits_and_writes() {
    let sim = Arc::new(ModbusSim::new(clock()));
    for a in [0u16, 3, 9] {
        sim.set(1, RegisterKind::Coil, a, Profile::Constant(1.0));
    }
    sim.set(1, RegisterKind::Discrete, 1, Profile::Constant(1.0));
    let (addr, _stop) = tcp_sim(sim).await;
    let mut ctx = tcp::connect_slave(addr, Slave(1)).await.unwrap();
    let coils = within(ctx.read_coils(0, 10)).await;
    let want: Vec<bool> = (0..10).map(|a| [0, 3, 9].contains(&a)).collect();
    assert_eq!(coils.unwrap().unwrap(), want);
    let discretes = within(ctx.read_discrete_inputs(0, 3)).await;
    assert_eq!(discretes.unwrap().unwrap(), [false, true, false]);

    let wrote = within(ctx.write_single_register(7, 0xBEEF)).await;
    wrote.unwrap().unwrap();
    let wrote = within(ctx.write_multiple_registers(20, &[1, 2, 3])).await;
    wrote.unwrap().unwrap();
    assert_eq!(holding(&mut ctx, 7, 1).await, [0xBEEF]);
    assert_eq!(holding(&mut ctx, 19, 5).await, [0, 1, 2, 3, 0]);
}

#[tokio::test]
async fn tcp_misbehaving_units() {
    let sim = Arc::new(ModbusSim::new(clock()));
    sim.set(1, RegisterKind::Holding, 0, Profile::Constant(11.0));
    sim.add_exception(1, RegisterKind::Holding, 10);
    sim.set(2, RegisterKind::Holding, 0, Profile::Constant(22.0));
    sim.set_silent(2, true);
    sim.set(3, RegisterKind::Holding, 0, Profile::Constant(33.0));
    sim.set_delay(3, Duration::from_millis(500));
    let (addr, _stop) = tcp_sim(Arc::clone(&sim)).await;

    let mut ctx = tcp::connect_slave(addr, Slave(1)).await.unwrap();
    let refused = within(ctx.read_holding_registers(8, 4)).await;
    assert_eq!(refused.unwrap(), Err(ExceptionCode::IllegalDataAddress));
    assert_eq!(holding(&mut ctx, 0, 10).await[0], 11);
    assert_eq!(holding(&mut ctx, 11, 5).await, [0; 5]);
    assert_eq!(sim.stats(1).exceptions, 1);

    let mut silent = tcp::connect_slave(addr, Slave(2)).await.unwrap();
    assert!(stays_quiet(silent.read_holding_registers(0, 1)).await);
    assert_eq!(sim.stats(2).requests, 1);
    assert_eq!(sim.stats(2).replies, 0);

    let mut nobody = tcp::connect_slave(addr, Slave(77)).await.unwrap();
    let gateway = within(nobody.read_holding_registers(0, 1)).await;
    assert_eq!(gateway.unwrap(), Err(ExceptionCode::GatewayTargetDevice));

    // A slow unit's reply arrives after a later request's to another unit:
    // exactly the out-of-order traffic a poller's timeout handling must survive.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    let read0 = [0x03, 0x00, 0x00, 0x00, 0x01];
    let mut both = tcp_encode(1, 3, &read0);
    both.extend(tcp_encode(2, 1, &read0));
    raw.write_all(&both).await.unwrap();
    let got = read_n(&mut raw, 22).await;
    let mut want = tcp_encode(2, 1, &[0x03, 0x02, 0x00, 11]);
    want.extend(tcp_encode(1, 3, &[0x03, 0x02, 0x00, 33]));
    assert_eq!(got, want);
}

#[tokio::test]
async fn rtu_over_a_pty_with_two_units_on_the_bus() {
    let (master, slave) = SerialStream::pair().unwrap();
    let sim = Arc::new(ModbusSim::new(clock()));
    let value = Point::new(Profile::Constant(230.5), DataType::F32, WordOrder::CDAB);
    sim.set(1, RegisterKind::Input, 0x46, value);
    sim.set(2, RegisterKind::Holding, 20, Profile::Constant(2301.0));
    sim.add_exception(2, RegisterKind::Holding, 30);
    sim.set(3, RegisterKind::Holding, 0, Profile::Constant(1.0));
    sim.set_silent(3, true);
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(serve_rtu(slave, Arc::clone(&sim), stop_rx));

    let mut ctx = rtu::attach_slave(master, Slave(1));
    let regs = input(&mut ctx, 0x46, 2).await;
    assert_eq!(
        decode(&regs, DataType::F32, WordOrder::CDAB).unwrap(),
        230.5
    );

    ctx.set_slave(Slave(2));
    assert_eq!(holding(&mut ctx, 20, 1).await, [2301]);
    let refused = within(ctx.read_holding_registers(25, 10)).await;
    assert_eq!(refused.unwrap(), Err(ExceptionCode::IllegalDataAddress));

    // Not simulated, and silent: nobody answers, and the bus stays usable.
    for unit in [9, 3] {
        ctx.set_slave(Slave(unit));
        assert!(stays_quiet(ctx.read_holding_registers(0, 1)).await);
    }
    assert_eq!(sim.stats(3).requests, 1);
    assert_eq!(sim.stats(9).requests, 0);
    ctx.set_slave(Slave(2));
    assert_eq!(holding(&mut ctx, 20, 1).await, [2301]);
}

#[tokio::test]
async fn rtu_framing_over_tcp_byte_for_byte() {
    let sim = Arc::new(ModbusSim::new(clock()));
    sim.set(
        1,
        RegisterKind::Holding,
        0,
        Profile::Constant(0x1234 as f64),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve_rtu(stream, sim, stop_rx).await
    });
    let mut raw = TcpStream::connect(addr).await.unwrap();
    // Line noise first, then the request split over two writes.
    raw.write_all(&[0x00, 0xFF, 0x01, 0x03, 0x00, 0x00])
        .await
        .unwrap();
    raw.write_all(&[0x00, 0x01, 0x84, 0x0A]).await.unwrap();
    assert_eq!(
        read_n(&mut raw, 7).await,
        rtu_encode(1, &[0x03, 0x02, 0x12, 0x34])
    );
}

/// Reads from `stream` into `buf` until it holds a DL/T 645 frame.
async fn next_frame<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> dlt::Frame {
    loop {
        if let Some((frame, used)) = dlt::decode(buf).unwrap() {
            buf.drain(..used);
            return frame;
        }
        let mut chunk = [0u8; 256];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "stream closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends a DL/T 645 read for `di` to `meter`, with the wake-up preamble.
async fn ask<W: AsyncWrite + Unpin>(stream: &mut W, meter: MeterAddress, di: u32) {
    let request = dlt::encode_read(meter, di, Preamble::Fe4);
    stream.write_all(&request).await.unwrap();
}

#[tokio::test]
async fn dlt645_meters_on_a_pty_bus() {
    let (mut master, slave) = SerialStream::pair().unwrap();
    let one: MeterAddress = "000000000001".parse().unwrap();
    let two: MeterAddress = "000000000002".parse().unwrap();
    let sim = Arc::new(MeterSim::new(clock()));
    sim.set(one, 0x0000_0000, Profile::Constant(123456.78));
    sim.set(two, 0x0201_0100, Profile::Constant(220.5));
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(dlt645_meter::serve(slave, Arc::clone(&sim), stop_rx));

    // The worked example, byte for byte both ways.
    let request = [
        0xFE, 0xFE, 0xFE, 0xFE, 0x68, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x68, 0x11, 0x04, 0x33,
        0x33, 0x33, 0x33, 0xB2, 0x16,
    ];
    master.write_all(&request).await.unwrap();
    let reply = read_n(&mut master, 20).await;
    let worked = [
        0x68, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x68, 0x91, 0x08, 0x33, 0x33, 0x33, 0x33, 0xAB,
        0x89, 0x67, 0x45, 0x16, 0x16,
    ];
    assert_eq!(reply, worked);

    // A DI meter 1 does not have: error reply "no requested data".
    let mut buf = Vec::new();
    ask(&mut master, one, 0x0201_0100).await;
    let frame = within(next_frame(&mut master, &mut buf)).await;
    frame.check_address(one).unwrap();
    match frame.read_value(0x0201_0100) {
        Err(dlt::Dlt645Error::Rejected { control, error }) => {
            assert_eq!(control, 0xD1);
            assert_eq!(error, MeterError::NO_DATA);
        }
        other => panic!("expected an error reply, got {other:?}"),
    }

    // Meter 3 is not on the bus, and with two meters the wildcard would
    // collide: both go unanswered, then meter 2 answers its own address.
    let three: MeterAddress = "000000000003".parse().unwrap();
    ask(&mut master, three, 0).await;
    ask(&mut master, MeterAddress::WILDCARD, 0).await;
    assert!(stays_quiet(next_frame(&mut master, &mut buf)).await);
    ask(&mut master, two, 0x0201_0100).await;
    let frame = within(next_frame(&mut master, &mut buf)).await;
    frame.check_address(two).unwrap();
    assert_eq!(frame.read_value(0x0201_0100).unwrap(), 220.5);

    sim.set_silent(two, true);
    ask(&mut master, two, 0x0201_0100).await;
    assert!(stays_quiet(next_frame(&mut master, &mut buf)).await);
    let stats = sim.stats(two);
    assert_eq!((stats.requests, stats.replies), (2, 1));
    assert_eq!(sim.stats(one).errors, 1);
}

#[tokio::test]
async fn dtu_registers_heartbeats_and_bridges_modbus_rtu() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let sim = Arc::new(ModbusSim::new(clock()));
    sim.set(1, RegisterKind::Holding, 0, Profile::Constant(4321.0));
    let mut dtu = DtuSim::new("866123456789012");
    dtu.heartbeat = Some((Duration::from_millis(100), b"HB".to_vec()));
    dtu.backoff = Duration::from_millis(50);
    let watch_dtu = dtu.clone();
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(dtu.run(addr, DtuDevice::Modbus(sim), stop_rx));

    let (mut conn, _) = within(server.accept()).await.unwrap();
    assert_eq!(read_n(&mut conn, 15).await, b"866123456789012");
    assert_eq!(read_n(&mut conn, 2).await, b"HB");

    // A request through the DTU is answered by the device behind it; any
    // heartbeats around the reply come whole, never inside it.
    let request = rtu_encode(1, &[0x03, 0x00, 0x00, 0x00, 0x01]);
    let want = rtu_encode(1, &[0x03, 0x02, 0x10, 0xE1]);
    conn.write_all(&request).await.unwrap();
    let mut got = Vec::new();
    within(async {
        while !got.windows(want.len()).any(|w| w == want.as_slice()) {
            let mut chunk = [0u8; 64];
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let rest: Vec<u8> = got
        .windows(want.len())
        .position(|w| w == want.as_slice())
        .map(|at| [&got[..at], &got[at + want.len()..]].concat())
        .unwrap();
    assert!(rest.chunks(2).all(|c| c == b"HB"), "{rest:?}");

    // The server drops the link: the DTU dials again and registers again.
    drop(conn);
    let (mut conn, _) = within(server.accept()).await.unwrap();
    assert_eq!(read_n(&mut conn, 15).await, b"866123456789012");
    let stats = watch_dtu.stats();
    assert_eq!(stats.connections, 2);
    assert!(stats.heartbeats >= 1);
}

#[tokio::test]
async fn dtu_bridges_a_meter() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let meter: MeterAddress = "000000000161".parse().unwrap();
    let sim = Arc::new(MeterSim::new(clock()).with_reply_preamble(Preamble::Fe4));
    sim.set(meter, 0x0280_0002, Profile::Constant(50.02));
    let mut dtu = DtuSim::new("meter-dtu");
    dtu.registration = Some(b"REG:0001".to_vec());
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(dtu.run(addr, DtuDevice::Meter(sim), stop_rx));

    let (mut conn, _) = within(server.accept()).await.unwrap();
    assert_eq!(read_n(&mut conn, 8).await, b"REG:0001");
    ask(&mut conn, meter, 0x0280_0002).await;
    let mut buf = Vec::new();
    let frame = within(next_frame(&mut conn, &mut buf)).await;
    frame.check_address(meter).unwrap();
    assert_eq!(frame.read_value(0x0280_0002).unwrap(), 50.02);
}
