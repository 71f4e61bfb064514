//! What HJ 212-2025 loggers bring to the rules, through the real server, store and
//! rules task (both backends): the incinerator's furnace temperature (CN 2111),
//! power-use data feeding meters and linkage, and RF=1 resends of a closed hour
//! judged late with their mark kept.

#[macro_use]
mod common;

use std::sync::Arc;

use chrono::Duration;
use common::rules_rig::{local, Rig};
use pollwatch::alerts::AlertEngine;
use pollwatch::clock::{Clock, ManualClock};
use pollwatch::config::Config;
use pollwatch::model::{Location, LocationKind};
use pollwatch::notify::Notifier;
use pollwatch::rules::{RuleName, Severity};
use pollwatch::store::{AlertRow, ReadingQuery, Store, StoredFinding};

both_backends!(
    furnace_means_below_850_are_findings_and_the_sixth_of_a_day_a_violation,
    power_data_of_a_2025_logger_feeds_meters_and_linkage,
    a_resent_hour_of_a_closed_period_is_judged_with_its_mark,
);

const MN: &str = "010000A8900016F000PW0001";
const PW: &str = "123456";

/// A waste incinerator (flue gas; the furnace rule; two meters fed by its
/// logger, a linkage) and a wastewater outlet with an hourly NH3-N limit.
fn config(dir: &std::path::Path) -> pollwatch::config::Config {
    std::fs::write(dir.join("duty.toml"), common::alerting::DUTY).unwrap();
    let daemon = r#"
[hj212]
listen = "127.0.0.1:0"

[[channels]]
id = "alerts"
kind = "wecom"
url = "http://127.0.0.1:9/never-sent"

[[factors]]
code = "f01001"
name = "炉膛温度"
unit = "℃"
class = "gas_parameter"

[[factors]]
code = "e40001"
name = "焚烧炉引风机功率"
unit = "kW"
class = "electrical"

[[factors]]
code = "e40002"
name = "脱酸系统功率"
unit = "kW"
class = "electrical"
"#;
    let enterprise = format!(
        r#"
id = "E25"
name = "某生活垃圾焚烧发电有限公司"
district = "吴中区"
industry = "垃圾焚烧"

[[outlets]]
id = "DA001"
name = "1#焚烧线烟囱"
kind = "flue_gas"
o2_reference = 11.0
offline_after = "96h"
hj212 = {{ mn = "{MN}", password = "{PW}" }}
furnace = {{ factor = "f01001" }}

[[outlets]]
id = "DW001"
name = "渗滤液处理站排口"
kind = "wastewater"
offline_after = "96h"
hj212 = {{ mn = "010000A8900016F000PW0009", password = "{PW}" }}

[[outlets.limits]]
factor = "w21003"
max = 15.0
basis = "hour"

[[meters]]
id = "M-FAN"
name = "1#引风机"
role = "production"
hj212 = {{ mn = "{MN}", factor = "e40001" }}

[[meters]]
id = "M-ACID"
name = "脱酸系统"
role = "treatment"
hj212 = {{ mn = "{MN}", factor = "e40002", scale = 0.001 }}

[[linkages]]
id = "line1-acid"
production = ["M-FAN"]
production_on_kw = 50.0
treatment = ["M-ACID"]
treatment_normal_kw = 120.0
grace = "10m"
"#
    );
    common::rules_config(dir, daemon, &[enterprise])
}

async fn rig(url: &str, mn: &str) -> (Rig, Arc<Config>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut rig = Rig::start(url, &cfg, Some(dir), local(26, 23, 0).1, (mn, PW, "31")).await;
    rig.logger.flag = 9;
    (rig, Arc::new(cfg))
}

/// Records `found` on alerts as the daemon's alerts engine does (nobody is sent
/// anything: no dispatcher runs) and returns each finding's alert.
async fn alerts_of(store: &Store, cfg: &Arc<Config>, found: &[&StoredFinding]) -> Vec<AlertRow> {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(local(29, 0, 0).1));
    let notifier = Arc::new(Notifier::from_config(cfg, clock.clone()));
    let engine = AlertEngine::new(store.clone(), notifier, cfg.clone(), clock);
    let mut out = Vec::new();
    for f in found {
        let rec = engine.on_finding(f).await.unwrap();
        out.push(store.alert(rec.alert_id).await.unwrap().unwrap());
    }
    out
}

fn of(found: &[StoredFinding], rule: RuleName) -> Vec<&StoredFinding> {
    found.iter().filter(|f| f.finding.rule == rule).collect()
}

/// Seven means below 850 ℃ on 27 November (one of them sent twice), one below
/// it but flagged as the furnace stopped, normal ones between; one low mean the
/// next day. Each counted low mean is a warning; the sixth of the day is the
/// day's violation, raised once; the next day starts from zero.
async fn furnace_means_below_850_are_findings_and_the_sixth_of_a_day_a_violation(url: &str) {
    let (mut rig, cfg) = rig(url, MN).await;
    let mut lows = Vec::new();
    for k in 0..12u8 {
        let minute = (k % 12) * 5;
        let (value, flag) = match k {
            1 | 3 | 5 | 6 | 7 | 9 | 11 => (842.0 - f64::from(k), 'N'),
            2 => (790.0, 'F'),
            _ => (905.0, 'N'),
        };
        if flag == 'N' && value < 850.0 {
            lows.push(local(27, 10, minute).1);
        }
        let cp = format!("f01001-Avg={value},f01001-Flag={flag}");
        rig.upload("2111", (27, 10, minute), &cp).await;
        if k == 3 {
            // The same mean resent: one period, counted once.
            rig.upload_now("2111", local(27, 10, minute).0, &cp).await;
        }
    }
    rig.upload("2111", (28, 9, 0), "f01001-Avg=830,f01001-Flag=N")
        .await;
    let (store, found) = rig.finish().await;
    let furnace = of(&found, RuleName::FurnaceTemperature);
    let warnings: Vec<_> = furnace
        .iter()
        .filter(|f| f.finding.detail == "5min")
        .collect();
    assert_eq!(
        warnings.len(),
        8,
        "7 on the 27th, 1 on the 28th: {furnace:#?}"
    );
    assert!(warnings
        .iter()
        .all(|f| f.finding.severity == Severity::Warning && f.finding.threshold == Some(850.0)));
    let days: Vec<_> = furnace
        .iter()
        .filter(|f| f.finding.detail == "day")
        .collect();
    assert_eq!(days.len(), 1, "one violation, for the 27th: {days:#?}");
    let day = &days[0].finding;
    assert_eq!(day.severity, Severity::Violation);
    assert_eq!(day.window_start, local(27, 0, 0).1);
    assert_eq!(day.window_end, local(28, 0, 0).1);
    assert_eq!(day.value, Some(6.0), "raised at the sixth");
    assert_eq!(day.at, lows[5] + Duration::minutes(5));
    let times: Vec<_> = day.evidence.values.iter().map(|v| v.ts).collect();
    assert_eq!(
        times,
        lows[..6].to_vec(),
        "the six low means are the evidence"
    );
    assert_eq!(day.location, Some(Location::Outlet("DA001".into())));
    // On the board: the low means warn; the day's violation makes the alert major.
    let alerts = alerts_of(&store, &cfg, &[warnings[0], days[0]]).await;
    assert_eq!(alerts[0].severity, "warning");
    assert_eq!(alerts[1].id, alerts[0].id, "one alert per outlet and rule");
    assert_eq!(alerts[1].severity, "major");
}

/// The logger's power-use values of the fan (kW) and the acid-gas treatment (W,
/// scaled): stored as the meters' active power, and treatment off while the
/// furnace line runs is `treatment_not_running` once the grace has passed.
async fn power_data_of_a_2025_logger_feeds_meters_and_linkage(url: &str) {
    let (mut rig, _) = rig(url, MN).await;
    for m in 0..25u8 {
        let cp = "e40001-Rtd=310.5,e40001-Flag=N;e40002-Rtd=2000,e40002-Flag=N";
        rig.upload("2011", (27, 8, m), cp).await;
    }
    let (store, found) = rig.finish().await;
    let acid = store
        .readings(&ReadingQuery::new("E25", LocationKind::Meter, "M-ACID").factor("e_p"))
        .await
        .unwrap();
    assert_eq!(acid.len(), 25);
    assert!(acid.iter().all(|r| (r.value - 2.0).abs() < 1e-9), "W → kW");
    let off = of(&found, RuleName::TreatmentNotRunning);
    assert_eq!(off.len(), 1, "{found:#?}");
    assert_eq!(
        off[0].finding.location,
        Some(Location::Meter("M-ACID".into()))
    );
    // Nothing of it is stored as the outlet's.
    let outlet = store
        .readings(&ReadingQuery::new("E25", LocationKind::Outlet, "DA001"))
        .await
        .unwrap();
    assert!(outlet.is_empty(), "{outlet:#?}");
}

/// The link was down from 9:00 to 10:00: the hour closes missing. When it is back
/// the logger resends the hour from its backlog (RF=1) at 20 mg/L: stored with
/// the mark, the hour judged late — an exceedance whose evidence carries the
/// mark — and the missing hour superseded.
async fn a_resent_hour_of_a_closed_period_is_judged_with_its_mark(url: &str) {
    let (mut rig, cfg) = rig(url, "010000A8900016F000PW0009").await;
    rig.logger.st = "32".into();
    for m in 0..60u8 {
        rig.upload("2051", (27, 8, m), "w21003-Avg=8,w21003-Flag=N")
            .await;
    }
    rig.upload("2051", (27, 10, 0), "w21003-Avg=8,w21003-Flag=N")
        .await;
    rig.at(local(27, 10, 20).1);
    let missing = rig
        .wait_for(|f| f.rule == RuleName::MissingData && f.window_start == local(27, 9, 0).1)
        .await;
    rig.logger.resend = true;
    for m in 0..60u8 {
        let lt = local(27, 9, m).0;
        rig.upload_now("2051", lt, "w21003-Avg=20,w21003-Flag=N")
            .await;
    }
    let ex = rig
        .wait_for(|f| f.rule == RuleName::Exceedance && f.window_start == local(27, 9, 0).1)
        .await;
    let (store, found) = rig.finish().await;
    assert_eq!(ex.finding.value, Some(20.0));
    assert!(
        !ex.finding.evidence.values.is_empty()
            && ex.finding.evidence.values.iter().all(|v| v.resend),
        "{:#?}",
        ex.finding.evidence
    );
    let history = store.finding_history(missing.id).await.unwrap();
    assert!(history.superseded.is_some(), "{history:#?}");
    let mut q = ReadingQuery::new("E25", LocationKind::Outlet, "DW001");
    q.from = Some(local(27, 9, 0).1);
    q.to = Some(local(27, 10, 0).1);
    let resent = store.readings(&q).await.unwrap();
    assert_eq!(resent.len(), 60);
    assert!(resent.iter().all(|r| r.resend));
    assert_eq!(of(&found, RuleName::Exceedance).len(), 1, "{found:#?}");
    // The alert's timeline says the finding was made on resent data.
    let alert = &alerts_of(&store, &cfg, &[&ex]).await[0];
    let events = store.alert_events(alert.id).await.unwrap();
    let opened = events.iter().find(|e| e.kind == "opened").unwrap();
    let detail: serde_json::Value = serde_json::from_str(&opened.detail).unwrap();
    assert_eq!(detail["resend"], true, "{detail}");
}
