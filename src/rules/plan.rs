//! Config compiled once into indexed tables, so the hot path is a few hash lookups
//! on borrowed `&str` keys and index arithmetic — no allocation per reading.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::finding::LimitRef;
use crate::config::{
    Aggregates, Basis, Config, Enterprise, Limit, MeterRole, OrderKind, Outlet, OutletKind,
};
use crate::model::{self, FactorClass, Id};
use crate::store::StoredOrder;

/// O2 (HJ 212 a19001); flue-gas concentrations are corrected with it.
pub const O2: &str = "a19001";
/// Flue-gas flow, m³/s.
pub const GAS_FLOW: &str = "a00000";
/// Wastewater flow, L/s.
pub const WATER_FLOW: &str = "w00000";
/// Active power, kW.
pub const POWER: &str = "e_p";

/// FNV-1a: the keys of the hot-path maps are short ids from our own config, so
/// HashDoS resistance buys nothing there and SipHash's cost shows in the benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A map keyed by ids, hashed with [`Fnv`].
pub type IdMap<V> = HashMap<Id, V, std::hash::BuildHasherDefault<Fnv>>;

pub fn chrono(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimitPlan {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub basis: Basis,
    /// Fraction of max for early warning; `None` = no early warning.
    pub warn_at: Option<f64>,
    pub hold_for: Option<Duration>,
    pub repeat: u32,
    pub source: LimitRef,
}

impl LimitPlan {
    /// Strictly above max or strictly below min: exactly at the limit is compliant.
    pub fn exceeded(&self, v: f64) -> bool {
        self.max.is_some_and(|m| v > m) || self.min.is_some_and(|m| v < m)
    }

    pub fn warn_threshold(&self) -> Option<f64> {
        Some(self.warn_at? * self.max?)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FactorPlan {
    pub limits: Vec<LimitPlan>,
    pub range: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutletPlan {
    pub id: Id,
    pub kind: OutletKind,
    pub o2_reference: Option<f64>,
    pub aggregates: Aggregates,
    pub min_valid_minutes: u32,
    pub min_valid_hours: u32,
    pub mismatch_tolerance: f64,
    pub offline_after: Duration,
    pub constant_for: Duration,
    pub constant_epsilon: f64,
    pub maintenance_max_share: f64,
    pub factors: IdMap<FactorPlan>,
    /// A waste incinerator's furnace temperature rule ([`super::furnace`]).
    pub furnace: Option<FurnacePlan>,
}

/// `outlets[].furnace`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct FurnacePlan {
    pub factor: Id,
    pub min_c: f64,
    pub max_per_day: u32,
    /// Where the rule is written (`min` = `min_c`, basis `5min`).
    pub source: LimitRef,
}

impl OutletPlan {
    pub fn flow_factor(&self) -> &'static str {
        match self.kind {
            OutletKind::FlueGas => GAS_FLOW,
            OutletKind::Wastewater => WATER_FLOW,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MeterPlan {
    pub id: Id,
    pub role: MeterRole,
    pub baseline_kw: Option<f64>,
    pub offline_after: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LinkagePlan {
    pub id: Id,
    pub production: Vec<usize>,
    pub production_on_kw: f64,
    pub treatment: Vec<usize>,
    pub treatment_normal_kw: f64,
    pub off_below: f64,
    pub underpowered_below: f64,
    pub grace: Duration,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderPlan {
    pub id: Id,
    pub kind: OrderKind,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub allowed_share: f64,
    pub meters: Vec<usize>,
    pub baseline_kw: f64,
    pub grace: Duration,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CapPlan {
    pub factor: Id,
    pub tonnes_per_year: f64,
    pub outlets: Vec<usize>,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnterprisePlan {
    pub id: Id,
    pub file: String,
    pub outlets: Vec<OutletPlan>,
    pub outlet_ix: IdMap<usize>,
    pub meters: Vec<MeterPlan>,
    pub meter_ix: IdMap<usize>,
    pub linkages: Vec<LinkagePlan>,
    /// For each meter, the linkages and orders that read it.
    pub meter_linkages: Vec<Vec<usize>>,
    pub meter_orders: Vec<Vec<usize>>,
    pub orders: Vec<OrderPlan>,
    pub caps: Vec<CapPlan>,
}

/// The whole city, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub tz: Tz,
    pub enterprises: Vec<EnterprisePlan>,
    pub enterprise_ix: IdMap<usize>,
}

impl Plan {
    pub fn new(config: &Config) -> Plan {
        Plan::with_orders(config, &[])
    }

    /// The config's plan plus the orders issued at runtime (`/api/v1/orders`); an
    /// order for an enterprise no longer in config is ignored.
    pub fn with_orders(config: &Config, runtime: &[StoredOrder]) -> Plan {
        let enterprises: Vec<EnterprisePlan> = config
            .enterprises
            .iter()
            .zip(&config.enterprise_files)
            .map(|(e, f)| {
                let mine: Vec<&StoredOrder> =
                    runtime.iter().filter(|o| o.enterprise == e.id).collect();
                enterprise(e, f, &mine)
            })
            .collect();
        let enterprise_ix = enterprises
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        Plan {
            tz: config.timezone,
            enterprises,
            enterprise_ix,
        }
    }

    /// One enterprise's compiled plan (config only), for readers that need one
    /// outlet's limits without compiling the whole city.
    pub fn enterprise_of(config: &Config, id: &str) -> Option<EnterprisePlan> {
        config
            .enterprises
            .iter()
            .zip(&config.enterprise_files)
            .find(|(e, _)| e.id == id)
            .map(|(e, f)| enterprise(e, f, &[]))
    }

    pub fn series_count(&self) -> usize {
        self.enterprises
            .iter()
            .flat_map(|e| &e.outlets)
            .map(|o| o.factors.len())
            .sum()
    }
}

/// The factor's class from the built-in catalogue (local `[[factors]]` codes are
/// treated as unclassified: judged against their limits, never corrected).
pub fn class(code: &str) -> Option<FactorClass> {
    model::factor(code).map(|f| f.class)
}

fn limit(l: &Limit, o: &Outlet, file: &str, key: String) -> LimitPlan {
    let warn_at = match l.basis {
        // An instant limit with a range (pH 6–9) has no meaningful "80 % of max".
        Basis::Instant => l.warn_at,
        Basis::Hour | Basis::Day => Some(l.warn_at()),
    }
    .filter(|_| l.max.is_some());
    LimitPlan {
        min: l.min,
        max: l.max,
        basis: l.basis,
        warn_at,
        hold_for: l.for_.map(|d| chrono(d.0)),
        repeat: l.repeat.unwrap_or(1).max(1),
        source: LimitRef {
            min: l.min,
            max: l.max,
            basis: l.basis.as_str().to_string(),
            warn_at,
            o2_reference: o.o2_reference,
            file: file.to_string(),
            key,
        },
    }
}

fn enterprise(e: &Enterprise, file: &str, runtime: &[&StoredOrder]) -> EnterprisePlan {
    let outlets: Vec<OutletPlan> = e
        .outlets
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let mut factors: IdMap<FactorPlan> = IdMap::default();
            for (j, l) in o.limits.iter().enumerate() {
                factors
                    .entry(Id::from(l.factor.as_str()))
                    .or_default()
                    .limits
                    .push(limit(l, o, file, format!("outlets[{i}].limits[{j}]")));
            }
            for a in &o.analyzers {
                factors
                    .entry(Id::from(a.factor.as_str()))
                    .or_default()
                    .range = Some(a.range);
            }
            OutletPlan {
                id: Id::from(o.id.as_str()),
                kind: o.kind,
                o2_reference: o.o2_reference,
                aggregates: o.aggregates,
                min_valid_minutes: o
                    .min_valid_minutes
                    .unwrap_or(Outlet::DEFAULT_MIN_VALID_MINUTES),
                min_valid_hours: o.min_valid_hours.unwrap_or(Outlet::DEFAULT_MIN_VALID_HOURS),
                mismatch_tolerance: o
                    .mismatch_tolerance
                    .unwrap_or(Outlet::DEFAULT_MISMATCH_TOLERANCE),
                offline_after: chrono(
                    o.offline_after
                        .map(|d| d.0)
                        .unwrap_or(Outlet::DEFAULT_OFFLINE_AFTER),
                ),
                constant_for: chrono(
                    o.constant_for
                        .map(|d| d.0)
                        .unwrap_or(Outlet::DEFAULT_CONSTANT_FOR),
                ),
                constant_epsilon: o
                    .constant_epsilon
                    .unwrap_or(Outlet::DEFAULT_CONSTANT_EPSILON),
                maintenance_max_share: o
                    .maintenance_max_share
                    .unwrap_or(Outlet::DEFAULT_MAINTENANCE_MAX_SHARE),
                factors,
                furnace: o.furnace.as_ref().map(|f| {
                    let min_c = f.min_c.unwrap_or(crate::config::Furnace::DEFAULT_MIN_C);
                    FurnacePlan {
                        factor: Id::from(f.factor.as_str()),
                        min_c,
                        max_per_day: f
                            .max_per_day
                            .unwrap_or(crate::config::Furnace::DEFAULT_MAX_PER_DAY),
                        source: LimitRef {
                            min: Some(min_c),
                            max: None,
                            basis: "5min".to_string(),
                            warn_at: None,
                            o2_reference: None,
                            file: file.to_string(),
                            key: format!("outlets[{i}].furnace"),
                        },
                    }
                }),
            }
        })
        .collect();
    let outlet_ix = outlets
        .iter()
        .enumerate()
        .map(|(i, o)| (o.id.clone(), i))
        .collect();
    let meters: Vec<MeterPlan> = e
        .meters
        .iter()
        .map(|m| MeterPlan {
            id: Id::from(m.id.as_str()),
            role: m.role,
            baseline_kw: m.baseline_kw,
            offline_after: chrono(
                m.offline_after
                    .map(|d| d.0)
                    .unwrap_or(Outlet::DEFAULT_OFFLINE_AFTER),
            ),
        })
        .collect();
    let meter_ix: IdMap<usize> = meters
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.clone(), i))
        .collect();
    let find = |ids: &[String]| -> Vec<usize> {
        ids.iter()
            .filter_map(|id| meter_ix.get(id.as_str()).copied())
            .collect()
    };
    let linkages: Vec<LinkagePlan> = e
        .linkages
        .iter()
        .enumerate()
        .map(|(i, l)| LinkagePlan {
            id: Id::from(l.id.as_str()),
            production: find(&l.production),
            production_on_kw: l.production_on_kw,
            treatment: find(&l.treatment),
            treatment_normal_kw: l.treatment_normal_kw,
            off_below: l
                .off_below
                .unwrap_or(crate::config::Linkage::DEFAULT_OFF_BELOW),
            underpowered_below: l
                .underpowered_below
                .unwrap_or(crate::config::Linkage::DEFAULT_UNDERPOWERED_BELOW),
            grace: chrono(
                l.grace
                    .map(|d| d.0)
                    .unwrap_or(crate::config::Linkage::DEFAULT_GRACE),
            ),
            key: format!("linkages[{i}]"),
        })
        .collect();
    // Runtime orders judge up to their cancellation; their key names the API row.
    let runtime = runtime
        .iter()
        .map(|r| (r.effective_order(), format!("api-orders/{}", r.id)));
    let orders: Vec<OrderPlan> = e
        .orders
        .iter()
        .enumerate()
        .map(|(i, o)| (o.clone(), format!("orders[{i}]")))
        .chain(runtime)
        .map(|(o, key)| {
            let ids: Vec<usize> = if o.meters.is_empty() {
                meters
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.role == MeterRole::Production)
                    .map(|(i, _)| i)
                    .collect()
            } else {
                find(&o.meters)
            };
            let baseline = o
                .baseline_kw
                .unwrap_or_else(|| ids.iter().filter_map(|&i| meters[i].baseline_kw).sum());
            OrderPlan {
                id: Id::from(o.id.as_str()),
                kind: o.kind,
                start: o.start.with_timezone(&Utc),
                end: o.end.with_timezone(&Utc),
                allowed_share: o.allowed_share.unwrap_or(match o.kind {
                    OrderKind::Stop => crate::config::Order::DEFAULT_STOP_SHARE,
                    OrderKind::Limit => 1.0,
                }),
                meters: ids,
                baseline_kw: baseline,
                grace: chrono(
                    o.grace
                        .map(|d| d.0)
                        .unwrap_or(crate::config::Order::DEFAULT_GRACE),
                ),
                key,
            }
        })
        .collect();
    let mut meter_linkages = vec![Vec::new(); meters.len()];
    for (i, l) in linkages.iter().enumerate() {
        for &m in l.production.iter().chain(&l.treatment) {
            if !meter_linkages[m].contains(&i) {
                meter_linkages[m].push(i);
            }
        }
    }
    let mut meter_orders = vec![Vec::new(); meters.len()];
    for (i, o) in orders.iter().enumerate() {
        for &m in &o.meters {
            meter_orders[m].push(i);
        }
    }
    let caps = e
        .emission_caps
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let gas = class(&c.factor) == Some(FactorClass::GasPollutant);
            let outlets = outlets
                .iter()
                .enumerate()
                .filter(|(_, o)| {
                    if c.outlets.is_empty() {
                        (o.kind == OutletKind::FlueGas) == gas
                    } else {
                        c.outlets.iter().any(|id| id.as_str() == &*o.id)
                    }
                })
                .map(|(i, _)| i)
                .collect();
            CapPlan {
                factor: Id::from(c.factor.as_str()),
                tonnes_per_year: c.tonnes_per_year,
                outlets,
                key: format!("emission_caps[{i}]"),
            }
        })
        .collect();
    EnterprisePlan {
        id: Id::from(e.id.as_str()),
        file: file.to_string(),
        outlets,
        outlet_ix,
        meters,
        meter_ix,
        linkages,
        meter_linkages,
        meter_orders,
        orders,
        caps,
    }
}
