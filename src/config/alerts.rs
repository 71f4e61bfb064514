//! `[alerts]` in pollwatch.toml: how findings become alerts.
//!
//! ```toml
//! [alerts]
//! hold = "2h"                 # resolved by itself after this long without a new finding
//! flap_window = "1h"          # this many alerts of one kind within the window …
//! flap_limit = 3              # … and the next opens without notifications (flapping)
//! console_url = "http://10.1.2.3:9180"   # links in messages: <console_url>/alerts/<id>
//! positive_list_severity = "critical"    # exceedances at positive-list enterprises
//!
//! [alerts.severity]           # per rule; defaults: exceedance, treatment_* and
//! order_violation = "critical" # order_violation major, emission_total major,
//!                             # disk_low critical, dtu_takeover major, everything else warning
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{HumanDuration, Severity};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSection {
    pub hold: HumanDuration,
    pub flap_window: HumanDuration,
    pub flap_limit: u32,
    pub console_url: Option<String>,
    pub positive_list_severity: Option<Severity>,
    pub severity: BTreeMap<String, Severity>,
}

impl Default for AlertsSection {
    fn default() -> Self {
        AlertsSection {
            hold: HumanDuration(std::time::Duration::from_secs(2 * 3600)),
            flap_window: HumanDuration(std::time::Duration::from_secs(3600)),
            flap_limit: 3,
            console_url: None,
            positive_list_severity: None,
            severity: BTreeMap::new(),
        }
    }
}

impl AlertsSection {
    /// The severity an alert of `rule` starts with.
    pub fn severity_of(&self, rule: &str, positive_list: bool) -> Severity {
        let base = self.severity.get(rule).copied().unwrap_or(match rule {
            // Every source stops being answered: the whole city goes dark.
            "disk_low" => Severity::Critical,
            // A record gap to follow up, not an emission: the least urgent.
            "low_transmission" => Severity::Warning,
            // A logger's clock is wrong: its data is refused until it is fixed.
            "clock_skew" => Severity::Warning,
            "exceedance"
            | "treatment_not_running"
            | "treatment_underpowered"
            | "order_violation"
            | "emission_total"
            | "dtu_takeover" => Severity::Major,
            _ => Severity::Warning,
        });
        match (positive_list, rule, self.positive_list_severity) {
            // Lower in the enum is more urgent.
            (true, "exceedance", Some(p)) if p < base => p,
            _ => base,
        }
    }
}
