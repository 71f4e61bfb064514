//! Generic HTTP webhook: SMS gateways, ticketing systems, anything with an HTTP API.
//!
//! ```toml
//! [[channels]]
//! id = "sms"
//! kind = "webhook"
//! url = "https://sms.example.gov.cn/api/send"
//! method = "POST"                                   # or "PUT"
//! headers = { Authorization = "Bearer {token}" }
//! token_file = "/etc/pollwatch/secrets/sms.token"
//! body = '{"phones": {mobiles}, "template": "SMS_0001", "params": {"text": {text}}}'
//! ok_field = "code"          # where the gateway says how it went (dotted path) …
//! ok_values = ["OK"]         # … what means sent (default "0", "OK", "ok", "success")
//! retry_values = ["Throttling", "isv.BUSINESS_LIMIT_CONTROL"]
//! ```
//!
//! Placeholders in `body` are JSON values: strings quoted and escaped, `{mobiles}`,
//! `{emails}` and `{alert_ids}` as arrays. Without `body`, the message is sent as
//! JSON (`title`, `text`, `severity`, `alert_ids`, `mobiles`, `facts`). HTTP 429 and
//! 5xx are retried, other non-2xx are permanent; a 2xx with `ok_field` set is judged
//! by that field, because SMS gateways, like robots, answer 200 on failure.

use std::collections::BTreeMap;

use serde_json::json;

use super::http::Http;
use super::template;
use super::{Body, Channel, Message, Outcome, Recipients, Secret, SendFuture};

#[derive(Debug)]
pub struct Webhook {
    pub(crate) url: Secret,
    pub(crate) method: reqwest::Method,
    pub(crate) headers: Vec<(String, Secret)>,
    pub(crate) body_template: Option<String>,
    pub(crate) ok_field: Option<String>,
    pub(crate) ok_values: Vec<String>,
    pub(crate) retry_values: Vec<String>,
    pub(crate) http: Http,
    pub(crate) body: Body,
}

pub fn default_ok_values() -> Vec<String> {
    ["0", "OK", "ok", "success"].map(String::from).to_vec()
}

impl Webhook {
    pub fn render_body(&self, msg: &Message, to: &Recipients) -> String {
        let text = self.body.text(msg, to);
        let Some(tpl) = &self.body_template else {
            return json!({
                "title": msg.title,
                "text": text,
                "severity": msg.severity.as_str(),
                "alert_ids": msg.alert_ids,
                "link": msg.link,
                "mobiles": to.mobiles(),
                "facts": msg.facts,
            })
            .to_string();
        };
        let mut vars: BTreeMap<&'static str, String> = match msg.facts.first() {
            Some(f) if !msg.digest => template::vars(f, self.body.tz, to)
                .into_iter()
                .map(|(k, v)| (k, template::json_quoted(&v)))
                .collect(),
            _ => BTreeMap::new(),
        };
        vars.insert("title", template::json_quoted(&msg.title));
        vars.insert("text", template::json_quoted(&text));
        vars.insert(
            "markdown",
            template::json_quoted(&self.body.markdown(msg, to)),
        );
        vars.insert("severity", template::json_quoted(msg.severity.label_zh()));
        vars.insert("mobiles", json!(to.mobiles()).to_string());
        vars.insert("emails", json!(to.emails()).to_string());
        vars.insert("alert_ids", json!(msg.alert_ids).to_string());
        // A digest has no single enterprise or value: such placeholders read empty.
        for f in template::FIELDS {
            vars.entry(f).or_insert_with(|| "\"\"".to_string());
        }
        template::render(tpl, &vars, template::plain)
    }

    fn judge(&self, json: Option<&serde_json::Value>) -> Outcome {
        let Some(field) = &self.ok_field else {
            return Outcome::Accepted { provider_id: None };
        };
        let value = json.and_then(|j| {
            field
                .split('.')
                .try_fold(j, |v, key| v.get(key))
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
        });
        match value {
            Some(v) if self.ok_values.contains(&v) => Outcome::Accepted { provider_id: None },
            Some(v) if self.retry_values.contains(&v) => {
                Outcome::retryable(v, format!("{field} says retry"))
            }
            Some(v) => Outcome::permanent(v, format!("{field} is not one of ok_values")),
            None => Outcome::permanent("bad-answer", format!("answer has no {field}")),
        }
    }
}

impl Channel for Webhook {
    fn send<'a>(&'a self, msg: &'a Message, to: &'a Recipients) -> SendFuture<'a> {
        Box::pin(async move {
            let body = self.render_body(msg, to).into_bytes();
            match self
                .http
                .send(
                    self.method.clone(),
                    &self.url,
                    &self.headers,
                    "application/json",
                    body,
                )
                .await
            {
                Ok(answer) => self.judge(answer.json.as_ref()),
                Err(outcome) => outcome,
            }
        })
    }
}
