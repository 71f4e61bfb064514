//! WeCom (企业微信) group robot.
//!
//! ```toml
//! [[channels]]
//! id = "wecom-wuzhong"
//! kind = "wecom"
//! url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={token}"
//! token_file = "/etc/pollwatch/secrets/wecom-wuzhong.key"
//! format = "text"        # text can @ officers by mobile; markdown (default) by WeCom user id
//! mention = true
//! ```
//!
//! Body: `{"msgtype":"text","text":{"content":…,"mentioned_mobile_list":[…]}}` or
//! `{"msgtype":"markdown","markdown":{"content":…}}`. The content limits are bytes,
//! not characters: 2048 for text, 4096 for markdown (a Chinese character is 3).
//! Errors come as `errcode` in a 200 answer: 45009 (over 20 a minute) and -1 (busy)
//! pass with time; 93000 (invalid webhook) and the rest do not.

use serde_json::json;

use super::http::{body_code, body_msg, Http};
use super::{Body, Channel, Message, Outcome, Recipients, Secret, SendFuture};
use crate::config::MessageFormat;

pub const TEXT_MAX_BYTES: usize = 2048;
pub const MARKDOWN_MAX_BYTES: usize = 4096;

#[derive(Debug)]
pub struct Wecom {
    pub(crate) url: Secret,
    pub(crate) format: MessageFormat,
    pub(crate) mention: bool,
    pub(crate) http: Http,
    pub(crate) body: Body,
}

/// What a WeCom `errcode` means for us.
pub fn classify(code: i64, msg: &str) -> Outcome {
    match code {
        0 => Outcome::Accepted { provider_id: None },
        45009 | -1 => Outcome::retryable(code, msg),
        _ => Outcome::permanent(code, msg),
    }
}

impl Wecom {
    pub fn body(&self, msg: &Message, to: &Recipients) -> serde_json::Value {
        match self.format {
            MessageFormat::Text => {
                let content =
                    super::template::truncate_bytes(&self.body.text(msg, to), TEXT_MAX_BYTES);
                let mobiles = if self.mention {
                    to.mobiles()
                } else {
                    Vec::new()
                };
                json!({"msgtype": "text", "text": {"content": content, "mentioned_mobile_list": mobiles}})
            }
            MessageFormat::Markdown => {
                let mut content = self.body.markdown(msg, to);
                if self.mention {
                    // Markdown messages cannot use mentioned_mobile_list; <@userid> works.
                    let tags: Vec<String> =
                        to.0.iter()
                            .filter_map(|r| r.wecom_user.as_ref().map(|u| format!("<@{u}>")))
                            .collect();
                    if !tags.is_empty() {
                        content = format!("{}\n{}", content, tags.join(" "));
                    }
                }
                let content = super::template::truncate_bytes(&content, MARKDOWN_MAX_BYTES);
                json!({"msgtype": "markdown", "markdown": {"content": content}})
            }
        }
    }
}

impl Channel for Wecom {
    fn send<'a>(&'a self, msg: &'a Message, to: &'a Recipients) -> SendFuture<'a> {
        Box::pin(async move {
            let answer = match self.http.post_json(&self.url, &self.body(msg, to)).await {
                Ok(a) => a,
                Err(outcome) => return outcome,
            };
            match body_code(&answer, "errcode") {
                Some(code) => classify(code, &body_msg(&answer, "errmsg")),
                None => Outcome::permanent(
                    "bad-answer",
                    format!(
                        "no errcode in answer: {}",
                        answer.text.chars().take(200).collect::<String>()
                    ),
                ),
            }
        })
    }

    fn max_bytes(&self) -> Option<usize> {
        Some(match self.format {
            MessageFormat::Text => TEXT_MAX_BYTES,
            MessageFormat::Markdown => MARKDOWN_MAX_BYTES,
        })
    }
}
