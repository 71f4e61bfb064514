//! Feishu / Lark (飞书) custom bot.
//!
//! ```toml
//! [[channels]]
//! id = "feishu"
//! kind = "feishu"
//! url = "https://open.feishu.cn/open-apis/bot/v2/hook/{token}"
//! token_file = "/etc/pollwatch/secrets/feishu.token"
//! secret_file = "/etc/pollwatch/secrets/feishu.secret"   # 签名校验; optional
//! mention = true        # @ the officers who have a feishu_user (open_id) in duty.toml
//! ```
//!
//! Custom bots mention by open_id inside the text (`<at user_id="ou_…">张伟</at>`),
//! not by mobile number; officers without `feishu_user` are named in the text only.
//!
//! Body: `{"timestamp":"<seconds>","sign":"…","msg_type":"text","content":{"text":…}}`.
//! The signature is not DingTalk's: the HMAC-SHA256 *key* is `timestamp + "\n" +
//! secret` and the message is empty; base64, no URL-encoding. Success is `code` 0;
//! 19021 is a bad signature (permanent); 11232 and 9499 (too frequent) are retried.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::http::{body_code, body_msg, Http};
use super::{Body, Channel, Message, Outcome, Recipients, Secret, SendFuture};

/// Feishu takes request bodies up to 20 KB.
pub const MAX_BYTES: usize = 18_000;

#[derive(Debug)]
pub struct Feishu {
    pub(crate) url: Secret,
    pub(crate) secret: Option<Secret>,
    pub(crate) mention: bool,
    pub(crate) http: Http,
    pub(crate) body: Body,
}

/// base64(HMAC-SHA256 keyed with "{timestamp_s}\n{secret}" over nothing).
pub fn sign(timestamp_s: i64, secret: &str) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    let mac = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Feishu parses the `<at>` tag out of the text: an id or name holding `"`, `<`
/// or `>` must not break it.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn classify(code: i64, msg: &str) -> Outcome {
    match code {
        0 => Outcome::Accepted { provider_id: None },
        11232 | 9499 => Outcome::retryable(code, msg),
        _ => Outcome::permanent(code, msg),
    }
}

impl Feishu {
    pub fn body(&self, msg: &Message, to: &Recipients) -> serde_json::Value {
        let mentions: String = if self.mention {
            to.0.iter()
                .filter_map(|r| {
                    let id = r.feishu_user.as_deref()?;
                    Some(format!(
                        " <at user_id=\"{}\">{}</at>",
                        escape(id),
                        escape(&r.name)
                    ))
                })
                .collect()
        } else {
            String::new()
        };
        // The mentions go last and are kept whole: a cut text still reaches them.
        let room = MAX_BYTES.saturating_sub(mentions.len());
        let text = super::template::truncate_bytes(&self.body.text(msg, to), room) + &mentions;
        let mut body = json!({"msg_type": "text", "content": {"text": text}});
        if let Some(secret) = &self.secret {
            // Checked against Feishu's clock: the wall clock, not a simulated one.
            let ts = chrono::Utc::now().timestamp();
            body["timestamp"] = json!(ts.to_string());
            body["sign"] = json!(sign(ts, secret.expose()));
        }
        body
    }
}

impl Channel for Feishu {
    fn send<'a>(&'a self, msg: &'a Message, to: &'a Recipients) -> SendFuture<'a> {
        Box::pin(async move {
            let answer = match self.http.post_json(&self.url, &self.body(msg, to)).await {
                Ok(a) => a,
                Err(outcome) => return outcome,
            };
            // Older bots answer {"StatusCode":0,…}; newer ones {"code":0,…}.
            match body_code(&answer, "code").or_else(|| body_code(&answer, "StatusCode")) {
                Some(code) => classify(code, &body_msg(&answer, "msg")),
                None => Outcome::permanent("bad-answer", "no code in answer"),
            }
        })
    }

    fn max_bytes(&self) -> Option<usize> {
        Some(MAX_BYTES)
    }
}
