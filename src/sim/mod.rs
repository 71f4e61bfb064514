//! Device simulators for the demo, the tests and the benchmarks. They speak the
//! real protocols over real sockets, including the habits of real devices (a
//! logger resends an upload it got no answer for).

pub mod dlt645_meter;
pub mod dtu;
pub mod hj212_fleet;
pub mod hj212_history;
pub mod hj212_logger;
mod link;
pub mod modbus;
pub mod modbus_frame;
pub mod mosquitto;
pub mod mqtt_pub;
pub mod profile;

pub use dlt645_meter::{MeterBehaviour, MeterSim, MeterStats};
pub use dtu::{DtuDevice, DtuSim, DtuStats};
pub use hj212_history::{Backlog, HistoryMode, HistoryRequest};
pub use hj212_logger::{Delivery, LoggerSim, SimError};
pub use modbus::{Behaviour, ModbusSim, Point, UnitStats};
pub use profile::Profile;
