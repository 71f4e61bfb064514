//! The alert board (`/`): open, acknowledged and recently resolved alerts, most
//! severe then newest first, filtered by district, severity, rule and
//! enterprise, [`PAGE_SIZE`] at a time with the counts of all that match.
//!
//! The table is one fragment ([`table`]) served twice: inside the page, and
//! alone at `/console/board` for the script to swap in when the event stream
//! says the board changed — one rendering path, so the live board and a reload
//! cannot differ.

use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::html::{self, opt_time, time, Esc};
use super::labels::{
    alert_rule_zh, rule_zh, severity_zh, state_zh, value_vs_limit, Names, SEVERITIES,
};
use super::{events, Officer};
use crate::api::ApiState;
use crate::config::{Config, HttpRole};
use crate::store::{AlertState, BoardPage, BoardQuery};

/// Rows per page: enough for a shift's view, small enough to render at once.
pub const PAGE_SIZE: u32 = 100;
/// Resolved alerts stay on the board this long, so the next shift sees them.
pub const RECENT_HOURS: i64 = 24;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(page))
        .route("/console/board", get(fragment))
}

/// The board's filters as the page's form sends them (empty means "all").
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BoardParams {
    #[serde(default)]
    pub district: String,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub rule: String,
    #[serde(default)]
    pub enterprise: String,
    #[serde(default)]
    pub page: u32,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl BoardParams {
    pub fn query(&self, cfg: &Config, now: DateTime<Utc>) -> BoardQuery {
        BoardQuery {
            enterprises: some(&self.district).map(|d| {
                cfg.enterprises
                    .iter()
                    .filter(|e| e.district == d)
                    .map(|e| e.id.clone())
                    .collect()
            }),
            enterprise: some(&self.enterprise),
            severity: some(&self.severity),
            rule: some(&self.rule),
            resolved_since: now - chrono::Duration::hours(RECENT_HOURS),
            offset: self.page.saturating_mul(PAGE_SIZE),
            limit: PAGE_SIZE,
        }
    }

    /// The filters as a query string (page left out unless `page` is given).
    fn encode(&self, page: Option<u32>) -> String {
        let mut out = Vec::new();
        for (k, v) in [
            ("district", &self.district),
            ("severity", &self.severity),
            ("rule", &self.rule),
            ("enterprise", &self.enterprise),
        ] {
            if !v.trim().is_empty() {
                out.push(format!("{k}={}", url_encode(v.trim())));
            }
        }
        if let Some(p) = page {
            out.push(format!("page={p}"));
        }
        out.join("&")
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

async fn page(
    Officer(who): Officer,
    State(s): State<ApiState>,
    Query(p): Query<BoardParams>,
) -> Response {
    let cfg = s.config.borrow().clone();
    let q = p.query(&cfg, s.clock.now());
    let loaded = async {
        let page = s.store.board(&q).await?;
        let mark = s.store.board_mark().await?;
        let rules = s.store.alert_rules().await?;
        Ok::<_, crate::store::StoreError>((page, mark, rules))
    };
    let (page, mark, rules) = match loaded.await {
        Ok(x) => x,
        Err(e) => {
            return html::store_down(&who, "alert board", &e);
        }
    };
    let names = Names { cfg: &cfg };
    let body = format!(
        r#"<h1>告警看板</h1>{filters}<p class="live" id="live" aria-live="polite">实时更新：连接中…</p><div id="board" data-src="/console/board?{src}" data-mark="{mark}">{table}</div>"#,
        filters = filters(&p, &names, &rules),
        src = Esc(&p.encode(Some(p.page))),
        mark = Esc(&events::mark_text(&mark)),
        table = table(&page, &names, cfg.timezone, who.role, &p),
    );
    html::page_with_banner(
        "告警看板",
        Some(&who),
        &html::channel_banner(&s.console.channels.down()),
        &body,
    )
}

async fn fragment(
    Officer(who): Officer,
    State(s): State<ApiState>,
    Query(p): Query<BoardParams>,
) -> Response {
    let cfg = s.config.borrow().clone();
    match s.store.board(&p.query(&cfg, s.clock.now())).await {
        Ok(page) => html::fragment(table(
            &page,
            &Names { cfg: &cfg },
            cfg.timezone,
            who.role,
            &p,
        )),
        Err(e) => html::store_down(&who, "alert board", &e),
    }
}

fn select(name: &str, label: &str, current: &str, options: &[(String, String)]) -> String {
    let mut s = format!(r#"<label>{label}<select name="{name}"><option value="">全部</option>"#);
    for (value, text) in options {
        let sel = if value == current { " selected" } else { "" };
        let _ = write!(
            s,
            r#"<option value="{}"{sel}>{}</option>"#,
            Esc(value),
            Esc(text)
        );
    }
    s.push_str("</select></label>");
    s
}

fn filters(p: &BoardParams, names: &Names<'_>, rules: &[String]) -> String {
    let districts: Vec<(String, String)> = names
        .districts()
        .into_iter()
        .map(|d| (d.to_string(), d.to_string()))
        .collect();
    let severities: Vec<(String, String)> = SEVERITIES
        .iter()
        .map(|s| (s.as_str().to_string(), s.label_zh().to_string()))
        .collect();
    let rules: Vec<(String, String)> = rules
        .iter()
        .map(|r| (r.clone(), rule_zh(r).to_string()))
        .collect();
    let enterprises: Vec<(String, String)> = names
        .cfg
        .enterprises
        .iter()
        .filter(|e| p.district.is_empty() || e.district == p.district)
        .map(|e| (e.id.clone(), e.name.clone()))
        .collect();
    format!(
        r#"<form class="filters" id="filters" method="get" action="/">{}{}{}{}<button type="submit">筛选</button><a href="/">清除</a></form>"#,
        select("district", "区县", &p.district, &districts),
        select("severity", "级别", &p.severity, &severities),
        select("rule", "规则", &p.rule, &rules),
        select("enterprise", "企业", &p.enterprise, &enterprises),
    )
}

/// Counts, the page of alerts, and the pager.
pub fn table(
    page: &BoardPage,
    names: &Names<'_>,
    tz: Tz,
    role: HttpRole,
    p: &BoardParams,
) -> String {
    let mut s = format!(
        r#"<p class="counts"><span class="count open" data-count="open">未确认 {}</span><span class="count acknowledged" data-count="acknowledged">已确认 {}</span><span class="count resolved" data-count="resolved">{RECENT_HOURS} 小时内解除 {}</span></p>"#,
        page.open, page.acknowledged, page.resolved
    );
    if page.rows.is_empty() {
        s.push_str(r#"<p class="empty">没有符合条件的告警。</p>"#);
        return s;
    }
    s.push_str(r#"<table class="alerts"><thead><tr><th>编号</th><th>级别</th><th>状态</th><th>企业</th><th>点位</th><th>因子</th><th>规则</th><th>数值 / 限值</th><th>发生</th><th>最近</th><th>次数</th>"#);
    let can_act = role >= HttpRole::Operator;
    if can_act {
        s.push_str("<th>操作</th>");
    }
    s.push_str("</tr></thead><tbody>");
    for a in &page.rows {
        let _ = write!(
            s,
            r#"<tr class="sev-{sev} state-{state}" data-alert="{id}"><td><a href="/alerts/{id}">#{id}</a></td><td><span class="badge sev-{sev}">{sev_zh}</span></td><td>{state_zh}{by}</td><td>{ent}</td><td>{loc}</td><td>{factor}</td><td>{rule}</td><td class="num">{value_limit}</td><td>{opened}</td><td>{updated}</td><td class="num">{count}</td>"#,
            id = a.id,
            sev = Esc(&a.severity),
            sev_zh = severity_zh(&a.severity),
            state = a.state.as_str(),
            state_zh = state_zh(a.state.as_str()),
            by = match (&a.acked_by, a.state) {
                (Some(by), AlertState::Acknowledged) => format!("<br><small>{}</small>", Esc(by)),
                _ => String::new(),
            },
            ent = Esc(names.enterprise(&a.enterprise)),
            loc = Esc(names.location(&a.enterprise, &a.location)),
            factor = Esc(&Names::factor(&a.factor)),
            rule = Esc(&alert_rule_zh(a)),
            value_limit = Esc(&value_vs_limit(a)),
            opened = time(a.opened_at, tz),
            updated = opt_time(Some(a.updated_at), tz),
            count = a.count,
        );
        if can_act {
            s.push_str("<td>");
            if a.state == AlertState::Open {
                let _ = write!(
                    s,
                    r#"<button type="button" data-act="ack" data-id="{}">确认</button>"#,
                    a.id
                );
            }
            if a.state != AlertState::Resolved {
                let _ = write!(
                    s,
                    r#"<button type="button" data-act="resolve" data-id="{}">解除</button>"#,
                    a.id
                );
            }
            s.push_str("</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    let pages = page.total().div_ceil(u64::from(PAGE_SIZE)).max(1);
    let _ = write!(
        s,
        r#"<nav class="pager"><span>第 {} / {pages} 页，共 {} 条</span>"#,
        p.page + 1,
        page.total()
    );
    if p.page > 0 {
        let _ = write!(
            s,
            r#"<a href="/?{}">上一页</a>"#,
            Esc(&p.encode(Some(p.page - 1)))
        );
    }
    if u64::from(p.page) + 1 < pages {
        let _ = write!(
            s,
            r#"<a href="/?{}">下一页</a>"#,
            Esc(&p.encode(Some(p.page + 1)))
        );
    }
    s.push_str("</nav>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_survive_the_query_string() {
        let p = BoardParams {
            district: "吴中区".into(),
            severity: "major".into(),
            rule: String::new(),
            enterprise: "E 1&x".into(),
            page: 0,
        };
        assert_eq!(
            p.encode(Some(2)),
            "district=%E5%90%B4%E4%B8%AD%E5%8C%BA&severity=major&enterprise=E%201%26x&page=2"
        );
    }
}
