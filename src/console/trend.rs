//! The enterprise page's "近24小时趋势": for each outlet and each factor it has a
//! limit for, the last 24 hours of hourly means against the limit line
//! ([`crate::evidence::trend`]), inline as SVG so the page is complete in one
//! request and the chart scales to a phone's width.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::html::Esc;
use crate::config::{Config, Enterprise};
use crate::evidence::{render_svg, trend::outlet_trend, EvidenceError};
use crate::store::Store;

/// The section, or a line saying why a chart is missing (never a broken page).
pub async fn section(store: &Store, cfg: &Config, e: &Enterprise, now: DateTime<Utc>) -> String {
    let mut s = String::new();
    for o in &e.outlets {
        let factors: BTreeSet<&str> = o.limits.iter().map(|l| l.factor.as_str()).collect();
        for f in factors {
            match outlet_trend(store, cfg, &e.id, &o.id, f, now).await {
                Ok(Some(chart)) => {
                    let _ = write!(
                        s,
                        r#"<figure class="trend" data-outlet="{}" data-factor="{}">{}</figure>"#,
                        Esc(&o.id),
                        Esc(f),
                        render_svg(&chart)
                    );
                }
                Ok(None) => {}
                Err(err) => s.push_str(&failed(&o.id, f, &err)),
            }
        }
    }
    if s.is_empty() {
        return s;
    }
    format!(r#"<h2>近24小时趋势</h2><div class="trends">{s}</div>"#)
}

fn failed(outlet: &str, factor: &str, err: &EvidenceError) -> String {
    tracing::warn!(outlet, factor, error = %err, "trend chart failed");
    format!(
        r#"<p class="problem">{} {} 的趋势图暂时无法生成：{}</p>"#,
        Esc(outlet),
        Esc(factor),
        Esc(&err.to_string())
    )
}
