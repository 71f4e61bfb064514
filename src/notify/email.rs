//! E-mail over SMTP (lettre, rustls).
//!
//! ```toml
//! [[channels]]
//! id = "email"
//! kind = "email"
//! smtp_host = "smtp.example.gov.cn"
//! smtp_port = 587                     # default: 587 starttls, 465 tls, 25 none
//! tls = "starttls"                    # "tls" = implicit TLS; "none" only for a loopback relay
//! username = "pollwatch@example.gov.cn"
//! password_file = "/etc/pollwatch/secrets/smtp.password"
//! from = "pollwatch <pollwatch@example.gov.cn>"
//! to = ["duty@example.gov.cn"]        # copied on every alert, besides the officers
//! ```
//!
//! The body is plain text, base64-encoded (Chinese text in 7-bit SMTP). A message
//! with attachments (the alert's evidence chart as PNG) goes as
//! `multipart/mixed`: the same text part, then each file. A 5xx reply is
//! permanent, 4xx and connection failures are retried.

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{
    Attachment as MailAttachment, Body as MailBody, Mailbox, MultiPart, SinglePart,
};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{Body, Channel, Message, Outcome, Recipients, SendFuture};
use crate::config::SmtpTls;

pub struct Email {
    pub(crate) transport: AsyncSmtpTransport<Tokio1Executor>,
    pub(crate) from: Mailbox,
    pub(crate) to: Vec<Mailbox>,
    pub(crate) body: Body,
}

impl std::fmt::Debug for Email {
    // The transport holds the SMTP password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("from", &self.from)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

pub struct SmtpSettings<'a> {
    pub host: &'a str,
    pub port: Option<u16>,
    pub tls: SmtpTls,
    pub credentials: Option<(String, String)>,
    pub timeout: std::time::Duration,
}

pub fn transport(s: &SmtpSettings<'_>) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let builder = match s.tls {
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(s.host)
            .map_err(|e| e.to_string())?
            .port(s.port.unwrap_or(587)),
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(s.host)
            .map_err(|e| e.to_string())?
            .port(s.port.unwrap_or(465)),
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host)
            .port(s.port.unwrap_or(25)),
    };
    let builder = builder.timeout(Some(s.timeout));
    let builder = match &s.credentials {
        Some((u, p)) => builder.credentials(Credentials::new(u.clone(), p.clone())),
        None => builder,
    };
    Ok(builder.build())
}

impl Email {
    fn build(&self, msg: &Message, to: &Recipients) -> Result<lettre::Message, Outcome> {
        let mut rcpts: Vec<Mailbox> = Vec::new();
        for r in &to.0 {
            if let Some(addr) = &r.email {
                match addr.parse::<lettre::Address>() {
                    Ok(a) => rcpts.push(Mailbox::new(Some(r.name.clone()), a)),
                    Err(e) => {
                        return Err(Outcome::permanent(
                            "bad-address",
                            format!("officer {}: {e}", r.officer_id),
                        ))
                    }
                }
            }
        }
        rcpts.extend(self.to.iter().cloned());
        if rcpts.is_empty() {
            return Err(Outcome::permanent(
                "no-recipient",
                "no officer has an e-mail address and the channel has no `to`",
            ));
        }
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(msg.title.clone());
        for r in rcpts {
            b = b.to(r);
        }
        let body =
            MailBody::new_with_encoding(self.body.text(msg, to), ContentTransferEncoding::Base64)
                .map_err(|_| Outcome::permanent("encoding", "body cannot be base64-encoded"))?;
        if msg.attachments.is_empty() {
            return b
                .header(ContentType::TEXT_PLAIN)
                .body(body)
                .map_err(|e| Outcome::permanent("build", e.to_string()));
        }
        let mut parts = MultiPart::mixed().singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(body),
        );
        for a in &msg.attachments {
            let kind = ContentType::parse(&a.content_type)
                .map_err(|e| Outcome::permanent("build", format!("{}: {e}", a.content_type)))?;
            parts = parts
                .singlepart(MailAttachment::new(a.filename.clone()).body(a.data.to_vec(), kind));
        }
        b.multipart(parts)
            .map_err(|e| Outcome::permanent("build", e.to_string()))
    }
}

impl Channel for Email {
    fn takes_attachments(&self) -> bool {
        true
    }

    fn send<'a>(&'a self, msg: &'a Message, to: &'a Recipients) -> SendFuture<'a> {
        Box::pin(async move {
            let mail = match self.build(msg, to) {
                Ok(m) => m,
                Err(o) => return o,
            };
            match self.transport.send(mail).await {
                Ok(resp) => Outcome::Accepted {
                    provider_id: resp.message().next().map(str::to_string),
                },
                Err(e) => {
                    let code = e
                        .status()
                        .map(|c| format!("smtp-{c}"))
                        .unwrap_or_else(|| "smtp".to_string());
                    if e.is_permanent() {
                        Outcome::permanent(code, e.to_string())
                    } else {
                        Outcome::retryable(code, e.to_string())
                    }
                }
            }
        })
    }
}
