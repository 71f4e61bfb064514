//! The monthly report from a seeded month (both backends): `pollwatch report
//! monthly` writes the workbook and the page; the workbook is read back with an
//! independent reader (calamine) and every number on 概况 and 告警 checked, and
//! the other sheets' key figures.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::process::Command;

use calamine::{open_workbook, Data, Reader, Xlsx};
use chrono::{DateTime, Duration, TimeZone, Utc};
use pollwatch::model::{DataKind, Flag, Location, Protocol, Reading, SourceRef, Stat};
use pollwatch::rules::{Evidence, Finding, RuleName, Severity};
use pollwatch::store::{AlertState, Batch, DayFigures, Received, Store, StoreOptions};

both_backends!(the_month_in_numbers);

fn enterprise(id: &str, district: &str, extra: &str) -> String {
    format!("id = \"{id}\"\nname = \"企业{id}\"\ndistrict = \"{district}\"\nindustry = \"化工\"\n{extra}\n")
}

const OUTLET: &str = "\n[[outlets]]\nid = \"DA001\"\nname = \"1#排口\"\nkind = \"flue_gas\"\no2_reference = 6.0\n\n[[outlets.limits]]\nfactor = \"a21026\"\nmax = 35.0\nbasis = \"hour\"\n";
const METER: &str =
    "\n[[meters]]\nid = \"M1\"\nname = \"生产线\"\nrole = \"production\"\nbaseline_kw = 450.0\n";

fn write_config(dir: &std::path::Path, url: &str) {
    let enterprises = [
        enterprise("E1", "吴中区", &format!("platform = \"provincial\"\npositive_list = true\n{OUTLET}")),
        enterprise("E2", "相城区", &format!("platform = \"city\"\n{OUTLET}{METER}")),
        enterprise(
            "E3",
            "吴中区",
            &format!("{METER}\n[[orders]]\nid = \"2026-11-orange\"\nkind = \"limit\"\nstart = 2026-11-28T00:00:00+08:00\nend = 2026-11-30T00:00:00+08:00\nallowed_share = 0.6\n"),
        ),
        enterprise("E4", "相城区", &format!("platform = \"city\"\npositive_list = true\n{OUTLET}")),
    ];
    std::fs::create_dir_all(dir.join("enterprises")).unwrap();
    std::fs::write(
        dir.join("pollwatch.toml"),
        format!(
            "[daemon]\ntimezone = \"Asia/Shanghai\"\nstate_dir = {:?}\n\n[storage]\nurl = {url:?}\n",
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    for (i, e) in enterprises.iter().enumerate() {
        std::fs::write(dir.join(format!("enterprises/e{i}.toml")), e).unwrap();
    }
}

/// Local (Shanghai) time.
fn at(month: u32, day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, hour, minute, 0)
        .unwrap()
        - Duration::hours(8)
}

fn finding(
    rule: RuleName,
    e: &str,
    loc: Location,
    start: DateTime<Utc>,
    len: Duration,
    value: f64,
    detail: &str,
) -> Finding {
    Finding {
        rule,
        severity: match rule {
            RuleName::EarlyWarning => Severity::Warning,
            _ => Severity::Violation,
        },
        enterprise: e.into(),
        location: Some(loc),
        factor: if rule == RuleName::Exceedance {
            "a21026"
        } else {
            "e_p"
        }
        .into(),
        window_start: start,
        window_end: start + len,
        at: start + len,
        value: Some(value),
        threshold: Some(35.0),
        detail: detail.into(),
        message: format!("{rule} {value}"),
        evidence: Evidence::default(),
    }
}

fn power(e: &str, ts: DateTime<Utc>) -> Reading {
    Reading {
        enterprise: e.into(),
        location: Location::Meter("M1".into()),
        factor: "e_p".into(),
        unit: "kW".into(),
        ts,
        value: 100.0,
        kind: DataKind::Rtd,
        stat: Stat::Rtd,
        converted: false,
        flag: Flag::N,
        source: SourceRef {
            protocol: Protocol::Modbus,
            device: "gw".into(),
            resend: false,
        },
    }
}

async fn seed(store: &Store) {
    let out = || Location::Outlet("DA001".into());
    let meter = || Location::Meter("M1".into());
    let h = Duration::hours(1);
    let findings = [
        finding(
            RuleName::Exceedance,
            "E1",
            out(),
            at(11, 5, 9, 0),
            h,
            41.0,
            "outlets[0].limits[0]",
        ),
        finding(
            RuleName::Exceedance,
            "E1",
            out(),
            at(11, 5, 10, 0),
            h,
            52.5,
            "outlets[0].limits[0]",
        ),
        finding(
            RuleName::Exceedance,
            "E1",
            out(),
            at(11, 20, 3, 0),
            h,
            38.0,
            "outlets[0].limits[0]",
        ),
        // October: not this month's.
        finding(
            RuleName::Exceedance,
            "E1",
            out(),
            at(10, 31, 3, 0),
            h,
            99.0,
            "outlets[0].limits[0]",
        ),
        finding(
            RuleName::TreatmentNotRunning,
            "E2",
            meter(),
            at(11, 10, 8, 0),
            h * 2,
            0.0,
            "l1",
        ),
        finding(
            RuleName::TreatmentUnderpowered,
            "E2",
            meter(),
            at(11, 11, 8, 0),
            Duration::minutes(30),
            20.0,
            "l1",
        ),
        finding(
            RuleName::OrderViolation,
            "E3",
            meter(),
            at(11, 28, 9, 0),
            h,
            400.0,
            "2026-11-orange",
        ),
    ];
    store
        .insert_findings(&findings, at(12, 1, 1, 0))
        .await
        .unwrap();
    // Alerts at known delays: (what, opened, ack after min, resolved (by, after min)).
    type Seed<'a> = (
        [&'a str; 5],
        DateTime<Utc>,
        Option<i64>,
        Option<(&'a str, i64)>,
    );
    let alerts: [Seed; 6] = [
        (
            ["E1", "outlet:DA001", "a21026", "exceedance", "major"],
            at(11, 5, 10, 0),
            Some(10),
            Some(("zhangwei", 120)),
        ),
        (
            ["E1", "outlet:DA001", "a21026", "early_warning", "warning"],
            at(11, 6, 10, 0),
            Some(25),
            Some(("pollwatch", 90)),
        ),
        (
            ["E2", "meter:M1", "", "treatment_not_running", "major"],
            at(11, 10, 10, 0),
            Some(50),
            None,
        ),
        (
            ["E3", "meter:M1", "", "order_violation", "major"],
            at(11, 28, 10, 0),
            None,
            None,
        ),
        // Opened in October, still open: open at month end, not opened this month.
        (
            ["E1", "outlet:DA001", "", "offline", "warning"],
            at(10, 30, 10, 0),
            None,
            None,
        ),
        // December: neither.
        (
            ["E4", "outlet:DA001", "", "offline", "warning"],
            at(12, 1, 0, 30),
            None,
            None,
        ),
    ];
    for (what, opened, ack, resolved) in alerts {
        let id = common::console::seed_alert_on(store, what, 40.0, opened, None).await;
        if let Some(m) = ack {
            store
                .transition_alert(
                    id,
                    AlertState::Acknowledged,
                    "zhangwei",
                    "",
                    opened + Duration::minutes(m),
                )
                .await
                .unwrap();
        }
        if let Some((by, m)) = resolved {
            store
                .transition_alert(
                    id,
                    AlertState::Resolved,
                    by,
                    "",
                    opened + Duration::minutes(m),
                )
                .await
                .unwrap();
        }
    }
    // E1's outlet and E3's meter were heard from just before the month ended;
    // E2's meter an hour before (offline by then).
    let outlet = Reading {
        location: out(),
        factor: "a21026".into(),
        ..power("E1", at(11, 30, 23, 50))
    };
    let batch = Batch::readings(vec![
        outlet,
        power("E3", at(11, 30, 23, 55)),
        power("E2", at(11, 30, 23, 0)),
    ]);
    store
        .commit(&[Received {
            at: at(12, 1, 0, 0),
            batch,
        }])
        .await
        .unwrap();
}

/// November's hourly means: E1 misses 80 hours (Nov 10 00:00–Nov 13 08:00) →
/// 640/720, below 90 %; E4 has 36 hours flagged M → 720 received, 684 valid;
/// E2's Nov 1 was closed by the daemon with 4 hours missing (persisted figures
/// win over the raw values, which are all there) → 716/720.
async fn seed_hours(store: &Store) {
    let start = at(11, 1, 0, 0);
    let gap = (at(11, 10, 0, 0), at(11, 13, 8, 0));
    let mut readings = Vec::new();
    for h in 0..720 {
        let ts = start + Duration::hours(h);
        for e in ["E1", "E2", "E4"] {
            if e == "E1" && ts >= gap.0 && ts < gap.1 {
                continue;
            }
            let flag = if e == "E4" && h % 20 == 0 {
                Flag::M
            } else {
                Flag::N
            };
            readings.push(Reading {
                location: Location::Outlet("DA001".into()),
                factor: "a21026".into(),
                kind: DataKind::Hour,
                stat: Stat::Avg,
                flag,
                unit: "mg/m3".into(),
                ..power(e, ts)
            });
        }
    }
    store
        .commit(&[Received {
            at: at(12, 1, 0, 0),
            batch: Batch::readings(readings),
        }])
        .await
        .unwrap();
    store
        .put_transmission_day(
            &DayFigures {
                enterprise: "E2".into(),
                outlet: "DA001".into(),
                factor: "a21026".into(),
                day: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                expected: 24,
                received: 20,
                valid: 20,
                missing_hours: vec![20, 21, 22, 23],
                invalid_hours: vec![],
            },
            at(11, 2, 0, 10),
        )
        .await
        .unwrap();
}

fn cells(path: &std::path::Path, sheet: &str) -> HashMap<String, Vec<Data>> {
    let mut wb: Xlsx<_> = open_workbook(path).unwrap();
    let range = wb.worksheet_range(sheet).unwrap();
    range
        .rows()
        .filter_map(|r| match r.first() {
            Some(Data::String(k)) => Some((k.clone(), r[1..].to_vec())),
            _ => None,
        })
        .collect()
}

fn num(m: &HashMap<String, Vec<Data>>, k: &str) -> f64 {
    match m.get(k).and_then(|r| r.first()) {
        Some(Data::Float(f)) => *f,
        Some(Data::Int(i)) => *i as f64,
        other => panic!("{k}: {other:?} in {m:?}"),
    }
}

async fn the_month_in_numbers(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), url);
    let store = Store::open(url, &StoreOptions::default()).await.unwrap();
    seed(&store).await;
    seed_hours(&store).await;
    store.close().await;
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_pollwatch"))
        .args([
            "report", "monthly", "--month", "2026-11", "--json", "--config",
        ])
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let xlsx = out.join("非现场监管月报-2026-11.xlsx");
    let html = std::fs::read_to_string(out.join("非现场监管月报-2026-11.html")).unwrap();
    assert!(html.contains("一、概况") && html.contains("<svg"), "{html}");

    let overview = cells(&xlsx, "概况");
    for (k, want) in [
        ("纳入监管企业", 4.0),
        ("自动监控企业", 3.0),
        ("其中：省级平台", 1.0),
        ("其中：市级平台", 2.0),
        ("未标注平台", 1.0),
        ("用电监控企业", 2.0),
        ("正面清单企业", 2.0),
        ("排口总数", 3.0),
        ("月末在线排口", 1.0),
        ("电表总数", 2.0),
        ("月末在线电表", 1.0),
    ] {
        assert_eq!(num(&overview, k), want, "概况 {k}");
    }
    let wuzhong = &overview["吴中区"];
    assert_eq!(
        wuzhong[..4],
        [
            Data::Float(2.0),
            Data::Float(1.0),
            Data::Float(1.0),
            Data::Float(1.0)
        ]
    );
    let xiangcheng = &overview["相城区"];
    assert_eq!(
        xiangcheng[..4],
        [
            Data::Float(2.0),
            Data::Float(2.0),
            Data::Float(1.0),
            Data::Float(1.0)
        ]
    );

    let alerts = cells(&xlsx, "告警");
    for (k, want) in [
        ("本月新增告警", 4.0),
        ("已确认", 3.0),
        ("15分钟内确认", 1.0),
        ("30分钟内确认", 2.0),
        ("60分钟内确认", 3.0),
        ("确认用时中位数(分钟)", 25.0),
        ("确认用时90分位(分钟)", 50.0),
        ("执法人员解除", 1.0),
        ("自动解除", 1.0),
        ("月末未解除", 3.0),
        // by rule, severity and district
        ("超标", 1.0),
        ("超标预警", 1.0),
        ("治污设施未运行", 1.0),
        ("违反停限产令", 1.0),
        ("重要", 3.0),
        ("提示", 1.0),
        ("吴中区", 3.0),
        ("相城区", 1.0),
    ] {
        assert_eq!(num(&alerts, k), want, "告警 {k}");
    }

    // The other sheets' key figures, through the JSON of the same computation.
    let ex = &json["exceedances"][0];
    assert_eq!(
        (ex["enterprise"].as_str(), ex["hours"].as_u64()),
        (Some("E1"), Some(3))
    );
    assert_eq!(
        ex["max_value"].as_f64(),
        Some(52.5),
        "October's 99 is not November's"
    );
    let p = &json["power"][0];
    assert_eq!(
        (
            p["not_running_hours"].as_f64(),
            p["underpowered_hours"].as_f64()
        ),
        (Some(2.0), Some(0.5))
    );
    let o = &json["orders"][0];
    assert_eq!(o["hours_in_force"].as_f64(), Some(48.0));
    assert_eq!(
        (
            o["violation_hours"].as_f64(),
            o["compliance_hours"].as_f64()
        ),
        (Some(1.0), Some(47.0))
    );
    let positive: Vec<(&str, &str)> = json["positive_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["enterprise"].as_str().unwrap(),
                r["assessment"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(positive, [("E1", "review"), ("E4", "keep")]);
    // 数据传输有效率: ranked from the lowest, E1 below 90 % and shaded.
    let t = &json["transmission"];
    assert_eq!(t["available"], true);
    let rows: Vec<(&str, u64, u64, u64, f64)> = t["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["enterprise"].as_str().unwrap(),
                r["expected"].as_u64().unwrap(),
                r["received"].as_u64().unwrap(),
                r["valid"].as_u64().unwrap(),
                // serde_json reads floats to within an ulp.
                (r["effective_rate"].as_f64().unwrap() * 1e9).round() / 1e9,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("E1", 720, 640, 640, 0.888888889),
            ("E4", 720, 720, 684, 0.95),
            ("E2", 720, 716, 716, 0.994444444),
        ]
    );
    let mut wb: Xlsx<_> = open_workbook(&xlsx).unwrap();
    let sheet = wb.worksheet_range("数据传输有效率").unwrap();
    let first = sheet
        .rows()
        .find(|r| r.get(1) == Some(&Data::String("企业E1".into())))
        .expect("E1's row on 数据传输有效率");
    assert_eq!(first[0], Data::Float(1.0), "E1 ranks first (lowest)");
    assert_eq!(
        first[3..6],
        [Data::Float(720.0), Data::Float(640.0), Data::Float(640.0)]
    );
    assert_eq!(first[8], Data::Float(640.0 / 720.0));
    let page = std::fs::read_to_string(out.join("非现场监管月报-2026-11.html")).unwrap();
    assert!(
        page.contains("<tr class=\"low\"><td class=\"n\">1</td><td>企业E1</td>"),
        "{page}"
    );
    assert!(page.contains("88.9%"));
    assert_eq!(json["alerts_per_day"].as_array().unwrap().len(), 30);
    let sheets: Vec<String> = open_workbook::<Xlsx<_>, _>(&xlsx).unwrap().sheet_names();
    assert_eq!(
        sheets,
        [
            "概况",
            "数据传输有效率",
            "告警",
            "超标",
            "用电监控",
            "限产停产",
            "正面清单"
        ]
    );
}

/// The daemon serves the same report: JSON and xlsx from the API (viewer token),
/// and `/reports` in the console with the month picker and the download links.
#[tokio::test]
async fn the_api_and_the_console_serve_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _daemon) = common::console::start(dir.path());
    let base = cfg.base();
    let c = common::console::client();
    let bearer = format!("Bearer {}", common::console::VIEWER);
    let json: serde_json::Value = c
        .get(format!("{base}/api/v1/reports/monthly?month=2026-11"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["month"], "2026-11");
    assert_eq!(json["overview"]["enterprises"], 2, "{json}");
    let xlsx = c
        .get(format!(
            "{base}/api/v1/reports/monthly?month=2026-11&format=xlsx"
        ))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(xlsx.status(), 200);
    let disposition = xlsx.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.contains("filename*=UTF-8''%E9%9D%9E"),
        "{disposition}"
    );
    let bytes = xlsx.bytes().await.unwrap();
    let path = dir.path().join("r.xlsx");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(num(&cells(&path, "概况"), "纳入监管企业"), 2.0);
    for bad in ["2026-13", "11-2026", "", "2026-11&format=pdf"] {
        let r = c
            .get(format!("{base}/api/v1/reports/monthly?month={bad}"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = c
        .get(format!("{base}/api/v1/reports/monthly?month=2026-11"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token, no report");
    let cookie = common::console::session(&c, &base, common::console::VIEWER).await;
    let (status, page) =
        common::console::get(&c, &format!("{base}/reports?month=2026-11"), &cookie).await;
    assert_eq!(status, 200);
    for want in [
        "type=\"month\"",
        "value=\"2026-11\"",
        "format=xlsx",
        "一、概况",
        "三、告警",
        "<svg",
    ] {
        assert!(page.contains(want), "{want} not in {page}");
    }
}
