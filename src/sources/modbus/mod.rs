//! Modbus: register decoding (types, word orders, scaling, status words mapped to
//! HJ 212 flags) and request planning (merging points into as few reads as
//! possible). Pure functions; the pollers over TCP, RTU and DTU arrive with the
//! field-device acquisition work.

pub mod decode;
pub mod plan;
pub mod scale;
