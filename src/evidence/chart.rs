//! The evidence chart as SVG: a pure function of [`ChartData`].
//!
//! The chart goes into case files, so it is drawn by hand rather than by a
//! plotting library: every element is ours to explain, and the output is
//! byte-for-byte deterministic (no maps iterated, no clocks read, numbers
//! printed with fixed precision), so the same data always hashes the same.
//!
//! Elements carry a `class` (and numbers a `data-value`) so tests and the web
//! console can find them without scraping the drawing.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Tz;

use super::scale::{fmt_num, nice_ticks, Axis};
use crate::model::Flag;
use crate::rules::window::hour_start;

/// Canvas size in CSS pixels (the PNG may be rendered at a multiple of it).
pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 480;

const PLOT_LEFT: f64 = 72.0;
const PLOT_RIGHT: f64 = 880.0;
const PLOT_TOP: f64 = 64.0;
const PLOT_BOTTOM: f64 = 392.0;

/// CJK faces first (Debian's `fonts-wqy-microhei`, `fonts-noto-cjk`), so both
/// browsers and resvg find the glyphs for 限值 / 预警线.
pub const FONT_FAMILY: &str =
    "WenQuanYi Micro Hei, Noto Sans CJK SC, Noto Sans SC, Source Han Sans SC, sans-serif";

/// One value as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartPoint {
    pub ts: DateTime<Utc>,
    pub value: f64,
    pub flag: Flag,
}

/// A conflicting resend: the logger sent `value` for a time whose stored value
/// (`first_value`, the one drawn and judged) differs. Drawn as a hollow circle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartConflict {
    pub ts: DateTime<Utc>,
    pub first_value: f64,
    pub value: f64,
}

/// One local hour's mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourMean {
    pub start: DateTime<Utc>,
    /// Plain mean of the measured values.
    pub measured: Option<f64>,
    /// Mean of the O2-corrected values (flue gas with a reference O2 only).
    pub corrected: Option<f64>,
    /// Taken from the logger's hourly data rather than computed by us.
    pub supplied: bool,
    /// Minutes with a valid value (computed hours); `None` for supplied ones.
    pub valid_minutes: Option<u32>,
    /// Enough valid minutes for a valid hourly mean (HJ 75: 45).
    pub valid: bool,
}

/// Everything the chart shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartData {
    pub title: String,
    pub subtitle: String,
    /// Factor code (`a21026`) and its Chinese name (`二氧化硫`).
    pub factor: String,
    pub factor_name: String,
    pub unit: String,
    /// Axis labels are local to this zone.
    pub tz: Tz,
    /// The time axis: `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub points: Vec<ChartPoint>,
    pub hours: Vec<HourMean>,
    /// The permit limit (max) and, for ranges such as pH, its lower bound.
    pub limit: Option<f64>,
    pub limit_min: Option<f64>,
    /// Early-warning threshold (`warn_at × max`).
    pub warn: Option<f64>,
    /// The alert's span, shaded.
    pub alert_from: DateTime<Utc>,
    pub alert_to: DateTime<Utc>,
    /// Values resent for a time with a different value (the first stands).
    pub conflicts: Vec<ChartConflict>,
}

impl ChartData {
    /// Whether the hourly means carry corrected values (flue gas).
    fn has_corrected(&self) -> bool {
        self.hours.iter().any(|h| h.corrected.is_some())
    }

    fn value_extent(&self) -> (f64, f64) {
        let values = self
            .points
            .iter()
            .map(|p| p.value)
            .chain(
                self.hours
                    .iter()
                    .flat_map(|h| [h.measured, h.corrected])
                    .flatten(),
            )
            .chain(
                [self.limit, self.limit_min, self.warn]
                    .into_iter()
                    .flatten(),
            )
            .filter(|v| v.is_finite());
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if lo > hi {
            return (0.0, 1.0);
        }
        // Concentrations read best from zero; negative values (a faulty analyzer)
        // still fit.
        (lo.min(0.0), hi)
    }
}

/// Whether a flagged value is excluded (F M D C B) or judged but marked (T S).
fn mark_of(flag: Flag) -> Option<&'static str> {
    match flag {
        Flag::N => None,
        Flag::S | Flag::T => Some("flagged"),
        _ => Some("invalid"),
    }
}

/// The SVG text, deterministic for the same data.
pub fn render_svg(d: &ChartData) -> String {
    let (lo, hi) = d.value_extent();
    let ticks = nice_ticks(lo, hi, 6);
    let y = Axis::new(
        ticks.first().copied().unwrap_or(lo),
        ticks.last().copied().unwrap_or(hi),
        PLOT_BOTTOM,
        PLOT_TOP,
    );
    let span = (d.to - d.from).num_milliseconds().max(1) as f64;
    let x = Axis::new(0.0, span, PLOT_LEFT, PLOT_RIGHT);
    let xt = |t: DateTime<Utc>| x.at((t - d.from).num_milliseconds() as f64);

    let mut s = String::with_capacity(64 * 1024 + d.points.len() * 48);
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{FONT_FAMILY}" font-size="12">"##
    );
    let _ = write!(
        s,
        r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/><text class="title" x="{PLOT_LEFT}" y="22" font-size="16" font-weight="bold">{}</text><text class="subtitle" x="{PLOT_LEFT}" y="42" fill="#555555">{}</text>"##,
        esc(&d.title),
        esc(&d.subtitle)
    );

    // The alert's span, clipped to the axis.
    let (a0, a1) = (d.alert_from.max(d.from), d.alert_to.min(d.to));
    if a1 > a0 {
        let (x0, x1) = (xt(a0), xt(a1));
        let _ = write!(
            s,
            r##"<rect class="alert-span" x="{}" y="{PLOT_TOP}" width="{}" height="{}" fill="#fde2e2"/>"##,
            f1(x0),
            f1((x1 - x0).max(1.0)),
            f1(PLOT_BOTTOM - PLOT_TOP)
        );
    }

    value_axis(&mut s, d, &ticks, &y);
    time_axis(&mut s, d, &xt);
    series(&mut s, d, &xt, &y);
    conflicts(&mut s, d, &xt, &y);
    hour_means(&mut s, d, &xt, &y);
    limits(&mut s, d, &y);
    legend(&mut s, d);
    s.push_str("</svg>\n");
    s
}

fn value_axis(s: &mut String, d: &ChartData, ticks: &[f64], y: &Axis) {
    for &t in ticks {
        let yy = f1(y.at(t));
        let _ = write!(
            s,
            r##"<line class="grid" x1="{PLOT_LEFT}" y1="{yy}" x2="{PLOT_RIGHT}" y2="{yy}" stroke="#e5e5e5"/><text class="y-tick" x="{}" y="{}" text-anchor="end">{}</text>"##,
            PLOT_LEFT - 6.0,
            f1(y.at(t) + 4.0),
            fmt_num(t)
        );
    }
    let label = format!("{}({}) {}", d.factor_name, d.factor, d.unit);
    let _ = write!(
        s,
        r##"<text class="y-label" x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">{}</text>"##,
        f1((PLOT_TOP + PLOT_BOTTOM) / 2.0),
        f1((PLOT_TOP + PLOT_BOTTOM) / 2.0),
        esc(&label)
    );
    let _ = write!(
        s,
        r##"<rect x="{PLOT_LEFT}" y="{PLOT_TOP}" width="{}" height="{}" fill="none" stroke="#888888"/>"##,
        f1(PLOT_RIGHT - PLOT_LEFT),
        f1(PLOT_BOTTOM - PLOT_TOP)
    );
}

/// Hour ticks in local time; the step grows with the span so labels never
/// overlap, and a label shows the date where the day changes.
fn time_axis(s: &mut String, d: &ChartData, xt: &impl Fn(DateTime<Utc>) -> f64) {
    let hours = (d.to - d.from).num_hours().max(1);
    let step = [1, 2, 3, 6, 12, 24]
        .into_iter()
        .find(|st| hours / st <= 12)
        .unwrap_or(24);
    let mut t = hour_start(d.from, d.tz);
    if t < d.from {
        t += Duration::hours(1);
    }
    let mut last_day = None;
    while t <= d.to {
        let local = t.with_timezone(&d.tz);
        if i64::from(local.hour()) % step == 0 {
            let day = local.date_naive();
            let text = if last_day != Some(day) {
                local.format("%m-%d %H:%M").to_string()
            } else {
                local.format("%H:%M").to_string()
            };
            last_day = Some(day);
            let xx = f1(xt(t));
            let _ = write!(
                s,
                r##"<line class="x-grid" x1="{xx}" y1="{PLOT_TOP}" x2="{xx}" y2="{PLOT_BOTTOM}" stroke="#f0f0f0"/><text class="x-tick" x="{xx}" y="{}" text-anchor="middle" data-time="{}">{text}</text>"##,
                f1(PLOT_BOTTOM + 16.0),
                local.format("%Y-%m-%dT%H:%M:%S%:z"),
            );
        }
        t += Duration::hours(1);
    }
}

/// The values as a line through the valid ones (broken at gaps), with excluded
/// and flagged values marked on top.
fn series(s: &mut String, d: &ChartData, xt: &impl Fn(DateTime<Utc>) -> f64, y: &Axis) {
    let gap = Duration::minutes(15);
    let mut prev: Option<DateTime<Utc>> = None;
    let mut open = false;
    for p in d.points.iter().filter(|p| p.flag.valid_for_judging()) {
        let joined = prev.is_some_and(|t| p.ts - t <= gap);
        if !joined {
            if open {
                s.push_str(r##""/>"##);
            }
            s.push_str(
                r##"<polyline class="measured" fill="none" stroke="#3b6fb6" stroke-width="1" points=""##,
            );
            open = true;
        } else {
            s.push(' ');
        }
        let _ = write!(s, "{},{}", f1(xt(p.ts)), f1(y.at(p.value)));
        prev = Some(p.ts);
    }
    if open {
        s.push_str(r##""/>"##);
    }
    for p in &d.points {
        let Some(class) = mark_of(p.flag) else {
            continue;
        };
        let (px, py) = (xt(p.ts), y.at(p.value).clamp(PLOT_TOP, PLOT_BOTTOM));
        let _ = write!(
            s,
            r##"<g class="{class}" data-flag="{}" data-value="{}">"##,
            p.flag,
            fmt_num(p.value)
        );
        marker(s, class, px, py);
        s.push_str("</g>");
    }
}

/// Each conflicting resend as a hollow circle at the value sent later.
fn conflicts(s: &mut String, d: &ChartData, xt: &impl Fn(DateTime<Utc>) -> f64, y: &Axis) {
    for c in d.conflicts.iter().filter(|c| c.ts >= d.from && c.ts < d.to) {
        let _ = write!(
            s,
            r##"<circle class="conflict" data-first="{}" data-value="{}" cx="{}" cy="{}" r="4" fill="none" stroke="#8c564b" stroke-width="1.5"/>"##,
            fmt_num(c.first_value),
            fmt_num(c.value),
            f1(xt(c.ts)),
            f1(y.at(c.value).clamp(PLOT_TOP, PLOT_BOTTOM))
        );
    }
}

/// A cross for excluded values, a triangle for judged-but-flagged ones.
fn marker(s: &mut String, class: &str, x: f64, y: f64) {
    if class == "invalid" {
        let _ = write!(
            s,
            r##"<path d="M{} {}L{} {}M{} {}L{} {}" stroke="#d62728" stroke-width="1.5"/>"##,
            f1(x - 3.0),
            f1(y - 3.0),
            f1(x + 3.0),
            f1(y + 3.0),
            f1(x - 3.0),
            f1(y + 3.0),
            f1(x + 3.0),
            f1(y - 3.0)
        );
    } else {
        let _ = write!(
            s,
            r##"<path d="M{} {}L{} {}L{} {}Z" fill="#ff9900"/>"##,
            f1(x),
            f1(y - 4.0),
            f1(x - 3.5),
            f1(y + 3.0),
            f1(x + 3.5),
            f1(y + 3.0)
        );
    }
}

/// Each hour's mean as a bar across its hour; corrected means above the limit
/// carry their number, as in the notification.
fn hour_means(s: &mut String, d: &ChartData, xt: &impl Fn(DateTime<Utc>) -> f64, y: &Axis) {
    for h in &d.hours {
        let end = (h.start + Duration::hours(1)).min(d.to);
        let start = h.start.max(d.from);
        if end <= start {
            continue;
        }
        let (x0, x1) = (f1(xt(start)), f1(xt(end)));
        let opacity = if h.valid { "1" } else { "0.4" };
        let source = if h.supplied { "supplied" } else { "computed" };
        let minutes = h
            .valid_minutes
            .map(|m| format!(" data-valid-minutes=\"{m}\""))
            .unwrap_or_default();
        let lines = [
            ("hour-measured", h.measured, "#2ca02c"),
            ("hour-corrected", h.corrected, "#9467bd"),
        ];
        for (class, v, color) in lines {
            let Some(v) = v else { continue };
            let yy = f1(y.at(v));
            let _ = write!(
                s,
                r##"<line class="{class}" data-value="{}" data-source="{source}" data-valid="{}"{minutes} x1="{x0}" y1="{yy}" x2="{x1}" y2="{yy}" stroke="{color}" stroke-width="3" opacity="{opacity}"/>"##,
                fmt_num(v),
                h.valid,
            );
        }
        let judged = h.corrected.or(h.measured);
        if let Some(v) = judged.filter(|v| exceeds(d, *v)) {
            let _ = write!(
                s,
                r##"<text class="exceeding" data-value="{}" x="{}" y="{}" text-anchor="middle" fill="#d62728" font-weight="bold">{}</text>"##,
                fmt_num(v),
                f1((xt(start) + xt(end)) / 2.0),
                f1((y.at(v) - 6.0).max(PLOT_TOP + 12.0)),
                fmt_num(v)
            );
        }
    }
}

/// Strictly beyond the limit, as the rules judge it.
fn exceeds(d: &ChartData, v: f64) -> bool {
    d.limit.is_some_and(|m| v > m) || d.limit_min.is_some_and(|m| v < m)
}

fn limits(s: &mut String, d: &ChartData, y: &Axis) {
    let lines = [
        ("limit", "限值", d.limit, "#d62728", ""),
        ("limit-min", "下限", d.limit_min, "#d62728", ""),
        (
            "warn",
            "预警线",
            d.warn,
            "#ff7f0e",
            r##" stroke-dasharray="6 4""##,
        ),
    ];
    for (class, name, v, color, dash) in lines {
        let Some(v) = v else { continue };
        let yy = y.at(v);
        let _ = write!(
            s,
            r##"<line class="{class}" data-value="{}" x1="{PLOT_LEFT}" y1="{}" x2="{PLOT_RIGHT}" y2="{}" stroke="{color}" stroke-width="1.5"{dash}/><text class="{class}-label" x="{}" y="{}" fill="{color}">{name} {}</text>"##,
            fmt_num(v),
            f1(yy),
            f1(yy),
            PLOT_RIGHT + 4.0,
            f1(yy + 4.0),
            fmt_num(v)
        );
    }
}

fn legend(s: &mut String, d: &ChartData) {
    let mut items: Vec<(&str, String)> = vec![
        (
            r##"<line x1="0" y1="0" x2="18" y2="0" stroke="#3b6fb6"/>"##,
            "实测值".to_string(),
        ),
        (
            r##"<line x1="0" y1="0" x2="18" y2="0" stroke="#2ca02c" stroke-width="3"/>"##,
            "小时均值(实测)".to_string(),
        ),
    ];
    if d.has_corrected() {
        items.push((
            r##"<line x1="0" y1="0" x2="18" y2="0" stroke="#9467bd" stroke-width="3"/>"##,
            "小时均值(折算)".to_string(),
        ));
    }
    items.push((
        r##"<path d="M6 -3L12 3M6 3L12 -3" stroke="#d62728" stroke-width="1.5"/>"##,
        "无效(F/M/D/C/B)".to_string(),
    ));
    items.push((
        r##"<path d="M9 -4L5.5 3L12.5 3Z" fill="#ff9900"/>"##,
        "标记(T/S)".to_string(),
    ));
    if !d.conflicts.is_empty() {
        items.push((
            r##"<circle cx="9" cy="0" r="4" fill="none" stroke="#8c564b" stroke-width="1.5"/>"##,
            format!("重发改值({})", d.conflicts.len()),
        ));
    }
    items.push((
        r##"<rect x="0" y="-5" width="18" height="10" fill="#fde2e2"/>"##,
        "告警时段".to_string(),
    ));
    let (mut x, y) = (PLOT_LEFT, f64::from(HEIGHT) - 24.0);
    s.push_str(r##"<g class="legend">"##);
    for (sym, label) in items {
        let _ = write!(
            s,
            r##"<g transform="translate({} {})">{sym}<text x="24" y="4">{}</text></g>"##,
            f1(x),
            f1(y),
            esc(&label)
        );
        // CJK glyphs are about one em wide, ASCII about half.
        let w: f64 = label
            .chars()
            .map(|c| if c.is_ascii() { 7.0 } else { 12.0 })
            .sum();
        x += 24.0 + w + 20.0;
    }
    s.push_str("</g>");
}

/// Coordinates with one decimal: enough for a 960 px canvas, and stable text.
fn f1(v: f64) -> String {
    format!("{v:.1}")
}

fn esc(t: &str) -> String {
    let mut o = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => {}
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
#[path = "chart_tests.rs"]
mod tests;
