//! The numbers a message carries, taken from the finding and the config: names
//! an officer recognises, the value against the limit with unit and basis.

use crate::config::{Config, Severity};
use crate::model::{factor, Location};
use crate::notify::AlertFacts;
use crate::rules::{Finding, RuleName};

pub fn facts_for(config: &Config, f: &Finding, severity: Severity) -> AlertFacts {
    let e = config.enterprise(&f.enterprise);
    let (loc_id, loc_name) = match &f.location {
        Some(Location::Outlet(id)) => (
            id.to_string(),
            e.and_then(|e| e.outlets.iter().find(|o| *o.id == **id))
                .map(|o| o.name.clone())
                .unwrap_or_default(),
        ),
        Some(Location::Meter(id)) => (
            id.to_string(),
            e.and_then(|e| e.meters.iter().find(|m| *m.id == **id))
                .map(|m| m.name.clone())
                .unwrap_or_default(),
        ),
        None => (String::new(), String::new()),
    };
    let cat = factor(&f.factor);
    let basis = f
        .evidence
        .limit
        .as_ref()
        .map(|l| match l.basis.as_str() {
            "hour" => "小时均值",
            "day" => "日均值",
            _ => "实时值",
        })
        .unwrap_or("实时值");
    AlertFacts {
        alert_id: String::new(),
        enterprise_id: f.enterprise.to_string(),
        enterprise_name: e.map(|e| e.name.clone()).unwrap_or_default(),
        district: e.map(|e| e.district.clone()).unwrap_or_default(),
        industry: e.map(|e| e.industry.clone()).unwrap_or_default(),
        positive_list: e.is_some_and(|e| e.positive_list),
        outlet_id: loc_id,
        outlet_name: loc_name,
        factor_code: f.factor.to_string(),
        factor_name: cat
            .map(|c| c.name_zh.to_string())
            .unwrap_or_else(|| f.factor.to_string()),
        // Rules about a whole location (offline, linkage) carry no number.
        value: f.value.unwrap_or(0.0),
        limit: f.threshold.unwrap_or(0.0),
        permit_limit: match f.rule {
            RuleName::EarlyWarning | RuleName::ProjectedExceedance => f
                .evidence
                .limit
                .as_ref()
                .and_then(|l| l.max.or(l.min))
                .filter(|p| Some(*p) != f.threshold),
            _ => None,
        },
        unit: cat.map(|c| c.unit.to_string()).unwrap_or_default(),
        basis: basis.to_string(),
        converted: f
            .evidence
            .limit
            .as_ref()
            .is_some_and(|l| l.o2_reference.is_some()),
        window_start: f.window_start,
        window_end: f.window_end,
        rule: f.rule.as_str().to_string(),
        severity,
        // The alert id is appended when the message is built.
        link: config.daemon.alerts.console_url.clone(),
    }
}
