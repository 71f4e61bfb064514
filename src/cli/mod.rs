//! Command handlers too long to keep in `main.rs`.

pub mod demo;
pub mod simulate;
