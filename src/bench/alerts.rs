//! Alert latency: from a stored finding to its notification accepted by the
//! channel — the alert opened, its outbox row written, the message rendered and
//! POSTed to a local WeCom-shaped receiver, the row marked sent with its attempt,
//! each step a committed transaction on SQLite.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{percentile, BenchError};
use crate::alerts::{AlertEngine, Dispatcher};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, LoadOptions};
use crate::model::Location;
use crate::notify::Notifier;
use crate::rules::{Evidence, Finding, RuleName, Severity};
use crate::store::{Store, StoreOptions, StoredFinding};

pub struct AlertsReport {
    pub alerts: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl fmt::Display for AlertsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "alerts: {} findings → alert opened → notification accepted by a local WeCom receiver: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.alerts,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )
    }
}

/// A WeCom robot's answer to anything: `errcode 0`, on keep-alive connections.
async fn receiver() -> Result<String, BenchError> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let addr = l
        .local_addr()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    // One request: headers, then Content-Length bytes of body.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() < end + 4 + len {
                            break;
                        }
                        buf.drain(..end + 4 + len);
                        let body = br#"{"errcode":0,"errmsg":"ok"}"#;
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if s.write_all(reply.as_bytes()).await.is_err()
                            || s.write_all(body).await.is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(format!("http://{addr}/cgi-bin/webhook/send?key=bench"))
}

/// A bench config: one WeCom channel at `url` with `channel_extra` lines, the
/// store at `storage` (default: SQLite in the state directory), one enterprise
/// with `outlets` SO2-limited outlets.
pub(super) fn config(
    dir: &std::path::Path,
    url: &str,
    storage: Option<&str>,
    channel_extra: &str,
    outlets: usize,
) -> Result<Config, BenchError> {
    let io = |e: std::io::Error| BenchError::Setup(e.to_string());
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).map_err(io)?;
    let storage = storage
        .map(|u| format!("[storage]\nurl = {u:?}\n"))
        .unwrap_or_default();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\nstate_dir = {:?}\n{storage}[[channels]]\nid = \"wecom\"\nkind = \"wecom\"\nurl = \"{url}\"\nformat = \"text\"\n{channel_extra}",
            dir.join("state").display().to_string()
        ),
    )
    .map_err(io)?;
    std::fs::write(
        cfg.join("duty.toml"),
        "[[officers]]\nid = \"o1\"\nname = \"值班员\"\nmobile = \"13800000001\"\n[[teams]]\nid = \"t\"\nname = \"大队\"\nmembers = [\"o1\"]\n[[routes]]\nteam = \"t\"\nchannels = [\"wecom\"]\n",
    )
    .map_err(io)?;
    let mut e = String::from(
        "id = \"E1\"\nname = \"基准企业\"\ndistrict = \"吴中区\"\nindustry = \"火电\"\n",
    );
    for o in 0..outlets {
        e.push_str(&format!(
            "[[outlets]]\nid = \"DA{o:03}\"\nname = \"{o}号烟囱\"\nkind = \"flue_gas\"\no2_reference = 6.0\n[[outlets.limits]]\nfactor = \"a21026\"\nmax = 35.0\nbasis = \"hour\"\n"
        ));
    }
    std::fs::write(cfg.join("enterprises/e1.toml"), e).map_err(io)?;
    Config::load(&cfg, &LoadOptions::default()).map_err(|e| BenchError::Setup(e.to_string()))
}

pub async fn alerts(n: usize) -> Result<AlertsReport, BenchError> {
    let setup = |e: &dyn fmt::Display| BenchError::Setup(e.to_string());
    let dir = tempfile::tempdir().map_err(|e| setup(&e))?;
    let url = receiver().await?;
    let cfg = Arc::new(config(dir.path(), &url, None, "rate_limit = 1000000\n", n)?);
    let store = Store::open(&cfg.storage_url, &StoreOptions::default()).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let notifier = Arc::new(Notifier::from_config(&cfg, clock.clone()));
    let engine = AlertEngine::new(store.clone(), notifier.clone(), cfg.clone(), clock.clone());
    let mut dispatcher = Dispatcher::new(store.clone(), notifier, clock.clone());
    let t = Utc
        .with_ymd_and_hms(2026, 11, 27, 1, 0, 0)
        .single()
        .ok_or_else(|| setup(&"time"))?;
    let mut lat = Vec::with_capacity(n);
    for o in 0..n {
        let f = Finding {
            rule: RuleName::Exceedance,
            severity: Severity::Violation,
            enterprise: "E1".into(),
            location: Some(Location::Outlet(format!("DA{o:03}").as_str().into())),
            factor: "a21026".into(),
            window_start: t,
            window_end: t + chrono::Duration::hours(1),
            at: t + chrono::Duration::hours(1),
            value: Some(41.2),
            threshold: Some(35.0),
            detail: "outlets[0].limits[0]".into(),
            message: "SO2 小时均值(折算) 41.2 mg/m³，限值 35".into(),
            evidence: Evidence::default(),
        };
        let ids = store
            .insert_findings(std::slice::from_ref(&f), Utc::now())
            .await?;
        let id = ids
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| setup(&"finding not stored"))?;
        let sf = StoredFinding {
            id,
            created: Utc::now(),
            finding: f,
        };
        let started = Instant::now();
        engine.on_finding(&sf).await.map_err(|e| setup(&e))?;
        let settled = dispatcher.run_once().await.map_err(|e| setup(&e))?;
        if settled != 1 {
            return Err(setup(&format!(
                "expected one notification, settled {settled}"
            )));
        }
        lat.push(started.elapsed());
    }
    let sent = store.outbox(Some("sent"), None, u32::MAX).await?.len();
    if sent != n {
        return Err(setup(&format!("{sent} of {n} notifications marked sent")));
    }
    lat.sort();
    store.close().await;
    Ok(AlertsReport {
        alerts: n,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        max: lat.last().copied().unwrap_or_default(),
    })
}
