//! Bearer tokens with roles, from `[[http.tokens]]` (see
//! [`HttpSection`](crate::config::HttpSection) for the config).
//!
//! A handler states what it needs by taking an extractor:
//!
//! ```text
//! async fn list(_: Viewer, State(s): State<ApiState>) -> … { … }          // any token
//! async fn ack(Operator(who): Operator, State(s): State<ApiState>) -> … {  // operator
//!     tracing::info!(by = %who, "alert acknowledged");   // the token's name, for audit
//! }
//! ```
//!
//! No token or an unknown one is 401 with `WWW-Authenticate: Bearer`; a viewer token
//! on an operator route is 403. Tokens are compared in constant time and never
//! logged: logs and audit records carry the token's `name`. Tokens follow reloads.
//!
//! A request without an `Authorization` header may instead carry the web
//! console's session cookie ([`crate::console::session`]): the same roles apply,
//! the session dies with its token, and a state-changing request made that way
//! must also carry the session's CSRF token (403 without it). Bearer requests
//! need no CSRF token: a browser never adds that header by itself.
//!
//! Wrong bearer tokens count against the client address in the same throttle as
//! the console's wrong logins ([`crate::throttle`]): after 5 within 15 minutes,
//! every request from that address with an `Authorization` header is 429 with
//! `Retry-After` until the oldest failure is 15 minutes old.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use crate::config::{Config, HttpRole};

/// The tokens in force, resolved from config (token files read).
#[derive(Debug, Default)]
pub struct Tokens {
    entries: Vec<(String, HttpRole, Vec<u8>)>,
}

impl Tokens {
    /// Reads every token; an unreadable file (it was readable when the config was
    /// validated) drops that token with a warning rather than all of them.
    pub fn from_config(cfg: &Config) -> Tokens {
        let mut entries = Vec::new();
        for t in &cfg.daemon.http.tokens {
            match t.secret() {
                Ok(s) if !s.is_empty() => entries.push((t.name.clone(), t.role, s.into_bytes())),
                Ok(_) => tracing::warn!(token = %t.name, "http token is empty; ignored"),
                Err(e) => {
                    tracing::warn!(token = %t.name, error = %e, "cannot read http token; ignored")
                }
            }
        }
        Tokens { entries }
    }

    #[cfg(test)]
    pub(crate) fn from_entries(entries: &[(&str, HttpRole, &str)]) -> Tokens {
        Tokens {
            entries: entries
                .iter()
                .map(|(n, r, s)| (n.to_string(), *r, s.as_bytes().to_vec()))
                .collect(),
        }
    }

    /// The name and role of `presented`, if it is one of ours.
    fn find(&self, presented: &[u8]) -> Option<(&str, HttpRole)> {
        self.find_entry(presented)
            .map(|(name, role, _)| (name.as_str(), *role))
    }

    fn find_entry(&self, presented: &[u8]) -> Option<&(String, HttpRole, Vec<u8>)> {
        // Check every entry so the time taken does not say which one matched.
        let mut found = None;
        for entry in &self.entries {
            if constant_time_eq(&entry.2, presented) && found.is_none() {
                found = Some(entry);
            }
        }
        found
    }

    /// For a console login: the name, role and fingerprint of `presented`. The
    /// fingerprint (SHA-256 of the secret) lets a session check later that its
    /// token is still configured without keeping the secret itself.
    pub fn login(&self, presented: &[u8]) -> Option<(String, HttpRole, [u8; 32])> {
        self.find_entry(presented)
            .map(|(name, role, secret)| (name.clone(), *role, fingerprint(secret)))
    }

    /// The role a session's token has now: `None` once the token was removed or
    /// its secret changed by a reload. `sealed` says whether the session was
    /// made with the secret of this fingerprint (see `console::session`).
    pub fn current_for(&self, name: &str, sealed: impl Fn(&[u8; 32]) -> bool) -> Option<HttpRole> {
        self.entries
            .iter()
            .find(|(n, _, secret)| n == name && sealed(&fingerprint(secret)))
            .map(|(_, role, _)| *role)
    }
}

fn fingerprint(secret: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(secret).into()
}

/// Equal contents, in time that depends only on the lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Invalid,
    Forbidden,
    /// A cookie-authenticated state change without the session's CSRF token.
    Csrf,
    /// Too many wrong tokens from this address; seconds to wait.
    Throttled(i64),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            AuthError::Missing => (StatusCode::UNAUTHORIZED, "missing bearer token"),
            AuthError::Invalid => (StatusCode::UNAUTHORIZED, "invalid token"),
            AuthError::Forbidden => (StatusCode::FORBIDDEN, "this token's role may not do that"),
            AuthError::Csrf => (StatusCode::FORBIDDEN, "missing or wrong CSRF token"),
            AuthError::Throttled(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong tokens from this address; try again later",
            ),
        };
        let mut r = (status, axum::Json(serde_json::json!({ "error": msg }))).into_response();
        if let AuthError::Throttled(wait) = self {
            if let Ok(v) = wait.max(1).to_string().parse() {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"pollwatch\""),
            );
        }
        r
    }
}

fn bearer(parts: &Parts, tokens: &Tokens) -> Result<(String, HttpRole), AuthError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .as_bytes();
    let presented = header
        .strip_prefix(b"Bearer ")
        .or_else(|| header.strip_prefix(b"bearer "))
        .ok_or(AuthError::Invalid)?;
    tokens
        .find(presented.trim_ascii())
        .map(|(name, role)| (name.to_string(), role))
        .ok_or(AuthError::Invalid)
}

/// [`bearer`], refused while the client's address is throttled; a wrong token
/// counts against the address (clients without a known address are not throttled).
fn throttled_bearer(
    parts: &Parts,
    state: &ApiState,
    tokens: &Tokens,
) -> Result<(String, HttpRole), AuthError> {
    let ip = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let Some(ip) = ip else {
        return bearer(parts, tokens);
    };
    let now = state.clock.now();
    if let Err(wait) = state.throttle.check(ip, now) {
        tracing::warn!(peer = %ip, path = %parts.uri.path(), "refused: too many wrong tokens from this address");
        return Err(AuthError::Throttled(wait.num_seconds()));
    }
    match bearer(parts, tokens) {
        Err(AuthError::Invalid) => {
            state.throttle.failed(ip, now);
            tracing::warn!(peer = %ip, path = %parts.uri.path(), "refused: unknown bearer token");
            Err(AuthError::Invalid)
        }
        r => {
            if r.is_ok() {
                state.throttle.succeeded(ip);
            }
            r
        }
    }
}

/// The caller's name if it holds at least `need`: by bearer token, or else by
/// console session cookie.
async fn authorize(parts: &Parts, state: &ApiState, need: HttpRole) -> Result<String, AuthError> {
    let tokens: Arc<Tokens> = state.tokens.borrow().clone();
    let (name, role) = if parts.headers.contains_key(AUTHORIZATION) {
        throttled_bearer(parts, state, &tokens)?
    } else {
        let s = crate::console::session::from_request(parts, state, &tokens).await?;
        (s.name, s.role)
    };
    if role < need {
        tracing::info!(token = %name, path = %parts.uri.path(), "refused: operator role needed");
        return Err(AuthError::Forbidden);
    }
    Ok(name)
}

/// A request made with any valid token (or console session); holds the token's name.
#[derive(Debug, Clone)]
pub struct Viewer(pub String);

/// A request made with an operator token (or session); holds the token's name for audit.
#[derive(Debug, Clone)]
pub struct Operator(pub String);

impl FromRequestParts<ApiState> for Viewer {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, AuthError> {
        authorize(parts, state, HttpRole::Viewer).await.map(Viewer)
    }
}

impl FromRequestParts<ApiState> for Operator {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, AuthError> {
        authorize(parts, state, HttpRole::Operator)
            .await
            .map(Operator)
    }
}
