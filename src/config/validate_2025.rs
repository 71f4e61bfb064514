//! Checks for what HJ 212-2025 loggers add to an enterprise file: the furnace
//! temperature rule of a waste incinerator (`outlets[].furnace`) and meters whose
//! power arrives in a logger's uploads (`meters[].hj212`). Both name a factor code
//! the references do not fix, so a typo would silently switch a rule off: the code
//! must be known (catalogue or `[[factors]]`) and the MN must be a logger's.

use std::collections::HashSet;

use super::enterprise::{Enterprise, Furnace, OutletKind};
use super::validate::{Catalogue, Checker};
use super::validate_rules::positive;
use crate::model::FactorClass;

pub(super) fn furnace(
    c: &mut Checker<'_>,
    p: &str,
    kind: OutletKind,
    f: &Furnace,
    cat: &Catalogue<'_>,
) {
    if kind != OutletKind::FlueGas {
        c.error(
            p,
            "the furnace temperature rule belongs on a flue-gas outlet",
        );
    }
    match cat.class(&f.factor) {
        None => c.error(
            &format!("{p}.factor"),
            format!(
                "unknown factor code {:?}: declare the code the logger sends its furnace temperature under with [[factors]] (class = \"gas_parameter\") in pollwatch.toml",
                f.factor
            ),
        ),
        Some(FactorClass::GasParameter) => {}
        Some(class) => c.error(
            &format!("{p}.factor"),
            format!("{} is a {class:?}, not a flue-gas parameter such as a temperature", f.factor),
        ),
    }
    if let Some(v) = f.min_c {
        if !(v.is_finite() && (0.0..2000.0).contains(&v)) {
            c.error(
                &format!("{p}.min_c"),
                format!("must be a temperature in [0, 2000) ℃, got {v}"),
            );
        }
    }
    if f.max_per_day.is_some_and(|n| n > 288) {
        c.error(
            &format!("{p}.max_per_day"),
            "a day has 288 five-minute means; must be at most 288",
        );
    }
}

/// `meters[].hj212`: the MN is one of this enterprise's outlet loggers, the factor
/// an electrical code, and no (MN, factor) feeds two meters.
pub(super) fn meter_power(c: &mut Checker<'_>, e: &Enterprise, cat: &Catalogue<'_>) {
    let loggers: HashSet<&str> = e
        .outlets
        .iter()
        .filter_map(|o| o.hj212.as_ref().map(|h| h.mn.as_str()))
        .collect();
    let mut taken = HashSet::new();
    for (i, m) in e.meters.iter().enumerate() {
        let Some(h) = &m.hj212 else { continue };
        let p = format!("meters[{i}].hj212");
        if m.device.is_some() {
            c.error(
                &p,
                "a meter is either polled (device) or fed by a logger (hj212), not both",
            );
        }
        if !loggers.contains(h.mn.as_str()) {
            c.error(
                &format!("{p}.mn"),
                format!(
                    "{:?} is not the MN of any of this enterprise's outlets (outlets[].hj212.mn)",
                    h.mn
                ),
            );
        }
        match cat.class(&h.factor) {
            Some(FactorClass::Electrical) => {}
            None => c.error(
                &format!("{p}.factor"),
                format!(
                    "unknown factor code {:?}: declare it with [[factors]] (class = \"electrical\") in pollwatch.toml",
                    h.factor
                ),
            ),
            Some(class) => c.error(
                &format!("{p}.factor"),
                format!("{} is a {class:?}, not an electrical quantity", h.factor),
            ),
        }
        if let Some(s) = h.scale {
            positive(c, &format!("{p}.scale"), s);
        }
        if !taken.insert((h.mn.as_str(), h.factor.as_str())) {
            c.error(
                &format!("{p}.factor"),
                format!("{} of {} already feeds another meter", h.factor, h.mn),
            );
        }
    }
}
