//! Which logger speaks for which outlet: MN → enterprise, outlet, password and
//! per-device options, built from config. The server reads it through a `watch`
//! channel so that a config reload swaps it without touching live connections.

use std::collections::HashMap;
use std::sync::Arc;

use super::codec::crc::CrcMode;
use super::codec::crypt::Sm4Key;
use super::mapping::{Origin, PowerFeed};
use crate::config::{ClockBounds, Config, Hj212Crc};

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub origin: Origin,
    pub password: String,
    pub crc: CrcMode,
    pub set_time_on_connect: bool,
    /// Seconds, for a 1062 on connect.
    pub rtd_interval: Option<u32>,
    /// HJ 212-2025: the key of the logger's SM4-encrypted data areas.
    pub sm4_key: Option<Sm4Key>,
    /// Plaintext data uploads (CN 2xxx) are refused (`not_encrypted`).
    pub require_encryption: bool,
    /// HJ 212-2025 power-use data: factors of this logger that are meters' power.
    pub power: Vec<PowerFeed>,
    /// Ask the logger for missing hours (outlet `backfill`, default true).
    pub backfill: bool,
    /// The outlet's limited factors: an hour is complete when each has a value
    /// (any factor when empty).
    pub factors: Vec<String>,
    /// Which kinds of data besides hourly values to ask for.
    pub kinds: BackfillKinds,
    /// How far the logger's DataTime may be from now (`clock_skew` beyond).
    pub clock: ClockBounds,
}

/// What a backfill asks the logger for besides hourly values (2061).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackfillKinds {
    /// Minute data (2051): the outlet judges computed aggregates.
    pub minutes: bool,
    /// Daily data (2031) of these factors: they have a daily limit.
    pub day_factors: Vec<String>,
}

impl BackfillKinds {
    pub fn of(o: &crate::config::Outlet) -> BackfillKinds {
        let mut day_factors: Vec<String> = o
            .limits
            .iter()
            .filter(|l| l.basis == crate::config::Basis::Day)
            .map(|l| l.factor.clone())
            .collect();
        day_factors.sort();
        day_factors.dedup();
        BackfillKinds {
            minutes: o.aggregates == crate::config::Aggregates::Computed,
            day_factors,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    by_mn: HashMap<String, Arc<Endpoint>>,
}

impl Registry {
    pub fn from_config(cfg: &Config) -> Registry {
        let mut by_mn = HashMap::new();
        for e in &cfg.enterprises {
            for o in &e.outlets {
                let Some(h) = &o.hj212 else { continue };
                let power = e
                    .meters
                    .iter()
                    .filter_map(|m| {
                        let feed = m.hj212.as_ref().filter(|f| f.mn == h.mn)?;
                        Some(PowerFeed {
                            factor: feed.factor.as_str().into(),
                            meter: m.id.as_str().into(),
                            scale: feed.scale.unwrap_or(1.0),
                        })
                    })
                    .collect();
                let endpoint = Endpoint {
                    origin: Origin {
                        enterprise: e.id.as_str().into(),
                        outlet: o.id.as_str().into(),
                        mn: h.mn.as_str().into(),
                    },
                    password: h.password.clone(),
                    crc: match h.crc {
                        Hj212Crc::Hj212 => CrcMode::Hj212,
                        Hj212Crc::ModbusSwapped => CrcMode::ModbusSwapped,
                    },
                    set_time_on_connect: h.set_time_on_connect,
                    rtd_interval: h.rtd_interval.map(|d| d.0.as_secs() as u32),
                    sm4_key: h.sm4_key.clone(),
                    require_encryption: h.require_encryption,
                    power,
                    backfill: o.backfill,
                    factors: {
                        let mut f: Vec<String> =
                            o.limits.iter().map(|l| l.factor.clone()).collect();
                        f.sort();
                        f.dedup();
                        f
                    },
                    kinds: BackfillKinds::of(o),
                    clock: cfg.clock_bounds(&e.id, Some(&o.id)),
                };
                by_mn.insert(h.mn.clone(), Arc::new(endpoint));
            }
        }
        Registry { by_mn }
    }

    /// Adds or replaces one logger (simulations and benchmarks build registries
    /// without config files).
    pub fn insert(&mut self, endpoint: Endpoint) {
        self.by_mn
            .insert(endpoint.origin.mn.to_string(), Arc::new(endpoint));
    }

    pub fn get(&self, mn: &str) -> Option<&Arc<Endpoint>> {
        self.by_mn.get(mn)
    }

    pub fn len(&self) -> usize {
        self.by_mn.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_mn.is_empty()
    }
}
