//! The renderer over hand-made data, read back as XML.

use chrono::{Duration, TimeZone, Utc};

use super::*;

fn t0() -> DateTime<Utc> {
    // 08:00 in Shanghai.
    Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()
}

fn data() -> ChartData {
    let tz: Tz = "Asia/Shanghai".parse().unwrap();
    let flags = [Flag::N, Flag::F, Flag::N, Flag::M, Flag::T, Flag::N];
    let points = (0..36)
        .map(|i| ChartPoint {
            ts: t0() + Duration::minutes(10 * i),
            value: 20.0 + i as f64,
            flag: flags[i as usize % flags.len()],
        })
        .collect();
    let hour = |h: i64, measured: f64, corrected: f64| HourMean {
        start: t0() + Duration::hours(h),
        measured: Some(measured),
        corrected: Some(corrected),
        supplied: false,
        valid_minutes: Some(60),
        valid: true,
    };
    ChartData {
        title: "告警 #7 东山热电 <1#炉> & a21026".into(),
        subtitle: "exceedance".into(),
        factor: "a21026".into(),
        factor_name: "二氧化硫".into(),
        unit: "mg/m³".into(),
        tz,
        from: t0(),
        to: t0() + Duration::hours(6),
        points,
        hours: vec![hour(0, 22.0, 25.5), hour(4, 38.0, 41.2)],
        limit: Some(35.0),
        limit_min: None,
        warn: Some(28.0),
        alert_from: t0() + Duration::hours(4),
        alert_to: t0() + Duration::hours(5),
        conflicts: Vec::new(),
    }
}

fn num(n: roxmltree::Node, attr: &str) -> f64 {
    n.attribute(attr)
        .unwrap_or_else(|| panic!("{attr} missing on {n:?}"))
        .parse()
        .unwrap()
}

fn with_class<'a>(doc: &'a roxmltree::Document, class: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.attribute("class") == Some(class))
        .collect()
}

/// The pixel row of value `v`, read off the drawn grid (tick label → grid line).
fn grid_y(doc: &roxmltree::Document, v: f64) -> f64 {
    let rows: Vec<(f64, f64)> = with_class(doc, "y-tick")
        .iter()
        .map(|t| {
            let value: f64 = t.text().unwrap().parse().unwrap();
            let line = t.prev_sibling_element().unwrap();
            assert_eq!(line.attribute("class"), Some("grid"));
            (value, num(line, "y1"))
        })
        .collect();
    let (lo, hi) = (rows[0], rows[rows.len() - 1]);
    lo.1 + (v - lo.0) / (hi.0 - lo.0) * (hi.1 - lo.1)
}

#[test]
fn the_svg_is_well_formed_xml_with_the_labels_escaped() {
    let svg = render_svg(&data());
    let doc = roxmltree::Document::parse(&svg).expect("valid XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(num(root, "width"), f64::from(WIDTH));
    let title = with_class(&doc, "title");
    assert_eq!(title[0].text(), Some("告警 #7 东山热电 <1#炉> & a21026"));
    let y_label = with_class(&doc, "y-label");
    assert_eq!(y_label[0].text(), Some("二氧化硫(a21026) mg/m³"));
}

#[test]
fn limit_and_warning_lines_sit_at_their_values_on_the_axis() {
    let svg = render_svg(&data());
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let limit = with_class(&doc, "limit")[0];
    assert_eq!(limit.attribute("data-value"), Some("35"));
    assert!((num(limit, "y1") - grid_y(&doc, 35.0)).abs() < 0.11);
    assert_eq!(num(limit, "y1"), num(limit, "y2"), "horizontal");
    let warn = with_class(&doc, "warn")[0];
    assert!((num(warn, "y1") - grid_y(&doc, 28.0)).abs() < 0.11);
    assert!(num(warn, "y1") > num(limit, "y1"), "28 is drawn below 35");
    assert_eq!(with_class(&doc, "limit-label")[0].text(), Some("限值 35"));
    assert_eq!(with_class(&doc, "warn-label")[0].text(), Some("预警线 28"));
    // Round ticks from zero, covering the largest value (55).
    let ticks: Vec<&str> = with_class(&doc, "y-tick")
        .iter()
        .map(|t| t.text().unwrap())
        .collect();
    assert_eq!(ticks, ["0", "10", "20", "30", "40", "50", "60"]);
}

#[test]
fn excluded_and_flagged_values_are_marked_and_left_out_of_the_line() {
    let d = data();
    let svg = render_svg(&d);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let flags = |class: &str| -> Vec<String> {
        with_class(&doc, class)
            .iter()
            .map(|n| n.attribute("data-flag").unwrap().to_string())
            .collect()
    };
    // 36 points, flags cycling N F N M T N: 6 F, 6 M excluded; 6 T marked.
    let invalid = flags("invalid");
    assert_eq!(invalid.len(), 12);
    assert!(invalid.iter().all(|f| f == "F" || f == "M"));
    assert_eq!(flags("flagged"), vec!["T"; 6]);
    // The line runs through the judged values only (N and T): 24 of them.
    let line: usize = with_class(&doc, "measured")
        .iter()
        .map(|p| p.attribute("points").unwrap().split(' ').count())
        .sum();
    assert_eq!(line, 24);
    let legend = with_class(&doc, "legend")[0];
    let texts: Vec<&str> = legend.descendants().filter_map(|n| n.text()).collect();
    for needle in [
        "实测值",
        "小时均值(实测)",
        "小时均值(折算)",
        "无效(F/M/D/C/B)",
        "标记(T/S)",
        "告警时段",
    ] {
        assert!(texts.contains(&needle), "{needle} missing from {texts:?}");
    }
}

#[test]
fn hourly_means_span_their_hour_and_the_exceeding_one_is_labelled() {
    let svg = render_svg(&data());
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let corrected = with_class(&doc, "hour-corrected");
    assert_eq!(corrected.len(), 2);
    let h4 = corrected[1];
    assert_eq!(h4.attribute("data-value"), Some("41.2"));
    let width = num(h4, "x2") - num(h4, "x1");
    assert!(
        (width - (PLOT_RIGHT - PLOT_LEFT) / 6.0).abs() < 0.11,
        "{width}"
    );
    assert_eq!(with_class(&doc, "hour-measured").len(), 2);
    let exceeding = with_class(&doc, "exceeding");
    assert_eq!(exceeding.len(), 1, "only 41.2 is above 35");
    assert_eq!(exceeding[0].text(), Some("41.2"));
    let span = with_class(&doc, "alert-span")[0];
    assert!((num(span, "x") - num(h4, "x1")).abs() < 0.11);
}

#[test]
fn time_axis_is_labelled_in_local_time() {
    let mut d = data();
    let svg = render_svg(&d);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let ticks = with_class(&doc, "x-tick");
    let labels: Vec<&str> = ticks.iter().map(|t| t.text().unwrap()).collect();
    assert_eq!(
        labels,
        [
            "11-27 08:00",
            "09:00",
            "10:00",
            "11:00",
            "12:00",
            "13:00",
            "14:00"
        ]
    );
    assert_eq!(
        ticks[0].attribute("data-time"),
        Some("2026-11-27T08:00:00+08:00")
    );
    // Three days: ticks every 6 hours, the date where the day changes.
    d.to = d.from + Duration::hours(72);
    let svg = render_svg(&d);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let labels: Vec<String> = with_class(&doc, "x-tick")
        .iter()
        .map(|t| t.text().unwrap().to_string())
        .collect();
    assert_eq!(labels.len(), 12);
    assert_eq!(
        labels[..5],
        ["11-27 12:00", "18:00", "11-28 00:00", "06:00", "12:00"]
    );
    assert_eq!(labels[11], "06:00");
}

#[test]
fn the_same_data_gives_the_same_bytes() {
    let a = render_svg(&data());
    let b = render_svg(&data().clone());
    assert_eq!(a, b);
    let mut other = data();
    other.points[3].value += 0.5;
    assert_ne!(a, render_svg(&other));
}

#[test]
fn empty_data_still_draws_an_axis() {
    let mut d = data();
    d.points.clear();
    d.hours.clear();
    d.limit = None;
    d.warn = None;
    let svg = render_svg(&d);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    assert!(with_class(&doc, "measured").is_empty());
    assert!(with_class(&doc, "y-tick").len() >= 2);
}

#[test]
fn conflicting_resends_are_marked_with_the_value_sent_later() {
    let mut d = data();
    let plain = render_svg(&d);
    assert!(
        !plain.contains("重发改值"),
        "no legend entry without conflicts"
    );
    d.conflicts = vec![ChartConflict {
        ts: t0() + Duration::minutes(20),
        first_value: 22.0,
        value: 30.0,
    }];
    let svg = render_svg(&d);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let marks = with_class(&doc, "conflict");
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0].attribute("data-first"), Some("22"));
    assert_eq!(marks[0].attribute("data-value"), Some("30"));
    assert!((num(marks[0], "cy") - grid_y(&doc, 30.0)).abs() < 1.0);
    assert!(svg.contains("重发改值(1)"));
}
