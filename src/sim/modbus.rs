//! A simulated Modbus device or gateway: one register bank per unit id, served
//! over Modbus TCP or over RTU framing on any byte stream (a pty end standing
//! in for RS-485, a TCP socket for RTU-over-TCP, a DTU's duplex).
//!
//! Why: the pollers must be tested against the ways field devices misbehave —
//! a slave that never answers, one that answers after the master gave up, an
//! address range the device refuses — and against values that move with a
//! clock the test controls. Each register address holds a [`Point`]: a
//! [`Profile`] evaluated at read time against the injected clock, encoded
//! with the crate's own `decode::encode` so the simulator and the poller can
//! never disagree about word orders.
//!
//! One `ModbusSim` holds every unit id on a bus: on RTU it ignores requests
//! for ids it does not have (another device's turn), as real slaves do; a
//! TCP gateway instead answers those with exception 0x0B. Unit id 0 is the
//! RTU broadcast address and never gets an answer.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::link::{serve_frames, stopped, Reply, Step};
use super::modbus_frame::{
    decode_request, encode_response, rtu_encode, rtu_scan, tcp_encode, tcp_scan, Exception,
    Request, Response, Scan,
};
use crate::clock::Clock;
use crate::sources::modbus::decode::{encode, register_count, DataType, WordOrder};

pub use super::profile::Profile;
pub use crate::sources::modbus::plan::RegisterKind;

/// Partial frames on an RTU link are dropped after this much silence. Far
/// longer than t3.5 at 9600 bps (4 ms) because pty, TCP and DTU links deliver
/// in bursts; it only matters when recovering from noise.
const RTU_IDLE_RESET: Duration = Duration::from_millis(100);

/// A value source at one address. Coils and discrete inputs ignore `ty` and
/// `order`: they are on when the value is non-zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub profile: Profile,
    pub ty: DataType,
    pub order: WordOrder,
}

impl Point {
    pub fn new(profile: Profile, ty: DataType, order: WordOrder) -> Self {
        Point { profile, ty, order }
    }
}

/// A bare profile is one u16 register (or one bit).
impl From<Profile> for Point {
    fn from(profile: Profile) -> Self {
        Point::new(profile, DataType::U16, WordOrder::ABCD)
    }
}

/// How a unit misbehaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Behaviour {
    /// Never answers (requests are still counted).
    pub silent: bool,
    /// Answers this late, without holding up other units' answers.
    pub delay: Duration,
    /// A request covering any of these gets Illegal Data Address, like a
    /// device asked across a hole in its register map.
    pub exception_at: Vec<(RegisterKind, u16)>,
}

/// Per-unit counters, for tests of polling cadence and backoff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitStats {
    /// Frames addressed to the unit, answered or not.
    pub requests: u64,
    /// Answers sent or scheduled, exceptions included.
    pub replies: u64,
    pub exceptions: u64,
}

#[derive(Debug, Clone)]
struct Stored {
    point: Point,
    since: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Unit {
    banks: HashMap<RegisterKind, BTreeMap<u16, Stored>>,
    behaviour: Behaviour,
    stats: UnitStats,
}

pub struct ModbusSim {
    clock: Arc<dyn Clock>,
    units: Mutex<BTreeMap<u8, Unit>>,
    /// Modbus TCP connections accepted by [`serve_tcp`].
    tcp_connections: std::sync::atomic::AtomicU64,
}

/// What to do with a request for a unit id the simulator does not have.
#[derive(Debug, Clone, Copy)]
enum Unknown {
    Ignore,
    GatewayException,
}

impl ModbusSim {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        ModbusSim {
            clock,
            units: Mutex::new(BTreeMap::new()),
            tcp_connections: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Modbus TCP connections accepted so far.
    pub fn tcp_connections(&self) -> u64 {
        self.tcp_connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u8, Unit>> {
        // Every update below is a single insert or counter bump, so the map
        // is consistent even if a panicking thread poisoned the lock.
        self.units.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `unit` answer (all registers zero until set).
    pub fn add_unit(&self, unit: u8) {
        self.lock().entry(unit).or_default();
    }

    pub fn units(&self) -> Vec<u8> {
        self.lock().keys().copied().collect()
    }

    /// Puts `point` at `address`, adding the unit if needed. A ramp or sine
    /// starts from the clock's current time.
    pub fn set(&self, unit: u8, kind: RegisterKind, address: u16, point: impl Into<Point>) {
        let since = self.clock.now();
        let stored = Stored {
            point: point.into(),
            since,
        };
        let mut units = self.lock();
        let bank = units
            .entry(unit)
            .or_default()
            .banks
            .entry(kind)
            .or_default();
        bank.insert(address, stored);
    }

    pub fn remove(&self, unit: u8, kind: RegisterKind, address: u16) {
        if let Some(bank) = self
            .lock()
            .get_mut(&unit)
            .and_then(|u| u.banks.get_mut(&kind))
        {
            bank.remove(&address);
        }
    }

    pub fn set_behaviour(&self, unit: u8, behaviour: Behaviour) {
        self.lock().entry(unit).or_default().behaviour = behaviour;
    }

    pub fn set_silent(&self, unit: u8, silent: bool) {
        self.lock().entry(unit).or_default().behaviour.silent = silent;
    }

    pub fn set_delay(&self, unit: u8, delay: Duration) {
        self.lock().entry(unit).or_default().behaviour.delay = delay;
    }

    pub fn add_exception(&self, unit: u8, kind: RegisterKind, address: u16) {
        let mut units = self.lock();
        let behaviour = &mut units.entry(unit).or_default().behaviour;
        behaviour.exception_at.push((kind, address));
    }

    /// Zeros for a unit never seen.
    pub fn stats(&self, unit: u8) -> UnitStats {
        self.lock().get(&unit).map(|u| u.stats).unwrap_or_default()
    }

    /// The answer PDU for a request PDU addressed to `unit`, with its delay;
    /// `None` when the unit stays quiet.
    fn answer(&self, unit: u8, pdu: &[u8], unknown: Unknown) -> Option<(Duration, Vec<u8>)> {
        let function = *pdu.first()?;
        let now = self.clock.now();
        let mut units = self.lock();
        let Some(u) = units.get_mut(&unit) else {
            return match unknown {
                Unknown::Ignore => None,
                Unknown::GatewayException => {
                    let e = Response::Exception(Exception::GatewayTargetDevice);
                    Some((Duration::ZERO, encode_response(function, &e)))
                }
            };
        };
        u.stats.requests += 1;
        if u.behaviour.silent {
            return None;
        }
        let response = match decode_request(pdu) {
            Ok(request) => u.execute(request, now),
            Err(e) => Response::Exception(e),
        };
        u.stats.replies += 1;
        if matches!(response, Response::Exception(_)) {
            u.stats.exceptions += 1;
        }
        Some((u.behaviour.delay, encode_response(function, &response)))
    }

    fn cut(&self, buf: &[u8], rtu: bool) -> Step {
        let scan = if rtu { rtu_scan(buf) } else { tcp_scan(buf) };
        match scan {
            Scan::Incomplete => Step::NeedMore,
            Scan::Broken => Step::Close,
            Scan::Skip(n) => Step::Consumed(n, None),
            Scan::Frame {
                unit,
                transaction,
                pdu,
                len,
            } => {
                let answer = if rtu && unit == 0 {
                    None
                } else if rtu {
                    self.answer(unit, &pdu, Unknown::Ignore)
                } else {
                    self.answer(unit, &pdu, Unknown::GatewayException)
                };
                let reply = answer.map(|(delay, pdu)| Reply {
                    delay,
                    bytes: if rtu {
                        rtu_encode(unit, &pdu)
                    } else {
                        tcp_encode(transaction, unit, &pdu)
                    },
                });
                Step::Consumed(len, reply)
            }
        }
    }
}

impl Unit {
    fn execute(&mut self, request: Request, now: DateTime<Utc>) -> Response {
        match request {
            Request::Read {
                kind,
                address,
                count,
            } => {
                let end = u32::from(address) + u32::from(count);
                let refused =
                    self.behaviour.exception_at.iter().any(|(k, a)| {
                        *k == kind && (u32::from(address)..end).contains(&u32::from(*a))
                    });
                if refused {
                    return Response::Exception(Exception::IllegalDataAddress);
                }
                let result = if kind.is_bit() {
                    self.bits(kind, address, count, now).map(Response::Bits)
                } else {
                    self.words(kind, address, count, now).map(Response::Words)
                };
                result.unwrap_or_else(Response::Exception)
            }
            Request::WriteRegister { address, value } => {
                self.write(address, &[value], now);
                Response::Written { address, value }
            }
            Request::WriteRegisters { address, values } => {
                self.write(address, &values, now);
                Response::Written {
                    address,
                    value: values.len() as u16,
                }
            }
        }
    }

    /// A master's write replaces each written address with a raw u16
    /// constant: enough for set-point and clock registers, which is all
    /// pollers write.
    fn write(&mut self, address: u16, values: &[u16], now: DateTime<Utc>) {
        let bank = self.banks.entry(RegisterKind::Holding).or_default();
        for (a, v) in (address..=u16::MAX).zip(values) {
            let point = Point::from(Profile::Constant(f64::from(*v)));
            bank.insert(a, Stored { point, since: now });
        }
    }

    fn bits(
        &self,
        kind: RegisterKind,
        address: u16,
        count: u16,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, Exception> {
        let bank = self.banks.get(&kind);
        (u32::from(address)..u32::from(address) + u32::from(count))
            .map(|a| {
                let stored = u16::try_from(a).ok().and_then(|a| bank?.get(&a));
                match stored {
                    None => Ok(false),
                    Some(s) => value(s, now).map(|v| v != 0.0),
                }
            })
            .collect()
    }

    /// Registers `address..address+count`; a multi-register point that only
    /// partly overlaps contributes just its overlapping words, as on a real
    /// device read mid-value. Unset registers read 0.
    fn words(
        &self,
        kind: RegisterKind,
        address: u16,
        count: u16,
        now: DateTime<Utc>,
    ) -> Result<Vec<u16>, Exception> {
        let mut out = vec![0u16; usize::from(count)];
        let Some(bank) = self.banks.get(&kind) else {
            return Ok(out);
        };
        let first = u32::from(address);
        let end = first + u32::from(count);
        // A 4-register point starting up to 3 below `address` reaches into it.
        let from = address.saturating_sub(3);
        let range = bank.range(from..).take_while(|(a, _)| u32::from(**a) < end);
        for (&start, stored) in range {
            let point = &stored.point;
            let regs = encode(value(stored, now)?, point.ty, point.order)
                .map_err(|_| Exception::ServerDeviceFailure)?;
            debug_assert_eq!(regs.len(), usize::from(register_count(point.ty)));
            for (i, word) in regs.into_iter().enumerate() {
                let at = u32::from(start) + i as u32;
                if (first..end).contains(&at) {
                    if let Some(slot) = out.get_mut((at - first) as usize) {
                        *slot = word;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A value the device cannot produce (a script not started yet, a ramp past
/// its type's range) is a device fault, not a made-up number.
fn value(stored: &Stored, now: DateTime<Utc>) -> Result<f64, Exception> {
    stored
        .point
        .profile
        .value_at(stored.since, now)
        .ok_or(Exception::ServerDeviceFailure)
}

/// Serves Modbus TCP on `listener` until `shutdown`; each connection is
/// served on its own task and also ends on `shutdown`.
pub async fn serve_tcp(
    listener: TcpListener,
    sim: Arc<ModbusSim>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => return Ok(()),
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let _ = stream.set_nodelay(true);
                sim.tcp_connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let sim = Arc::clone(&sim);
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let cut = |buf: &[u8]| sim.cut(buf, false);
                    if let Err(e) = serve_frames(stream, shutdown, None, cut).await {
                        tracing::debug!(error = %e, "simulated Modbus TCP connection ended");
                    }
                });
            }
        }
    }
}

/// Serves Modbus RTU framing on `stream` (a serial pty end, a TCP socket for
/// RTU over TCP, a DTU's duplex) until EOF or `shutdown`.
pub async fn serve_rtu<S>(
    stream: S,
    sim: Arc<ModbusSim>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let cut = |buf: &[u8]| sim.cut(buf, true);
    serve_frames(stream, shutdown, Some(RTU_IDLE_RESET), cut).await
}
