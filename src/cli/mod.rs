//! Command handlers too long to keep in `main.rs`.

pub mod simulate;
