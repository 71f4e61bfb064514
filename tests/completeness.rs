//! Data completeness (issue #20): the worked example of the bureau's definitions
//! through the CLI and the API, the persisted daily figures and backfill
//! records, and a day's `low_transmission` revised and then superseded as
//! backfill fills its hours, on SQLite and PostgreSQL.

#[macro_use]
mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use pollwatch::model::{DataKind, Flag, Stat};
use pollwatch::store::{
    BackfillOutcome, BackfillState, Batch, DayFigures, DayWrite, NewBackfill, Store, Writer,
};

use common::console::VIEWER;
use common::daemon::Daemon;
use pollwatch::completeness::daily::store_pass;

both_backends!(
    worked_example_through_cli_and_api,
    daily_figures_and_backfill_records,
    closing_a_day_persists_figures_and_raises_low_transmission
);

/// A config directory storing at `url`, with a viewer token.
fn config(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\ntimezone = \"Asia/Shanghai\"\nstate_dir = {:?}\n\n[storage]\nurl = {url:?}\n\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\n[[http.tokens]]\nname = \"desk\"\nrole = \"viewer\"\ntoken = \"{VIEWER}\"\n\n\
             [hj212]\nlisten = \"127.0.0.1:0\"\n",
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(
        cfg.join("enterprises/e1.toml"),
        common::completeness::enterprise(&[("DW001", "MN-WW-0001")]),
    )
    .unwrap();
    cfg
}

/// COMPLETENESS.md's example on 2026-11-27: hours 0–19 arrive, 20–23 never do;
/// hours 5 and 6 are flagged M; hour 12 is flagged F.
async fn write_worked_example(url: &str) {
    write_hours(url, 0..20).await;
}

/// Hourly COD of DW001 on 2026-11-27 (local), flagged as in the worked example.
async fn write_hours(url: &str, hours: std::ops::Range<i64>) {
    let store = Store::open(url, &Default::default()).await.unwrap();
    let (w, task) = Writer::spawn(
        store.clone(),
        Default::default(),
        Arc::new(pollwatch::clock::SystemClock),
    );
    let start = Utc.with_ymd_and_hms(2026, 11, 26, 16, 0, 0).unwrap(); // 00:00 +08:00
    let readings = hours
        .map(|h| {
            let mut r = common::reading("DW001", "w01018", 0, 20.0 + h as f64);
            r.ts = start + chrono::Duration::hours(h);
            r.kind = DataKind::Hour;
            r.stat = Stat::Avg;
            r.flag = match h {
                5 | 6 => Flag::M,
                12 => Flag::F,
                _ => Flag::N,
            };
            r
        })
        .collect();
    w.write(Batch::readings(readings)).await.unwrap();
    drop(w);
    task.finish(Duration::from_secs(5)).await;
    store.close().await;
}

fn check_row(v: &serde_json::Value) {
    assert_eq!(v["from"], "2026-11-27");
    assert_eq!(v["to"], "2026-11-28");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v:#}");
    let r = &rows[0];
    assert_eq!(
        (&r["enterprise"], &r["outlet"], &r["factor"]),
        (&"E1".into(), &"DW001".into(), &"w01018".into())
    );
    assert_eq!(r["expected"], 23, "{r:#}");
    assert_eq!(r["received"], 19, "{r:#}");
    assert_eq!(r["valid"], 17, "{r:#}");
    assert_eq!(r["missing_hours"], 4);
    assert_eq!(r["invalid_hours"], 2);
    let close = |k: &str, want: f64| {
        let got = r[k].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "{k}: {got} ≠ {want}");
    };
    close("transmission_rate", 19.0 / 23.0);
    close("validity_rate", 17.0 / 19.0);
    close("effective_rate", 17.0 / 23.0);
}

async fn worked_example_through_cli_and_api(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), url);
    write_worked_example(url).await;
    record_minute_request(url).await;

    let report = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pollwatch"))
            .args(["report", "transmission", "--config"])
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap()
    };
    let out = report(&["--from", "2026-11-27", "--to", "2026-11-28", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    check_row(&cli);

    // The table: percentages.
    let out = report(&[
        "--from",
        "2026-11-27",
        "--to",
        "2026-11-28",
        "--enterprise",
        "E1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("82.6%") && text.contains("89.5%") && text.contains("73.9%"),
        "{text}"
    );

    // Refused clearly: an empty range, an unknown enterprise.
    let out = report(&["--from", "2026-11-28", "--to", "2026-11-28"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exclusive"));
    let out = report(&[
        "--from",
        "2026-11-27",
        "--to",
        "2026-11-28",
        "--enterprise",
        "E9",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("E9"));

    let daemon = Daemon::start(&cfg, None);
    let base = format!("http://{}", daemon.field("http"));
    let http = reqwest::Client::new();
    let path = "/api/v1/reports/transmission?from=2026-11-27&to=2026-11-28&enterprise=E1";
    let r = http.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    let r = http
        .get(format!("{base}{path}"))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let api: serde_json::Value = r.json().await.unwrap();
    check_row(&api);
    assert_eq!(api, cli, "the API and the CLI agree");
    for (q, status) in [
        ("from=2026-11-27&to=tomorrow", 400),
        ("from=2026-11-27&to=2026-11-28&enterprise=E9", 404),
        ("from=2026-11-27&to=2028-11-28", 400),
        ("from=2026-11-27&to=2026-11-28&x=1", 400),
    ] {
        let r = http
            .get(format!("{base}/api/v1/reports/transmission?{q}"))
            .bearer_auth(VIEWER)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{q}");
    }
    let r = http
        .get(format!("{base}/api/v1/backfill?enterprise=E1"))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);

    // The enterprise page: the last seven days' rates of each limited factor,
    // and the requests with their outcome.
    let c = common::console::client();
    let cookie = common::console::session(&c, &base, VIEWER).await;
    let (status, page) = common::console::get(&c, &format!("{base}/enterprises/E1"), &cookie).await;
    assert_eq!(status, 200);
    let at = page
        .find(r#"<section id="completeness">"#)
        .expect("the completeness section");
    let section = &page[at..];
    assert!(section.contains("有效传输率"), "{section}");
    assert!(
        section.contains("<td>DW001</td><td>w01018</td>"),
        "{section}"
    );
    assert!(
        section.contains("分钟数据 (2051)")
            && section.contains("MN-WW-0001")
            && section.contains("数采仪无数据（确认缺失）")
            && section.contains("ExeRtn=100"),
        "{section}"
    );
    drop(daemon);
}

/// A minute-data request that the logger answered ExeRtn=100.
async fn record_minute_request(url: &str) {
    let store = Store::open(url, &Default::default()).await.unwrap();
    let begin = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
    let at = begin + chrono::Duration::hours(2);
    let id = store
        .insert_backfill(&NewBackfill {
            enterprise: "E1".into(),
            outlet: "DW001".into(),
            mn: "MN-WW-0001".into(),
            cn: "2051".into(),
            begin,
            end: begin + chrono::Duration::hours(1),
            qn: "20261127220000001".into(),
            attempt: 1,
            requested_at: at,
        })
        .await
        .unwrap();
    let outcome = BackfillOutcome {
        state: BackfillState::NoData,
        qn_rtn: Some(1),
        exe_rtn: Some(100),
        readings: 0,
        finished_at: at,
        detail: "ExeRtn=100: the logger has no data for the period".into(),
    };
    store.finish_backfill(id, &outcome).await.unwrap();
    store.close().await;
}

async fn daily_figures_and_backfill_records(url: &str) {
    let store = Store::open(url, &Default::default()).await.unwrap();
    let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
    let at = Utc.with_ymd_and_hms(2026, 11, 28, 0, 5, 0).unwrap();
    let mut d = DayFigures {
        enterprise: "E1".into(),
        outlet: "DW001".into(),
        factor: "w01018".into(),
        day,
        expected: 24,
        received: 21,
        valid: 21,
        missing_hours: vec![1, 2, 3],
        invalid_hours: vec![],
    };
    assert_eq!(
        store.put_transmission_day(&d, at).await.unwrap(),
        DayWrite::New
    );
    assert_eq!(
        store.put_transmission_day(&d, at).await.unwrap(),
        DayWrite::Unchanged
    );
    // The backfill brought the three hours back.
    d.received = 24;
    d.valid = 24;
    d.missing_hours.clear();
    assert_eq!(
        store.put_transmission_day(&d, at).await.unwrap(),
        DayWrite::Revised
    );
    let days = store
        .transmission_days(day, day.succ_opt().unwrap(), Some("E1"))
        .await
        .unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].figures, d);
    assert_eq!(days[0].revision, 2);
    assert!(store
        .transmission_days(day, day.succ_opt().unwrap(), Some("E2"))
        .await
        .unwrap()
        .is_empty());

    let req = NewBackfill {
        enterprise: "E1".into(),
        outlet: "DW001".into(),
        mn: "MN-WW-0001".into(),
        cn: "2061".into(),
        begin: Utc.with_ymd_and_hms(2026, 11, 26, 17, 0, 0).unwrap(),
        end: Utc.with_ymd_and_hms(2026, 11, 26, 20, 0, 0).unwrap(),
        qn: "20261128000500123".into(),
        attempt: 1,
        requested_at: at,
    };
    let id = store.insert_backfill(&req).await.unwrap();
    let rows = store
        .backfill_requests(Some("E1"), None, None, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, BackfillState::Sent);
    assert_eq!(rows[0].request, req);
    store
        .finish_backfill(
            id,
            &BackfillOutcome {
                state: BackfillState::NoData,
                qn_rtn: Some(1),
                exe_rtn: Some(100),
                readings: 0,
                finished_at: at + chrono::Duration::seconds(3),
                detail: "ExeRtn=100: no data".into(),
            },
        )
        .await
        .unwrap();
    let rows = store
        .backfill_requests(None, Some("MN-WW-0001"), Some(at), 10)
        .await
        .unwrap();
    assert_eq!(rows[0].state, BackfillState::NoData);
    assert!(rows[0].state.is_final());
    assert_eq!((rows[0].qn_rtn, rows[0].exe_rtn), (Some(1), Some(100)));
    store.close().await;
}

#[test]
fn backfill_settings_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "sqlite://:memory:");
    let toml = cfg.join("pollwatch.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace(
            "[hj212]\n",
            "[hj212]\nbackfill_rate = 0\nbackfill_max_age = \"60d\"\nbackfill_timeout = \"0s\"\n",
        ),
    )
    .unwrap();
    let errs = pollwatch::config::Config::load(&cfg, &Default::default())
        .unwrap_err()
        .to_string();
    for key in [
        "hj212.backfill_rate",
        "hj212.backfill_max_age",
        "hj212.backfill_timeout",
    ] {
        assert!(errs.contains(key), "{key} missing in\n{errs}");
    }
    // Per outlet: `backfill = false` is accepted, a typo is not.
    let e1 = cfg.join("enterprises/e1.toml");
    let text = std::fs::read_to_string(&e1).unwrap();
    std::fs::write(&toml, "[daemon]\ntimezone = \"Asia/Shanghai\"\n").unwrap();
    std::fs::write(
        &e1,
        text.replace(
            "kind = \"wastewater\"\n",
            "kind = \"wastewater\"\nbackfill = false\n",
        ),
    )
    .unwrap();
    let loaded = pollwatch::config::Config::load(&cfg, &Default::default()).unwrap();
    assert!(!loaded.enterprises[0].outlets[0].backfill);
    std::fs::write(
        &e1,
        text.replace(
            "kind = \"wastewater\"\n",
            "kind = \"wastewater\"\nbackfil = false\n",
        ),
    )
    .unwrap();
    assert!(pollwatch::config::Config::load(&cfg, &Default::default()).is_err());
}

async fn closing_a_day_persists_figures_and_raises_low_transmission(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = pollwatch::config::Config::load(&config(dir.path(), url), &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    write_worked_example(url).await;
    let store = Store::open(url, &Default::default()).await.unwrap();
    // 03:00 on the 28th (local): the 27th has just closed.
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 19, 0, 0).unwrap();
    let close = || pollwatch::completeness::daily::close_days(&cfg, &store, now);
    let closed = close().await.unwrap();
    assert_eq!(closed.new, 10, "the ten days of the repair window");
    // Only the day just closed raises (the days before it had no data at all,
    // but closed long ago).
    assert_eq!(closed.findings.len(), 1);
    let f = &closed.findings[0];
    assert_eq!(f.rule.as_str(), "low_transmission");
    assert_eq!(f.severity.as_str(), "notice");
    assert_eq!(f.factor.to_string(), "w01018");
    assert!((f.value.unwrap() - 17.0 / 23.0).abs() < 1e-9);
    assert_eq!(f.threshold, Some(0.9));
    assert_eq!(
        f.evidence.params["missing_hours"],
        serde_json::json!([20, 21, 22, 23])
    );
    assert_eq!(
        f.evidence.params["invalid_hours"],
        serde_json::json!([5, 6])
    );
    assert!(
        f.message.contains("73.9%") && f.message.contains("20时"),
        "{}",
        f.message
    );
    let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
    let stored = store
        .transmission_days(day, day.succ_opt().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    let d = &stored[0].figures;
    assert_eq!((d.expected, d.received, d.valid), (23, 19, 17));

    // Stored as the daemon does (and the day's missing hours go to the backfill).
    assert_eq!(
        closed.missing,
        vec![("E1".to_string(), "DW001".to_string())]
    );
    let pass = store_pass(&store, closed, now).await.unwrap();
    assert_eq!(pass.new.len(), 1);
    let low_id = pass.new[0].id;

    // Counting again changes nothing and raises nothing.
    let again = close().await.unwrap();
    assert_eq!((again.new, again.revised, again.findings.len()), (0, 0, 0));
    let pass = store_pass(&store, again, now).await.unwrap();
    assert!(pass.new.is_empty() && pass.revised.revised.is_empty());

    // The logger's backlog fills hours 20 and 21: the day is revised, still
    // below the line (19 of 23), and so is its finding.
    write_hours(url, 20..22).await;
    let revised = close().await.unwrap();
    assert_eq!(
        (revised.new, revised.revised, revised.findings.len()),
        (0, 1, 0)
    );
    let later = now + chrono::Duration::hours(1);
    let pass = store_pass(&store, revised, later).await.unwrap();
    assert_eq!(pass.revised.revised, vec![low_id]);
    assert!(pass.revised.superseded.is_empty());
    let h = store.finding_history(low_id).await.unwrap();
    assert!(h.superseded.is_none());
    assert!((h.revisions[0].to_value.unwrap() - 19.0 / 23.0).abs() < 1e-9);

    // Hours 22 and 23 too: 21 of 23 valid (91.3 %), above the line: the
    // finding is superseded.
    write_hours(url, 22..24).await;
    let revised = close().await.unwrap();
    assert_eq!((revised.new, revised.revised), (0, 1));
    let pass = store_pass(&store, revised, later).await.unwrap();
    assert_eq!(pass.revised.superseded, vec![low_id]);
    assert!(store
        .finding_history(low_id)
        .await
        .unwrap()
        .superseded
        .is_some());
    let stored = store
        .transmission_days(day, day.succ_opt().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(stored[0].revision, 3);
    let d = &stored[0].figures;
    assert_eq!((d.expected, d.received, d.valid), (23, 23, 21));
    // The report reads the persisted day.
    let r = pollwatch::completeness::transmission_report(
        &cfg,
        &store,
        day,
        day.succ_opt().unwrap(),
        None,
        now,
    )
    .await
    .unwrap();
    assert_eq!(r.rows[0].counts.received, 23);
    store.close().await;
}
