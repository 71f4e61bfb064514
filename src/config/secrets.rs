//! What `pollwatch check-config` checks beyond the files themselves: every
//! secret or certificate the running daemon will read from a `*_file` or a
//! `*_env` (as `nginx -t` checks certificate files), and the HJ 212-2025 SM4 keys
//! of loggers (present and 32 hex digits; see `keys.rs`).
//!
//! These are not load errors: `pollwatch run` starts with them broken, because
//! readings must never stop for an SMS token — a channel whose secret cannot be
//! read is *unavailable* and its routes fall back to their next channel. But a
//! sysadmin running check-config before a reload wants to hear of each one, by
//! file or variable, and check-config exits 1.

use std::path::Path;

use super::{Config, Diagnostic};

const MAIN: &str = "pollwatch.toml";

fn file_problem(path: &Path) -> Option<String> {
    match std::fs::read(path) {
        Err(e) => Some(format!("cannot read {}: {e}", path.display())),
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => {
            Some(format!("{} is empty", path.display()))
        }
        Ok(_) => None,
    }
}

fn env_problem(var: &str) -> Option<String> {
    match std::env::var(var) {
        Err(_) => Some(format!("environment variable {var} is not set")),
        Ok(v) if v.trim().is_empty() => Some(format!("environment variable {var} is empty")),
        Ok(_) => None,
    }
}

/// Every `*_file` that cannot be read or is empty, and every `*_env` that is
/// unset or empty, each named with its key path.
pub fn environment_problems(cfg: &Config) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut push = |path: String, problem: Option<String>| {
        if let Some(message) = problem {
            out.push(Diagnostic {
                file: MAIN.to_string(),
                line: None,
                path,
                message,
            });
        }
    };
    for (i, c) in cfg.daemon.channels.iter().enumerate() {
        let at = format!("channels[{i}] ({})", c.id);
        for (key, file) in [
            ("token_file", &c.token_file),
            ("secret_file", &c.secret_file),
            ("password_file", &c.password_file),
        ] {
            if let Some(f) = file {
                push(format!("{at}.{key}"), file_problem(f));
            }
        }
        for (key, var) in [
            ("token_env", &c.token_env),
            ("secret_env", &c.secret_env),
            ("password_env", &c.password_env),
        ] {
            if let Some(v) = var {
                push(format!("{at}.{key}"), env_problem(v));
            }
        }
    }
    let ev = &cfg.daemon.evidence;
    if let Some(f) = &ev.key_file {
        push(
            "evidence.key_file".into(),
            crate::seal::read_key(f).err().map(|e| e.to_string()),
        );
    }
    for (i, f) in ev.old_key_files.iter().enumerate() {
        push(
            format!("evidence.old_key_files[{i}]"),
            crate::seal::read_key(f).err().map(|e| e.to_string()),
        );
    }
    for (i, t) in cfg.daemon.http.tokens.iter().enumerate() {
        if let Some(f) = &t.token_file {
            push(format!("http.tokens[{i}].token_file"), file_problem(f));
        }
    }
    if let Some(m) = &cfg.daemon.mqtt {
        for (key, file) in [
            ("ca_file", &m.ca_file),
            ("client_cert_file", &m.client_cert_file),
            ("client_key_file", &m.client_key_file),
            ("password_file", &m.password_file),
        ] {
            if let Some(f) = file {
                push(format!("mqtt.{key}"), file_problem(f));
            }
        }
        if let Some(v) = &m.password_env {
            push("mqtt.password_env".into(), env_problem(v));
        }
    }
    // HJ 212-2025 SM4 keys: unreadable or malformed (32 hex digits), by outlet.
    for (e, file) in cfg.enterprises.iter().zip(&cfg.enterprise_files) {
        for (i, o) in e.outlets.iter().enumerate() {
            let Some(h) = &o.hj212 else { continue };
            if let Some(Err((key, message))) = super::keys::read_sm4_key(h, &cfg.dir) {
                out.push(Diagnostic {
                    file: file.clone(),
                    line: None,
                    path: format!("outlets[{i}].hj212.{key}"),
                    message,
                });
            }
        }
    }
    out
}

/// What check-config says (without failing) when no evidence key is set.
pub fn evidence_warning(cfg: &Config) -> Option<String> {
    cfg.daemon.evidence.key_file.is_none().then(|| {
        "warning: [evidence] key_file is not set: alert timelines are chained without a key \
         (anyone who can write the database can rewrite them) and `pollwatch alerts verify` \
         reports them \"not keyed\"; create one with `pollwatch evidence init-key --out PATH`"
            .to_string()
    })
}
