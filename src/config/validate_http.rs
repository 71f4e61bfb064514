//! `[http]` checks: tokens must be usable before a reload may install them.

use std::collections::HashSet;

use super::daemon::HttpSection;
use super::validate::Checker;

/// Shorter secrets are guessable; an operator token can reload the config.
pub const MIN_TOKEN_LEN: usize = 16;

/// Console sessions shorter than this log officers out mid-task; longer than
/// [`MAX_SESSION`] outlive any shift and a forgotten browser stays logged in.
pub const MIN_SESSION: std::time::Duration = std::time::Duration::from_secs(5 * 60);
pub const MAX_SESSION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

pub fn http(c: &mut Checker<'_>, h: &HttpSection) {
    let life = h.session_lifetime.0;
    if !(MIN_SESSION..=MAX_SESSION).contains(&life) {
        c.error(
            "http.session_lifetime",
            "must be between 5m and 7d (a console login lasts this long)",
        );
    }
    let mut names = HashSet::new();
    let mut secrets = HashSet::new();
    for (i, t) in h.tokens.iter().enumerate() {
        let at = format!("http.tokens[{i}]");
        if t.name.trim().is_empty() {
            c.error(&format!("{at}.name"), "must not be empty");
        } else if !names.insert(t.name.as_str()) {
            c.error(
                &format!("{at}.name"),
                format!("token name {:?} is used twice", t.name),
            );
        }
        let key = match (&t.token, &t.token_file) {
            (Some(_), Some(_)) => {
                c.error(&at, "set token or token_file, not both");
                continue;
            }
            (None, None) => {
                c.error(&at, "set token_file (or token, for tests)");
                continue;
            }
            (Some(_), None) => format!("{at}.token"),
            (None, Some(_)) => format!("{at}.token_file"),
        };
        match t.secret() {
            Err(e) => c.error(&key, format!("cannot read the token: {e}")),
            Ok(s) if s.chars().count() < MIN_TOKEN_LEN => c.error(
                &key,
                format!("the token must be at least {MIN_TOKEN_LEN} characters"),
            ),
            // Two names for one secret would make the audit trail lie.
            Ok(s) if !secrets.insert(s.clone()) => c.error(&key, "the same token is given twice"),
            Ok(_) => {}
        }
    }
}
