//! DingTalk (钉钉) custom robot with the 加签 signature.
//!
//! ```toml
//! [[channels]]
//! id = "dingtalk-xiangcheng"
//! kind = "dingtalk"
//! url = "https://oapi.dingtalk.com/robot/send?access_token={token}"
//! token_env = "PW_DINGTALK_TOKEN"
//! secret_env = "PW_DINGTALK_SECRET"     # SEC…; without it the robot must use keywords
//! format = "markdown"                   # or "text"
//! mention = true                        # @ officers on duty by mobile
//! ```
//!
//! Signing: `timestamp` is Unix milliseconds, `sign` is base64(HMAC-SHA256 keyed
//! with the secret over `timestamp + "\n" + secret`), URL-encoded into the query.
//! DingTalk rejects a timestamp more than an hour from its own clock, so it comes
//! from the wall clock, never the simulated one. Errors: 310000 (keyword, signature
//! or IP whitelist) is permanent; 130101 (over 20 a minute — the robot is then
//! muted for ten minutes) and -1 (busy) are retryable.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::http::{body_code, body_msg, Http};
use super::{Body, Channel, Message, Outcome, Recipients, Secret, SendFuture};
use crate::config::MessageFormat;

/// DingTalk's documented message limit (20000 bytes) less room for the envelope.
pub const MAX_BYTES: usize = 18_000;

#[derive(Debug)]
pub struct Dingtalk {
    pub(crate) url: Secret,
    pub(crate) secret: Option<Secret>,
    pub(crate) format: MessageFormat,
    pub(crate) mention: bool,
    pub(crate) http: Http,
    pub(crate) body: Body,
}

/// base64(HMAC-SHA256(secret, "{timestamp_ms}\n{secret}")), before URL-encoding.
pub fn sign(timestamp_ms: i64, secret: &str) -> String {
    let to_sign = format!("{timestamp_ms}\n{secret}");
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn classify(code: i64, msg: &str) -> Outcome {
    match code {
        0 => Outcome::Accepted { provider_id: None },
        // The robot is muted for ten minutes: saying so lets the notifier fall back
        // at once instead of retrying into the mute.
        130101 => Outcome::Retryable {
            code: code.to_string(),
            reason: msg.to_string(),
            retry_after: Some(std::time::Duration::from_secs(600)),
        },
        -1 => Outcome::retryable(code, msg),
        _ => Outcome::permanent(code, msg),
    }
}

impl Dingtalk {
    pub fn body(&self, msg: &Message, to: &Recipients) -> serde_json::Value {
        let mobiles = if self.mention {
            to.mobiles()
        } else {
            Vec::new()
        };
        // DingTalk only highlights an @ that also appears in the text.
        let ats: String = mobiles.iter().map(|m| format!(" @{m}")).collect();
        let at = json!({"atMobiles": mobiles, "isAtAll": false});
        match self.format {
            MessageFormat::Text => {
                let text = super::template::truncate_bytes(&self.body.text(msg, to), MAX_BYTES);
                json!({"msgtype": "text", "text": {"content": format!("{text}{ats}")}, "at": at})
            }
            MessageFormat::Markdown => {
                let text = super::template::truncate_bytes(&self.body.markdown(msg, to), MAX_BYTES);
                json!({"msgtype": "markdown", "markdown": {"title": msg.title, "text": format!("{text}\n\n{ats}")}, "at": at})
            }
        }
    }

    fn signed_url(&self) -> Result<Secret, Outcome> {
        let Some(secret) = &self.secret else {
            return Ok(self.url.clone());
        };
        let mut url = reqwest::Url::parse(self.url.expose())
            .map_err(|e| Outcome::permanent("bad-url", e.to_string()))?;
        let ts = chrono::Utc::now().timestamp_millis();
        url.query_pairs_mut()
            .append_pair("timestamp", &ts.to_string())
            .append_pair("sign", &sign(ts, secret.expose()));
        Ok(Secret::new(url.to_string()))
    }
}

impl Channel for Dingtalk {
    fn send<'a>(&'a self, msg: &'a Message, to: &'a Recipients) -> SendFuture<'a> {
        Box::pin(async move {
            let url = match self.signed_url() {
                Ok(u) => u,
                Err(o) => return o,
            };
            let answer = match self.http.post_json(&url, &self.body(msg, to)).await {
                Ok(a) => a,
                Err(outcome) => return outcome,
            };
            match body_code(&answer, "errcode") {
                Some(code) => classify(code, &body_msg(&answer, "errmsg")),
                None => Outcome::permanent("bad-answer", "no errcode in answer"),
            }
        })
    }

    fn max_bytes(&self) -> Option<usize> {
        Some(MAX_BYTES)
    }
}
