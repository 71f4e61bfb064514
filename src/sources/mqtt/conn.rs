//! From `[mqtt]` to rumqttc's options: the broker URL, credentials and TLS.
//! Secrets and certificates are read here, at start, so a missing file is an error
//! that names it rather than a connection that silently never comes up.

use std::path::Path;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

use super::MqttError;
use crate::config::MqttSection;

/// Where the broker is, parsed from `mqtt://host[:port]` or `mqtts://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> Result<BrokerUrl, MqttError> {
        let bad = |reason: String| MqttError::Url {
            url: url.to_string(),
            reason,
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(bad("must start with mqtt:// or mqtts://".into()));
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.contains('@') {
            return Err(bad(
                "give only host and port; credentials go in username and password_file".into(),
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| bad(format!("bad port {p:?}")))?,
            ),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(bad("no host".into()));
        }
        Ok(BrokerUrl {
            tls,
            host: host.to_string(),
            port,
        })
    }
}

/// The CA bundle Debian and its derivatives keep the system's trusted roots in.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, MqttError> {
    std::fs::read(path).map_err(|source| MqttError::File {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// rumqttc options for `m`: a persistent session (clean session off) with manual
/// acknowledgements, so a message is acknowledged only once it is durable.
pub fn options(m: &MqttSection) -> Result<MqttOptions, MqttError> {
    let url = BrokerUrl::parse(&m.url)?;
    let mut opts = MqttOptions::new(m.client_id.clone(), url.host, url.port);
    opts.set_keep_alive(m.keep_alive.0.max(Duration::from_secs(5)));
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    opts.set_max_packet_size(m.max_packet_size, m.max_packet_size);
    if let Some(user) = &m.username {
        let password = match (&m.password_file, &m.password_env) {
            (Some(path), _) => String::from_utf8_lossy(&read(path, "password")?)
                .trim_end()
                .to_string(),
            (None, Some(var)) => {
                std::env::var(var).map_err(|_| MqttError::PasswordEnv(var.clone()))?
            }
            (None, None) => String::new(),
        };
        opts.set_credentials(user.clone(), password);
    }
    if url.tls {
        // Two crypto providers are compiled in (through rumqttc and sqlx), so
        // rustls cannot choose one by itself. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_path = m.ca_file.clone().unwrap_or_else(|| SYSTEM_CA_BUNDLE.into());
        let ca = read(&ca_path, "CA certificate")?;
        let client_auth = match (&m.client_cert_file, &m.client_key_file) {
            (Some(cert), Some(key)) => {
                Some((read(cert, "client certificate")?, read(key, "client key")?))
            }
            _ => None,
        };
        opts.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth,
        }));
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            BrokerUrl::parse("mqtt://10.0.0.5").unwrap(),
            BrokerUrl {
                tls: false,
                host: "10.0.0.5".into(),
                port: 1883
            }
        );
        assert_eq!(
            BrokerUrl::parse("mqtts://broker.example:9883/").unwrap(),
            BrokerUrl {
                tls: true,
                host: "broker.example".into(),
                port: 9883
            }
        );
        assert_eq!(BrokerUrl::parse("mqtts://b").unwrap().port, 8883);
        for bad in [
            "tcp://b:1883",
            "mqtt://b:x",
            "mqtt://u:p@b:1883",
            "mqtt://:1883",
            "mqtt://b/topic",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    fn section(extra: &str) -> MqttSection {
        toml::from_str(&format!("url = \"mqtt://b\"\nusername = \"pw\"\n{extra}")).unwrap()
    }

    #[test]
    fn a_missing_password_source_is_named() {
        let e = options(&section("password_env = \"PW_TEST_SURELY_UNSET_VAR\"\n")).unwrap_err();
        assert!(
            matches!(&e, MqttError::PasswordEnv(v) if v == "PW_TEST_SURELY_UNSET_VAR"),
            "{e}"
        );
        let e = options(&section("password_file = \"/nonexistent/mqtt.password\"\n")).unwrap_err();
        assert!(
            matches!(&e, MqttError::File { what: "password", path, .. } if path == "/nonexistent/mqtt.password"),
            "{e}"
        );
    }
}
