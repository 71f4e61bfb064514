//! Login with an API token, logout. The token is checked like a bearer token
//! (constant time, see [`crate::api::auth`]); logs name the token, never the
//! token or the session id.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::html::{self, Esc};
use super::{session, Officer};
use crate::api::ApiState;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/login", get(form).post(login))
        .route("/logout", post(logout))
}

fn login_page(status: StatusCode, message: &str) -> Response {
    let msg = if message.is_empty() {
        String::new()
    } else {
        format!(r#"<p class="problem" role="alert">{}</p>"#, Esc(message))
    };
    let body = format!(
        r#"<section class="login"><h1>污染源在线监控 · 值班控制台</h1>{msg}<form method="post" action="/login"><label for="token">访问令牌</label><input id="token" name="token" type="password" autocomplete="current-password" required autofocus><button type="submit">登录</button></form><p class="hint">令牌由系统管理员在 <code>[[http.tokens]]</code> 中配置；只读令牌可查看，值班员令牌可确认和解除告警。</p></section>"#
    );
    html::shell("登录", "", &body, status)
}

/// Where a login lands: operators on the alert board they work from, viewers on
/// the overview ([`super::overview`]).
pub fn landing(role: crate::config::HttpRole) -> &'static str {
    match role {
        crate::config::HttpRole::Operator => "/",
        crate::config::HttpRole::Viewer => "/overview",
    }
}

async fn form(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    let tokens = s.tokens.borrow().clone();
    let live = match session::cookie(&headers) {
        Some(id) => s.console.sessions.lookup(id, &tokens, s.clock.now()).await,
        None => None,
    };
    if let Some(who) = live {
        return Redirect::to(landing(who.role)).into_response();
    }
    login_page(StatusCode::OK, "")
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(s): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(f): Form<LoginForm>,
) -> Response {
    let now = s.clock.now();
    if let Err(wait) = s.throttle.check(peer.ip(), now) {
        tracing::warn!(peer = %peer.ip(), "console login refused: too many wrong tokens from this address");
        let mut page = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "错误次数过多，请 {} 分钟后再试。",
                (wait.num_seconds() + 59) / 60
            ),
        );
        if let Ok(v) = wait.num_seconds().max(1).to_string().parse() {
            page.headers_mut().insert(RETRY_AFTER, v);
        }
        return page;
    }
    let tokens = s.tokens.borrow().clone();
    let Some((name, role, print)) = tokens.login(f.token.trim().as_bytes()) else {
        s.throttle.failed(peer.ip(), now);
        tracing::warn!(peer = %peer.ip(), "console login refused: unknown token");
        return login_page(StatusCode::UNAUTHORIZED, "令牌无效，请重新输入。");
    };
    s.throttle.succeeded(peer.ip());
    let (lifetime, secure) = {
        let cfg = s.config.borrow();
        (
            cfg.daemon.http.session_lifetime.0,
            cfg.daemon.http.secure_cookies,
        )
    };
    let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::hours(12));
    match s
        .console
        .sessions
        .create(&name, print, s.clock.now(), lifetime)
        .await
    {
        Ok(id) => {
            tracing::info!(token = %name, role = role.as_str(), "console login");
            (
                [(SET_COOKIE, session::set_cookie(&id, lifetime, secure))],
                Redirect::to(landing(role)),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "console login failed");
            login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "暂时无法登录，请稍后再试。",
            )
        }
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    Officer(who): Officer,
    State(s): State<ApiState>,
    headers: HeaderMap,
    Form(f): Form<LogoutForm>,
) -> Response {
    if !session::csrf_ok(&who, &f.csrf) {
        tracing::info!(token = %who.name, "refused logout: CSRF token missing or wrong");
        return html::problem(
            StatusCode::FORBIDDEN,
            Some(&who),
            "请求已过期，请刷新页面后重试。",
        );
    }
    if let Some(id) = session::cookie(&headers) {
        s.console.sessions.remove(id).await;
    }
    tracing::info!(token = %who.name, "console logout");
    let secure = s.config.borrow().daemon.http.secure_cookies;
    (
        [(SET_COOKIE, session::clear_cookie(secure))],
        Redirect::to("/login"),
    )
        .into_response()
}
