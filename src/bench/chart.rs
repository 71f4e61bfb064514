//! `pollwatch bench chart`: how long an alert's evidence chart takes to draw —
//! the hourly means, the SVG, and the PNG — for a window of N real-time values
//! (1,500 values at 30 s are 12.5 hours: an alert with its context).
//!
//! The data are synthetic but shaped like a flue-gas outlet: SO2 with O2 beside
//! it, a few flagged values, one hour well above the limit.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::percentile;
use crate::evidence::data::{hourly_means, HourRules};
use crate::evidence::{render_png, render_svg, ChartData, ChartPoint, EvidenceError, Fonts};
use crate::model::{DataKind, Flag, Protocol, Stat};
use crate::store::StoredReading;

#[derive(Debug, Clone)]
pub struct ChartReport {
    pub points: usize,
    pub runs: usize,
    pub svg_bytes: usize,
    pub png_bytes: usize,
    /// The CJK font used, if any (without one the PNG has less text to draw).
    pub font: Option<String>,
    pub hours_p50: Duration,
    pub svg_p50: Duration,
    pub svg_max: Duration,
    pub png_p50: Duration,
    pub png_max: Duration,
}

impl fmt::Display for ChartReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            f,
            "evidence chart, {} values, {} runs, font {}",
            self.points,
            self.runs,
            self.font.as_deref().unwrap_or("(no CJK font)")
        )?;
        writeln!(f, "  hourly means  p50 {:.2} ms", ms(self.hours_p50))?;
        writeln!(
            f,
            "  SVG           p50 {:.2} ms  max {:.2} ms  {} bytes",
            ms(self.svg_p50),
            ms(self.svg_max),
            self.svg_bytes
        )?;
        write!(
            f,
            "  PNG (2×)      p50 {:.2} ms  max {:.2} ms  {} bytes",
            ms(self.png_p50),
            ms(self.png_max),
            self.png_bytes
        )
    }
}

fn stored(factor: &str, ts: DateTime<Utc>, value: f64, flag: Flag) -> StoredReading {
    StoredReading {
        factor: factor.to_string(),
        unit: "mg/m³".to_string(),
        kind: DataKind::Rtd,
        stat: Stat::Rtd,
        converted: false,
        ts,
        value,
        flag,
        protocol: Protocol::Hj212,
        device: "BENCH".to_string(),
        received: ts,
        resend: false,
    }
}

/// SO2 and O2 every 30 s; an excursion in the middle hour.
fn synthetic(points: usize, start: DateTime<Utc>) -> (Vec<StoredReading>, Vec<StoredReading>) {
    let mut so2 = Vec::with_capacity(points);
    let mut o2 = Vec::with_capacity(points);
    let excursion = (points / 2).saturating_sub(60)..points / 2 + 60;
    for i in 0..points {
        let ts = start + chrono::Duration::seconds(30 * i as i64);
        let wave = (i as f64 / 40.0).sin() * 4.0;
        let base = if excursion.contains(&i) { 38.0 } else { 22.0 };
        let flag = match i % 97 {
            0 => Flag::F,
            13 => Flag::M,
            41 => Flag::T,
            _ => Flag::N,
        };
        so2.push(stored("a21026", ts, base + wave, flag));
        o2.push(stored("a19001", ts, 8.0 + wave / 4.0, Flag::N));
    }
    (so2, o2)
}

/// Draws the chart `runs` times; writes the last SVG and PNG next to `out`
/// (`out` and `out` with `.png`) when given, to look at.
pub fn chart(points: usize, runs: usize, out: Option<&Path>) -> Result<ChartReport, EvidenceError> {
    let tz: Tz = chrono_tz::Asia::Shanghai;
    let start = Utc
        .with_ymd_and_hms(2026, 11, 27, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let (so2, o2) = synthetic(points.max(2), start);
    let to = so2.last().map_or(start, |r| r.ts) + chrono::Duration::seconds(30);
    let rules = HourRules {
        o2_reference: Some(6.0),
        min_valid_minutes: 45,
        pair_max_age: chrono::Duration::minutes(5),
        tz,
    };
    let fonts = Fonts::shared();
    let runs = runs.max(1);
    let (mut t_hours, mut t_svg, mut t_png) = (Vec::new(), Vec::new(), Vec::new());
    let (mut svg, mut png) = (String::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let hours = hourly_means(&so2, &o2, rules);
        t_hours.push(t.elapsed());
        let mid = start + (to - start) / 2;
        let data = ChartData {
            title: "告警 #1 基准企业 1#锅炉烟囱 a21026".to_string(),
            subtitle: "exceedance · bench".to_string(),
            factor: "a21026".to_string(),
            factor_name: "二氧化硫".to_string(),
            unit: "mg/m³".to_string(),
            tz,
            from: start,
            to,
            points: so2
                .iter()
                .map(|r| ChartPoint {
                    ts: r.ts,
                    value: r.value,
                    flag: r.flag,
                })
                .collect(),
            hours,
            limit: Some(35.0),
            limit_min: None,
            warn: Some(28.0),
            alert_from: mid - chrono::Duration::minutes(30),
            alert_to: mid + chrono::Duration::minutes(30),
            conflicts: Vec::new(),
        };
        let t = Instant::now();
        svg = render_svg(&data);
        t_svg.push(t.elapsed());
        let t = Instant::now();
        png = render_png(&svg, &fonts, crate::evidence::PNG_SCALE)?;
        t_png.push(t.elapsed());
    }
    if let Some(path) = out {
        let write = |p: &Path, b: &[u8]| {
            std::fs::write(p, b).map_err(|source| EvidenceError::Write {
                path: p.to_path_buf(),
                source,
            })
        };
        write(path, svg.as_bytes())?;
        write(&path.with_extension("png"), &png)?;
    }
    for v in [&mut t_hours, &mut t_svg, &mut t_png] {
        v.sort();
    }
    Ok(ChartReport {
        points: so2.len(),
        runs,
        svg_bytes: svg.len(),
        png_bytes: png.len(),
        font: fonts.cjk.clone(),
        hours_p50: percentile(&t_hours, 0.5),
        svg_p50: percentile(&t_svg, 0.5),
        svg_max: percentile(&t_svg, 1.0),
        png_p50: percentile(&t_png, 0.5),
        png_max: percentile(&t_png, 1.0),
    })
}
