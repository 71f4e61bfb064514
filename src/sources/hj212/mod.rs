//! HJ 212, the national protocol every Chinese data logger speaks.
//!
//! - [`codec`]: the pure part — frames, CRC, data segments and replies, tested with
//!   byte vectors and real traffic;
//! - [`mapping`]: a parsed segment to [`Reading`](crate::model::Reading)s;
//! - [`registry`]: which MN speaks for which outlet, with its password;
//! - [`server`], `conn` and `handle`: the TCP server that authenticates loggers
//!   (each frame against its own MN, so one connection may relay many loggers),
//!   decrypts HJ 212-2025 data areas, stores what they send and answers only once
//!   it is durable;
//! - [`backfill`]: asking a reconnected logger for the hours we lack (反控).

pub mod backfill;
mod backfill_conn;
pub mod backfill_plan;
pub mod codec;
mod conn;
mod handle;
pub mod mapping;
pub mod registry;
pub mod server;
pub mod stats;

pub use backfill::{Backfill, BackfillSettings};
pub use registry::Registry;
pub use server::{Hj212Server, ServerConfig, ServerError};
pub use stats::Hj212Stats;
