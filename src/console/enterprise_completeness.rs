//! The data-completeness section of an enterprise's page (issue #20): the
//! transmission and effective transmission rates of each outlet and limited
//! factor over the last seven local days (the numbers the bureau is ranked on),
//! and the latest history requests (反控) sent to its loggers with their outcome.
//!
//! Kept apart from [`super::enterprises`], which calls [`section`] once: the
//! figures come from the same code as `pollwatch report transmission` and the
//! requests from the same table as `pollwatch backfill status`, so the page, the
//! CLI and the API cannot disagree. A store error shows in the section rather
//! than failing the page: the rest of it is what an officer phones about.

use std::fmt::Write as _;

use chrono::{DateTime, Days, Utc};
use chrono_tz::Tz;

use super::html::{opt_time, time, Esc};
use crate::completeness::rates::local_day;
use crate::completeness::transmission_report;
use crate::config::Config;
use crate::store::{BackfillRow, BackfillState, Store};

/// Days of rates shown (today included).
const DAYS: u64 = 7;
/// Backfill requests shown, newest first.
const REQUESTS: u32 = 20;

/// The section for enterprise `id` as of `now`.
pub async fn section(cfg: &Config, store: &Store, id: &str, now: DateTime<Utc>) -> String {
    let tz = cfg.timezone;
    let mut out = String::from(r#"<section id="completeness">"#);
    out.push_str(&rates(cfg, store, id, now).await);
    match store
        .backfill_requests(Some(id), None, None, REQUESTS)
        .await
    {
        Ok(rows) => out.push_str(&requests(&rows, tz)),
        Err(e) => {
            tracing::warn!(enterprise = id, error = %e, "console: cannot read backfill requests");
            out.push_str(r#"<h2>数据补遗（反控）</h2><p class="meta">暂时无法读取补遗记录。</p>"#);
        }
    }
    out.push_str("</section>");
    out
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{:.1}%", v * 100.0))
}

async fn rates(cfg: &Config, store: &Store, id: &str, now: DateTime<Utc>) -> String {
    let tz = cfg.timezone;
    let today = local_day(now, tz);
    let (Some(from), Some(to)) = (
        today.checked_sub_days(Days::new(DAYS - 1)),
        today.succ_opt(),
    ) else {
        return String::new();
    };
    let mut out = format!(
        r#"<h2>数据传输率（{from} 至 {today}）</h2>"#,
        from = from,
        today = today
    );
    let report = match transmission_report(cfg, store, from, to, Some(id), now).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(enterprise = id, error = %e, "console: cannot count transmission rates");
            out.push_str(r#"<p class="meta">暂时无法统计传输率。</p>"#);
            return out;
        }
    };
    if report.rows.is_empty() {
        out.push_str(r#"<p class="meta">没有设限值的监测因子。</p>"#);
        return out;
    }
    out.push_str(
        r#"<table class="rates"><thead><tr><th>排口</th><th>因子</th><th>应传</th><th>实传</th><th>有效</th><th>传输率</th><th>有效传输率</th></tr></thead><tbody>"#,
    );
    for r in &report.rows {
        let min = cfg
            .enterprise(&r.enterprise)
            .and_then(|e| e.outlets.iter().find(|o| o.id == r.outlet))
            .and_then(|o| o.min_effective_rate)
            .unwrap_or(crate::config::Outlet::DEFAULT_MIN_EFFECTIVE_RATE);
        let effective = r.counts.effective_rate();
        let low = if effective.is_some_and(|v| v < min) {
            r#" class="low""#
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr{low}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            Esc(&r.outlet),
            Esc(&r.factor),
            r.counts.expected,
            r.counts.received,
            r.counts.valid,
            pct(r.counts.transmission_rate()),
            pct(effective),
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn kind(cn: &str) -> &str {
    match cn {
        "2061" => "小时数据",
        "2051" => "分钟数据",
        "2031" => "日数据",
        other => other,
    }
}

fn state(s: BackfillState) -> &'static str {
    match s {
        BackfillState::Sent => "已发送，等待应答",
        BackfillState::Done => "已补传",
        BackfillState::NoData => "数采仪无数据（确认缺失）",
        BackfillState::Refused => "数采仪拒绝",
        BackfillState::Failed => "执行失败，稍后重试",
        BackfillState::Timeout => "超时，稍后重试",
    }
}

fn requests(rows: &[BackfillRow], tz: Tz) -> String {
    let mut out = String::from("<h2>数据补遗（反控）</h2>");
    if rows.is_empty() {
        out.push_str(r#"<p class="meta">没有补遗请求。</p>"#);
        return out;
    }
    out.push_str(
        r#"<table class="backfill"><thead><tr><th>请求时间</th><th>排口</th><th>数采仪 MN</th><th>数据</th><th>时段</th><th>次数</th><th>结果</th><th>条数</th><th>完成时间</th><th>说明</th></tr></thead><tbody>"#,
    );
    for r in rows {
        let q = &r.request;
        let _ = write!(
            out,
            r#"<tr class="{cls}"><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{} – {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            time(q.requested_at, tz),
            Esc(&q.outlet),
            Esc(&q.mn),
            kind(&q.cn),
            Esc(&q.cn),
            time(q.begin, tz),
            time(q.end, tz),
            q.attempt,
            state(r.state),
            r.readings,
            opt_time(r.finished_at, tz),
            Esc(&r.detail),
            cls = r.state.as_str(),
        );
    }
    out.push_str("</tbody></table>");
    out
}
