//! Shared rig for the field-polling tests: a real SQLite store and writer, device
//! config built in code, simulators on local sockets.
#![allow(dead_code)]

use pollwatch::clock::SystemClock;
use pollwatch::config::{Device, DeviceProtocol, Point, Transport};
use pollwatch::model::{Id, Location, LocationKind};
use pollwatch::sim::modbus::{serve_rtu, serve_tcp, ModbusSim};
use pollwatch::sources::field::dtu::DtuHub;
use pollwatch::sources::field::line::Endpoint;
use pollwatch::sources::field::poll::DevicePlan;
use pollwatch::sources::field::{FieldDevice, FieldSources};
use pollwatch::sources::modbus::decode::{DataType, WordOrder};
use pollwatch::sources::modbus::plan::RegisterKind;
use pollwatch::store::{ReadingQuery, Store, StoredReading, Writer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub fn device(
    transport: Transport,
    address: &str,
    unit: u8,
    interval_ms: u64,
    timeout_ms: u64,
    points: Vec<Point>,
) -> Device {
    let toml = format!(
        "protocol = \"modbus\"\ntransport = \"{}\"\naddress = \"{address}\"\nunit = {unit}\ninterval = \"{interval_ms}ms\"\ntimeout = \"{timeout_ms}ms\"\n",
        transport.as_str()
    );
    let mut d: Device = toml::from_str(&toml).unwrap();
    d.points = points;
    d
}

pub fn point(
    factor: &str,
    register: RegisterKind,
    address: u16,
    ty: DataType,
    order: WordOrder,
) -> Point {
    Point {
        factor: factor.into(),
        register: Some(register),
        address: Some(address),
        data_type: Some(ty),
        order,
        scale: None,
        offset: None,
        raw_range: None,
        no_merge: false,
        di: None,
    }
}

pub fn field_device(meter: &str, d: &Device) -> FieldDevice {
    assert_eq!(d.protocol, DeviceProtocol::Modbus);
    field_device_any(meter, d)
}

pub struct Rig {
    pub store: Store,
    pub writer: Option<Writer>,
    pub task: Option<pollwatch::store::WriterTask>,
    pub stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Rig {
    pub async fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer, task) =
            super::store_and_writer(&format!("sqlite://{}/t.db", dir.path().display())).await;
        let (stop, _) = watch::channel(false);
        Rig {
            store,
            writer: Some(writer),
            task: Some(task),
            stop,
            _dir: dir,
        }
    }

    pub fn start(&self, devices: Vec<FieldDevice>) -> FieldSources {
        self.start_with_dtu(devices, None)
    }

    pub fn start_with_dtu(
        &self,
        devices: Vec<FieldDevice>,
        dtu: Option<(Arc<DtuHub>, Vec<u8>)>,
    ) -> FieldSources {
        FieldSources::start(
            devices,
            dtu,
            self.writer.clone().unwrap(),
            Arc::new(SystemClock),
            self.stop.subscribe(),
        )
    }

    pub async fn finish(&mut self, sources: FieldSources) {
        let _ = self.stop.send(true);
        sources.join().await;
        drop(self.writer.take());
        if let Some(t) = self.task.take() {
            t.finish(Duration::from_secs(5)).await;
        }
    }

    pub async fn readings(&self, meter: &str, factor: &str) -> Vec<StoredReading> {
        self.store
            .readings(&ReadingQuery::new("E1", LocationKind::Meter, meter).factor(factor))
            .await
            .unwrap()
    }
}

pub async fn tcp_sim(sim: Arc<ModbusSim>, rtu: bool, stop: watch::Receiver<bool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    if rtu {
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve_rtu(s, sim.clone(), stop.clone()));
            }
        });
    } else {
        tokio::spawn(serve_tcp(listener, sim, stop));
    }
    addr
}

pub fn field_device_any(meter: &str, d: &Device) -> FieldDevice {
    FieldDevice {
        enterprise: Id::from("E1"),
        location: Location::Meter(meter.into()),
        id: meter.into(),
        interval: d.interval.0,
        gap: d.gap(),
        endpoint: Endpoint::of(d),
        plan: DevicePlan::new(d).unwrap(),
        config: d.clone(),
    }
}

/// Test options for a DTU listener on an ephemeral port (2 s registration timeout).
pub fn dtu_options(
    prefix: &[u8],
    suffix: &[u8],
    heartbeat: &[u8],
) -> pollwatch::sources::field::dtu::DtuOptions {
    pollwatch::sources::field::dtu::DtuOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        registration_timeout: Duration::from_secs(2),
        registration_prefix: prefix.to_vec(),
        registration_suffix: suffix.to_vec(),
        heartbeat: heartbeat.to_vec(),
        max_connections: 64,
        max_connections_per_address: 16,
        dead_letters_per_minute: 60,
        takeovers: None,
    }
}

/// A DTU listener with `opts` that knows the DTUs in `known`, writing to the rig.
pub async fn dtu_listen(
    rig: &Rig,
    opts: pollwatch::sources::field::dtu::DtuOptions,
    known: std::collections::HashMap<String, pollwatch::sources::field::dtu::DtuIdentity>,
) -> (std::net::SocketAddr, Arc<DtuHub>) {
    let hub = Arc::new(DtuHub::default());
    let (addr, _task) = pollwatch::sources::field::dtu::listen(
        opts,
        known,
        hub.clone(),
        rig.writer.clone().unwrap(),
        Arc::new(SystemClock),
        rig.stop.subscribe(),
    )
    .await
    .unwrap();
    (addr, hub)
}
