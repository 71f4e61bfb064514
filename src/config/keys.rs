//! SM4 keys of HJ 212-2025 loggers (`hj212.sm4_key_file` / `sm4_key_env`).
//!
//! Keys are secrets, so they never sit in the enterprise file: the sysadmin issues
//! one per logger, registers it on the logger, and puts it in a file readable by
//! the service only (or in the service's environment). They are read here, while
//! the config is loaded, so that `check-config` and a reload find a missing or
//! malformed key before anything changes; each error names the file or variable
//! and what is wrong with its content, never the content. The key is kept on the
//! outlet's [`Hj212Identity`](super::Hj212Identity), whose `Debug` shows it redacted.

use std::path::Path;

use super::enterprise::Enterprise;
use super::validate::Checker;
use crate::sources::hj212::codec::crypt::Sm4Key;

/// Reads every outlet's key into `hj212.sm4_key`; problems become diagnostics.
pub fn load_sm4_keys(c: &mut Checker<'_>, e: &mut Enterprise, dir: &Path) {
    for (i, o) in e.outlets.iter_mut().enumerate() {
        let Some(h) = o.hj212.as_mut() else { continue };
        let p = format!("outlets[{i}].hj212");
        h.sm4_key = match (&h.sm4_key_file, &h.sm4_key_env) {
            (Some(_), Some(_)) => {
                c.error(&p, "set sm4_key_file or sm4_key_env, not both");
                None
            }
            (Some(file), None) => {
                let path = dir.join(file);
                match std::fs::read_to_string(&path) {
                    Ok(text) => match Sm4Key::from_hex(&text) {
                        Ok(k) => Some(k),
                        Err(e) => {
                            c.error(
                                &format!("{p}.sm4_key_file"),
                                format!("{}: {e}", path.display()),
                            );
                            None
                        }
                    },
                    Err(e) => {
                        c.error(
                            &format!("{p}.sm4_key_file"),
                            format!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
            (None, Some(var)) => match std::env::var(var) {
                Ok(text) => match Sm4Key::from_hex(&text) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        c.error(&format!("{p}.sm4_key_env"), format!("${var}: {e}"));
                        None
                    }
                },
                Err(_) => {
                    c.error(
                        &format!("{p}.sm4_key_env"),
                        format!("environment variable {var} is not set (or not UTF-8)"),
                    );
                    None
                }
            },
            (None, None) => None,
        };
        if h.require_encryption && h.sm4_key_file.is_none() && h.sm4_key_env.is_none() {
            c.error(
                &format!("{p}.require_encryption"),
                "needs the logger's key: set sm4_key_file or sm4_key_env",
            );
        }
    }
}
