//! HJ 212, the national protocol every Chinese data logger speaks. [`codec`] is the
//! pure part: frames, CRC, data segments and replies, tested with byte vectors and
//! with real traffic.

pub mod codec;
