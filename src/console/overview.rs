//! `/overview`: the city at a glance, the console's landing page for viewers
//! (leaders, the bureau's other departments) — what is open now by district and
//! severity, which outlets are online, how complete yesterday's data was, and
//! which production orders are in force.
//!
//! Like the board ([`super::board`]), the page's content is one fragment
//! ([`fragment`]) served twice: inside the page, and alone at
//! `/console/overview` for the script to swap in when the event stream says
//! the alerts changed (and once a minute, since outlets go offline without any
//! alert changing). One rendering path, so the live page and a reload agree.
//!
//! Sources: open alerts from the store (every alert not resolved now); online
//! status from the daemon's live view of its loggers and polled devices (the
//! same verdict as the enterprise pages, [`crate::api::enterprises::LiveStatus`]);
//! yesterday's effective transmission rate from the completeness figures
//! ([`crate::completeness`]: persisted when the day closed, counted otherwise);
//! orders from the enterprise files and the orders API.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Duration, Utc};

use super::html::{self, time, Esc};
use super::labels::{Names, SEVERITIES};
use super::{events, Officer};
use crate::api::enterprises::LiveStatus;
use crate::api::ApiState;
use crate::completeness::{rates::local_day, transmission_report, Counts};
use crate::config::Config;
use crate::report::MIN_EFFECTIVE_RATE;
use crate::store::{ReportAlert, StoreError, StoredOrder};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/overview", get(page))
        .route("/console/overview", get(live))
}

/// Outlets listed by name under the rate table when below the threshold.
const WORST_SHOWN: usize = 10;

/// Everything the page shows, computed once per render.
#[derive(Debug, Default)]
pub struct Overview {
    /// district → severity → (open now, of which opened today).
    pub alerts: BTreeMap<String, BTreeMap<String, (u32, u32)>>,
    pub unacknowledged: u32,
    /// district → (online, offline, unknown).
    pub outlets: BTreeMap<String, (u32, u32, u32)>,
    pub yesterday: String,
    pub rate: Counts,
    /// (enterprise name, outlet, effective rate) below the threshold, lowest first.
    pub low: Vec<(String, String, f64)>,
    pub outlets_rated: u32,
    /// (enterprise name, order id, kind, end, open order-violation alerts).
    pub orders: Vec<(String, String, &'static str, DateTime<Utc>, u32)>,
}

async fn load(s: &ApiState, cfg: &Config, now: DateTime<Utc>) -> Result<Overview, LoadError> {
    let tz = cfg.timezone;
    let today = local_day(now, tz);
    let today_start = crate::completeness::rates::day_start(today, tz)?;
    let yesterday = today.pred_opt().unwrap_or(today);
    // Every alert not resolved at `now` (opened before it, not resolved by it).
    let open = s
        .store
        .report_alerts(now, now + Duration::milliseconds(1))
        .await?;
    let open: Vec<&ReportAlert> = open.iter().filter(|a| a.resolved_at.is_none()).collect();
    let names = Names { cfg };
    let district = |e: &str| {
        cfg.enterprise(e)
            .map(|x| x.district.clone())
            .unwrap_or_else(|| "（未配置）".into())
    };
    let mut o = Overview {
        yesterday: yesterday.to_string(),
        ..Overview::default()
    };
    for a in &open {
        let cell = o
            .alerts
            .entry(district(&a.enterprise))
            .or_default()
            .entry(a.severity.clone())
            .or_default();
        cell.0 += 1;
        cell.1 += u32::from(a.opened_at >= today_start);
        o.unacknowledged += u32::from(a.acked_at.is_none());
    }
    let live = LiveStatus::new(s, now);
    for e in &cfg.enterprises {
        for out in &e.outlets {
            let d = o.outlets.entry(e.district.clone()).or_default();
            match live.outlet(e, out).1 {
                Some(true) => d.0 += 1,
                Some(false) => d.1 += 1,
                None => d.2 += 1,
            }
        }
    }
    let rates = transmission_report(cfg, &s.store, yesterday, today, None, now).await?;
    let mut per_outlet: BTreeMap<(&str, &str), Counts> = BTreeMap::new();
    for r in &rates.rows {
        o.rate.add(r.counts);
        per_outlet
            .entry((r.enterprise.as_str(), r.outlet.as_str()))
            .or_default()
            .add(r.counts);
    }
    for ((e, out), c) in per_outlet {
        let Some(rate) = c.effective_rate() else {
            continue;
        };
        o.outlets_rated += 1;
        if rate < MIN_EFFECTIVE_RATE {
            o.low
                .push((names.enterprise(e).to_string(), out.to_string(), rate));
        }
    }
    o.low.sort_by(|a, b| a.2.total_cmp(&b.2));
    let runtime = s.store.orders(Some(now)).await?;
    o.orders = orders_in_force(cfg, &runtime, &open, now);
    Ok(o)
}

/// Orders whose window contains `now`, from the files and the API, each with its
/// enterprise's open `order_violation` alerts.
fn orders_in_force(
    cfg: &Config,
    runtime: &[StoredOrder],
    open: &[&ReportAlert],
    now: DateTime<Utc>,
) -> Vec<(String, String, &'static str, DateTime<Utc>, u32)> {
    let file = cfg.enterprises.iter().flat_map(|e| {
        e.orders.iter().map(|o| {
            (
                e.id.as_str(),
                o.id.clone(),
                o.kind.as_str(),
                o.start.with_timezone(&Utc),
                o.end.with_timezone(&Utc),
            )
        })
    });
    let api = runtime.iter().map(|r| {
        (
            r.enterprise.as_str(),
            r.order.id.clone(),
            r.order.kind.as_str(),
            r.order.start.with_timezone(&Utc),
            r.effective_end(),
        )
    });
    let names = Names { cfg };
    let mut out: Vec<_> = file
        .chain(api)
        .filter(|(_, _, _, start, end)| *start <= now && now < *end)
        .map(|(e, id, kind, _, end)| {
            let violations = open
                .iter()
                .filter(|a| a.enterprise == e && a.rule == "order_violation")
                .count() as u32;
            let kind = match kind {
                "stop" => "停产",
                _ => "限产",
            };
            (names.enterprise(e).to_string(), id, kind, end, violations)
        })
        .collect();
    out.sort_by(|a, b| (a.3, &a.0).cmp(&(b.3, &b.0)));
    out
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rates(#[from] crate::completeness::ReportError),
    #[error(transparent)]
    Time(#[from] crate::timefmt::TimeError),
}

fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.1}%", v * 100.0))
}

/// The page's content.
pub fn fragment(o: &Overview, tz: chrono_tz::Tz) -> String {
    let mut s = String::from(r#"<section class="ov-alerts"><h2>未解除告警</h2>"#);
    let total: u32 = o
        .alerts
        .values()
        .flat_map(|m| m.values())
        .map(|c| c.0)
        .sum();
    let today: u32 = o
        .alerts
        .values()
        .flat_map(|m| m.values())
        .map(|c| c.1)
        .sum();
    let _ = write!(
        s,
        r#"<p class="counts"><span class="count open" data-ov="open">未解除 {total}</span><span class="count" data-ov="today">今日新增 {today}</span><span class="count" data-ov="unacked">未确认 {}</span></p>"#,
        o.unacknowledged
    );
    if o.alerts.is_empty() {
        s.push_str(r#"<p class="empty">没有未解除的告警。</p>"#);
    } else {
        s.push_str(r#"<table class="overview" id="ov-alerts"><thead><tr><th>区县</th>"#);
        for sev in SEVERITIES {
            let _ = write!(s, "<th>{}</th>", sev.label_zh());
        }
        s.push_str("<th>合计</th></tr></thead><tbody>");
        for (district, by) in &o.alerts {
            let _ = write!(
                s,
                r#"<tr data-district="{}"><td>{}</td>"#,
                Esc(district),
                Esc(district)
            );
            for sev in SEVERITIES {
                let (n, t) = by.get(sev.as_str()).copied().unwrap_or_default();
                let _ = write!(
                    s,
                    r#"<td class="num sev-{}" title="今日新增 {t}">{n}</td>"#,
                    sev.as_str()
                );
            }
            let n: u32 = by.values().map(|c| c.0).sum();
            let _ = write!(s, r#"<td class="num">{n}</td></tr>"#);
        }
        s.push_str("</tbody></table>");
    }
    s.push_str(r#"</section><section class="ov-online"><h2>排口在线</h2><table class="overview" id="ov-online"><thead><tr><th>区县</th><th>在线</th><th>离线</th><th>无实时来源</th></tr></thead><tbody>"#);
    for (district, (on, off, unknown)) in &o.outlets {
        let _ = write!(
            s,
            r#"<tr><td>{}</td><td class="num">{on}</td><td class="num{}">{off}</td><td class="num">{unknown}</td></tr>"#,
            Esc(district),
            if *off > 0 { " down" } else { "" }
        );
    }
    let _ = write!(
        s,
        r#"</tbody></table></section><section class="ov-rate"><h2>昨日（{}）有效传输率</h2><p class="big" data-ov="rate">{}</p><p class="note">{} 个排口计入；应传 {} 小时，有效 {} 小时；低于 90% 的排口 {} 个。</p>"#,
        Esc(&o.yesterday),
        pct(o.rate.effective_rate()),
        o.outlets_rated,
        o.rate.expected,
        o.rate.valid,
        o.low.len()
    );
    if !o.low.is_empty() {
        s.push_str(r#"<table class="overview" id="ov-low"><thead><tr><th>企业</th><th>排口</th><th>有效传输率</th></tr></thead><tbody>"#);
        for (e, out, rate) in o.low.iter().take(WORST_SHOWN) {
            let _ = write!(
                s,
                r#"<tr class="low"><td>{}</td><td>{}</td><td class="num">{}</td></tr>"#,
                Esc(e),
                Esc(out),
                pct(Some(*rate))
            );
        }
        s.push_str("</tbody></table>");
    }
    let _ = write!(
        s,
        r#"</section><section class="ov-orders"><h2>执行中的停限产令（{}）</h2>"#,
        o.orders.len()
    );
    if o.orders.is_empty() {
        s.push_str(r#"<p class="empty">当前没有停限产令。</p>"#);
    } else {
        s.push_str(r#"<table class="overview" id="ov-orders"><thead><tr><th>企业</th><th>令</th><th>类型</th><th>截止</th><th>未解除违令告警</th></tr></thead><tbody>"#);
        for (e, id, kind, end, violations) in &o.orders {
            let _ = write!(
                s,
                r#"<tr{}><td>{}</td><td>{}</td><td>{kind}</td><td>{}</td><td class="num">{violations}</td></tr>"#,
                if *violations > 0 {
                    r#" class="low""#
                } else {
                    ""
                },
                Esc(e),
                Esc(id),
                time(*end, tz)
            );
        }
        s.push_str("</tbody></table>");
    }
    s.push_str("</section>");
    s
}

async fn render(s: &ApiState) -> Result<String, LoadError> {
    let cfg = s.config.borrow().clone();
    let o = load(s, &cfg, s.clock.now()).await?;
    Ok(fragment(&o, cfg.timezone))
}

async fn page(Officer(who): Officer, State(s): State<ApiState>) -> Response {
    let mark = match s.store.board_mark().await {
        Ok(m) => m,
        Err(e) => return html::store_down(&who, "overview", &e),
    };
    let content = match render(&s).await {
        Ok(c) => c,
        Err(e) => return html::store_down(&who, "overview", &e),
    };
    let body = format!(
        r#"<h1>概况</h1><p class="live" id="live" aria-live="polite">实时更新：连接中…</p><div id="overview" data-src="/console/overview" data-mark="{mark}" data-every="60">{content}</div>"#,
        mark = Esc(&events::mark_text(&mark)),
    );
    html::page_with_banner(
        "概况",
        Some(&who),
        &html::channel_banner(&s.console.channels.down()),
        &body,
    )
}

async fn live(Officer(who): Officer, State(s): State<ApiState>) -> Response {
    match render(&s).await {
        Ok(c) => html::fragment(c),
        Err(e) => html::store_down(&who, "overview", &e),
    }
}
