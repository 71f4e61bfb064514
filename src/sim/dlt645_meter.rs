//! Simulated DL/T 645-2007 electricity meters sharing one RS-485 bus.
//!
//! Why: the meter poller has to be tested against what a real bus does —
//! several meters listening to every frame and only the addressed one
//! answering, a DI the meter does not support (error reply "no requested
//! data"), a dead meter, a meter that answers late. Values come from the same
//! [`Profile`]s as the Modbus simulator, read against an injected clock, and
//! every frame goes through the crate's own codec
//! (`sources::dlt645::frame`), so simulator and poller share one definition
//! of the wire.
//!
//! Served: 0x11 read (to a meter's address, or to the AA×6 wildcard when
//! exactly one meter is simulated), 0x13 read address (wildcard, one meter),
//! 0x08 broadcast time sync (recorded, never answered, as the standard says).
//! Other control codes addressed to a meter get an error reply.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::link::{serve_frames, Reply, Step};
use crate::clock::Clock;
use crate::sources::dlt645::frame::{
    decode, encode_error_reply, encode_read_reply, Frame, MeterAddress, MeterError, MeterTime,
    Preamble, Request, CONTROL_ERROR, CONTROL_READ_ADDRESS, CONTROL_REPLY, PREAMBLE,
};

pub use super::profile::Profile;

/// Unfinished frames are dropped after this much silence, as a meter's UART
/// does; long enough for bursty pty/DTU links.
const IDLE_RESET: Duration = Duration::from_millis(100);
/// Buffered bytes without a frame beyond this are line noise.
const MAX_BUFFER: usize = 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeterBehaviour {
    /// Never answers (requests are still counted).
    pub silent: bool,
    /// Answers this late, without holding up other meters' answers.
    pub delay: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeterStats {
    /// Frames addressed to the meter, answered or not.
    pub requests: u64,
    /// Answers sent or scheduled, error replies included.
    pub replies: u64,
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Meter {
    points: HashMap<u32, (Profile, DateTime<Utc>)>,
    behaviour: MeterBehaviour,
    stats: MeterStats,
}

#[derive(Debug, Default)]
struct Bus {
    meters: HashMap<MeterAddress, Meter>,
    time_syncs: Vec<MeterTime>,
}

pub struct MeterSim {
    clock: Arc<dyn Clock>,
    preamble: Preamble,
    bus: Mutex<Bus>,
}

impl MeterSim {
    /// Replies go out without the `FE` preamble, byte for byte like the
    /// worked example; see [`MeterSim::with_reply_preamble`].
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MeterSim {
            clock,
            preamble: Preamble::Omit,
            bus: Mutex::new(Bus::default()),
        }
    }

    /// Many meters prefix replies with `FE FE FE FE`; pollers must skip it.
    pub fn with_reply_preamble(mut self, preamble: Preamble) -> Self {
        self.preamble = preamble;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Bus> {
        // Updates are single inserts or counter bumps: a poisoned lock still
        // guards consistent data.
        self.bus.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A meter with no data items yet: every read gets "no requested data".
    pub fn add_meter(&self, address: MeterAddress) {
        self.lock().meters.entry(address).or_default();
    }

    /// Serves `di` from `profile`, adding the meter if needed. A ramp or sine
    /// starts from the clock's current time.
    pub fn set(&self, address: MeterAddress, di: u32, profile: Profile) {
        let since = self.clock.now();
        let mut bus = self.lock();
        let meter = bus.meters.entry(address).or_default();
        meter.points.insert(di, (profile, since));
    }

    pub fn remove(&self, address: MeterAddress, di: u32) {
        if let Some(m) = self.lock().meters.get_mut(&address) {
            m.points.remove(&di);
        }
    }

    pub fn set_behaviour(&self, address: MeterAddress, behaviour: MeterBehaviour) {
        self.lock().meters.entry(address).or_default().behaviour = behaviour;
    }

    pub fn set_silent(&self, address: MeterAddress, silent: bool) {
        self.lock()
            .meters
            .entry(address)
            .or_default()
            .behaviour
            .silent = silent;
    }

    pub fn set_delay(&self, address: MeterAddress, delay: Duration) {
        self.lock()
            .meters
            .entry(address)
            .or_default()
            .behaviour
            .delay = delay;
    }

    /// Zeros for a meter never seen.
    pub fn stats(&self, address: MeterAddress) -> MeterStats {
        let bus = self.lock();
        bus.meters
            .get(&address)
            .map(|m| m.stats)
            .unwrap_or_default()
    }

    /// Broadcast time syncs received, oldest first.
    pub fn time_syncs(&self) -> Vec<MeterTime> {
        self.lock().time_syncs.clone()
    }

    fn answer(&self, frame: &Frame) -> Option<Reply> {
        // Replies from other meters and malformed requests are not ours to
        // answer: a real meter stays quiet on both.
        let request = frame.request().ok()?;
        let now = self.clock.now();
        let mut bus = self.lock();
        if let Request::BroadcastTime(time) = request {
            if frame.address == MeterAddress::BROADCAST {
                bus.time_syncs.push(time);
            }
            return None;
        }
        // The wildcard is only answered when it cannot cause a collision.
        let only = (bus.meters.len() == 1)
            .then(|| bus.meters.keys().next().copied())
            .flatten();
        let address = match only {
            Some(a) if frame.address == MeterAddress::WILDCARD => a,
            _ => frame.address,
        };
        let meter = bus.meters.get_mut(&address)?;
        meter.stats.requests += 1;
        if meter.behaviour.silent {
            return None;
        }
        let reply = match request {
            Request::Read { di } => {
                let value = meter
                    .points
                    .get(&di)
                    .and_then(|(p, since)| p.value_at(*since, now));
                // A value the DI's format cannot carry is the meter's fault,
                // not a number to invent.
                match value.map(|v| encode_read_reply(address, di, v)) {
                    Some(Ok(bytes)) => Ok(bytes),
                    Some(Err(_)) => Err(MeterError::OTHER),
                    None => Err(MeterError::NO_DATA),
                }
            }
            Request::ReadAddress if frame.address == MeterAddress::WILDCARD => Frame {
                address,
                control: CONTROL_READ_ADDRESS | CONTROL_REPLY,
                data: address.wire_bytes().to_vec(),
            }
            .encode(Preamble::Omit)
            .map_err(|_| MeterError::OTHER),
            Request::ReadAddress | Request::BroadcastTime(_) => return None,
            Request::Other { control } => {
                // Refused with the requested function's own error code; one
                // data byte always encodes.
                meter.stats.errors += 1;
                Frame {
                    address,
                    control: control | CONTROL_REPLY | CONTROL_ERROR,
                    data: vec![MeterError::OTHER.0],
                }
                .encode(Preamble::Omit)
                .map_err(|_| MeterError::OTHER)
            }
        };
        meter.stats.replies += 1;
        let bytes = match reply {
            Ok(bytes) => bytes,
            Err(error) => {
                meter.stats.errors += 1;
                encode_error_reply(address, error)
            }
        };
        let bytes = match self.preamble {
            Preamble::Omit => bytes,
            Preamble::Fe4 => PREAMBLE.iter().copied().chain(bytes).collect(),
        };
        Some(Reply {
            delay: meter.behaviour.delay,
            bytes,
        })
    }

    fn cut(&self, buf: &[u8]) -> Step {
        match decode(buf) {
            Ok(Some((frame, consumed))) => Step::Consumed(consumed, self.answer(&frame)),
            Ok(None) if buf.len() > MAX_BUFFER => Step::Consumed(buf.len(), None),
            Ok(None) => Step::NeedMore,
            // A corrupt frame: step past its start byte and look again.
            Err(_) => {
                let start = buf.iter().position(|&b| b == 0x68).unwrap_or(0);
                Step::Consumed(start + 1, None)
            }
        }
    }
}

/// Serves the simulated meters on `stream` (a pty end standing in for the
/// RS-485 bus, or a DTU's duplex) until EOF or `shutdown`.
pub async fn serve<S>(
    stream: S,
    sim: Arc<MeterSim>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let cut = |buf: &[u8]| sim.cut(buf);
    serve_frames(stream, shutdown, Some(IDLE_RESET), cut).await
}
