//! Console sessions: a login with an API token gives the browser a random
//! 256-bit session id in an `HttpOnly; SameSite=Strict` cookie.
//!
//! Why server-side sessions rather than HMAC-signed cookies: logout and a
//! token's removal must end a session *now*, which a signed cookie cannot do
//! without a revocation list (a server-side table again), and there is no
//! signing key to generate, store and rotate.
//!
//! Where they live: the daemon keeps them in the store ([`Sessions::persistent`],
//! table `console_sessions`), so a restart does not log the duty officers out
//! and, in a cluster, every node knows every session — a failover is invisible
//! to the officer, and a logout on one node ends the session on all of them
//! (each request reads the row; a primary-key lookup is nothing next to the
//! page it guards). Without a store (unit tests) they live in memory.
//!
//! Sessions are keyed by SHA-256 of the id, so the cookie value itself is never
//! held, and a lookup's timing says nothing useful about stored ids. Each session
//! remembers its token's name and a seal, SHA-256 of the id and the fingerprint
//! of the token's secret: when a reload removes the token or changes its secret,
//! the next request with the session fails and the session is dropped. The seal
//! binds the row to the cookie, so a reader of the table can neither use a row
//! nor test guesses of a token against it. The role is read from the tokens in force,
//! so a downgrade applies at once.
//!
//! CSRF: each session has its own random CSRF token. A state-changing request
//! authenticated by the cookie must send it in the `X-CSRF-Token` header (the
//! console's JS) or, for the console's own forms, a `csrf` form field; both are
//! compared in constant time. `SameSite=Strict` already keeps other sites'
//! requests from carrying the cookie; the token is the second lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::header::COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use chrono::{DateTime, Duration, Utc};
use sha2::Digest;

use crate::api::auth::{constant_time_eq, AuthError, Tokens};
use crate::api::ApiState;
use crate::config::HttpRole;
use crate::store::{SessionRow, Store, StoreError};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "pw_session";
/// Where the console's JS puts the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the operating system's random number source failed: {0}")]
    Random(getrandom::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Entry {
    name: String,
    seal: [u8; 32],
    csrf: String,
    expires: DateTime<Utc>,
}

/// A live session, as a request sees it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token's name: shown as the officer and written to the audit trail.
    pub name: String,
    pub role: HttpRole,
    pub csrf: String,
    pub expires: DateTime<Utc>,
}

/// Every live session; cloning shares them.
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<[u8; 32], Entry>>>,
    store: Option<Store>,
}

fn key(id: &str) -> [u8; 32] {
    sha2::Sha256::digest(id.as_bytes()).into()
}

/// Binds a session to its cookie and its token's secret.
fn seal(id: &str, print: &[u8; 32]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update(b"pollwatch console session\0");
    h.update(id.as_bytes());
    h.update(print);
    h.finalize().into()
}

fn hex(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// 256 random bits from the operating system, in hex.
pub(crate) fn random_hex() -> Result<String, SessionError> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(SessionError::Random)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Sessions {
    /// Sessions kept in `store`: they survive a restart and are shared by the
    /// nodes of a cluster.
    pub fn persistent(store: Store) -> Sessions {
        Sessions {
            inner: Arc::default(),
            store: Some(store),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        // A panic while holding the lock leaves a consistent map (every change
        // is one insert or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session for a token found by [`Tokens::login`]; returns the id
    /// for the cookie. Expired sessions are swept here.
    pub async fn create(
        &self,
        name: &str,
        print: [u8; 32],
        now: DateTime<Utc>,
        lifetime: Duration,
    ) -> Result<String, SessionError> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let entry = Entry {
            name: name.to_string(),
            seal: seal(&id, &print),
            csrf,
            expires: now + lifetime,
        };
        match &self.store {
            Some(store) => {
                store
                    .put_session(&SessionRow {
                        key: hex(&key(&id)),
                        name: entry.name,
                        seal: hex(&entry.seal),
                        csrf: entry.csrf,
                        created_at: now,
                        expires_at: entry.expires,
                    })
                    .await?
            }
            None => {
                let mut map = self.map();
                map.retain(|_, e| e.expires > now);
                map.insert(key(&id), entry);
            }
        }
        Ok(id)
    }

    /// The session of `id` if it has not expired and its token is still in force;
    /// a dead session is removed. A store that cannot be read is no session
    /// (logged): the officer is sent to the login page, which says why.
    pub async fn lookup(&self, id: &str, tokens: &Tokens, now: DateTime<Utc>) -> Option<Session> {
        let k = key(id);
        let entry = match &self.store {
            Some(store) => match store.session(&hex(&k)).await {
                Ok(row) => row.map(|r| Entry {
                    seal: unhex(&r.seal).unwrap_or([0; 32]),
                    name: r.name,
                    csrf: r.csrf,
                    expires: r.expires_at,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "console session: the store cannot be read");
                    return None;
                }
            },
            None => self.map().get(&k).map(|e| Entry {
                name: e.name.clone(),
                seal: e.seal,
                csrf: e.csrf.clone(),
                expires: e.expires,
            }),
        }?;
        let role = (entry.expires > now)
            .then(|| {
                tokens.current_for(&entry.name, |print| {
                    constant_time_eq(&seal(id, print), &entry.seal)
                })
            })
            .flatten();
        match role {
            Some(role) => Some(Session {
                name: entry.name,
                role,
                csrf: entry.csrf,
                expires: entry.expires,
            }),
            None => {
                self.remove(id).await;
                None
            }
        }
    }

    /// Logout (and the end of a dead session). A store error is logged: the
    /// cookie is cleared anyway and the row expires.
    pub async fn remove(&self, id: &str) {
        let k = key(id);
        match &self.store {
            Some(store) => {
                if let Err(e) = store.delete_session(&hex(&k)).await {
                    tracing::warn!(error = %e, "console session: could not delete");
                }
            }
            None => {
                self.map().remove(&k);
            }
        }
    }

    /// Sessions held in memory (0 when they live in the store).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(std::str::from_utf8(&b[2 * i..2 * i + 2]).ok()?, 16).ok()?;
    }
    Some(out)
}

/// The session cookie's value, if the request has one.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.trim())
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(id: &str, lifetime: Duration, secure: bool) -> String {
    format!(
        "{COOKIE_NAME}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        lifetime.num_seconds(),
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that makes the browser forget the session.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", Duration::zero(), secure)
}

/// Whether `presented` is this session's CSRF token.
pub fn csrf_ok(session: &Session, presented: &str) -> bool {
    constant_time_eq(session.csrf.as_bytes(), presented.as_bytes())
}

fn safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The session behind a request's cookie, for [`crate::api::auth`]. A
/// state-changing method must carry the CSRF header.
pub async fn from_request(
    parts: &Parts,
    state: &ApiState,
    tokens: &Tokens,
) -> Result<Session, AuthError> {
    let id = cookie(&parts.headers).ok_or(AuthError::Missing)?;
    let session = state
        .console
        .sessions
        .lookup(id, tokens, state.clock.now())
        .await
        .ok_or(AuthError::Invalid)?;
    if !safe(&parts.method) {
        let presented = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !csrf_ok(&session, presented) {
            tracing::info!(token = %session.name, path = %parts.uri.path(), "refused: CSRF token missing or wrong");
            return Err(AuthError::Csrf);
        }
    }
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=1; pw_session=abc ; b=2".parse().unwrap());
        assert_eq!(cookie(&h), Some("abc"));
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "pw_sessionx=1".parse().unwrap());
        assert_eq!(cookie(&h), None);
    }

    #[test]
    fn ids_are_random_and_256_bits() {
        let (a, b) = (random_hex().unwrap(), random_hex().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn a_session_ends_at_expiry_on_logout_and_with_its_token() {
        let s = Sessions::default();
        let tokens = Tokens::from_entries(&[("desk", HttpRole::Operator, "desk-token-0123456789")]);
        let (name, role, print) = tokens.login(b"desk-token-0123456789").unwrap();
        assert_eq!((name.as_str(), role), ("desk", HttpRole::Operator));
        let now = Utc::now();
        let life = Duration::minutes(5);
        let id = s.create(&name, print, now, life).await.unwrap();
        let got = s
            .lookup(&id, &tokens, now + Duration::minutes(4))
            .await
            .unwrap();
        assert_eq!((got.name.as_str(), got.role), ("desk", HttpRole::Operator));
        assert!(
            s.lookup(&id, &tokens, now + life).await.is_none(),
            "expired"
        );
        assert!(s.is_empty(), "an expired session is dropped");

        let id = s.create(&name, print, now, life).await.unwrap();
        s.remove(&id).await;
        assert!(s.lookup(&id, &tokens, now).await.is_none(), "logged out");

        let id = s.create(&name, print, now, life).await.unwrap();
        let rotated =
            Tokens::from_entries(&[("desk", HttpRole::Operator, "a-new-secret-0123456789")]);
        assert!(
            s.lookup(&id, &rotated, now).await.is_none(),
            "secret changed"
        );
        assert!(
            s.lookup(&id, &tokens, now).await.is_none(),
            "and it stays dead"
        );
    }

    /// In the store: a second `Sessions` on the same store (another node, or
    /// the daemon after a restart) knows the session; a logout ends it there
    /// too; a store that cannot be read is no session and no login.
    #[tokio::test]
    async fn sessions_in_the_store_are_shared_and_a_dead_store_is_no_session() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&url, &Default::default()).await.unwrap();
        let (a, b) = (
            Sessions::persistent(store.clone()),
            Sessions::persistent(store.clone()),
        );
        let tokens = Tokens::from_entries(&[("desk", HttpRole::Operator, "desk-token-0123456789")]);
        let (name, _, print) = tokens.login(b"desk-token-0123456789").unwrap();
        let now = Utc::now();
        let id = a
            .create(&name, print, now, Duration::hours(1))
            .await
            .unwrap();
        let seen = b
            .lookup(&id, &tokens, now)
            .await
            .expect("known to the other");
        assert_eq!(seen.name, "desk");
        assert!(a.is_empty(), "nothing held in memory");
        b.remove(&id).await;
        assert!(
            a.lookup(&id, &tokens, now).await.is_none(),
            "logged out everywhere"
        );

        let id = a
            .create(&name, print, now, Duration::hours(1))
            .await
            .unwrap();
        store.close().await;
        assert!(a.lookup(&id, &tokens, now).await.is_none());
        assert!(matches!(
            a.create(&name, print, now, Duration::hours(1)).await,
            Err(SessionError::Store(_))
        ));
    }
}
