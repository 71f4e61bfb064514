//! Merges configured Modbus points into as few read requests as is safe.
//!
//! Why: on a 9600 bps RS-485 bus each request costs a round trip plus the
//! t3.5 silent gap, so reading 40 registers one by one can take longer than
//! the polling interval. But merging too eagerly reads addresses the device
//! does not implement, and many devices then answer the *whole* request
//! with an exception (Illegal Data Address) — losing every point in it.
//! The planner therefore only bridges small gaps (`max_gap`) and never
//! merges across a point marked `no_merge`.
//!
//! ## Guarantees (all property-tested)
//! - every point appears in exactly one request, at `start + offset ==
//!   address`, with `offset + count <= request.count`;
//! - a request holds one register kind only;
//! - `count <= max_registers` (registers) or `max_bits` (coils/discretes);
//! - inside a request, no run of addresses that no point covers is longer
//!   than `max_gap`, and requests start at their first point and end at
//!   their last point's end (nothing is read past the edges);
//! - a `no_merge` point at address A starts its own request, and no request
//!   holds both a point starting below A and one starting at or above A
//!   (a request may still extend past A if one of its points itself spans
//!   A — there is no way to read that point otherwise);
//! - overlapping points (e.g. a u32 and its low u16 half) share registers.
//!
//! Algorithm: sort by (kind, address), then greedily extend the current
//! request while the next point fits. Deterministic; not proven optimal
//! when points overlap, "minimal-ish" as the task needs.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Modbus protocol limits: FC 03/04 read at most 125 registers, FC 01/02 at
/// most 2000 bits.
pub const MAX_REGISTERS: u16 = 125;
pub const MAX_BITS: u16 = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisterKind {
    Holding,
    Input,
    Coil,
    Discrete,
}

impl RegisterKind {
    pub fn is_bit(self) -> bool {
        matches!(self, RegisterKind::Coil | RegisterKind::Discrete)
    }

    /// The read function code for this kind.
    pub fn function_code(self) -> u8 {
        match self {
            RegisterKind::Coil => 0x01,
            RegisterKind::Discrete => 0x02,
            RegisterKind::Holding => 0x03,
            RegisterKind::Input => 0x04,
        }
    }
}

/// One configured value. `address` is the 0-based protocol address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub id: usize,
    pub register: RegisterKind,
    pub address: u16,
    pub count: u16,
    /// Start a new request at this point: a merge boundary.
    pub no_merge: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanOptions {
    /// Unused addresses allowed between points inside one request.
    pub max_gap: u16,
    /// Per-request limit for holding/input registers (1..=125); some
    /// devices need less than the protocol maximum.
    pub max_registers: u16,
    /// Per-request limit for coils/discrete inputs (1..=2000).
    pub max_bits: u16,
}

impl Default for PlanOptions {
    fn default() -> Self {
        // A small gap: most maps have short reserved holes, and reading a
        // handful of spare registers is cheaper than a second round trip.
        Self {
            max_gap: 8,
            max_registers: MAX_REGISTERS,
            max_bits: MAX_BITS,
        }
    }
}

impl PlanOptions {
    fn limit(&self, kind: RegisterKind) -> u16 {
        if kind.is_bit() {
            self.max_bits
        } else {
            self.max_registers
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub register: RegisterKind,
    pub start: u16,
    pub count: u16,
    /// (point id, offset of the point's first register from `start`).
    pub points: Vec<(usize, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    #[error("max_registers must be 1 to 125, got {0}")]
    BadRegisterLimit(u16),
    #[error("max_bits must be 1 to 2000, got {0}")]
    BadBitLimit(u16),
    #[error("point {id} has count 0")]
    ZeroCount { id: usize },
    #[error(
        "point {id} needs {count} {kind:?} addresses, more than the limit of {max} per request"
    )]
    PointTooLarge {
        id: usize,
        kind: RegisterKind,
        count: u16,
        max: u16,
    },
    #[error("point {id} runs past address 65535 (address {address}, count {count})")]
    AddressOverflow { id: usize, address: u16, count: u16 },
    #[error("point id {id} appears more than once")]
    DuplicateId { id: usize },
    #[error("point {id} is not part of this {kind:?} request at {start}")]
    NotInRequest {
        id: usize,
        kind: RegisterKind,
        start: u16,
    },
    #[error("reply too short for point {id}: need {need} values, got {got}")]
    ShortReply { id: usize, need: usize, got: usize },
}

fn validate(points: &[Point], options: &PlanOptions) -> Result<(), PlanError> {
    if !(1..=MAX_REGISTERS).contains(&options.max_registers) {
        return Err(PlanError::BadRegisterLimit(options.max_registers));
    }
    if !(1..=MAX_BITS).contains(&options.max_bits) {
        return Err(PlanError::BadBitLimit(options.max_bits));
    }
    let mut seen = HashSet::with_capacity(points.len());
    for p in points {
        let max = options.limit(p.register);
        if p.count == 0 {
            return Err(PlanError::ZeroCount { id: p.id });
        }
        if p.count > max {
            return Err(PlanError::PointTooLarge {
                id: p.id,
                kind: p.register,
                count: p.count,
                max,
            });
        }
        if u32::from(p.address) + u32::from(p.count) > 1 << 16 {
            return Err(PlanError::AddressOverflow {
                id: p.id,
                address: p.address,
                count: p.count,
            });
        }
        if !seen.insert(p.id) {
            return Err(PlanError::DuplicateId { id: p.id });
        }
    }
    Ok(())
}

/// A request being grown; `end` is exclusive and may be 65536, hence u32.
struct Open {
    register: RegisterKind,
    start: u16,
    end: u32,
    points: Vec<(usize, u16)>,
}

impl Open {
    fn new(p: &Point) -> Self {
        Self {
            register: p.register,
            start: p.address,
            end: end_of(p),
            points: vec![(p.id, 0)],
        }
    }

    fn accepts(&self, p: &Point, options: &PlanOptions) -> bool {
        let span = end_of(p).max(self.end) - u32::from(self.start);
        p.register == self.register
            && !p.no_merge
            && u32::from(p.address) <= self.end + u32::from(options.max_gap)
            && span <= u32::from(options.limit(p.register))
    }

    fn finish(self) -> ReadRequest {
        ReadRequest {
            register: self.register,
            start: self.start,
            // end − start ≤ the per-kind limit (≤ 2000), checked on every add.
            count: (self.end - u32::from(self.start)) as u16,
            points: self.points,
        }
    }
}

fn end_of(p: &Point) -> u32 {
    u32::from(p.address) + u32::from(p.count)
}

/// Plans the read requests for `points`. Output is ordered by kind, then
/// start address.
pub fn plan(points: &[Point], options: &PlanOptions) -> Result<Vec<ReadRequest>, PlanError> {
    validate(points, options)?;
    let mut sorted: Vec<&Point> = points.iter().collect();
    // Among points at one address the no_merge one goes first, so the
    // boundary sits exactly at its address; ids break remaining ties so the
    // plan does not depend on config order.
    sorted.sort_by_key(|p| (p.register, p.address, !p.no_merge, p.id));

    let mut requests = Vec::new();
    let mut open: Option<Open> = None;
    for p in sorted {
        match open.as_mut() {
            Some(o) if o.accepts(p, options) => {
                o.end = o.end.max(end_of(p));
                // Sorted by address within a kind, so never below start.
                o.points.push((p.id, p.address.saturating_sub(o.start)));
            }
            _ => {
                if let Some(done) = open.replace(Open::new(p)) {
                    requests.push(done.finish());
                }
            }
        }
    }
    requests.extend(open.map(Open::finish));
    Ok(requests)
}

/// The slice of a reply (registers or bits) that belongs to `point`.
/// Errors instead of panicking when the device sent fewer values than
/// asked, which some gateways do.
pub fn extract<'a, T>(
    request: &ReadRequest,
    values: &'a [T],
    point: &Point,
) -> Result<&'a [T], PlanError> {
    let not_in = || PlanError::NotInRequest {
        id: point.id,
        kind: request.register,
        start: request.start,
    };
    if point.register != request.register {
        return Err(not_in());
    }
    let offset = request
        .points
        .iter()
        .find(|(id, _)| *id == point.id)
        .map(|(_, offset)| usize::from(*offset))
        .ok_or_else(not_in)?;
    let need = offset + usize::from(point.count);
    values.get(offset..need).ok_or(PlanError::ShortReply {
        id: point.id,
        need,
        got: values.len(),
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
