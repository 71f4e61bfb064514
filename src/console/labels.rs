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

/// A rule's name for officers; unknown names are shown as they are.
pub fn rule_zh(r: &str) -> &str {
    match r {
        "exceedance" => "超标",
        "early_warning" => "超标预警",
        "projected_exceedance" => "日均值预计超标",
        "missing_data" => "数据缺失",
        "not_judgeable" => "无法判定",
        "data_mismatch" => "均值不符",
        "offline" => "离线",
        "constant_value" => "数据恒值",
        "zero_value" => "数据为零",
        "negative_value" => "数据为负",
        "over_range" => "超量程",
        "maintenance_overuse" => "维护标记过多",
        "flow_mismatch" => "流量不符",
        "treatment_not_running" => "治污设施未运行",
        "treatment_underpowered" => "治污设施功率不足",
        "order_violation" => "违反停限产令",
        "emission_total" => "排放总量超许可",
        "disk_low" => "存储空间不足",
        "dtu_takeover" => "DTU 冒用",
        other => other,
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
