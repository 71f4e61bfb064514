//! Hand-written HTML: every value from config, the store or a request goes
//! through [`esc`] (or [`Esc`] in `format!`), and the page shell sets headers
//! that keep a browser from running anything but our own script.
//!
//! Why no template crate: the console has a handful of pages whose markup is
//! mostly tables; `format!` with one escaping wrapper is short, checked by the
//! compiler, and leaves no template syntax to learn. The rule that keeps it safe
//! is simple to review: interpolate only `Esc(..)`, numbers, or fragments built
//! the same way.

use std::fmt::{self, Display, Write as _};

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::session::Session;

/// `s` safe in element text and in quoted attribute values.
pub fn esc(s: &str) -> String {
    Esc(s).to_string()
}

/// Escapes while formatting, without an intermediate `String`.
pub struct Esc<'a>(pub &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A local time for people: `2026-11-27 09:05`.
pub fn time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

pub fn opt_time(t: Option<DateTime<Utc>>, tz: Tz) -> String {
    t.map(|t| time(t, tz)).unwrap_or_else(|| "—".into())
}

/// A number as the console shows it: up to three decimals, no trailing zeros.
pub fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            let s = format!("{v:.3}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        _ => "—".into(),
    }
}

/// The page shell: navigation, the officer and a logout form, our CSS and JS.
pub fn page(title: &str, who: Option<&Session>, body: &str) -> Response {
    page_with_banner(title, who, "", body)
}

/// A red banner naming each notification channel that cannot send and why
/// (通知渠道不可用); empty when all are up.
pub fn channel_banner(down: &[crate::notify::ChannelHealth]) -> String {
    let mut out = String::new();
    for c in down {
        let _ = write!(
            out,
            r#"<div class="banner down" role="alert">通知渠道不可用：<b>{id}</b> — {why}。告警照常记录，路由改用下一个渠道；修复后执行 reload。</div>"#,
            id = Esc(&c.channel),
            why = Esc(c.down.as_deref().unwrap_or("")),
        );
    }
    out
}

/// [`page`] with `banner` (trusted HTML, see [`channel_banner`]) above the body.
pub fn page_with_banner(title: &str, who: Option<&Session>, banner: &str, body: &str) -> Response {
    let mut head = String::new();
    if let Some(s) = who {
        let role = match s.role {
            crate::config::HttpRole::Operator => "值班员",
            crate::config::HttpRole::Viewer => "只读",
        };
        let _ = write!(
            head,
            r#"<meta name="csrf-token" content="{csrf}"><meta name="officer-role" content="{r}">"#,
            csrf = Esc(&s.csrf),
            r = s.role.as_str(),
        );
        let nav = format!(
            r#"<header><nav><a href="/overview">概况</a><a href="/">告警看板</a><a href="/enterprises">企业</a><a href="/reports">月报</a></nav><div class="who"><span>{name}（{role}）</span><form method="post" action="/logout"><input type="hidden" name="csrf" value="{csrf}"><button type="submit">退出</button></form></div></header>"#,
            name = Esc(&s.name),
            csrf = Esc(&s.csrf),
        );
        return shell(
            title,
            &head,
            &format!("{nav}{banner}<main>{body}</main>"),
            StatusCode::OK,
        );
    }
    shell(
        title,
        &head,
        &format!("<main>{body}</main>"),
        StatusCode::OK,
    )
}

pub fn shell(title: &str, head: &str, body: &str, status: StatusCode) -> Response {
    let html = format!(
        r#"<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{t} · pollwatch</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/console/console.css">{head}<script src="/console/console.js" defer></script></head><body>{body}</body></html>"#,
        t = Esc(title),
    );
    (status, headers(), html).into_response()
}

/// Our own script and style only; no framing; nothing cached (pages show live
/// state and carry the CSRF token).
pub fn headers() -> [(HeaderName, HeaderValue); 5] {
    [
        (CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        ),
        (
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ),
        (
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        ),
    ]
}

/// An HTML fragment (for the board's live refresh), with the page's headers.
pub fn fragment(body: String) -> Response {
    (StatusCode::OK, headers(), body).into_response()
}

/// A whole page saying what went wrong, for a failure the officer should see.
pub fn problem(status: StatusCode, who: Option<&Session>, msg: &str) -> Response {
    let mut r = page(
        "出错了",
        who,
        &format!(r#"<p class="problem">{}</p>"#, Esc(msg)),
    );
    *r.status_mut() = status;
    r
}

/// The page for a store that did not answer; the error goes to the log, not
/// to the officer.
pub fn store_down(who: &Session, page: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(page, error = %e, "console: store failed");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(who),
        "数据库暂时无法访问，请稍后刷新。",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(esc("东山热电"), "东山热电");
    }

    #[test]
    fn numbers_lose_trailing_zeros_only() {
        assert_eq!(num(Some(41.2)), "41.2");
        assert_eq!(num(Some(35.0)), "35");
        assert_eq!(num(Some(0.1234)), "0.123");
        assert_eq!(num(None), "—");
        assert_eq!(num(Some(f64::NAN)), "—");
    }
}
