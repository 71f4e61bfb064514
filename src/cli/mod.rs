//! Command handlers too long to keep in `main.rs`.

pub mod bench;
pub mod completeness;
pub mod demo;
pub mod export;
pub mod report;
pub mod simulate;
