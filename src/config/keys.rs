//! SM4 keys of HJ 212-2025 loggers (`hj212.sm4_key_file` / `sm4_key_env`).
//!
//! Keys are secrets, so they never sit in the enterprise file: the sysadmin issues
//! one per logger, registers it on the logger, and puts it in a file readable by
//! the service only (or in the service's environment). They are read while the
//! config is loaded, so a reload after a key rotation puts the new key in force.
//!
//! Like the channels' secrets (see [`super::secrets`]), a key that cannot be read
//! or is malformed is **not** a load error: readings must not stop for every
//! logger because one key file is missing. The daemon runs with that logger keyless
//! (its encrypted frames become `bad_decrypt` dead letters, kept raw, and the
//! logger resends), and `check-config` names the file or variable and what is wrong
//! with it — never the key — and exits 1. Setting both sources, or
//! `require_encryption` without one, is a mistake in the file itself and is a
//! load error. The key is kept on the outlet's
//! [`Hj212Identity`](super::Hj212Identity), whose `Debug` shows it redacted.

use std::path::Path;

use super::enterprise::{Enterprise, Hj212Identity};
use super::validate::Checker;
use crate::sources::hj212::codec::crypt::Sm4Key;

/// The outlet's key, `None` when it has no key source; an error names the key
/// (`sm4_key_file` or `sm4_key_env`) and says what is wrong.
pub fn read_sm4_key(
    h: &Hj212Identity,
    dir: &Path,
) -> Option<Result<Sm4Key, (&'static str, String)>> {
    if let Some(file) = &h.sm4_key_file {
        let path = dir.join(file);
        return Some(match std::fs::read_to_string(&path) {
            Ok(text) => Sm4Key::from_hex(&text)
                .map_err(|e| ("sm4_key_file", format!("{}: {e}", path.display()))),
            Err(e) => Err((
                "sm4_key_file",
                format!("cannot read {}: {e}", path.display()),
            )),
        });
    }
    let var = h.sm4_key_env.as_ref()?;
    Some(match std::env::var(var) {
        Ok(text) => Sm4Key::from_hex(&text).map_err(|e| ("sm4_key_env", format!("${var}: {e}"))),
        Err(_) => Err((
            "sm4_key_env",
            format!("environment variable {var} is not set (or not UTF-8)"),
        )),
    })
}

/// Reads every outlet's key into `hj212.sm4_key` (left `None` when unreadable);
/// mistakes in the file itself become diagnostics.
pub fn load_sm4_keys(c: &mut Checker<'_>, e: &mut Enterprise, dir: &Path) {
    for (i, o) in e.outlets.iter_mut().enumerate() {
        let Some(h) = o.hj212.as_mut() else { continue };
        let p = format!("outlets[{i}].hj212");
        if h.sm4_key_file.is_some() && h.sm4_key_env.is_some() {
            c.error(&p, "set sm4_key_file or sm4_key_env, not both");
        }
        if h.require_encryption && h.sm4_key_file.is_none() && h.sm4_key_env.is_none() {
            c.error(
                &format!("{p}.require_encryption"),
                "needs the logger's key: set sm4_key_file or sm4_key_env",
            );
        }
        h.sm4_key = read_sm4_key(h, dir).and_then(Result::ok);
    }
}
