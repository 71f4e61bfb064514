//! The console's overview page (`/overview`, viewers land on it) and the
//! enterprise page's 24-hour trend, against the real daemon: open alerts by
//! district and severity (today's counted apart), outlets online/offline,
//! yesterday's effective transmission rate from stored hourly values, orders in
//! force with their open violations; and per outlet and limited factor a chart
//! of the last 24 hours of hourly means with the limit line.

mod common;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Asia::Shanghai;
use common::console::{
    client, cookie_pair, get, login, open_store, seed_alert, seed_e1_exceedance, start_power_plant,
    OPERATOR, VIEWER,
};
use pollwatch::model::{DataKind, Location, Reading, Stat};
use pollwatch::rules::window::hour_start;
use pollwatch::store::{AlertState, Batch, Received};

/// An hourly mean of `enterprise`'s outlet DA001 as a logger's 2061 stores it.
fn hourly(enterprise: &str, factor: &str, ts: DateTime<Utc>, value: f64) -> Reading {
    Reading {
        enterprise: enterprise.into(),
        location: Location::Outlet("DA001".into()),
        unit: if factor == "a19001" { "%" } else { "mg/m³" }.into(),
        ts,
        kind: DataKind::Hour,
        stat: Stat::Avg,
        ..common::reading("DA001", factor, 0, value)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_and_the_enterprise_trend() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let (cfg, mut daemon) = start_power_plant(dir.path(), now);
    let base = cfg.base();
    let c = client();

    // Local days in the daemon's zone (Asia/Shanghai by default).
    let local_now = now.with_timezone(&Shanghai);
    let today = local_now.date_naive();
    let midnight = |d: chrono::NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .unwrap()
            .and_local_timezone(Shanghai)
            .unwrap()
            .with_timezone(&Utc)
    };
    let yesterday = midnight(today.pred_opt().unwrap());
    let this_hour = hour_start(now, Shanghai);

    let store = open_store(&cfg.db).await;
    // Open alerts: E1 (吴中区) major today and minor three days ago, E2 (相城区)
    // critical today; one resolved (not counted) and E3's order violation.
    let e1_major = seed_e1_exceedance(&store, now).await;
    seed_alert(
        &store,
        "E1",
        "outlet:DA001",
        "a21026",
        "missing_data",
        "minor",
        0.0,
        now - Duration::days(3),
    )
    .await;
    seed_alert(
        &store,
        "E2",
        "outlet:DW001",
        "w01018",
        "exceedance",
        "critical",
        80.0,
        now,
    )
    .await;
    let gone = seed_alert(
        &store,
        "E2",
        "outlet:DW001",
        "w01018",
        "offline",
        "major",
        0.0,
        now,
    )
    .await;
    store
        .transition_alert(gone, AlertState::Resolved, "zhangwei", "", now)
        .await
        .unwrap();
    seed_alert(
        &store,
        "E3",
        "meter:M-PROD",
        "e_p",
        "order_violation",
        "major",
        250.0,
        now,
    )
    .await;
    store
        .transition_alert(e1_major, AlertState::Acknowledged, "zhangwei", "", now)
        .await
        .unwrap();

    // Yesterday: E1 sent 20 of 24 hours (83.3 %), E3 all 24; E3 also every hour
    // since, for its trend (O2 at the reference: corrected = measured).
    let mut readings = Vec::new();
    for h in 0..20 {
        readings.push(hourly("E1", "a21026", yesterday + Duration::hours(h), 20.0));
    }
    let mut t = yesterday;
    let mut e3_hours = 0;
    while t < this_hour {
        let v = if t + Duration::hours(1) == this_hour {
            41.0
        } else {
            20.0
        };
        readings.push(hourly("E3", "a21026", t, v));
        readings.push(hourly("E3", "a19001", t, 6.0));
        if t >= this_hour - Duration::hours(23) {
            e3_hours += 1;
        }
        t += Duration::hours(1);
    }
    store
        .commit(&[Received {
            at: now,
            batch: Batch::readings(readings),
        }])
        .await
        .unwrap();
    store.close().await;

    // Viewers land on the overview, operators on the board.
    for (token, landing) in [(VIEWER, "/overview"), (OPERATOR, "/")] {
        let r = c
            .post(format!("{base}/login"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], landing, "{token}");
    }
    let (_, set) = login(&c, &base, VIEWER).await;
    let cookie = cookie_pair(&set.unwrap());

    let (status, page) = get(&c, &format!("{base}/overview"), &cookie).await;
    assert_eq!(status, 200, "{page}");
    let (status, fragment) = get(&c, &format!("{base}/console/overview"), &cookie).await;
    assert_eq!(status, 200);
    assert!(
        page.contains(&fragment),
        "the page embeds the live fragment"
    );
    assert!(page.contains(r#"data-src="/console/overview""#));
    for want in [
        // 4 open (the resolved one is not), 3 of them opened today, 3 unacknowledged.
        r#"data-ov="open">未解除 4<"#,
        r#"data-ov="today">今日新增 3<"#,
        r#"data-ov="unacked">未确认 3<"#,
        // 吴中区: E1's major and minor, E3's major; 相城区: E2's critical.
        r#"<tr data-district="吴中区"><td>吴中区</td><td class="num sev-critical" title="今日新增 0">0</td><td class="num sev-major" title="今日新增 2">2</td><td class="num sev-minor" title="今日新增 0">1</td><td class="num sev-warning" title="今日新增 0">0</td><td class="num">3</td></tr>"#,
        r#"<tr data-district="相城区"><td>相城区</td><td class="num sev-critical" title="今日新增 1">1</td>"#,
        // E1's logger never connected: offline; E2's and E3's outlets have no live source.
        r#"<tr><td>吴中区</td><td class="num">0</td><td class="num down">1</td><td class="num">1</td></tr>"#,
        r#"<tr><td>相城区</td><td class="num">0</td><td class="num">0</td><td class="num">1</td></tr>"#,
        // (20 + 24) / 48 = 91.7 %; E1 alone below 90 %.
        r#"data-ov="rate">91.7%<"#,
        "2 个排口计入；应传 48 小时，有效 44 小时；低于 90% 的排口 1 个。",
        r#"<tr class="low"><td>东山热电</td><td>DA001</td><td class="num">83.3%</td></tr>"#,
        // ORD-1 (stop, in force) with E3's open violation.
        "执行中的停限产令（1）",
        r#"<td>西山印染</td><td>ORD-1</td><td>停产</td>"#,
        r#"<td class="num">1</td></tr>"#,
    ] {
        assert!(fragment.contains(want), "{want} missing:\n{fragment}");
    }
    assert!(page.contains(r#"<a href="/overview">概况</a>"#));
    // A single node says so (the console's cluster footer stays away).
    let (status, cluster) = get(&c, &format!("{base}/api/v1/cluster"), &cookie).await;
    assert_eq!((status, cluster.as_str()), (200, r#"{"cluster":false}"#));

    // The enterprise page: a trend per outlet and limited factor, hourly means
    // with the limit line at 35 and the last full hour's 41 above it.
    let (status, page) = get(&c, &format!("{base}/enterprises/E3"), &cookie).await;
    assert_eq!(status, 200);
    let at = page
        .find(r#"<figure class="trend" data-outlet="DA001" data-factor="a21026">"#)
        .unwrap_or_else(|| panic!("no trend:\n{page}"));
    let chart = &page[at..at + page[at..].find("</figure>").unwrap()];
    assert!(
        chart.contains(r#"<line class="limit" data-value="35""#),
        "{chart}"
    );
    assert_eq!(
        chart.matches(r#"class="hour-corrected""#).count(),
        e3_hours,
        "one corrected mean per stored hour of the last 24"
    );
    assert!(chart.contains(r#"class="hour-corrected" data-value="41""#));
    assert!(chart.contains("近24小时小时均值"));
    // E2's outlet has no limit: no chart, and the page still renders.
    let (status, page) = get(&c, &format!("{base}/enterprises/E2"), &cookie).await;
    assert_eq!(status, 200);
    assert!(!page.contains("近24小时趋势"));
    assert!(daemon.terminate().success());
}
