//! Hourly means over hand-made stored readings.

use chrono::TimeZone;

use super::*;
use crate::model::{Flag, Protocol};

fn t0() -> DateTime<Utc> {
    // 08:00 in Shanghai.
    Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()
}

fn r(
    factor: &str,
    kind: DataKind,
    stat: Stat,
    ts: DateTime<Utc>,
    value: f64,
    flag: Flag,
) -> StoredReading {
    StoredReading {
        factor: factor.into(),
        unit: "mg/m³".into(),
        kind,
        stat,
        converted: false,
        ts,
        value,
        flag,
        protocol: Protocol::Hj212,
        device: "MN".into(),
        received: ts,
        resend: false,
    }
}

fn rules() -> HourRules {
    HourRules {
        o2_reference: Some(6.0),
        min_valid_minutes: 45,
        pair_max_age: Duration::minutes(5),
        tz: chrono_tz::Asia::Shanghai,
    }
}

#[test]
fn computed_hours_correct_each_value_and_skip_what_the_rules_skip() {
    let mut so2 = Vec::new();
    let mut o2 = Vec::new();
    for m in 0..60 {
        let ts = t0() + Duration::minutes(m);
        let flag = if m < 5 { Flag::C } else { Flag::N };
        so2.push(r("a21026", DataKind::Rtd, Stat::Rtd, ts, 24.0, flag));
        // O2 every other minute: the odd minutes pair with the value a minute older.
        if m % 2 == 0 {
            let o2v = if m == 10 { 19.5 } else { 9.0 };
            o2.push(r(O2, DataKind::Rtd, Stat::Rtd, ts, o2v, Flag::N));
        }
    }
    // Two more hours: one with only 30 minutes of data, one with no O2 at all.
    for m in 0..30 {
        let ts = t0() + Duration::hours(1) + Duration::minutes(m);
        so2.push(r("a21026", DataKind::Rtd, Stat::Rtd, ts, 12.0, Flag::N));
        o2.push(r(O2, DataKind::Rtd, Stat::Rtd, ts, 6.0, Flag::N));
    }
    for m in 0..60 {
        let ts = t0() + Duration::hours(2) + Duration::minutes(m) + Duration::seconds(30);
        so2.push(r("a21026", DataKind::Rtd, Stat::Rtd, ts, 50.0, Flag::N));
    }
    let hours = hourly_means(&so2, &o2, rules());
    assert_eq!(
        hours.len(),
        2,
        "an hour with no judgeable value has no mean: {hours:#?}"
    );
    // 60 minutes − 5 calibrating − minutes 10 and 11 (O2 19.5 %) = 53 valid.
    let h = hours[0];
    assert_eq!(h.start, t0());
    assert_eq!(h.valid_minutes, Some(53));
    assert!(h.valid && !h.supplied);
    assert_eq!(h.measured, Some(24.0));
    assert_eq!(h.corrected, Some(24.0 * 15.0 / 12.0));
    let h = hours[1];
    assert_eq!((h.valid_minutes, h.valid), (Some(30), false));
    assert_eq!((h.measured, h.corrected), (Some(12.0), Some(12.0)));
}

#[test]
fn the_loggers_hourly_value_wins_and_is_corrected_with_its_hourly_o2() {
    let so2 = vec![
        r("a21026", DataKind::Rtd, Stat::Rtd, t0(), 30.0, Flag::N),
        r("a21026", DataKind::Hour, Stat::Avg, t0(), 28.0, Flag::N),
        r("a21026", DataKind::Hour, Stat::Max, t0(), 90.0, Flag::N),
    ];
    let o2 = vec![
        r(O2, DataKind::Rtd, Stat::Rtd, t0(), 6.0, Flag::N),
        r(O2, DataKind::Hour, Stat::Avg, t0(), 11.0, Flag::N),
    ];
    let hours = hourly_means(&so2, &o2, rules());
    assert_eq!(hours.len(), 1);
    let h = hours[0];
    assert!(h.supplied && h.valid);
    assert_eq!(h.valid_minutes, None);
    assert_eq!(h.measured, Some(28.0));
    assert_eq!(h.corrected, Some(28.0 * 15.0 / 10.0));
}

#[test]
fn without_a_reference_o2_nothing_is_corrected() {
    let so2: Vec<_> = (0..50)
        .map(|m| {
            let ts = t0() + Duration::minutes(m);
            r(
                "w01018",
                DataKind::Min,
                Stat::Avg,
                ts,
                40.0 + m as f64 % 2.0,
                Flag::N,
            )
        })
        .collect();
    let hours = hourly_means(
        &so2,
        &[],
        HourRules {
            o2_reference: None,
            ..rules()
        },
    );
    assert_eq!(hours.len(), 1);
    assert_eq!(hours[0].corrected, None);
    // 25 minutes at 40, 25 at 41.
    assert_eq!(hours[0].measured, Some(40.5));
    assert_eq!(hours[0].valid_minutes, Some(50));
}
