//! Topic patterns with named levels: `power/{enterprise}/{meter}/data` subscribes
//! to `power/+/+/data` and maps the second and third levels to ids.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    levels: Vec<Level>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic pattern is empty")]
    Empty,
    #[error("level {0:?}: use {{enterprise}}, {{outlet}} or {{meter}} for a named level; + and # are not allowed")]
    BadLevel(String),
    #[error("topic pattern needs {{enterprise}} and one of {{outlet}} or {{meter}}")]
    MissingIds,
}

pub const NAMES: [&str; 3] = ["enterprise", "outlet", "meter"];

impl TopicPattern {
    pub fn parse(pattern: &str) -> Result<TopicPattern, TopicError> {
        if pattern.is_empty() {
            return Err(TopicError::Empty);
        }
        let mut levels = Vec::new();
        for l in pattern.split('/') {
            if let Some(name) = l.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                if !NAMES.contains(&name) {
                    return Err(TopicError::BadLevel(l.to_string()));
                }
                levels.push(Level::Named(name.to_string()));
            } else if l.contains(['+', '#', '{', '}']) {
                return Err(TopicError::BadLevel(l.to_string()));
            } else {
                levels.push(Level::Literal(l.to_string()));
            }
        }
        let named = |n: &str| levels.iter().any(|l| *l == Level::Named(n.to_string()));
        if !named("enterprise") || named("outlet") == named("meter") {
            return Err(TopicError::MissingIds);
        }
        Ok(TopicPattern { levels })
    }

    /// The MQTT filter to subscribe to.
    pub fn filter(&self) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                Level::Literal(s) => s.as_str(),
                Level::Named(_) => "+",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The named levels of `topic`, or `None` if it does not fit the pattern.
    pub fn captures(&self, topic: &str) -> Option<BTreeMap<String, String>> {
        let parts: Vec<&str> = topic.split('/').collect();
        if parts.len() != self.levels.len() {
            return None;
        }
        let mut out = BTreeMap::new();
        for (level, part) in self.levels.iter().zip(parts) {
            match level {
                Level::Literal(l) if l != part => return None,
                Level::Literal(_) => {}
                Level::Named(n) => {
                    out.insert(n.clone(), part.to_string());
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_levels_become_plus_and_captures() {
        let p = TopicPattern::parse("power/{enterprise}/{meter}/data").unwrap();
        assert_eq!(p.filter(), "power/+/+/data");
        let c = p.captures("power/E1/M-FGD/data").unwrap();
        assert_eq!(c["enterprise"], "E1");
        assert_eq!(c["meter"], "M-FGD");
        assert!(p.captures("power/E1/M-FGD/status").is_none());
        assert!(p.captures("power/E1/data").is_none());
        assert_eq!(
            TopicPattern::parse("a/{x}/b").unwrap_err(),
            TopicError::BadLevel("{x}".into())
        );
        assert_eq!(
            TopicPattern::parse("a/+/b").unwrap_err(),
            TopicError::BadLevel("+".into())
        );
        assert_eq!(
            TopicPattern::parse("a/{enterprise}").unwrap_err(),
            TopicError::MissingIds
        );
    }
}
