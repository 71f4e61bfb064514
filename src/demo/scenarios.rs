//! The demo's small city: who is in it, what each simulated instrument reads
//! over simulated time, and which alert each scenario must produce.
//!
//! Curves are functions of simulated minutes since the demo began (`m`), so the
//! story is the same at any `--speed`; the config ([`super::config`]) and the
//! simulators ([`super::sims`]) read the ids and curves from here, and the
//! [`Tracker`] checks the officer's messages against [`SCENARIOS`].

use std::time::Duration;

use super::receiver::OfficerMessage;

/// 东山热电: a power plant whose HJ 212 logger reports SO2 drifting over its limit.
pub const POWER: &str = "91320506MA1PW0001A";
/// 城南污水处理厂: a wastewater plant polled over Modbus TCP; pH leaves 6–9.
pub const WWTP: &str = "12320506MB1PW0002B";
/// 星河印染: DL/T 645 meters; the treatment plant's power drops to zero.
pub const DYEING: &str = "91320507MA1PW0003C";
/// 北湖精细化工: an HJ 212 logger that goes silent.
pub const CHEMICAL: &str = "91320508MA1PW0004D";
/// 西山水泥: everything normal; it must not alert.
pub const CEMENT: &str = "91320509MA1PW0005E";

/// An alert the demo promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    pub key: &'static str,
    /// What happens, for the newcomer.
    pub story: &'static str,
    pub enterprise: &'static str,
    pub rule: &'static str,
    /// The factor the alert must be about; empty: any (whole-location rules).
    pub factor: &'static str,
}

pub const SCENARIOS: [Scenario; 4] = [
    Scenario {
        key: "so2",
        story: "东山热电 1#机组 SO2 折算小时均值超标（HJ 212 数采仪，O2 同时升高）",
        enterprise: POWER,
        rule: "exceedance",
        factor: "a21026",
    },
    Scenario {
        key: "ph",
        story: "城南污水处理厂 总排口 pH 跌出 6–9（Modbus TCP 轮询）",
        enterprise: WWTP,
        rule: "exceedance",
        factor: "w01001",
    },
    Scenario {
        key: "linkage",
        story: "星河印染 生产线运行而废水处理站电表归零（DL/T 645 电表，工况联动）",
        enterprise: DYEING,
        rule: "treatment_not_running",
        factor: "",
    },
    Scenario {
        key: "offline",
        story: "北湖精细化工 废水数采仪掉线（HJ 212，离线判定）",
        enterprise: CHEMICAL,
        rule: "offline",
        factor: "",
    },
];

impl Scenario {
    pub fn matches(&self, m: &OfficerMessage) -> bool {
        m.enterprise_id == self.enterprise
            && m.rule == self.rule
            && (self.factor.is_empty() || m.factor_code == self.factor)
    }
}

/// Which scenarios have reached the officer, and after how long (real time).
#[derive(Debug, Default)]
pub struct Tracker {
    done: [Option<Duration>; SCENARIOS.len()],
}

impl Tracker {
    /// Records `m`, received `after` the demo began; returns the scenario it
    /// completes for the first time.
    pub fn record(&mut self, m: &OfficerMessage, after: Duration) -> Option<&'static Scenario> {
        let i = SCENARIOS.iter().position(|s| s.matches(m))?;
        let slot = self.done.get_mut(i)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(after);
        SCENARIOS.get(i)
    }

    pub fn all_done(&self) -> bool {
        self.done.iter().all(Option::is_some)
    }

    /// Each scenario with the real time its first alert took, if it came.
    pub fn results(&self) -> impl Iterator<Item = (&'static Scenario, Option<Duration>)> + '_ {
        SCENARIOS.iter().zip(self.done.iter().copied())
    }
}

/// `a` + (`b` − `a`) × the share of `span` minutes gone, held at `b` after.
fn drift(m: f64, a: f64, b: f64, span: f64) -> f64 {
    a + (b - a) * (m / span).clamp(0.0, 1.0)
}

/// A slow wobble so series never look constant.
fn wobble(m: f64, amplitude: f64, period_min: f64) -> f64 {
    amplitude * (std::f64::consts::TAU * m / period_min).sin()
}

/// 东山热电 DA001 real-time values (mg/m³, O2 %) at minute `m`: SO2 and O2 both
/// rise over the first hour, so the O2-corrected hourly mean (reference 6 %)
/// ends near 38 against a limit of 35 — early warning first, then exceedance.
pub fn power_values(m: f64) -> Vec<(&'static str, f64)> {
    vec![
        ("a21026", drift(m, 26.0, 37.0, 50.0) + wobble(m, 0.6, 7.0)),
        ("a19001", drift(m, 6.4, 9.0, 50.0) + wobble(m, 0.1, 11.0)),
        ("a21002", 30.0 + wobble(m, 3.0, 13.0)),
        ("a34013", 3.2 + wobble(m, 0.4, 9.0)),
    ]
}

/// 北湖精细化工's logger reports until this minute, then falls silent.
pub const CHEMICAL_SILENT_AFTER_MIN: f64 = 8.0;

/// 北湖精细化工 DW001 (mg/L, pH) while it still reports.
pub fn chemical_values(m: f64) -> Vec<(&'static str, f64)> {
    vec![
        ("w01018", 38.0 + wobble(m, 4.0, 17.0)),
        ("w21003", 2.1 + wobble(m, 0.3, 23.0)),
        ("w01001", 7.4 + wobble(m, 0.15, 19.0)),
    ]
}

/// 西山水泥's logger loses its link between these simulated minutes: shorter
/// than `offline_after` (30 min) and short of no hour's 45 valid minutes, across
/// the end of the first hour, whose hourly mean it keeps and sends when asked;
/// back 12 minutes after that hour, once its data would have arrived.
pub const CEMENT_LINK_DOWN_MIN: (f64, f64) = (56.0, 72.0);

/// 西山水泥 DA001, all well inside its limits (reference O2 10 %).
pub fn cement_values(m: f64) -> Vec<(&'static str, f64)> {
    vec![
        ("a34013", 4.0 + wobble(m, 0.5, 8.0)),
        ("a21026", 14.0 + wobble(m, 2.0, 15.0)),
        ("a21002", 42.0 + wobble(m, 5.0, 21.0)),
        ("a19001", 10.4 + wobble(m, 0.3, 12.0)),
    ]
}

/// 城南污水处理厂 pH: normal, then falling below 6 from minute 12 for about
/// twenty minutes (an acid discharge upstream), then back.
pub const WWTP_PH: &[(f64, f64)] = &[
    (0.0, 7.2),
    (6.0, 7.0),
    (9.0, 6.6),
    (11.0, 6.2),
    (12.0, 5.8),
    (14.0, 5.4),
    (30.0, 5.9),
    (34.0, 6.5),
    (40.0, 7.1),
];

/// 星河印染's treatment meter draws this until the minute below, then nothing.
pub const DYEING_TREATMENT_KW: f64 = 118.0;
pub const DYEING_TREATMENT_OFF_MIN: f64 = 10.0;
/// Its production line runs throughout, around this.
pub const DYEING_PRODUCTION_KW: f64 = 310.0;

#[cfg(test)]
mod tests {
    use super::*;

    /// The scenario relies on the corrected hourly mean ending over 35 and the
    /// first minutes staying under it; check the curve, not our hopes.
    #[test]
    fn power_plant_corrected_mean_crosses_the_limit_within_the_first_hour() {
        let corrected = |m: f64| {
            let v = power_values(m);
            let so2 = v[0].1;
            let o2 = v[1].1;
            so2 * (21.0 - 6.0) / (21.0 - o2)
        };
        let minutes: Vec<f64> = (0..120).map(|i| f64::from(i) * 0.5).collect();
        let mean = minutes.iter().map(|&m| corrected(m)).sum::<f64>() / minutes.len() as f64;
        assert!(mean > 35.0 && mean < 45.0, "hourly mean {mean}");
        assert!(corrected(0.0) < 0.8 * 35.0, "starts below early warning");
    }

    #[test]
    fn tracker_completes_each_scenario_once_and_ignores_others() {
        let msg = |ent: &str, rule: &str, factor: &str| OfficerMessage {
            enterprise_id: ent.into(),
            rule: rule.into(),
            factor_code: factor.into(),
            ..Default::default()
        };
        let mut t = Tracker::default();
        assert!(t
            .record(
                &msg(POWER, "early_warning", "a21026"),
                Duration::from_secs(1)
            )
            .is_none());
        assert!(t
            .record(&msg(POWER, "exceedance", "a21002"), Duration::from_secs(1))
            .is_none());
        assert_eq!(
            t.record(&msg(POWER, "exceedance", "a21026"), Duration::from_secs(2))
                .map(|s| s.key),
            Some("so2")
        );
        assert!(t
            .record(&msg(POWER, "exceedance", "a21026"), Duration::from_secs(3))
            .is_none());
        assert!(!t.all_done());
        t.record(&msg(WWTP, "exceedance", "w01001"), Duration::from_secs(4));
        t.record(
            &msg(DYEING, "treatment_not_running", "e_p"),
            Duration::from_secs(5),
        );
        t.record(&msg(CHEMICAL, "offline", ""), Duration::from_secs(6));
        assert!(t.all_done());
        let times: Vec<_> = t.results().map(|(_, d)| d.map(|d| d.as_secs())).collect();
        assert_eq!(times, vec![Some(2), Some(4), Some(5), Some(6)]);
    }
}
