//! The `[storage] url` forms we accept, parsed once so that config validation and
//! opening agree.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH` or `sqlite:PATH`; a relative path is relative to the working
    /// directory.
    Sqlite(PathBuf),
    /// `postgres://…` / `postgresql://…`, passed to sqlx as written.
    Postgres(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("storage url {0:?} has no path after sqlite://")]
    EmptySqlitePath(String),
    #[error("storage url {0:?}: expected sqlite://PATH or postgres://USER@HOST/DB")]
    UnknownScheme(String),
}

impl StoreUrl {
    pub fn parse(url: &str) -> Result<StoreUrl, UrlError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_string()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| UrlError::UnknownScheme(Self::redacted(url)))?;
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() {
            return Err(UrlError::EmptySqlitePath(url.to_string()));
        }
        Ok(StoreUrl::Sqlite(PathBuf::from(path)))
    }

    /// The URL with any password replaced, for logs and summaries.
    pub fn redacted(url: &str) -> String {
        let url = redact_query(url);
        let url = url.as_str();
        let Some(scheme_end) = url.find("://") else {
            return url.to_string();
        };
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => format!(
                "{}{}:***{}",
                &url[..scheme_end + 3],
                &authority[..colon],
                &url[scheme_end + 3 + at..]
            ),
            _ => url.to_string(),
        }
    }
}

/// `?password=…` (and `sslpassword`, `pass`, `passwd`) with the value hidden.
fn redact_query(url: &str) -> String {
    let Some((head, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _))
                if ["password", "sslpassword", "pass", "passwd"]
                    .iter()
                    .any(|s| k.eq_ignore_ascii_case(s)) =>
            {
                format!("{k}=***")
            }
            _ => p.to_string(),
        })
        .collect();
    format!("{head}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_query_parameters_are_hidden() {
        assert_eq!(
            StoreUrl::redacted("postgres://pw@db/pollwatch?sslmode=require&password=s3cret"),
            "postgres://pw@db/pollwatch?sslmode=require&password=***"
        );
        assert_eq!(
            StoreUrl::redacted("postgres://pw:s3cret@db/p?PASSWORD=x&sslpassword=y"),
            "postgres://pw:***@db/p?PASSWORD=***&sslpassword=***"
        );
        assert_eq!(
            StoreUrl::redacted("sqlite://a.db?mode=rwc"),
            "sqlite://a.db?mode=rwc"
        );
    }

    #[test]
    fn parses_both_backends() {
        assert_eq!(
            StoreUrl::parse("sqlite://state/pw.db").unwrap(),
            StoreUrl::Sqlite("state/pw.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///var/lib/pollwatch/pw.db?mode=rwc").unwrap(),
            StoreUrl::Sqlite("/var/lib/pollwatch/pw.db".into())
        );
        assert!(matches!(
            StoreUrl::parse("postgres://pw@db/pollwatch").unwrap(),
            StoreUrl::Postgres(_)
        ));
        assert_eq!(
            StoreUrl::parse("mysql://root:secret@x/db").unwrap_err().to_string(),
            "storage url \"mysql://root:***@x/db\": expected sqlite://PATH or postgres://USER@HOST/DB"
        );
        assert!(StoreUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            StoreUrl::redacted("postgres://pw:s3cret@db:5432/pollwatch"),
            "postgres://pw:***@db:5432/pollwatch"
        );
        assert_eq!(
            StoreUrl::redacted("postgres://pw@db/x"),
            "postgres://pw@db/x"
        );
    }
}
