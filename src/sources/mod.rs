//! Sources: one module per protocol, each turning bytes into
//! [`Reading`](crate::model::Reading)s for the store writer.

pub mod dlt645;
pub mod field;
pub mod fuzzing;
pub mod hj212;
pub mod modbus;
pub mod mqtt;
pub mod peers;
