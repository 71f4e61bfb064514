//! What officers read instead of codes: severities, states and rules in
//! Chinese, and enterprise, outlet, meter and factor names from the config.

use crate::config::{Config, Severity};
use crate::model::factor;

/// The alert severities, most urgent first (for the board's filter).
pub const SEVERITIES: [Severity; 4] = [
    Severity::Critical,
    Severity::Major,
    Severity::Minor,
    Severity::Warning,
];

pub fn severity_zh(s: &str) -> &'static str {
    SEVERITIES
        .iter()
        .find(|x| x.as_str() == s)
        .map(|x| x.label_zh())
        .unwrap_or("其他")
}

pub fn state_zh(s: &str) -> &'static str {
    match s {
        "open" => "未确认",
        "acknowledged" => "已确认",
        "resolved" => "已解除",
        _ => "未知",
    }
}

pub use crate::rules::finding::rule_zh;

/// What an alert's facts say of its basis and limits (tolerant of older rows).
#[derive(Debug, Default, serde::Deserialize)]
struct LimitFacts {
    #[serde(default)]
    basis: String,
    #[serde(default)]
    permit_limit: Option<f64>,
}

fn limit_facts(a: &crate::store::AlertRow) -> LimitFacts {
    serde_json::from_str(&a.facts).unwrap_or_default()
}

/// The rule's name for this alert: a projected exceedance says which mean
/// (小时均值预计超标 for an hourly limit, 日均值预计超标 for a daily one).
pub fn alert_rule_zh(a: &crate::store::AlertRow) -> String {
    if a.rule == "projected_exceedance" {
        let basis = limit_facts(a).basis;
        if !basis.is_empty() {
            return format!("{basis}预计超标");
        }
    }
    rule_zh(&a.rule).to_string()
}

/// Value against the permit limit; an early warning also names its warning line
/// (`30.1 / 限值 35（预警线 28）`), never the line as if it were the limit.
pub fn value_vs_limit(a: &crate::store::AlertRow) -> String {
    let num = super::html::num;
    match limit_facts(a).permit_limit {
        Some(p) => format!(
            "{} / 限值 {}（预警线 {}）",
            num(a.value),
            num(Some(p)),
            num(a.limit)
        ),
        None => format!("{} / {}", num(a.value), num(a.limit)),
    }
}

/// Display names for an alert's enterprise, location and factor.
pub struct Names<'a> {
    pub cfg: &'a Config,
}

impl<'a> Names<'a> {
    pub fn enterprise(&self, id: &'a str) -> &'a str {
        self.cfg
            .enterprises
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.name.as_str())
            .unwrap_or(id)
    }

    /// `outlet:DA001` → the outlet's name (or the meter's), else the text as stored.
    pub fn location(&self, enterprise: &str, location: &'a str) -> &'a str {
        let Some(e) = self.cfg.enterprises.iter().find(|e| e.id == enterprise) else {
            return location;
        };
        match location.split_once(':') {
            Some(("outlet", id)) => e
                .outlets
                .iter()
                .find(|o| o.id == id)
                .map(|o| o.name.as_str())
                .unwrap_or(location),
            Some(("meter", id)) => e
                .meters
                .iter()
                .find(|m| m.id == id)
                .map(|m| m.name.as_str())
                .unwrap_or(location),
            _ => location,
        }
    }

    /// A factor code with its Chinese name, e.g. `二氧化硫 (a21026)`.
    pub fn factor(code: &str) -> String {
        match factor(code) {
            Some(f) => format!("{} ({code})", f.name_zh),
            None if code.is_empty() => "—".into(),
            None => code.to_string(),
        }
    }

    /// Districts in config order, each once.
    pub fn districts(&self) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        for e in &self.cfg.enterprises {
            if !out.contains(&e.district.as_str()) {
                out.push(&e.district);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_a_chinese_name() {
        for r in crate::rules::RuleName::ALL {
            assert_ne!(rule_zh(r.as_str()), r.as_str(), "{r}");
        }
    }

    #[test]
    fn every_severity_and_state_has_a_chinese_name() {
        for s in SEVERITIES {
            assert_ne!(severity_zh(s.as_str()), "其他");
        }
        for s in ["open", "acknowledged", "resolved"] {
            assert_ne!(state_zh(s), "未知");
        }
    }
}

#[cfg(test)]
mod alert_tests {
    use super::*;
    use crate::store::{AlertRow, AlertState};

    fn row(rule: &str, value: f64, limit: f64, facts: &str) -> AlertRow {
        let t = chrono::DateTime::UNIX_EPOCH;
        AlertRow {
            id: 1,
            enterprise: "E1".into(),
            location: "outlet:DA001".into(),
            factor: "a21026".into(),
            rule: rule.into(),
            severity: "warning".into(),
            state: AlertState::Open,
            opened_at: t,
            updated_at: t,
            count: 1,
            value: Some(value),
            limit: Some(limit),
            message: String::new(),
            facts: facts.into(),
            flapping: false,
            acked_by: None,
            acked_at: None,
            resolved_by: None,
            resolved_at: None,
            cycle_started_at: None,
            reopens: 0,
        }
    }

    #[test]
    fn an_early_warning_shows_the_permit_limit_and_its_warning_line() {
        let a = row(
            "early_warning",
            30.1,
            28.0,
            r#"{"basis":"小时均值","permit_limit":35.0}"#,
        );
        assert_eq!(value_vs_limit(&a), "30.1 / 限值 35（预警线 28）");
        // An exceedance (and an alert recorded before the field existed).
        let b = row("exceedance", 41.2, 35.0, r#"{"basis":"小时均值"}"#);
        assert_eq!(value_vs_limit(&b), "41.2 / 35");
        assert_eq!(
            value_vs_limit(&row("exceedance", 1.0, 2.0, "not json")),
            "1 / 2"
        );
    }

    #[test]
    fn a_projected_exceedance_names_its_mean() {
        let hourly = row(
            "projected_exceedance",
            30.0,
            28.0,
            r#"{"basis":"小时均值"}"#,
        );
        assert_eq!(alert_rule_zh(&hourly), "小时均值预计超标");
        let daily = row("projected_exceedance", 30.0, 28.0, r#"{"basis":"日均值"}"#);
        assert_eq!(alert_rule_zh(&daily), "日均值预计超标");
        assert_eq!(alert_rule_zh(&row("exceedance", 1.0, 2.0, "{}")), "超标");
    }
}
