//! One alert (`/alerts/{id}`): what happened, its timeline with the hash chain
//! checked (the timeline is evidence; an officer should see at once whether it
//! was tampered with), every notification and attempt, the evidence chart with
//! its downloads, and the acknowledge/resolve form.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono_tz::Tz;
use serde::Deserialize;

use super::html::{self, opt_time, time, Esc};
use super::labels::{alert_rule_zh, severity_zh, state_zh, value_vs_limit, Names};
use super::{session, Officer};
use crate::api::ApiState;
use crate::config::HttpRole;
use crate::store::{
    verify_chain_with, AlertEvent, AlertRow, AlertState, Attempt, OutboxRow, StoreError,
};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/alerts/{id}", get(show))
        .route("/alerts/{id}/act", post(act))
}

/// The acknowledge/resolve form: a plain form post (works without script),
/// CSRF token in a hidden field, then back to the alert (post/redirect/get).
#[derive(Deserialize)]
struct ActForm {
    #[serde(default)]
    csrf: String,
    act: String,
    #[serde(default)]
    note: String,
}

async fn act(
    Officer(who): Officer,
    State(s): State<ApiState>,
    Path(id): Path<i64>,
    Form(f): Form<ActForm>,
) -> Response {
    if !session::csrf_ok(&who, &f.csrf) {
        tracing::info!(token = %who.name, alert = id, "refused: CSRF token missing or wrong");
        return html::problem(
            StatusCode::FORBIDDEN,
            Some(&who),
            "请求已过期，请刷新页面后重试。",
        );
    }
    if who.role < HttpRole::Operator {
        tracing::info!(token = %who.name, alert = id, "refused: operator role needed");
        return html::problem(StatusCode::FORBIDDEN, Some(&who), "只读账号不能处置告警。");
    }
    let to = match f.act.as_str() {
        "ack" => AlertState::Acknowledged,
        "resolve" => AlertState::Resolved,
        _ => return html::problem(StatusCode::BAD_REQUEST, Some(&who), "未知的操作。"),
    };
    tracing::info!(alert = id, by = %who.name, to = to.as_str(), "alert transition requested in the console");
    match s
        .store
        .transition_alert(id, to, &who.name, &f.note, s.clock.now())
        .await
    {
        Ok(Some(_)) => Redirect::to(&format!("/alerts/{id}")).into_response(),
        Ok(None) => html::problem(
            StatusCode::CONFLICT,
            Some(&who),
            &format!("告警 #{id} 不存在，或其当前状态不允许此操作（可能已被他人处置）。"),
        ),
        Err(e) => html::store_down(&who, "alert action", &e),
    }
}

struct Record {
    alert: AlertRow,
    timeline: Vec<AlertEvent>,
    /// The chain under the store's evidence keys: `Err(seq)` names the first row
    /// that does not hold.
    chain: Result<(), i64>,
    outbox: Vec<OutboxRow>,
    attempts: Vec<Attempt>,
}

async fn load(s: &ApiState, id: i64) -> Result<Option<Record>, StoreError> {
    let Some(alert) = s.store.alert(id).await? else {
        return Ok(None);
    };
    let timeline = s.store.alert_events(id).await?;
    Ok(Some(Record {
        alert,
        chain: verify_chain_with(s.store.keys(), &timeline),
        timeline,
        outbox: s.store.outbox(None, Some(id), 1000).await?,
        attempts: s.store.alert_attempts(id).await?,
    }))
}

async fn show(Officer(who): Officer, State(s): State<ApiState>, Path(id): Path<i64>) -> Response {
    let r = match load(&s, id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return html::problem(
                StatusCode::NOT_FOUND,
                Some(&who),
                &format!("没有编号为 {id} 的告警。"),
            )
        }
        Err(e) => {
            return html::store_down(&who, "alert page", &e);
        }
    };
    let cfg = s.config.borrow().clone();
    let names = Names { cfg: &cfg };
    let tz = cfg.timezone;
    let a = &r.alert;
    let mut body = format!(
        r#"<p><a href="/">← 返回看板</a></p><h1>告警 #{id} <span class="badge sev-{sev}">{sev_zh}</span> <span class="state state-{state}" id="alert-state">{state_zh}</span></h1>"#,
        sev = Esc(&a.severity),
        sev_zh = severity_zh(&a.severity),
        state = a.state.as_str(),
        state_zh = state_zh(a.state.as_str()),
    );
    // On a phone as on a desk: what was said, the value against the permit limit
    // and the acknowledge form come first; the facts, chart and timeline follow.
    // What the officer's phone showed (the Chinese measurement line), then the
    // rules engine's own wording of the finding.
    let told = crate::alerts::parse_facts(a)
        .ok()
        .filter(|f| !f.factor_name.is_empty())
        .map(|f| crate::notify::template::measurement(&f))
        .unwrap_or_default();
    body.push_str("<h2>告警消息</h2>");
    if !told.is_empty() {
        let _ = write!(body, r#"<p class="told">{}</p>"#, Esc(&told));
    }
    let _ = write!(body, r#"<pre class="message">{}</pre>"#, Esc(&a.message));
    let _ = write!(
        body,
        r#"<p class="vs" id="value-vs-limit">数值 / 限值：<b>{}</b></p>"#,
        Esc(&value_vs_limit(a))
    );
    if who.role >= HttpRole::Operator && a.state != AlertState::Resolved {
        let ack = if a.state == AlertState::Open {
            r#"<button type="submit" name="act" value="ack">确认告警</button>"#
        } else {
            ""
        };
        let _ = write!(
            body,
            r#"<h2>处置</h2><form class="act" id="act-form" method="post" action="/alerts/{id}/act"><input type="hidden" name="csrf" value="{csrf}"><label for="note">备注（处置情况、联系人等）</label><textarea id="note" name="note" rows="3" maxlength="2000"></textarea><div>{ack}<button type="submit" name="act" value="resolve">解除告警</button></div></form>"#,
            csrf = Esc(&who.csrf),
        );
    }
    body.push_str(&facts(a, &names, tz));
    let _ = write!(
        body,
        r#"<h2>证据图</h2><figure class="chart"><img id="chart" src="/api/v1/alerts/{id}/chart.svg" alt="告警 #{id} 前后的监测数据、限值线和小时均值"><figcaption><a href="/api/v1/alerts/{id}/chart.svg" download="alert-{id}.svg">下载 SVG</a> · <a href="/api/v1/alerts/{id}/chart.png" download="alert-{id}.png">下载 PNG</a></figcaption></figure>"#
    );
    body.push_str(&timeline(&r.timeline, r.chain, tz));
    body.push_str(&notifications(&r.outbox, &r.attempts, tz));
    html::page_with_banner(
        &format!("告警 #{id}"),
        Some(&who),
        &html::channel_banner(&s.console.channels.down()),
        &body,
    )
}

fn facts(a: &AlertRow, names: &Names<'_>, tz: Tz) -> String {
    let mut rows = vec![
        (
            "企业",
            format!(
                r#"<a href="/enterprises/{}">{}</a>"#,
                Esc(&a.enterprise),
                Esc(names.enterprise(&a.enterprise))
            ),
        ),
        (
            "点位",
            html::esc(names.location(&a.enterprise, &a.location)),
        ),
        ("因子", html::esc(&Names::factor(&a.factor))),
        ("规则", html::esc(&alert_rule_zh(a))),
        ("数值 / 限值", html::esc(&value_vs_limit(a))),
        ("发生时间", time(a.opened_at, tz)),
        ("最近更新", time(a.updated_at, tz)),
        ("次数", a.count.to_string()),
    ];
    if a.flapping {
        rows.push(("抖动", "频繁开闭，已暂停通知".into()));
    }
    if let Some(by) = &a.acked_by {
        rows.push((
            "确认",
            format!("{} · {}", Esc(by), opt_time(a.acked_at, tz)),
        ));
    }
    if let Some(by) = &a.resolved_by {
        rows.push((
            "解除",
            format!("{} · {}", Esc(by), opt_time(a.resolved_at, tz)),
        ));
    }
    let mut s = String::from(r#"<dl class="facts">"#);
    for (k, v) in rows {
        let _ = write!(s, "<dt>{k}</dt><dd>{v}</dd>");
    }
    s.push_str("</dl>");
    s
}

fn event_zh(kind: &str) -> &str {
    match kind {
        "opened" => "告警产生",
        "finding" => "再次发现",
        "flapping" => "频繁开闭",
        "notification_queued" => "通知排队",
        "escalated" => "升级通知",
        "notified" => "已通知",
        "notification_failed" => "通知失败",
        "acknowledged" => "已确认",
        "reopened" => "确认超时，重新打开",
        "resolved" => "已解除",
        other => other,
    }
}

/// A timeline row's detail for people: the note of an officer's action, else
/// the stored text (JSON evidence stays JSON: it is the record).
fn detail_text(e: &AlertEvent) -> String {
    serde_json::from_str::<serde_json::Value>(&e.detail)
        .ok()
        .and_then(|v| v.get("note").and_then(|n| n.as_str()).map(str::to_string))
        .unwrap_or_else(|| e.detail.clone())
}

/// Short details inline; long ones (evidence JSON) folded, still all there.
fn detail_html(e: &AlertEvent) -> String {
    let text = detail_text(e);
    // A finding made on values a logger resent from its backlog (RF=1) says so.
    let resend = serde_json::from_str::<serde_json::Value>(&e.detail)
        .ok()
        .and_then(|v| v.get("resend").and_then(|r| r.as_bool()))
        .unwrap_or(false);
    let mark = if resend {
        r#"<span class="resend">补发数据（RF=1，迟到上传）</span> "#
    } else {
        ""
    };
    if text.chars().count() <= 120 {
        return format!("{mark}{}", html::esc(&text));
    }
    let head: String = text.chars().take(60).collect();
    format!(
        "{mark}<details><summary>{}…</summary><code>{}</code></details>",
        Esc(&head),
        Esc(&text)
    )
}

fn timeline(events: &[AlertEvent], chain: Result<(), i64>, tz: Tz) -> String {
    let chain = match chain {
        Ok(()) if events.iter().any(|e| e.key_id.is_empty()) => {
            r#"<p class="chain" id="chain">哈希链一致，但未加密钥（未配置 [evidence] key_file）：不能据此证明未被改动。完整核验：pollwatch alerts verify。</p>"#.to_string()
        }
        Ok(()) => {
            r#"<p class="chain ok" id="chain">哈希链（密钥 HMAC）校验通过：时间线未被改动。完整核验（告警、研判、监测数据、锚定）：pollwatch alerts verify。</p>"#.to_string()
        }
        Err(seq) => format!(
            r#"<p class="chain broken" id="chain">哈希链在第 {seq} 条断开：时间线在记录后被改动过，请联系系统管理员。</p>"#
        ),
    };
    let mut s = format!(
        r#"<h2>时间线</h2>{chain}<table class="timeline"><thead><tr><th>#</th><th>时间</th><th>事件</th><th>操作人</th><th>详情</th></tr></thead><tbody>"#
    );
    for e in events {
        let _ = write!(
            s,
            r#"<tr data-kind="{kind}"><td>{seq}</td><td>{at}</td><td>{what}</td><td>{actor}</td><td class="detail">{detail}</td></tr>"#,
            kind = Esc(&e.kind),
            seq = e.seq,
            at = time(e.at, tz),
            what = Esc(event_zh(&e.kind)),
            actor = Esc(&match &e.on_behalf_of {
                Some(o) => format!("{}（代 {o}）", e.actor),
                None => e.actor.clone(),
            }),
            detail = detail_html(e),
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn notifications(outbox: &[OutboxRow], attempts: &[Attempt], tz: Tz) -> String {
    let mut s = String::from("<h2>通知</h2>");
    if outbox.is_empty() {
        s.push_str(
            r#"<p class="empty">没有发出通知（未配置通知路由，或告警因频繁开闭而静默）。</p>"#,
        );
        return s;
    }
    s.push_str(r#"<table class="outbox"><thead><tr><th>步骤</th><th>状态</th><th>排队</th><th>发出</th><th>渠道</th></tr></thead><tbody>"#);
    for o in outbox {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            Esc(&o.step),
            Esc(&o.state),
            time(o.created_at, tz),
            opt_time(o.sent_at, tz),
            Esc(o.channel.as_deref().unwrap_or("—")),
        );
    }
    s.push_str("</tbody></table><h3>发送尝试</h3>");
    if attempts.is_empty() {
        s.push_str(r#"<p class="empty">尚无发送尝试。</p>"#);
        return s;
    }
    s.push_str(r#"<table class="attempts"><thead><tr><th>时间</th><th>渠道</th><th>接收人</th><th>结果</th><th>代码</th><th>原因</th></tr></thead><tbody>"#);
    for a in attempts {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(a.at, tz),
            Esc(&a.channel),
            Esc(&a.recipients),
            Esc(&a.result),
            Esc(a.code.as_deref().unwrap_or("")),
            Esc(a.reason.as_deref().unwrap_or("")),
        );
    }
    s.push_str("</tbody></table>");
    s
}
