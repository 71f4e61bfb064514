//! DL/T 645-2007, the protocol of Chinese electricity meters on RS-485 (directly or
//! behind a DTU). This module holds the pure codec; polling arrives with the
//! field-device acquisition work.

pub mod frame;
pub mod types;
pub mod value;
