//! Enterprises (`/enterprises`, `/enterprises/{id}`): what an officer checks
//! before phoning a plant — are its monitors online, what do they read this
//! hour against the permit, are production and treatment running together, and
//! which production orders are in force.
//!
//! Orders come from the enterprise's file and from the runtime orders API
//! (`/api/v1/orders`), merged in [`orders`]. Loggers' own reports (HJ 212-2025
//! hardware ids, key requests, standard-sample checks) are listed last: a key
//! request is for the sysadmin to act on, since keys are never issued automatically.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::hour::{running_hour, FactorHour};
use super::html::{self, num, opt_time, time, Esc};
use super::labels::Names;
use super::Officer;
use crate::api::enterprises::{LiveStatus, Status};
use crate::api::ApiState;
use crate::config::{Enterprise, Order, OrderKind, OutletKind};
use crate::model::LocationKind;
use crate::rules::plan::POWER;
use crate::rules::window::hour_start;
use crate::store::StoredOrder;
use crate::store::{ReadingQuery, StatusEvent, Store, StoreError};

/// Device events shown on the page, with their labels.
const EVENTS: [(&str, &str); 3] = [
    ("key_request", "密钥申请（1014）"),
    ("hardware_ids", "硬件标识（1001）"),
    ("qc_check", "标样核查（2062）"),
];

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/enterprises", get(list))
        .route("/enterprises/{id}", get(show))
}

fn online_text(s: Option<bool>) -> &'static str {
    match s {
        Some(true) => r#"<span class="online">在线</span>"#,
        Some(false) => r#"<span class="offline">离线</span>"#,
        None => r#"<span class="unknown">未知</span>"#,
    }
}

async fn list(Officer(who): Officer, State(s): State<ApiState>) -> Response {
    let cfg = s.config.borrow().clone();
    let alerts = match (s.open_alerts)(s.store.clone()).await {
        Ok(a) => a,
        Err(e) => {
            return html::store_down(&who, "enterprise list", &e);
        }
    };
    let live = LiveStatus::new(&s, s.clock.now());
    let mut body = String::from(
        r#"<h1>企业</h1><table class="enterprises"><thead><tr><th>企业</th><th>区县</th><th>行业</th><th>排口在线</th><th>电表</th><th>未解除告警</th></tr></thead><tbody>"#,
    );
    for e in &cfg.enterprises {
        let online = e
            .outlets
            .iter()
            .filter(|o| live.outlet(e, o).1 == Some(true))
            .count();
        let open: u64 = alerts
            .iter()
            .filter(|((ent, _), _)| *ent == e.id)
            .map(|(_, n)| *n)
            .sum();
        let _ = write!(
            body,
            r#"<tr><td><a href="/enterprises/{id}">{name}</a></td><td>{district}</td><td>{industry}</td><td>{online} / {outlets}</td><td>{meters}</td><td class="num">{open}</td></tr>"#,
            id = Esc(&e.id),
            name = Esc(&e.name),
            district = Esc(&e.district),
            industry = Esc(&e.industry),
            outlets = e.outlets.len(),
            meters = e.meters.len(),
        );
    }
    body.push_str("</tbody></table>");
    html::page_with_banner(
        "企业",
        Some(&who),
        &html::channel_banner(&s.console.channels.down()),
        &body,
    )
}

/// The production orders to show for `e`: those of its file and those issued at
/// runtime (`/api/v1/orders`; a cancelled one ends at its cancellation), not yet
/// over at `now`, each with where it came from.
fn orders(e: &Enterprise, runtime: &[StoredOrder], now: DateTime<Utc>) -> Vec<(Order, String)> {
    let file = e.orders.iter().map(|o| (o.clone(), "企业配置".to_string()));
    let api = runtime.iter().filter(|r| r.enterprise == e.id).map(|r| {
        let who = match &r.on_behalf_of {
            Some(o) => format!("{} 下达（代 {o}）", r.issued_by),
            None => format!("{} 下达", r.issued_by),
        };
        (r.effective_order(), who)
    });
    file.chain(api)
        .filter(|(o, _)| o.end.with_timezone(&Utc) > now)
        .collect()
}

/// The newest active power of a meter within the last hour.
async fn last_power(
    store: &Store,
    e: &str,
    meter: &str,
    now: DateTime<Utc>,
) -> Result<Option<(DateTime<Utc>, f64)>, StoreError> {
    let mut q = ReadingQuery::new(e, LocationKind::Meter, meter).factor(POWER);
    q.from = Some(now - chrono::Duration::hours(1));
    let rows = store.readings(&q).await?;
    Ok(rows.iter().max_by_key(|r| r.ts).map(|r| (r.ts, r.value)))
}

struct Loaded {
    hours: Vec<Vec<FactorHour>>,
    power: Vec<Option<(DateTime<Utc>, f64)>>,
    orders: Vec<StoredOrder>,
    events: Vec<StatusEvent>,
}

async fn load(
    s: &ApiState,
    e: &Enterprise,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<Loaded, StoreError> {
    let start = hour_start(now, tz);
    let mut hours = Vec::new();
    for o in &e.outlets {
        let mut q = ReadingQuery::new(&e.id, LocationKind::Outlet, &o.id);
        q.from = Some(start);
        let rows = s.store.readings(&q).await?;
        hours.push(running_hour(o, &rows, start, now));
    }
    let mut power = Vec::new();
    for m in &e.meters {
        power.push(last_power(&s.store, &e.id, &m.id, now).await?);
    }
    let orders = s.store.orders(Some(now)).await?;
    let kinds: Vec<&str> = EVENTS.iter().map(|(k, _)| *k).collect();
    let events = s.store.device_events(&e.id, &kinds, 20).await?;
    Ok(Loaded {
        hours,
        power,
        orders,
        events,
    })
}

async fn show(
    Officer(who): Officer,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Response {
    let cfg = s.config.borrow().clone();
    let Some(e) = cfg.enterprises.iter().find(|e| e.id == id) else {
        return html::problem(
            StatusCode::NOT_FOUND,
            Some(&who),
            &format!("没有企业 {id}。"),
        );
    };
    let now = s.clock.now();
    let tz = cfg.timezone;
    let data = match load(&s, e, now, tz).await {
        Ok(d) => d,
        Err(err) => {
            return html::store_down(&who, "enterprise page", &err);
        }
    };
    let live = LiveStatus::new(&s, now);
    let mut body = format!(
        r#"<p><a href="/enterprises">← 企业列表</a></p><h1>{name}</h1><p class="meta">{district} · {industry}{positive} · <a href="/?enterprise={id_q}">查看告警</a></p>"#,
        name = Esc(&e.name),
        district = Esc(&e.district),
        industry = Esc(&e.industry),
        positive = if e.positive_list {
            " · 正面清单"
        } else {
            ""
        },
        id_q = Esc(&id),
    );
    body.push_str(&outlets(e, &live, &data.hours, tz, now));
    body.push_str(&super::trend::section(&s.store, &cfg, e, now).await);
    body.push_str(&meters(e, &live, &data.power, tz));
    body.push_str(&linkages(e, &data.power));
    body.push_str(&orders_html(e, &data.orders, now, tz));
    body.push_str(&events_html(&data.events, tz));
    body.push_str(&super::enterprise_completeness::section(&cfg, &s.store, &e.id, now).await);
    html::page_with_banner(
        &e.name,
        Some(&who),
        &html::channel_banner(&s.console.channels.down()),
        &body,
    )
}

fn events_html(events: &[StatusEvent], tz: Tz) -> String {
    if events.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        r#"<h2>设备上报</h2><table class="events"><thead><tr><th>时间</th><th>数采仪 MN</th><th>事件</th><th>内容</th></tr></thead><tbody>"#,
    );
    for ev in events {
        let label = EVENTS
            .iter()
            .find(|(k, _)| *k == ev.status)
            .map_or(ev.status.as_str(), |(_, l)| *l);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            time(ev.at, tz),
            Esc(&ev.device),
            Esc(label),
            Esc(&ev.detail)
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn status_cells(st: Status, tz: Tz) -> String {
    format!(
        "<td>{}</td><td>{}</td>",
        online_text(st.1),
        opt_time(st.0, tz)
    )
}

fn outlets(
    e: &Enterprise,
    live: &LiveStatus,
    hours: &[Vec<FactorHour>],
    tz: Tz,
    now: DateTime<Utc>,
) -> String {
    let mut s = format!(
        r#"<h2>排放口</h2><p class="hint">本小时（{} 起）滑动均值，按与规则引擎相同的方法计算；烟气为折算值，括号内为实测值。</p>"#,
        time(hour_start(now, tz), tz)
    );
    for (o, hour) in e.outlets.iter().zip(hours) {
        let kind = match o.kind {
            OutletKind::FlueGas => "废气",
            OutletKind::Wastewater => "废水",
        };
        let _ = write!(
            s,
            r#"<section class="outlet"><h3>{name} <small>{id} · {kind}{mn}</small></h3><table><thead><tr><th>状态</th><th>最后数据</th></tr></thead><tbody><tr>{status}</tr></tbody></table>"#,
            name = Esc(&o.name),
            id = Esc(&o.id),
            mn = o
                .hj212
                .as_ref()
                .map(|h| format!(" · MN {}", Esc(&h.mn)))
                .unwrap_or_default(),
            status = status_cells(live.outlet(e, o), tz),
        );
        if hour.is_empty() {
            s.push_str(r#"<p class="empty">没有小时均值限值。</p></section>"#);
            continue;
        }
        s.push_str(r#"<table class="hour"><thead><tr><th>因子</th><th>本小时均值</th><th>有效分钟</th><th>预警线</th><th>限值</th><th>占限值</th><th>无法折算</th></tr></thead><tbody>"#);
        for h in hour {
            let mean = match (o.kind, h.stats.mean) {
                (OutletKind::FlueGas, Some(_)) => {
                    format!("{} ({})", num(h.stats.mean), num(h.stats.measured_mean))
                }
                _ => num(h.stats.mean),
            };
            let ratio = match (h.stats.mean, h.limit) {
                (Some(m), Some(l)) if l > 0.0 => format!("{:.0}%", m / l * 100.0),
                _ => "—".into(),
            };
            let class = match (h.stats.mean, h.limit, h.warn) {
                (Some(m), Some(l), _) if m > l => "over",
                (Some(m), _, Some(w)) if m >= w => "warn",
                _ => "",
            };
            let _ = write!(
                s,
                r#"<tr class="{class}"><td>{f}</td><td class="num">{mean}</td><td class="num">{n}</td><td class="num">{w}</td><td class="num">{l}</td><td class="num">{ratio}</td><td class="num">{nj}</td></tr>"#,
                f = Esc(&Names::factor(&h.factor)),
                n = h.stats.valid_minutes,
                w = num(h.warn),
                l = num(h.limit),
                nj = h.not_judgeable,
            );
        }
        s.push_str("</tbody></table></section>");
    }
    s
}

fn meters(
    e: &Enterprise,
    live: &LiveStatus,
    power: &[Option<(DateTime<Utc>, f64)>],
    tz: Tz,
) -> String {
    if e.meters.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        r#"<h2>电表</h2><table class="meters"><thead><tr><th>电表</th><th>用途</th><th>状态</th><th>最后数据</th><th>有功功率 (kW)</th><th>功率时间</th></tr></thead><tbody>"#,
    );
    for (m, p) in e.meters.iter().zip(power) {
        let role = match m.role {
            crate::config::MeterRole::Production => "生产",
            crate::config::MeterRole::Treatment => "治污",
            crate::config::MeterRole::Total => "总表",
        };
        let _ = write!(
            s,
            r#"<tr><td>{name} <small>{id}</small></td><td>{role}</td>{status}<td class="num">{kw}</td><td>{at}</td></tr>"#,
            name = Esc(&m.name),
            id = Esc(&m.id),
            status = status_cells(live.meter(e, m), tz),
            kw = num(p.map(|p| p.1)),
            at = opt_time(p.map(|p| p.0), tz),
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn linkages(e: &Enterprise, power: &[Option<(DateTime<Utc>, f64)>]) -> String {
    if e.linkages.is_empty() {
        return String::new();
    }
    let kw = |ids: &[String]| -> Option<f64> {
        let vals: Vec<f64> = ids
            .iter()
            .filter_map(|id| e.meters.iter().position(|m| &m.id == id))
            .filter_map(|i| power.get(i).copied().flatten().map(|p| p.1))
            .collect();
        (!vals.is_empty()).then(|| vals.iter().sum())
    };
    let mut s = String::from(
        r#"<h2>生产与治污联动</h2><table class="linkages"><thead><tr><th>联动</th><th>生产功率 (kW)</th><th>开机阈值</th><th>治污功率 (kW)</th><th>正常治污功率</th><th>判断</th></tr></thead><tbody>"#,
    );
    for l in &e.linkages {
        let prod = kw(&l.production);
        let treat = kw(&l.treatment);
        let verdict = match (prod, treat) {
            (Some(p), _) if p <= l.production_on_kw => "生产未运行",
            (Some(_), Some(t))
                if t < l.treatment_normal_kw
                    * l.off_below
                        .unwrap_or(crate::config::Linkage::DEFAULT_OFF_BELOW) =>
            {
                "治污设施未运行"
            }
            (Some(_), Some(t))
                if t < l.treatment_normal_kw
                    * l.underpowered_below
                        .unwrap_or(crate::config::Linkage::DEFAULT_UNDERPOWERED_BELOW) =>
            {
                "治污功率不足"
            }
            (Some(_), Some(_)) => "正常",
            _ => "数据不足",
        };
        let _ = write!(
            s,
            r#"<tr><td>{id}</td><td class="num">{p}</td><td class="num">{pon}</td><td class="num">{t}</td><td class="num">{tn}</td><td>{verdict}</td></tr>"#,
            id = Esc(&l.id),
            p = num(prod),
            pon = num(Some(l.production_on_kw)),
            t = num(treat),
            tn = num(Some(l.treatment_normal_kw)),
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn orders_html(e: &Enterprise, runtime: &[StoredOrder], now: DateTime<Utc>, tz: Tz) -> String {
    let list = orders(e, runtime, now);
    let mut s = String::from("<h2>停限产令</h2>");
    if list.is_empty() {
        s.push_str(r#"<p class="empty">没有生效或待生效的停限产令。</p>"#);
        return s;
    }
    s.push_str(r#"<table class="orders"><thead><tr><th>编号</th><th>类型</th><th>开始</th><th>结束</th><th>允许功率比例</th><th>电表</th><th>来源</th><th>状态</th></tr></thead><tbody>"#);
    for (o, source) in &list {
        let start = o.start.with_timezone(&Utc);
        let (kind, default_share) = match o.kind {
            OrderKind::Stop => ("停产", Some(Order::DEFAULT_STOP_SHARE)),
            OrderKind::Limit => ("限产", None),
        };
        let _ = write!(
            s,
            r#"<tr><td>{id}</td><td>{kind}</td><td>{start}</td><td>{end}</td><td class="num">{share}</td><td>{meters}</td><td>{source}</td><td>{state}</td></tr>"#,
            source = Esc(source),
            id = Esc(&o.id),
            start = time(start, tz),
            end = time(o.end.with_timezone(&Utc), tz),
            share = o
                .allowed_share
                .or(default_share)
                .map(|x| format!("{:.0}%", x * 100.0))
                .unwrap_or_else(|| "—".into()),
            meters = Esc(&o.meters.join(", ")),
            state = if start <= now {
                "生效中"
            } else {
                "待生效"
            },
        );
    }
    s.push_str("</tbody></table>");
    s
}
