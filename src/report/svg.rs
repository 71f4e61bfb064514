//! The report's charts as SVG: inline in the HTML page, rasterised to PNG (with
//! the evidence charts' renderer) for the workbook.

use std::fmt::Write as _;

use super::{severity_label, DayCount, RateRow, SEVERITIES};

const COLORS: [&str; 4] = ["#b71c1c", "#e65100", "#f9a825", "#1565c0"];
const W: f64 = 760.0;
const H: f64 = 300.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 40.0;
const TOP: f64 = 36.0;

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn frame(title: &str, max: u32) -> (String, f64) {
    let max = max.max(1);
    let step = (f64::from(max) / 5.0).ceil().max(1.0);
    let top_value = step * 5.0;
    let plot_h = H - TOP - BOTTOM;
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="WenQuanYi Micro Hei, Noto Sans CJK SC, sans-serif" font-size="11"><rect width="100%" height="100%" fill="#fff"/><text x="{LEFT}" y="20" font-size="14" font-weight="bold">{}</text>"##,
        esc(title)
    );
    for k in 0..=5 {
        let v = step * f64::from(k);
        let y = H - BOTTOM - plot_h * v / top_value;
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v}</text>"##,
            W - 10.0,
            LEFT - 4.0,
            y + 4.0
        );
    }
    (s, top_value)
}

/// Alerts opened per day, stacked by severity.
pub fn alerts_per_day(days: &[DayCount]) -> String {
    let totals: Vec<u32> = days.iter().map(|d| d.by_severity.values().sum()).collect();
    let (mut s, top) = frame(
        "每日新增告警（按级别）",
        totals.iter().copied().max().unwrap_or(0),
    );
    let plot_h = H - TOP - BOTTOM;
    let slot = (W - LEFT - 10.0) / days.len().max(1) as f64;
    for (i, d) in days.iter().enumerate() {
        let x = LEFT + slot * i as f64 + slot * 0.15;
        let mut y = H - BOTTOM;
        for (k, sev) in SEVERITIES.iter().enumerate() {
            let n = d.by_severity.get(*sev).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let h = plot_h * f64::from(n) / top;
            y -= h;
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{} {}: {n}</title></rect>"#,
                slot * 0.7,
                COLORS[k],
                d.day,
                severity_label(sev)
            );
        }
        if i % 5 == 0 || i + 1 == days.len() {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                x + slot * 0.35,
                H - BOTTOM + 14.0,
                d.day.get(5..).unwrap_or(&d.day)
            );
        }
    }
    for (k, sev) in SEVERITIES.iter().enumerate() {
        let x = W - 300.0 + 72.0 * k as f64;
        let _ = write!(
            s,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            H - 14.0,
            COLORS[k],
            x + 14.0,
            H - 5.0,
            severity_label(sev)
        );
    }
    s.push_str("</svg>");
    s
}

/// How many outlets fall in each 10 % band of effective transmission rate.
pub fn rate_distribution(rows: &[RateRow]) -> String {
    let mut bands = [0u32; 10];
    for r in rows {
        if let Some(rate) = r.effective_rate {
            let i = ((rate * 10.0).floor() as usize).min(9);
            bands[i] += 1;
        }
    }
    let (mut s, top) = frame(
        "有效传输率分布（排口数）",
        bands.iter().copied().max().unwrap_or(0),
    );
    let plot_h = H - TOP - BOTTOM;
    let slot = (W - LEFT - 10.0) / 10.0;
    for (i, n) in bands.iter().enumerate() {
        let x = LEFT + slot * i as f64 + slot * 0.1;
        let h = plot_h * f64::from(*n) / top;
        let color = if i < 9 { COLORS[0] } else { COLORS[3] };
        // An empty band has no bar (a zero-height rect is invalid SVG).
        if *n > 0 {
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{n}</title></rect>"#,
                H - BOTTOM - h,
                slot * 0.8,
                h.max(0.5),
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}–{}%</text>"#,
            x + slot * 0.4,
            H - BOTTOM + 14.0,
            i * 10,
            i * 10 + 10
        );
    }
    s.push_str("</svg>");
    s
}
