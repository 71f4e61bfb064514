//! Config errors that a sysadmin can act on: file, line and key path.
//!
//! Typed deserialisation (serde) tells us *what* is wrong but stops at the first
//! problem and knows nothing of lines; validation knows key paths but not lines. A
//! [`SourceMap`] built from the spans `toml_edit` keeps bridges both: it maps key
//! paths such as `outlets[0].limits[1].warn_at` to the line they are written on, and
//! a byte offset back to the innermost key path that contains it.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use toml_edit::{Item, Table, Value};

/// One problem in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Path relative to the config directory, e.g. `enterprises/e0001.toml`.
    pub file: String,
    /// 1-based line, when the problem can be placed.
    pub line: Option<usize>,
    /// Key path inside the file (`outlets[0].limits[1].warn_at`); empty for the file
    /// as a whole.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a config directory. Loading never stops at the first one:
/// a sysadmin fixing a city's worth of files wants the whole list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} config error{}:", if n == 1 { "" } else { "s" })?;
        for d in &self.0 {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

/// Key paths and their positions in one file.
#[derive(Debug, Default)]
pub struct SourceMap {
    line_starts: Vec<usize>,
    /// key path → (start of the key or element, end of its value)
    spans: HashMap<String, Range<usize>>,
}

impl SourceMap {
    /// Builds the map from the text. A file that does not parse gets an empty map
    /// (its parse error carries its own position).
    pub fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let mut map = SourceMap {
            line_starts,
            spans: HashMap::new(),
        };
        if let Ok(doc) = toml_edit::Document::parse(text) {
            map.table(doc.as_table(), "");
        }
        map
    }

    pub fn line_of_offset(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// The line a key path is written on. A path that is not in the file (a missing
    /// key) is placed at its nearest written ancestor, e.g. the `[[outlets]]` header.
    pub fn line_of_path(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(span) = self.spans.get(p) {
                return Some(self.line_of_offset(span.start));
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// The innermost key path whose key or value contains `offset`.
    pub fn path_at(&self, offset: usize) -> Option<&str> {
        self.spans
            .iter()
            .filter(|(_, r)| r.start <= offset && offset < r.end.max(r.start + 1))
            .min_by_key(|(p, r)| (r.end - r.start, std::cmp::Reverse(p.len())))
            .map(|(p, _)| p.as_str())
    }

    pub fn diagnostic(&self, file: &str, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_string(),
            line: self.line_of_path(path),
            path: path.to_string(),
            message: message.into(),
        }
    }

    fn record(&mut self, path: String, start: Option<usize>, end: Option<usize>) {
        if let (Some(s), Some(e)) = (start, end.or(start)) {
            self.spans.insert(path, s..e.max(s));
        }
    }

    fn table(&mut self, table: &Table, prefix: &str) {
        for (key, item) in table.iter() {
            let path = join(prefix, key);
            let key_start = table
                .key(key)
                .and_then(|k| k.span())
                .map(|r| r.start)
                .or_else(|| item.span().map(|r| r.start));
            self.record(path.clone(), key_start, item.span().map(|r| r.end));
            self.item(item, &path);
        }
    }

    fn item(&mut self, item: &Item, path: &str) {
        match item {
            Item::Table(t) => self.table(t, path),
            Item::ArrayOfTables(arr) => {
                for (i, t) in arr.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    let span = t.span();
                    self.record(
                        p.clone(),
                        span.as_ref().map(|r| r.start),
                        span.map(|r| r.end),
                    );
                    self.table(t, &p);
                }
            }
            Item::Value(v) => self.value(v, path),
            Item::None => {}
        }
    }

    fn value(&mut self, value: &Value, path: &str) {
        match value {
            Value::Array(arr) => {
                for (i, v) in arr.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    let span = v.span();
                    self.record(
                        p.clone(),
                        span.as_ref().map(|r| r.start),
                        span.map(|r| r.end),
                    );
                    self.value(v, &p);
                }
            }
            Value::InlineTable(t) => {
                for (key, v) in t.iter() {
                    let p = join(path, key);
                    let start = t
                        .key(key)
                        .and_then(|k| k.span())
                        .map(|r| r.start)
                        .or_else(|| v.span().map(|r| r.start));
                    self.record(p.clone(), start, v.span().map(|r| r.end));
                    self.value(v, &p);
                }
            }
            _ => {}
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Deserialises one file strictly, turning a serde error into a placed diagnostic.
pub fn parse_file<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    map: &SourceMap,
) -> Result<T, Diagnostic> {
    toml::from_str::<T>(text).map_err(|e| {
        let (line, path) = match e.span() {
            Some(span) => (
                Some(map.line_of_offset(span.start)),
                map.path_at(span.start).unwrap_or("").to_string(),
            ),
            None => (None, String::new()),
        };
        Diagnostic {
            file: file.to_string(),
            line,
            path,
            message: e.message().trim().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "id = \"e1\"\nname = \"x\"\n\n[[outlets]]\nid = \"DA001\"\nhj212 = { mn = \"M1\", password = \"p\" }\n\n[[outlets.limits]]\nfactor = \"a21026\"\nwarn_at = 1.5\n\n[[outlets.limits]]\nfactor = \"a21002\"\nmax = 50\n";

    #[test]
    fn paths_map_to_lines() {
        let m = SourceMap::new(TEXT);
        assert_eq!(m.line_of_path("id"), Some(1));
        assert_eq!(m.line_of_path("outlets[0]"), Some(4));
        assert_eq!(m.line_of_path("outlets[0].hj212.password"), Some(6));
        assert_eq!(m.line_of_path("outlets[0].limits[0].warn_at"), Some(10));
        assert_eq!(m.line_of_path("outlets[0].limits[1].max"), Some(14));
        // Missing keys land on their nearest ancestor.
        assert_eq!(m.line_of_path("outlets[0].limits[1].basis"), Some(12));
        assert_eq!(m.line_of_path("district"), None);
    }

    #[test]
    fn offsets_map_back_to_the_innermost_path() {
        let m = SourceMap::new(TEXT);
        let at = TEXT.find("1.5").unwrap();
        assert_eq!(m.path_at(at), Some("outlets[0].limits[0].warn_at"));
        let at = TEXT.find("\"p\"").unwrap();
        assert_eq!(m.path_at(at), Some("outlets[0].hj212.password"));
    }
}
