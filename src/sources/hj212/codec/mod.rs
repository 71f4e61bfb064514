//! A pure codec (no I/O) for HJ 212, China's data-transmission protocol for
//! pollution-source monitoring, covering the 2005, 2017 and 2025 generations.
//!
//! The layers are separate so each can be tested alone and so the server can
//! keep evidence of every step: [`frame`] finds frames in a TCP byte stream,
//! [`segment`] parses a frame's data segment, [`reply`] builds what a platform
//! sends back, [`crc`] holds the checksums, [`time`] the zone-less
//! timestamps, [`crypt`] the SM4 data areas of HJ 212-2025, [`error`] the error types and the private `scan` the frame
//! finder's byte-level helpers. The modules refer to each other only as
//! siblings (`super::x`), so they can be moved under any parent module as-is.

pub mod crc;
pub mod crypt;
pub mod error;
pub mod frame;
pub mod reply;
mod scan;
pub mod segment;
pub mod time;
