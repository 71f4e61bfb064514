//! Device simulators for the demo, the tests and the benchmarks. They speak the
//! real protocols over real sockets, including the habits of real devices (a
//! logger resends an upload it got no answer for).

pub mod hj212_logger;

pub use hj212_logger::{Delivery, LoggerSim, SimError};
