//! Who is told, when: rotations handing over at local time (across midnight in
//! Asia/Shanghai), overrides, routes, and escalation as a pure function of time.

mod notify_support;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use notify_support::*;
use pollwatch::clock::{Clock, ManualClock};
use pollwatch::config::Severity;
use pollwatch::notify::escalation::{evaluate, Escalation};
use pollwatch::notify::roster::Roster;
use pollwatch::notify::{Notifier, Plan};

/// A Shanghai wall-clock time as an instant.
fn sh(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Shanghai
        .with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

const DUTY: &str = r#"
[[officers]]
id = "zhangwei"
name = "张伟"
mobile = "13800000001"
[[officers]]
id = "liuyang"
name = "刘洋"
mobile = "13800000002"
[[officers]]
id = "zhaomin"
name = "赵敏"
mobile = "13800000003"
[[officers]]
id = "sunli"
name = "孙丽"
mobile = "13800000004"
[[officers]]
id = "chenjing"
name = "陈静"
mobile = "13800000009"

[[teams]]
id = "wuzhong"
name = "吴中区执法大队"
members = ["zhangwei", "liuyang"]
[[teams]]
id = "xiangcheng"
name = "相城区执法大队"
members = ["zhaomin", "sunli"]
[[teams]]
id = "night"
name = "夜班"
members = ["zhangwei", "liuyang", "zhaomin"]

[[rotations]]
team = "night"
shift = "daily"
handover = "00:00"
start = "2026-11-23"

[[rotations]]
team = "wuzhong"
shift = "daily"
handover = "08:30"
start = "2026-11-23"
officers = ["zhangwei", "liuyang"]

[[rotations]]
team = "xiangcheng"
shift = "weekly"
handover = "09:00"
start = "2026-11-23"

[[overrides]]
team = "wuzhong"
from = "2026-12-24"
until = "2026-12-25"
officer = "zhaomin"

[[routes]]
districts = ["吴中区"]
severities = ["critical", "major"]
team = "night"
channels = ["wecom"]
escalation = "standard"

[[routes]]
districts = ["吴中区"]
team = "wuzhong"
channels = ["wecom"]

[[routes]]
team = "xiangcheng"
channels = ["wecom"]
escalation = "standard"

[[escalation]]
id = "standard"
ack_timeout = "4h"
repeat_every = "30m"
max_repeats = 2
[[escalation.levels]]
after = "0m"
on_duty = true
[[escalation.levels]]
after = "15m"
officers = ["chenjing"]
"#;

const CHANNEL: &str = r#"[[channels]]
id = "wecom"
kind = "wecom"
url = "http://127.0.0.1:9/cgi-bin/webhook/send?key=K"
"#;

fn on_duty(r: &Roster, team: &str, t: DateTime<Utc>) -> Vec<String> {
    r.on_duty(team, t).iter().map(|o| o.id.clone()).collect()
}

#[test]
fn midnight_handover_in_shanghai_is_not_utc_midnight() {
    let r = Roster::new(&duty(DUTY), Shanghai);
    // 2026-11-27 is the 5th shift date (index 4): zhangwei, liuyang, zhaomin, ….
    let before = sh(2026, 11, 27, 23, 59, 59);
    let after = sh(2026, 11, 28, 0, 0, 0);
    // Both instants fall on 2026-11-27 in UTC (16:00Z): a UTC roster would not move.
    assert_eq!(before.date_naive(), after.date_naive());
    assert_eq!(on_duty(&r, "night", before), ["liuyang"]);
    assert_eq!(on_duty(&r, "night", after), ["zhaomin"]);
    assert_eq!(
        on_duty(&r, "night", sh(2026, 11, 29, 0, 0, 0)),
        ["zhangwei"]
    );
}

#[test]
fn morning_handover_weekly_rotation_and_overrides() {
    let r = Roster::new(&duty(DUTY), Shanghai);
    // wuzhong hands over at 08:30; 11-27 is an even shift index → zhangwei.
    assert_eq!(
        on_duty(&r, "wuzhong", sh(2026, 11, 27, 8, 29, 59)),
        ["liuyang"]
    );
    assert_eq!(
        on_duty(&r, "wuzhong", sh(2026, 11, 27, 8, 30, 0)),
        ["zhangwei"]
    );
    // Before the rotation's start the cycle runs backwards consistently.
    assert_eq!(
        on_duty(&r, "wuzhong", sh(2026, 11, 22, 12, 0, 0)),
        ["liuyang"]
    );
    // Weekly, Mondays 09:00 (2026-11-23 is a Monday).
    assert_eq!(
        on_duty(&r, "xiangcheng", sh(2026, 11, 30, 8, 59, 0)),
        ["zhaomin"]
    );
    assert_eq!(
        on_duty(&r, "xiangcheng", sh(2026, 11, 30, 9, 0, 0)),
        ["sunli"]
    );
    assert_eq!(
        on_duty(&r, "xiangcheng", sh(2026, 12, 6, 23, 0, 0)),
        ["sunli"]
    );
    assert_eq!(
        on_duty(&r, "xiangcheng", sh(2026, 12, 7, 9, 0, 0)),
        ["zhaomin"]
    );
    // The override covers the shifts starting 12-24 08:30 through 12-26 08:29.
    // 12-23 is shift index 30 (zhangwei), 12-26 index 33 (liuyang).
    assert_eq!(
        on_duty(&r, "wuzhong", sh(2026, 12, 24, 8, 29, 0)),
        ["zhangwei"]
    );
    assert_eq!(
        on_duty(&r, "wuzhong", sh(2026, 12, 24, 8, 30, 0)),
        ["zhaomin"]
    );
    assert_eq!(
        on_duty(&r, "wuzhong", sh(2026, 12, 26, 8, 29, 0)),
        ["zhaomin"]
    );
    assert_eq!(
        on_duty(&r, "wuzhong", sh(2026, 12, 26, 8, 30, 0)),
        ["liuyang"]
    );
}

fn notifier_at(t: DateTime<Utc>) -> (Notifier, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(t));
    let n = Notifier::new(Shanghai, &duty(DUTY), &channels(CHANNEL), clock.clone(), 1);
    (n, clock)
}

fn recipients(p: &Plan) -> Vec<Vec<String>> {
    p.deliveries.iter().map(|d| d.recipients.ids()).collect()
}

#[test]
fn plan_routes_to_the_officer_on_shift_across_midnight() {
    let (n, clock) = notifier_at(sh(2026, 11, 27, 23, 59, 0));
    let f = facts("N-1");
    let plan = n.plan(&summary(&f, clock.now()), clock.now()).unwrap();
    assert_eq!(plan.team, "night");
    assert_eq!(recipients(&plan), [["liuyang"]]);
    assert_eq!(plan.deliveries[0].channels, ["wecom"]);

    // A new alert just after local midnight goes to the new officer.
    clock.advance(Duration::minutes(1));
    let f = facts("N-2");
    let plan = n.plan(&summary(&f, clock.now()), clock.now()).unwrap();
    assert_eq!(recipients(&plan), [["zhaomin"]]);
}

#[test]
fn routes_match_in_order_on_district_and_severity() {
    let (n, clock) = notifier_at(sh(2026, 11, 27, 10, 0, 0));
    let mut f = facts("R-1");
    f.severity = Severity::Minor;
    let plan = n.plan(&summary(&f, clock.now()), clock.now()).unwrap();
    assert_eq!(plan.team, "wuzhong", "minor skips the first route");
    assert_eq!(recipients(&plan), [["zhangwei"]]);
    f.district = "相城区".into();
    let plan = n.plan(&summary(&f, clock.now()), clock.now()).unwrap();
    assert_eq!(plan.team, "xiangcheng");
}

#[test]
fn escalation_is_due_on_time_and_stops_on_ack() {
    let d = duty(DUTY);
    let policy = &d.escalation[0];
    let opened = sh(2026, 11, 27, 10, 0, 0);
    let at = |m: i64, s: i64| opened + Duration::minutes(m) + Duration::seconds(s);
    let keys = |e: &Escalation| match e {
        Escalation::Active { due, .. } => due.iter().map(|s| s.key()).collect::<Vec<_>>(),
        other => panic!("not active: {other:?}"),
    };
    let next = |e: &Escalation| match e {
        Escalation::Active { next_at, .. } => *next_at,
        other => panic!("not active: {other:?}"),
    };

    let e = evaluate(policy, opened, None, opened);
    assert_eq!(keys(&e), ["L0R0"]);
    assert_eq!(next(&e), Some(at(15, 0)));
    assert_eq!(keys(&evaluate(policy, opened, None, at(14, 59))), ["L0R0"]);
    let e = evaluate(policy, opened, None, at(15, 0));
    assert_eq!(keys(&e), ["L0R0", "L1R0"], "next level exactly on time");
    assert_eq!(next(&e), Some(at(45, 0)));
    assert_eq!(
        keys(&evaluate(policy, opened, None, at(45, 0))),
        ["L0R0", "L1R0", "L1R1"]
    );
    let e = evaluate(policy, opened, None, at(200, 0));
    assert_eq!(keys(&e), ["L0R0", "L1R0", "L1R1", "L1R2"]);
    assert_eq!(next(&e), None, "max_repeats reached");

    // Acknowledged at +10 min: nothing more, and the level-2 step never comes.
    let acked = Some(at(10, 0));
    assert_eq!(
        evaluate(policy, opened, acked, at(15, 0)),
        Escalation::Acknowledged {
            reopen_at: Some(at(250, 0))
        }
    );
    assert_eq!(
        evaluate(policy, opened, acked, at(249, 59)),
        Escalation::Acknowledged {
            reopen_at: Some(at(250, 0))
        }
    );
    // Nobody resolved it within the ack timeout: re-open.
    assert_eq!(
        evaluate(policy, opened, acked, at(250, 0)),
        Escalation::AckExpired { since: at(250, 0) }
    );
    // An ack stamped in the future is not yet in force.
    assert_eq!(
        keys(&evaluate(policy, opened, Some(at(30, 0)), at(15, 0))),
        ["L0R0", "L1R0"]
    );
}

#[test]
fn plan_escalates_to_the_chief_and_stops_when_acknowledged() {
    let opened = sh(2026, 11, 27, 10, 0, 0);
    let (n, clock) = notifier_at(opened);
    let f = facts("E-1");
    let mut alert = summary(&f, opened);
    clock.advance(Duration::minutes(16));
    let plan = n.plan(&alert, clock.now()).unwrap();
    assert_eq!(recipients(&plan), [vec!["liuyang"], vec!["chenjing"]]);
    let keys: Vec<String> = plan.deliveries.iter().map(|d| d.key()).collect();
    assert_eq!(keys, ["E-1:L0R0", "E-1:L1R0"]);

    alert.acked_at = Some(opened + Duration::minutes(5));
    let plan = n.plan(&alert, clock.now()).unwrap();
    assert!(plan.deliveries.is_empty());
    assert!(matches!(plan.escalation, Escalation::Acknowledged { .. }));
}
