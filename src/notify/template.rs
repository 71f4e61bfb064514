//! Message text. Chinese by default; every channel may replace the body with its own
//! `template`. A placeholder is `{name}` with a name from [`FIELDS`]; any other brace
//! is literal, so JSON bodies can be written as they are:
//!
//! ```toml
//! template = "{severity}：{enterprise} {measurement}（{window}）{link}"
//! body = '{"phones": {mobiles}, "text": {text}}'   # webhook: values JSON-quoted
//! ```
//!
//! The default text reads, for an hourly SO2 exceedance:
//!
//! ```text
//! 【严重】东山热电有限公司 SO2 超标
//! 监测值：SO2 小时均值(折算) 41.2 mg/m³，限值 35
//! ```
//!
//! WeCom refuses text over 2048 bytes and markdown over 4096; [`truncate_bytes`]
//! cuts on a character boundary (a cut inside a 3-byte Chinese character is
//! invalid UTF-8, which the provider rejects outright).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{AlertFacts, Message, Recipients};

/// The placeholders templates may use.
pub const FIELDS: &[&str] = &[
    "alert_id",
    "title",
    "text",
    "markdown",
    "enterprise",
    "enterprise_id",
    "district",
    "industry",
    "positive_list",
    "outlet",
    "outlet_id",
    "factor",
    "factor_code",
    "value",
    "limit",
    "unit",
    "basis",
    "measurement",
    "window",
    "rule",
    "severity",
    "link",
    "mobiles",
    "emails",
    "alert_ids",
];

pub const DEFAULT_TITLE: &str = "【{severity}】{enterprise} {factor} 告警";

pub const DEFAULT_TEXT: &str = "【{severity}】{enterprise} {factor} 告警
监测值：{measurement}
企业：{enterprise}（{district}，{industry}）{positive_list}
排口：{outlet}（{outlet_id}）
因子：{factor}（{factor_code}）
时段：{window}
规则：{rule}
告警编号：{alert_id}
详情：{link}";

pub const DEFAULT_MARKDOWN: &str = "### 【{severity}】{enterprise} {factor} 告警
> 监测值：**{measurement}**

- 企业：{enterprise}（{district}，{industry}）{positive_list}
- 排口：{outlet}（{outlet_id}）
- 因子：{factor}（{factor_code}）
- 时段：{window}
- 规则：{rule}
- 告警编号：{alert_id}

详情：{link}";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {{{0}}}; known: {known}", known = FIELDS.join(", "))]
    Unknown(String),
    #[error("template is empty")]
    Empty,
}

/// Finds `{identifier}` spans; other braces are literal.
fn placeholders(tpl: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let bytes = tpl.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            let start = i + 1;
            let mut j = start;
            while j < bytes.len() && (bytes[j].is_ascii_lowercase() || bytes[j] == b'_') {
                j += 1;
            }
            if j > start && j < bytes.len() && bytes[j] == b'}' {
                out.push((i, j + 1, &tpl[start..j]));
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

pub fn check(tpl: &str) -> Result<(), TemplateError> {
    if tpl.trim().is_empty() {
        return Err(TemplateError::Empty);
    }
    for (_, _, name) in placeholders(tpl) {
        if !FIELDS.contains(&name) {
            return Err(TemplateError::Unknown(name.to_string()));
        }
    }
    Ok(())
}

/// Fills placeholders from `vars`; `escape` is applied to each value (JSON
/// quoting for webhook bodies, identity for text).
pub fn render(
    tpl: &str,
    vars: &BTreeMap<&'static str, String>,
    escape: fn(&str) -> String,
) -> String {
    let mut out = String::with_capacity(tpl.len() + 64);
    let mut last = 0;
    for (s, e, name) in placeholders(tpl) {
        out.push_str(&tpl[last..s]);
        match vars.get(name) {
            Some(v) => out.push_str(&escape(v)),
            None => out.push_str(&tpl[s..e]),
        }
        last = e;
    }
    out.push_str(&tpl[last..]);
    out
}

pub fn plain(s: &str) -> String {
    s.to_string()
}

pub fn json_quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A number as people write it: at most 3 decimals, no trailing zeros.
pub fn number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

pub fn window(start: DateTime<Utc>, end: DateTime<Utc>, tz: Tz) -> String {
    let (s, e) = (start.with_timezone(&tz), end.with_timezone(&tz));
    if s.date_naive() == e.date_naive() {
        format!("{}–{}", s.format("%Y-%m-%d %H:%M"), e.format("%H:%M"))
    } else {
        format!(
            "{}–{}",
            s.format("%Y-%m-%d %H:%M"),
            e.format("%Y-%m-%d %H:%M")
        )
    }
}

/// "SO2 小时均值(折算) 41.2 mg/m³，限值 35"
pub fn measurement(f: &AlertFacts) -> String {
    // pH has no unit: "pH值 实时值 5.8，限值 6", not "5.8 ，".
    let unit = if f.unit.is_empty() {
        String::new()
    } else {
        format!(" {}", f.unit)
    };
    format!(
        "{} {}{} {}{unit}，限值 {}",
        f.factor_name,
        f.basis,
        if f.converted { "(折算)" } else { "" },
        number(f.value),
        number(f.limit)
    )
}

/// Placeholder values for one alert.
pub fn vars(f: &AlertFacts, tz: Tz, to: &Recipients) -> BTreeMap<&'static str, String> {
    let mut v = BTreeMap::new();
    v.insert("alert_id", f.alert_id.clone());
    v.insert("alert_ids", f.alert_id.clone());
    v.insert("enterprise", f.enterprise_name.clone());
    v.insert("enterprise_id", f.enterprise_id.clone());
    v.insert("district", f.district.clone());
    v.insert("industry", f.industry.clone());
    v.insert(
        "positive_list",
        if f.positive_list {
            "【正面清单企业】"
        } else {
            ""
        }
        .to_string(),
    );
    v.insert("outlet", f.outlet_name.clone());
    v.insert("outlet_id", f.outlet_id.clone());
    v.insert("factor", f.factor_name.clone());
    v.insert("factor_code", f.factor_code.clone());
    v.insert("value", number(f.value));
    v.insert("limit", number(f.limit));
    v.insert("unit", f.unit.clone());
    v.insert("basis", f.basis.clone());
    v.insert("measurement", measurement(f));
    v.insert("window", window(f.window_start, f.window_end, tz));
    v.insert("rule", f.rule.clone());
    v.insert("severity", f.severity.label_zh().to_string());
    v.insert("link", f.link.clone().unwrap_or_else(|| "—".into()));
    v.insert("mobiles", to.mobiles().join(","));
    v.insert("emails", to.emails().join(","));
    v
}

/// The three templates a message is made from.
#[derive(Debug, Clone)]
pub struct Templates {
    pub title: String,
    pub text: String,
    pub markdown: String,
}

impl Default for Templates {
    fn default() -> Self {
        Templates {
            title: DEFAULT_TITLE.into(),
            text: DEFAULT_TEXT.into(),
            markdown: DEFAULT_MARKDOWN.into(),
        }
    }
}

impl Templates {
    pub fn message(&self, f: &AlertFacts, tz: Tz) -> Message {
        let vars = vars(f, tz, &Recipients::default());
        Message {
            title: render(&self.title, &vars, plain),
            text: render(&self.text, &vars, plain),
            markdown: render(&self.markdown, &vars, plain),
            severity: f.severity,
            link: f.link.clone(),
            alert_ids: vec![f.alert_id.clone()],
            facts: vec![f.clone()],
            digest: false,
            refs: Vec::new(),
            attachments: Vec::new(),
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, ending in "…" when cut.
pub fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    const ELLIPSIS: &str = "…";
    let budget = max.saturating_sub(ELLIPSIS.len());
    let mut cut = budget.min(s.len());
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = s[..cut].to_string();
    if max >= ELLIPSIS.len() {
        out.push_str(ELLIPSIS);
    }
    out
}

/// One line of a digest: the alert id first, so that no cut can lose it.
fn digest_line(m: &Message) -> String {
    match m.facts.first() {
        Some(f) => format!(
            "#{} [{}] {} {} {} {}/{} {}",
            f.alert_id,
            f.severity.label_zh(),
            f.enterprise_name,
            f.outlet_id,
            f.factor_name,
            number(f.value),
            number(f.limit),
            f.unit
        ),
        None => format!("#{} {}", m.alert_ids.join(" #"), m.title),
    }
}

/// Merges queued messages into one digest no longer than `max_bytes` (text and
/// markdown alike). Alerts get a line each while they fit; the rest are listed by
/// id only ("另有 N 条：#… #…"), so a digest names every alert it covers. Returns
/// the digest and how many of `queued` it covers (at least one); the caller keeps
/// the rest for the next digest, so none is ever dropped.
pub fn digest(
    queued: &[Message],
    max_bytes: Option<usize>,
    link: Option<&str>,
) -> (Message, usize) {
    let max = max_bytes.unwrap_or(usize::MAX);
    let lines: Vec<String> = queued.iter().map(digest_line).collect();
    let ids: Vec<String> = queued
        .iter()
        .map(|m| format!("#{}", m.alert_ids.join(" #")))
        .collect();
    let footer = link.map(|l| format!("\n详情：{l}")).unwrap_or_default();
    // (title, text, markdown) for the first `n` messages, `full` of them with a line.
    let compose = |n: usize, full: usize| {
        let title = format!("【告警汇总】{n} 条告警（通道限流，合并发送）");
        let mut text = vec![title.clone()];
        let mut md = vec![format!("### {title}")];
        for l in &lines[..full] {
            text.push(l.clone());
            md.push(format!("- {l}"));
        }
        if full < n {
            let rest = format!("另有 {} 条：{}", n - full, ids[full..n].join(" "));
            text.push(rest.clone());
            md.push(format!("- {rest}"));
        }
        (title, text.join("\n") + &footer, md.join("\n") + &footer)
    };
    let fits = |c: &(String, String, String)| c.1.len() <= max && c.2.len() <= max;
    let n_all = queued.len();
    let mut chosen = None;
    for full in (0..=n_all).rev() {
        let c = compose(n_all, full);
        if fits(&c) {
            chosen = Some((c, n_all));
            break;
        }
    }
    if chosen.is_none() {
        // Too many even as bare ids: as many as fit, the rest wait for the next one.
        for n in (1..n_all).rev() {
            let c = compose(n, 0);
            if fits(&c) {
                chosen = Some((c, n));
                break;
            }
        }
    }
    let ((title, text, markdown), taken) = chosen.unwrap_or_else(|| {
        let (t, x, m) = compose(n_all.min(1), 0);
        (
            (t, truncate_bytes(&x, max), truncate_bytes(&m, max)),
            n_all.min(1),
        )
    });
    let covered = &queued[..taken];
    let severity = covered
        .iter()
        .map(|m| m.severity)
        .min()
        .unwrap_or(crate::config::Severity::Warning);
    let msg = Message {
        title,
        text,
        markdown,
        severity,
        link: link.map(str::to_string),
        alert_ids: covered.iter().flat_map(|m| m.alert_ids.clone()).collect(),
        facts: covered.iter().flat_map(|m| m.facts.clone()).collect(),
        digest: true,
        refs: covered.iter().flat_map(|m| m.refs.clone()).collect(),
        // One digest speaks for many alerts: their charts are in the console.
        attachments: Vec::new(),
    };
    (msg, taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_utf8_and_the_limit() {
        let s = "超标".repeat(1000);
        for max in [0, 1, 2, 3, 4, 5, 2048, 4096] {
            let t = truncate_bytes(&s, max);
            assert!(t.len() <= max, "{max}: {}", t.len());
            assert!(std::str::from_utf8(t.as_bytes()).is_ok());
        }
        assert_eq!(truncate_bytes("abc", 10), "abc");
        assert!(truncate_bytes(&s, 2048).ends_with('…'));
    }

    #[test]
    fn placeholders_and_literal_braces() {
        assert!(check(r#"{"phones": {mobiles}, "text": {text}}"#).is_ok());
        assert_eq!(
            check("{enterprize}"),
            Err(TemplateError::Unknown("enterprize".into()))
        );
        let mut v = BTreeMap::new();
        v.insert("text", "a\"b".to_string());
        assert_eq!(
            render(r#"{"t": {text}}"#, &v, json_quoted),
            r#"{"t": "a\"b"}"#
        );
    }

    #[test]
    fn digests_name_every_alert_within_the_limit() {
        let msgs: Vec<Message> = (0..200)
            .map(|i| Message {
                title: String::new(),
                text: String::new(),
                markdown: String::new(),
                severity: crate::config::Severity::Major,
                link: None,
                alert_ids: vec![format!("AL-{i:03}")],
                facts: Vec::new(),
                digest: false,
                refs: Vec::new(),
                attachments: Vec::new(),
            })
            .collect();
        let mut covered = 0;
        while covered < msgs.len() {
            let (d, n) = digest(&msgs[covered..], Some(2048), None);
            assert!(n >= 1);
            assert!(d.text.len() <= 2048 && d.markdown.len() <= 2048);
            for m in &msgs[covered..covered + n] {
                assert!(d.text.contains(&m.alert_ids[0]), "{}", m.alert_ids[0]);
            }
            covered += n;
        }
        let (d, n) = digest(&msgs[..3], Some(2048), Some("https://x/alerts"));
        assert_eq!(n, 3);
        assert!(d.text.ends_with("详情：https://x/alerts"));
    }

    #[test]
    fn a_value_without_unit_has_no_stray_space() {
        let mut f = AlertFacts {
            alert_id: "1".into(),
            enterprise_id: "E".into(),
            enterprise_name: "城南污水处理厂".into(),
            district: "吴中区".into(),
            industry: "污水处理".into(),
            positive_list: false,
            outlet_id: "DW001".into(),
            outlet_name: "总排口".into(),
            factor_code: "w01001".into(),
            factor_name: "pH值".into(),
            value: 5.8,
            limit: 6.0,
            permit_limit: None,
            unit: String::new(),
            basis: "实时值".into(),
            converted: false,
            window_start: chrono::DateTime::UNIX_EPOCH,
            window_end: chrono::DateTime::UNIX_EPOCH,
            rule: "exceedance".into(),
            severity: crate::config::Severity::Major,
            link: None,
        };
        assert_eq!(measurement(&f), "pH值 实时值 5.8，限值 6");
        f.unit = "mg/m³".into();
        f.converted = true;
        assert_eq!(measurement(&f), "pH值 实时值(折算) 5.8 mg/m³，限值 6");
    }

    #[test]
    fn numbers_read_naturally() {
        assert_eq!(number(35.0), "35");
        assert_eq!(number(41.2), "41.2");
        assert_eq!(number(0.0004), "0");
        assert_eq!(number(7.125), "7.125");
    }
}
