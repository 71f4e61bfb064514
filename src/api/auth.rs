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

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name and role of `presented`, if it is one of ours.
    fn find(&self, presented: &[u8]) -> Option<(&str, HttpRole)> {
        // Check every entry so the time taken does not say which one matched.
        let mut found = None;
        for (name, role, secret) in &self.entries {
            if constant_time_eq(secret, presented) && found.is_none() {
                found = Some((name.as_str(), *role));
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            AuthError::Missing => (StatusCode::UNAUTHORIZED, "missing bearer token"),
            AuthError::Invalid => (StatusCode::UNAUTHORIZED, "invalid token"),
            AuthError::Forbidden => (StatusCode::FORBIDDEN, "this token's role may not do that"),
        };
        let mut r = (status, axum::Json(serde_json::json!({ "error": msg }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"pollwatch\""),
            );
        }
        r
    }
}

fn authorize(parts: &Parts, tokens: &Arc<Tokens>, need: HttpRole) -> Result<String, AuthError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .as_bytes();
    let presented = header
        .strip_prefix(b"Bearer ")
        .or_else(|| header.strip_prefix(b"bearer "))
        .ok_or(AuthError::Invalid)?;
    let (name, role) = tokens
        .find(presented.trim_ascii())
        .ok_or(AuthError::Invalid)?;
    if role < need {
        tracing::info!(token = %name, path = %parts.uri.path(), "refused: operator role needed");
        return Err(AuthError::Forbidden);
    }
    Ok(name.to_string())
}

/// A request made with any valid token; holds the token's name.
#[derive(Debug, Clone)]
pub struct Viewer(pub String);

/// A request made with an operator token; holds the token's name for audit.
#[derive(Debug, Clone)]
pub struct Operator(pub String);

impl FromRequestParts<ApiState> for Viewer {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, AuthError> {
        let tokens = state.tokens.borrow().clone();
        authorize(parts, &tokens, HttpRole::Viewer).map(Viewer)
    }
}

impl FromRequestParts<ApiState> for Operator {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, AuthError> {
        let tokens = state.tokens.borrow().clone();
        authorize(parts, &tokens, HttpRole::Operator).map(Operator)
    }
}
