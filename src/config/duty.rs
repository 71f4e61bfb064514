//! `duty.toml`: the people alerts go to — officers and teams, who is on shift when
//! (rotations and date overrides), which team an alert goes to over which channels
//! (routes), and who is told next when nobody acknowledges (escalation policies).
//! Times are in the daemon's time zone (`[daemon] timezone`, default Asia/Shanghai).
//!
//! ```toml
//! [[officers]]
//! id = "zhangsan"
//! name = "张三"
//! mobile = "13800000001"
//! email = "zhangsan@example.gov.cn"
//! wecom_user = "ZhangSan"
//! dingtalk_user = "manager1234"
//! feishu_user = "ou_7d8a6e6df7621556ce0d21922b676706"   # open_id, for Feishu @mentions
//!
//! [[teams]]
//! id = "wuzhong"
//! name = "吴中区执法大队"
//! members = ["zhangsan", "lisi"]
//!
//! [[rotations]]
//! team = "wuzhong"
//! shift = "daily"              # or "weekly" (the handover weekday is start's weekday)
//! handover = "08:30"           # local time the next officer takes over
//! start = "2026-11-23"         # the first officer's first shift begins this day
//! officers = ["zhangsan", "lisi"]   # shift order; default: the team's members
//!
//! [[overrides]]                # swaps: the shift(s) starting on these dates
//! team = "wuzhong"
//! from = "2026-12-01"
//! until = "2026-12-02"         # inclusive; default: just `from`
//! officer = "lisi"
//!
//! [[routes]]                   # first match wins; an empty criterion matches all
//! districts = ["吴中区"]
//! severities = ["critical", "major"]
//! industries = []              # e.g. ["火力发电"]
//! rules = []                   # rule ids
//! team = "wuzhong"
//! channels = ["wecom-wuzhong", "sms", "email"]   # tried in order: later = fallback
//! escalation = "standard"
//!
//! [[escalation]]
//! id = "standard"
//! ack_timeout = "4h"           # an acknowledged alert nobody resolves re-opens
//! repeat_every = "30m"         # after the last level, remind it again …
//! max_repeats = 3              # … this many times
//! [[escalation.levels]]
//! after = "0m"                 # since the alert opened
//! on_duty = true               # the routed team's officer on shift
//! [[escalation.levels]]
//! after = "15m"
//! officers = ["chief"]         # and/or teams = ["section"] (their officer on shift)
//! ```

use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Deserializer};

use super::units::HumanDuration;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Duty {
    #[serde(default)]
    pub officers: Vec<Officer>,
    #[serde(default)]
    pub teams: Vec<Team>,
    #[serde(default)]
    pub rotations: Vec<Rotation>,
    #[serde(default)]
    pub overrides: Vec<Override>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub escalation: Vec<EscalationPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Officer {
    pub id: String,
    pub name: String,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub wecom_user: Option<String>,
    pub dingtalk_user: Option<String>,
    /// Feishu open_id (`ou_…`): custom bots mention by id, not by mobile.
    pub feishu_user: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShiftKind {
    Daily,
    Weekly,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    pub team: String,
    pub shift: ShiftKind,
    #[serde(deserialize_with = "local_time")]
    pub handover: NaiveTime,
    pub start: NaiveDate,
    /// Shift order; empty means the team's members in their written order.
    #[serde(default)]
    pub officers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub team: String,
    pub from: NaiveDate,
    pub until: Option<NaiveDate>,
    pub officer: String,
    pub reason: Option<String>,
}

/// Alert severities, most urgent first (ThingsBoard's four).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Warning => "warning",
        }
    }

    /// How the severity reads in a message.
    pub fn label_zh(self) -> &'static str {
        match self {
            Severity::Critical => "严重",
            Severity::Major => "重要",
            Severity::Minor => "一般",
            Severity::Warning => "预警",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub districts: Vec<String>,
    #[serde(default)]
    pub industries: Vec<String>,
    #[serde(default)]
    pub severities: Vec<Severity>,
    #[serde(default)]
    pub rules: Vec<String>,
    pub team: String,
    pub channels: Vec<String>,
    /// Escalation policy id; without one only the team's officer on shift is told.
    pub escalation: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicy {
    pub id: String,
    pub levels: Vec<EscalationLevel>,
    pub ack_timeout: Option<HumanDuration>,
    pub repeat_every: Option<HumanDuration>,
    #[serde(default = "default_max_repeats")]
    pub max_repeats: u32,
}

fn default_max_repeats() -> u32 {
    3
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationLevel {
    /// Since the alert opened (or re-opened).
    pub after: HumanDuration,
    #[serde(default)]
    pub on_duty: bool,
    #[serde(default)]
    pub officers: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
}

fn local_time<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
    let s = String::deserialize(d)?;
    NaiveTime::parse_from_str(&s, "%H:%M").map_err(|_| {
        serde::de::Error::custom(format!("expected a local time \"HH:MM\", got {s:?}"))
    })
}
