//! Reading one device once: the requests a device's points need, sent over its
//! line, decoded into values with their HJ 212 flag.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::Slave;

use super::line::{ConnectError, Line, Link};
use super::modbus_tcp::{Answer, TcpMaster};
use crate::config::{Device, DeviceProtocol};
use crate::model::{factor, Flag, Id};
use crate::sources::dlt645::frame::{decode as decode_645, encode_read, Dlt645Error, Preamble};
use crate::sources::dlt645::types::MeterAddress;
use crate::sources::modbus::decode::{decode, DataType, WordOrder};
use crate::sources::modbus::plan::{
    extract, plan, PlanError, PlanOptions, Point as PlanPoint, ReadRequest, RegisterKind,
};
use crate::sources::modbus::scale::{Scaling, StatusMap};

/// One value to produce from a poll.
#[derive(Debug, Clone)]
pub struct Target {
    pub factor: Id,
    pub unit: Id,
    pub scaling: Scaling,
    pub how: How,
}

#[derive(Debug, Clone)]
pub enum How {
    Register {
        point: PlanPoint,
        ty: DataType,
        order: WordOrder,
    },
    Di(u32),
}

/// Everything needed to poll a device, computed once from config.
#[derive(Debug, Clone)]
pub struct DevicePlan {
    pub protocol: DeviceProtocol,
    pub unit: u8,
    pub meter: Option<MeterAddress>,
    pub timeout: Duration,
    pub targets: Vec<Target>,
    pub requests: Vec<ReadRequest>,
    /// The status register (last plan point id) and its map.
    pub status: Option<(PlanPoint, DataType, WordOrder, StatusMap)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("transport: {0}")]
    Transport(String),
    #[error("device answered with Modbus exception {0}")]
    Exception(String),
    #[error("reply could not be decoded: {0}")]
    Decode(String),
    #[error("meter: {0}")]
    Meter(#[from] Dlt645Error),
}

impl PollError {
    /// Stable name for counters and status events.
    pub fn kind(&self) -> &'static str {
        match self {
            PollError::Connect(_) => "connect",
            PollError::Timeout(_) => "timeout",
            PollError::Transport(_) => "transport",
            PollError::Exception(_) => "exception",
            PollError::Decode(_) => "decode",
            PollError::Meter(_) => "meter_error",
        }
    }

    /// After these, bytes of the failed exchange may still arrive: start over on
    /// a fresh connection.
    pub fn poisons_link(&self) -> bool {
        !matches!(
            self,
            PollError::Exception(_) | PollError::Meter(Dlt645Error::Rejected { .. })
        )
    }
}

impl DevicePlan {
    pub fn new(d: &Device) -> Result<DevicePlan, PlanError> {
        let mut targets = Vec::new();
        let mut plan_points = Vec::new();
        for (i, p) in d.points.iter().enumerate() {
            let how = match (d.protocol, p.register, p.address, p.data_type) {
                (DeviceProtocol::Modbus, Some(register), Some(address), Some(ty)) => {
                    let point = PlanPoint {
                        id: i,
                        register,
                        address,
                        count: crate::sources::modbus::decode::register_count(ty),
                        no_merge: p.no_merge,
                    };
                    plan_points.push(point);
                    How::Register {
                        point,
                        ty,
                        order: p.order,
                    }
                }
                _ => How::Di(
                    p.di.as_deref()
                        .and_then(crate::config::parse_di)
                        .unwrap_or(0),
                ),
            };
            targets.push(Target {
                factor: p.factor.as_str().into(),
                unit: factor(&p.factor).map_or("", |f| f.unit).into(),
                scaling: Scaling {
                    scale: p.scale.unwrap_or(1.0),
                    offset: p.offset.unwrap_or(0.0),
                    raw_range: p.raw_range,
                },
                how,
            });
        }
        let status = d.status.as_ref().map(|s| {
            let point = PlanPoint {
                id: d.points.len(),
                register: s.register,
                address: s.address,
                count: crate::sources::modbus::decode::register_count(s.data_type),
                no_merge: false,
            };
            plan_points.push(point);
            (point, s.data_type, s.order, s.map.clone())
        });
        let opts = PlanOptions {
            max_gap: d.max_gap.unwrap_or(PlanOptions::default().max_gap),
            max_registers: d
                .max_registers
                .unwrap_or(PlanOptions::default().max_registers),
            ..PlanOptions::default()
        };
        let requests = if plan_points.is_empty() {
            Vec::new()
        } else {
            plan(&plan_points, &opts)?
        };
        Ok(DevicePlan {
            protocol: d.protocol,
            unit: d.unit.unwrap_or(1),
            meter: d.meter_address.as_deref().and_then(|a| a.parse().ok()),
            timeout: d.timeout.0,
            targets,
            requests,
            status,
        })
    }
}

/// Values read, in target order, with the flag they carry.
pub type Values = Vec<(usize, f64, Flag)>;

pub async fn poll(line: &mut Line, plan: &DevicePlan) -> Result<Values, PollError> {
    match plan.protocol {
        DeviceProtocol::Modbus => poll_modbus(line, plan).await,
        DeviceProtocol::Dlt645 => poll_dlt645(line, plan).await,
    }
}

enum Words {
    Regs(Vec<u16>),
    Bits(Vec<bool>),
}

async fn read(ctx: &mut Context, req: &ReadRequest, timeout: Duration) -> Result<Words, PollError> {
    let call = async {
        match req.register {
            RegisterKind::Holding => ctx
                .read_holding_registers(req.start, req.count)
                .await
                .map(|r| r.map(Words::Regs)),
            RegisterKind::Input => ctx
                .read_input_registers(req.start, req.count)
                .await
                .map(|r| r.map(Words::Regs)),
            RegisterKind::Coil => ctx
                .read_coils(req.start, req.count)
                .await
                .map(|r| r.map(Words::Bits)),
            RegisterKind::Discrete => ctx
                .read_discrete_inputs(req.start, req.count)
                .await
                .map(|r| r.map(Words::Bits)),
        }
    };
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(PollError::Timeout(timeout)),
        Ok(Err(e)) => Err(PollError::Transport(e.to_string())),
        Ok(Ok(Err(exception))) => Err(PollError::Exception(format!("{exception:?}"))),
        Ok(Ok(Ok(words))) => Ok(words),
    }
}

/// One request over pollwatch's own Modbus TCP master.
async fn read_tcp(
    master: &mut TcpMaster,
    unit: u8,
    req: &ReadRequest,
    timeout: Duration,
) -> Result<Words, PollError> {
    let call = master.read(unit, req.register, req.start, req.count);
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(PollError::Timeout(timeout)),
        Ok(Err(e)) => Err(PollError::Transport(e.to_string())),
        Ok(Ok(Answer::Exception(code))) => Err(PollError::Exception(format!(
            "{:?}",
            tokio_modbus::ExceptionCode::new(code)
        ))),
        Ok(Ok(Answer::Data(data))) if req.register.is_bit() => Ok(Words::Bits(
            (0..usize::from(req.count))
                .map(|i| data.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0))
                .collect(),
        )),
        Ok(Ok(Answer::Data(data))) => Ok(Words::Regs(
            data.chunks_exact(2)
                .map(|w| u16::from_be_bytes([w[0], w[1]]))
                .collect(),
        )),
    }
}

async fn poll_modbus(line: &mut Line, plan: &DevicePlan) -> Result<Values, PollError> {
    let mut replies = Vec::with_capacity(plan.requests.len());
    for req in &plan.requests {
        line.pace().await;
        let words = match line.link(DeviceProtocol::Modbus, plan.timeout).await? {
            Link::ModbusTcp(master) => read_tcp(master, plan.unit, req, plan.timeout).await,
            Link::Modbus(ctx) => {
                ctx.set_slave(Slave(plan.unit));
                read(ctx, req, plan.timeout).await
            }
            Link::Bytes(_) => {
                return Err(PollError::Transport(
                    "line holds a non-Modbus connection".into(),
                ))
            }
        };
        line.mark();
        replies.push(words?);
    }
    let value_of = |point: &PlanPoint, ty: DataType, order: WordOrder| -> Result<f64, PollError> {
        let (req, words) = plan
            .requests
            .iter()
            .zip(&replies)
            .find(|(r, _)| r.points.iter().any(|(id, _)| *id == point.id))
            .ok_or_else(|| PollError::Decode(format!("point {} not in any request", point.id)))?;
        let bad = |e: PlanError| PollError::Decode(e.to_string());
        match words {
            Words::Regs(regs) => {
                let slice = extract(req, regs, point).map_err(bad)?;
                decode(slice, ty, order).map_err(|e| PollError::Decode(e.to_string()))
            }
            Words::Bits(bits) => {
                let slice = extract(req, bits, point).map_err(bad)?;
                Ok(f64::from(u8::from(slice.first().copied().unwrap_or(false))))
            }
        }
    };
    let flag = match &plan.status {
        None => Flag::N,
        Some((point, ty, order, map)) => {
            let raw = value_of(point, *ty, *order)?;
            let lookup = map.lookup(raw);
            lookup
                .flag()
                .as_char()
                .to_string()
                .parse()
                .unwrap_or(Flag::D)
        }
    };
    let mut out = Vec::with_capacity(plan.targets.len());
    for (i, t) in plan.targets.iter().enumerate() {
        if let How::Register { point, ty, order } = &t.how {
            let raw = value_of(point, *ty, *order)?;
            out.push((i, t.scaling.apply(raw), flag));
        }
    }
    Ok(out)
}

async fn poll_dlt645(line: &mut Line, plan: &DevicePlan) -> Result<Values, PollError> {
    let meter = plan
        .meter
        .ok_or_else(|| PollError::Decode("device has no meter address".into()))?;
    let mut out = Vec::with_capacity(plan.targets.len());
    for (i, t) in plan.targets.iter().enumerate() {
        let How::Di(di) = t.how else { continue };
        line.pace().await;
        let Link::Bytes(stream) = line.link(DeviceProtocol::Dlt645, plan.timeout).await? else {
            return Err(PollError::Transport(
                "line holds a non-DL/T 645 connection".into(),
            ));
        };
        let exchange = async {
            stream
                .write_all(&encode_read(meter, di, Preamble::Fe4))
                .await
                .map_err(|e| PollError::Transport(e.to_string()))?;
            let mut buf = Vec::with_capacity(64);
            let mut chunk = [0u8; 256];
            loop {
                match decode_645(&buf) {
                    Ok(Some((frame, used))) => {
                        buf.drain(..used.min(buf.len()));
                        // Another meter on the bus answering late: not ours, keep reading.
                        if frame.check_address(meter).is_err() {
                            continue;
                        }
                        return frame.read_value(di).map_err(PollError::from);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(PollError::Meter(e)),
                }
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| PollError::Transport(e.to_string()))?;
                if n == 0 {
                    return Err(PollError::Transport("connection closed".into()));
                }
                buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                if buf.len() > 4096 {
                    return Err(PollError::Decode("no frame in 4 KiB of reply".into()));
                }
            }
        };
        let result = tokio::time::timeout(plan.timeout, exchange)
            .await
            .unwrap_or(Err(PollError::Timeout(plan.timeout)));
        line.mark();
        out.push((i, t.scaling.apply(result?), Flag::N));
    }
    Ok(out)
}
