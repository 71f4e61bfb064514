//! The HTTP half every webhook-style channel shares: one POST, and the transport
//! and status errors turned into outcomes. What a 200 body means is the channel's
//! business.

use std::time::Duration;

use super::{Outcome, Secret};

#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
}

/// A 2xx answer: the body, parsed as JSON when it is JSON.
pub struct Answer {
    pub json: Option<serde_json::Value>,
    pub text: String,
}

impl Http {
    pub fn new(timeout: Duration) -> Result<Http, String> {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map(|client| Http { client })
            .map_err(|e| e.to_string())
    }

    /// Sends `body` and classifies everything but a 2xx answer: transport errors,
    /// 429 and 5xx may pass with time, other statuses will not.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &Secret,
        headers: &[(String, Secret)],
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Answer, Outcome> {
        let mut req = self
            .client
            .request(method, url.expose())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.expose());
        }
        let resp = req.send().await.map_err(|e| {
            // reqwest's error text includes the URL, and our URLs carry tokens.
            let e = e.without_url();
            let code = if e.is_timeout() {
                "timeout"
            } else {
                "transport"
            };
            Outcome::retryable(code, e.to_string())
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp
            .text()
            .await
            .map_err(|e| Outcome::retryable("transport", e.without_url().to_string()))?;
        let snippet: String = text.chars().take(200).collect();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Outcome::Retryable {
                code: format!("http-{}", status.as_u16()),
                reason: snippet,
                retry_after,
            });
        }
        if !status.is_success() {
            return Err(Outcome::permanent(
                format!("http-{}", status.as_u16()),
                snippet,
            ));
        }
        let json = serde_json::from_str(&text).ok();
        Ok(Answer { json, text })
    }

    pub async fn post_json(
        &self,
        url: &Secret,
        body: &serde_json::Value,
    ) -> Result<Answer, Outcome> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.send(reqwest::Method::POST, url, &[], "application/json", bytes)
            .await
    }
}

/// The integer error code a robot put in its 200 answer (`errcode` or `code`).
pub fn body_code(answer: &Answer, field: &str) -> Option<i64> {
    answer.json.as_ref()?.get(field)?.as_i64()
}

pub fn body_msg(answer: &Answer, field: &str) -> String {
    answer
        .json
        .as_ref()
        .and_then(|j| j.get(field))
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_string()
}
