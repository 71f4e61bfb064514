//! pollwatch: off-site environmental enforcement.
//!
//! Readings from enterprises' pollution-source monitors and power-usage meters come
//! in through [`sources`](crate::model) in many protocols, are normalised to one
//! vocabulary ([`model`]), stored durably ([`store`]), judged against each
//! enterprise's permit ([`rules`]) and turned into alerts for the duty officer
//! ([`alerts`], [`notify`]). README.md describes the pipeline, its guarantees and
//! the layout; each module's docs say why it is built the way it is.

pub mod alerts;
pub mod api;
pub mod bench;
pub mod clock;
pub mod cluster;
pub mod completeness;
pub mod config;
pub mod console;
pub mod daemon;
pub mod demo;
pub mod evidence;
pub mod model;
pub mod notify;
pub mod ratelimit;
pub mod report;
pub mod rules;
pub mod seal;
pub mod sim;
pub mod sources;
pub mod store;
pub mod throttle;
pub mod timefmt;
