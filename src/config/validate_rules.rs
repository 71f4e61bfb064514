//! Linkages, production orders and emission caps refer to meters and outlets by
//! id, so a typo would silently switch a rule off: every reference must resolve.
//! Orders issued at runtime (`/api/v1/orders`) go through the same checks as the
//! `[[orders]]` of a file ([`runtime_order`]).

use std::collections::HashSet;

use super::diag::SourceMap;
use super::enterprise::{Enterprise, MeterRole};
use super::validate::{Catalogue, Checker};
use crate::model::FactorClass;

pub(super) fn positive(c: &mut Checker<'_>, path: &str, v: f64) {
    if !(v.is_finite() && v > 0.0) {
        c.error(path, format!("must be a finite number > 0, got {v}"));
    }
}

pub(super) fn fraction(c: &mut Checker<'_>, path: &str, v: f64) {
    if !(v.is_finite() && v > 0.0 && v <= 1.0) {
        c.error(path, format!("must be in (0, 1], got {v}"));
    }
}

pub(super) fn non_zero(c: &mut Checker<'_>, path: &str, d: super::HumanDuration) {
    if d.0.is_zero() {
        c.error(path, "must be longer than 0s");
    }
}

/// One `[[orders]]` entry (or an order issued at runtime, [`runtime_order`]):
/// `ids` holds the order ids already taken in this enterprise.
fn order<'o>(
    c: &mut Checker<'_>,
    e: &Enterprise,
    o: &'o super::Order,
    p: &str,
    ids: &mut HashSet<&'o str>,
) {
    let role = |id: &str| e.meters.iter().find(|m| m.id == id).map(|m| m.role);
    c.id(&format!("{p}.id"), &o.id);
    if !ids.insert(o.id.as_str()) {
        c.error(
            &format!("{p}.id"),
            format!("order id {:?} is used twice", o.id),
        );
    }
    if o.end <= o.start {
        c.error(
            &format!("{p}.end"),
            format!("must be after start ({})", o.start),
        );
    }
    match (o.kind, o.allowed_share) {
        (super::OrderKind::Limit, None) => c.error(
            p,
            "a limit order needs allowed_share (a fraction of baseline)",
        ),
        (_, Some(v)) if !(v.is_finite() && (0.0..1.0).contains(&v)) => c.error(
            &format!("{p}.allowed_share"),
            format!("must be in [0, 1), got {v}"),
        ),
        _ => {}
    }
    let meters: Vec<&str> = if o.meters.is_empty() {
        e.meters
            .iter()
            .filter(|m| m.role == MeterRole::Production)
            .map(|m| m.id.as_str())
            .collect()
    } else {
        o.meters.iter().map(String::as_str).collect()
    };
    if meters.is_empty() {
        c.error(
            &format!("{p}.meters"),
            "no meters: list them or add a production meter",
        );
    }
    for (j, m) in o.meters.iter().enumerate() {
        if role(m).is_none() {
            c.error(
                &format!("{p}.meters[{j}]"),
                format!("no meter with id {m:?}"),
            );
        }
    }
    match o.baseline_kw {
        Some(b) => positive(c, &format!("{p}.baseline_kw"), b),
        None => {
            let missing: Vec<&str> = meters
                .iter()
                .copied()
                .filter(|id| {
                    !e.meters
                        .iter()
                        .any(|m| m.id == *id && m.baseline_kw.is_some())
                })
                .collect();
            if !missing.is_empty() {
                c.error(
                    &format!("{p}.baseline_kw"),
                    format!("set baseline_kw here or on meters {}", missing.join(", ")),
                );
            }
        }
    }
    if let Some(g) = o.grace {
        non_zero(c, &format!("{p}.grace"), g);
    }
}

/// Checks an order issued at runtime (`POST /api/v1/orders`) against its
/// enterprise exactly as a config `[[orders]]` entry is checked; `taken` are the
/// ids of the enterprise's other orders in force. Each error reads `key: message`.
pub fn runtime_order(e: &Enterprise, taken: &[&str], o: &super::Order) -> Vec<String> {
    let map = SourceMap::default();
    let mut out = Vec::new();
    let mut c = Checker {
        file: "request",
        map: &map,
        out: &mut out,
    };
    let mut ids: HashSet<&str> = e.orders.iter().map(|o| o.id.as_str()).collect();
    ids.extend(taken.iter().copied());
    order(&mut c, e, o, "order", &mut ids);
    out.into_iter()
        .map(|d| format!("{}: {}", d.path.trim_start_matches("order."), d.message))
        .collect()
}

/// Linkages, orders and emission caps: they refer to meters and outlets by id, so
/// a typo would silently switch a rule off; every reference must resolve.
pub(super) fn rules(c: &mut Checker<'_>, e: &Enterprise, cat: &Catalogue<'_>) {
    let role = |id: &str| e.meters.iter().find(|m| m.id == id).map(|m| m.role);
    let mut ids = HashSet::new();
    for (i, l) in e.linkages.iter().enumerate() {
        let p = format!("linkages[{i}]");
        c.id(&format!("{p}.id"), &l.id);
        if !ids.insert(l.id.as_str()) {
            c.error(
                &format!("{p}.id"),
                format!("linkage id {:?} is used twice", l.id),
            );
        }
        for (key, list, want) in [
            ("production", &l.production, MeterRole::Production),
            ("treatment", &l.treatment, MeterRole::Treatment),
        ] {
            if list.is_empty() {
                c.error(&format!("{p}.{key}"), "needs at least one meter id");
            }
            for (j, m) in list.iter().enumerate() {
                match role(m) {
                    None => c.error(
                        &format!("{p}.{key}[{j}]"),
                        format!("no meter with id {m:?}"),
                    ),
                    Some(r) if r != want => c.error(
                        &format!("{p}.{key}[{j}]"),
                        format!(
                            "meter {m:?} has role {:?}, expected {:?}",
                            r.as_str(),
                            want.as_str()
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
        positive(c, &format!("{p}.production_on_kw"), l.production_on_kw);
        positive(
            c,
            &format!("{p}.treatment_normal_kw"),
            l.treatment_normal_kw,
        );
        let off = l.off_below.unwrap_or(super::Linkage::DEFAULT_OFF_BELOW);
        let under = l
            .underpowered_below
            .unwrap_or(super::Linkage::DEFAULT_UNDERPOWERED_BELOW);
        if let Some(v) = l.off_below {
            fraction(c, &format!("{p}.off_below"), v);
        }
        if let Some(v) = l.underpowered_below {
            fraction(c, &format!("{p}.underpowered_below"), v);
        }
        if off > under {
            c.error(
                &format!("{p}.off_below"),
                format!("must not be above underpowered_below ({under}), got {off}"),
            );
        }
    }
    let mut ids = HashSet::new();
    for (i, o) in e.orders.iter().enumerate() {
        order(c, e, o, &format!("orders[{i}]"), &mut ids);
    }
    let mut seen = HashSet::new();
    for (i, cap) in e.emission_caps.iter().enumerate() {
        let p = format!("emission_caps[{i}]");
        match cat.class(&cap.factor) {
            Some(FactorClass::GasPollutant | FactorClass::WaterPollutant) => {}
            Some(_) => c.error(
                &format!("{p}.factor"),
                format!(
                    "{} is not a pollutant with an emission quantity",
                    cap.factor
                ),
            ),
            None => c.error(
                &format!("{p}.factor"),
                format!("unknown factor code {:?}", cap.factor),
            ),
        }
        if !seen.insert(cap.factor.as_str()) {
            c.error(
                &format!("{p}.factor"),
                format!("a cap for {} is already set", cap.factor),
            );
        }
        positive(c, &format!("{p}.tonnes_per_year"), cap.tonnes_per_year);
        for (j, o) in cap.outlets.iter().enumerate() {
            if !e.outlets.iter().any(|x| &x.id == o) {
                c.error(
                    &format!("{p}.outlets[{j}]"),
                    format!("no outlet with id {o:?}"),
                );
            }
        }
    }
}
