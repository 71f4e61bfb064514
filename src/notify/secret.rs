//! Tokens, signing secrets and passwords: read from a file or the environment,
//! never shown. `Debug` and `Display` print `<redacted>`, so a secret inside a
//! channel struct cannot reach a log line by accident.

use std::fmt;
use std::path::Path;

use super::NotifyError;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads a secret from `file` (trailing newline trimmed: editors add one) or from
/// the environment variable `env`; `None` when neither is configured. An empty
/// file or variable is an error: a channel with an empty token only fails later,
/// at the worst moment, with a provider's cryptic answer.
pub fn load(
    channel: &str,
    what: &'static str,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<Secret>, NotifyError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| NotifyError::SecretFile {
            channel: channel.to_string(),
            what,
            path: path.display().to_string(),
            source,
        })?;
        let value = text.trim_end_matches(['\r', '\n']);
        if value.trim().is_empty() {
            return Err(NotifyError::SecretEmpty {
                channel: channel.to_string(),
                what,
                from: path.display().to_string(),
            });
        }
        return Ok(Some(Secret(value.to_string())));
    }
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(v) if v.trim().is_empty() => Err(NotifyError::SecretEmpty {
                channel: channel.to_string(),
                what,
                from: format!("${var}"),
            }),
            Ok(v) => Ok(Some(Secret(v))),
            Err(_) => Err(NotifyError::SecretEnv {
                channel: channel.to_string(),
                what,
                var: var.to_string(),
            }),
        };
    }
    Ok(None)
}

/// A URL or header with `{token}` filled in; the filled form is itself secret.
pub fn fill(template: &str, token: Option<&Secret>) -> Secret {
    match token {
        Some(t) => Secret(template.replace("{token}", t.expose())),
        None => Secret(template.to_string()),
    }
}
