//! From `[[channels]]` config to channel objects: secrets read, URLs filled,
//! transports built. Validation has already checked the keys; what can still fail
//! here is the environment (a missing secret file), reported as [`NotifyError`].

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono_tz::Tz;

use super::dingtalk::Dingtalk;
use super::email::{self, Email, SmtpSettings};
use super::feishu::Feishu;
use super::http::Http;
use super::mqtt::{self, Mqtt};
use super::secret::{self, Secret};
use super::webhook::{self, Webhook};
use super::wecom::Wecom;
use super::{Body, Channel, NotifyError};
use crate::config::{ChannelConfig, ChannelKind, HttpMethod, SmtpTls};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn channel(c: &ChannelConfig, tz: Tz) -> Result<Box<dyn Channel>, NotifyError> {
    let err = |message: String| NotifyError::Channel {
        channel: c.id.clone(),
        message,
    };
    let need =
        |key: &str, v: Option<&String>| v.cloned().ok_or_else(|| err(format!("needs {key}")));
    let timeout = c.timeout.map(|t| t.0).unwrap_or(DEFAULT_TIMEOUT);
    let token = secret::load(
        &c.id,
        "token",
        c.token_file.as_deref(),
        c.token_env.as_deref(),
    )?;
    let sign_secret = secret::load(
        &c.id,
        "signing secret",
        c.secret_file.as_deref(),
        c.secret_env.as_deref(),
    )?;
    let password = secret::load(
        &c.id,
        "password",
        c.password_file.as_deref(),
        c.password_env.as_deref(),
    )?;
    let body = Body {
        template: c.template.clone(),
        tz,
    };
    let url = || need("url", c.url.as_ref()).map(|u| secret::fill(&u, token.as_ref()));
    let http = || Http::new(timeout).map_err(err);
    Ok(match c.kind {
        ChannelKind::Wecom => Box::new(Wecom {
            url: url()?,
            format: c.format.unwrap_or_default(),
            mention: c.mention.unwrap_or(true),
            http: http()?,
            body,
        }),
        ChannelKind::Dingtalk => Box::new(Dingtalk {
            url: url()?,
            secret: sign_secret,
            format: c.format.unwrap_or_default(),
            mention: c.mention.unwrap_or(true),
            http: http()?,
            body,
        }),
        ChannelKind::Feishu => Box::new(Feishu {
            url: url()?,
            secret: sign_secret,
            mention: c.mention.unwrap_or(true),
            http: http()?,
            body,
        }),
        ChannelKind::Webhook => Box::new(Webhook {
            url: url()?,
            method: match c.method.unwrap_or(HttpMethod::Post) {
                HttpMethod::Post => reqwest::Method::POST,
                HttpMethod::Put => reqwest::Method::PUT,
            },
            headers: c
                .headers
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), secret::fill(v, token.as_ref())))
                .collect(),
            body_template: c.body.clone(),
            ok_field: c.ok_field.clone(),
            ok_values: c
                .ok_values
                .clone()
                .unwrap_or_else(webhook::default_ok_values),
            retry_values: c.retry_values.clone().unwrap_or_default(),
            http: http()?,
            body,
        }),
        ChannelKind::Email => {
            let host = need("smtp_host", c.smtp_host.as_ref())?;
            let from = need("from", c.from.as_ref())?
                .parse()
                .map_err(|e| err(format!("from: {e}")))?;
            let to =
                c.to.iter()
                    .flatten()
                    .map(|t| t.parse().map_err(|e| err(format!("to {t:?}: {e}"))))
                    .collect::<Result<Vec<_>, _>>()?;
            let transport = email::transport(&SmtpSettings {
                host: &host,
                port: c.smtp_port,
                tls: c.tls.unwrap_or(SmtpTls::Starttls),
                credentials: c.username.clone().map(|u| {
                    (
                        u,
                        password
                            .as_ref()
                            .map(|p| p.expose().to_string())
                            .unwrap_or_default(),
                    )
                }),
                timeout,
            })
            .map_err(err)?;
            Box::new(Email {
                transport,
                from,
                to,
                body,
            })
        }
        ChannelKind::Mqtt => {
            let u = need("url", c.url.as_ref())?;
            let (host, port) =
                mqtt::parse_url(&u).ok_or_else(|| err(format!("bad MQTT url {u:?}")))?;
            Box::new(Mqtt {
                host,
                port,
                topic: need("topic", c.topic.as_ref())?,
                qos: mqtt::qos(c.qos.unwrap_or(1)),
                client_id: c
                    .client_id
                    .clone()
                    .unwrap_or_else(|| "pollwatch-notify".into()),
                credentials: c
                    .username
                    .clone()
                    .map(|u| (u, password.clone().unwrap_or_else(|| Secret::new("")))),
                timeout,
                body,
                seq: AtomicU64::new(0),
            })
        }
    })
}
