//! `pollwatch alerts …`: the duty officer's and the sysadmin's view of alerts from
//! a terminal on the server — list, show with timeline and notifications,
//! acknowledge, resolve, verify a timeline's hash chain, and export the evidence
//! chart or the whole record for a case file.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use pollwatch::config::Config;
use pollwatch::evidence;
use pollwatch::store::{AlertQuery, AlertState, Store, Verdict};

#[derive(Args)]
pub struct AlertsArgs {
    /// Config directory (pollwatch.toml, enterprises/, duty.toml).
    #[arg(long, short = 'c', default_value = "config", env = "POLLWATCH_CONFIG")]
    config: std::path::PathBuf,
    #[command(subcommand)]
    what: AlertsWhat,
}

#[derive(Subcommand)]
enum AlertsWhat {
    /// Alerts, newest first.
    List {
        /// open, acknowledged or resolved.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        enterprise: Option<String>,
        #[arg(long)]
        severity: Option<String>,
        #[arg(long)]
        rule: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One alert with its timeline and every notification attempt.
    Show { id: i64 },
    /// Acknowledge: stops escalation.
    Ack {
        id: i64,
        #[arg(long)]
        by: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    Resolve {
        id: i64,
        #[arg(long)]
        by: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Check the alert's record: the keyed chain row by row, the alert's own
    /// facts, its findings, the readings they were judged on, and the daily
    /// anchors. Exit 0 intact, 1 altered (naming what), 2 not keyed.
    Verify {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Write the alert's record for a case file into a directory: JSON (alert,
    /// findings with evidence, timeline and chain check, notifications, attempts,
    /// readings), the chart as SVG and PNG, and SHA256SUMS.
    Export {
        id: i64,
        #[arg(long, short = 'o')]
        out: std::path::PathBuf,
    },
    /// Write the alert's evidence chart (as the console shows it) to a file and
    /// print its SHA-256 for the case file. The format follows `-o`'s extension
    /// unless `--svg` or `--png` says otherwise.
    Chart {
        id: i64,
        #[arg(long, conflicts_with = "png")]
        svg: bool,
        #[arg(long)]
        png: bool,
        #[arg(long, short = 'o')]
        output: std::path::PathBuf,
    },
}

pub async fn run(a: AlertsArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::load(&a.config)?;
    let store = pollwatch::daemon::open_store(&cfg).await?;
    let code = run_on(&store, &cfg, a.what).await;
    store.close().await;
    code
}

async fn run_on(store: &Store, cfg: &Config, what: AlertsWhat) -> anyhow::Result<ExitCode> {
    match what {
        AlertsWhat::List {
            state,
            enterprise,
            severity,
            rule,
            limit,
            json,
        } => {
            let state = match state {
                Some(s) => Some(AlertState::parse(&s).ok_or_else(|| {
                    anyhow::anyhow!("--state {s:?}: expected open, acknowledged or resolved")
                })?),
                None => None,
            };
            let rows = store
                .alerts(&AlertQuery {
                    state,
                    enterprise,
                    severity,
                    rule,
                    limit,
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in &rows {
                    println!(
                        "#{} {} {} {} {} {} {} ×{} {}",
                        r.id,
                        r.opened_at.format("%Y-%m-%d %H:%M"),
                        r.state.as_str(),
                        r.severity,
                        r.enterprise,
                        r.location,
                        r.rule,
                        r.count,
                        r.message
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertsWhat::Show { id } => {
            let alert = store
                .alert(id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no alert #{id}"))?;
            let out = serde_json::json!({
                "alert": alert,
                "findings": store.alert_finding_ids(id).await?,
                "timeline": store.alert_events(id).await?,
                "notifications": store.outbox(None, Some(id), 1000).await?,
                "attempts": store.alert_attempts(id).await?,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        AlertsWhat::Ack { id, by, note } => {
            transition(store, id, AlertState::Acknowledged, &by, &note).await
        }
        AlertsWhat::Resolve { id, by, note } => {
            transition(store, id, AlertState::Resolved, &by, &note).await
        }
        AlertsWhat::Verify { id, json } => {
            let checked = evidence::report::verify(store, &cfg.state_dir, id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no alert #{id}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&checked)?);
            } else {
                for l in checked.lines() {
                    println!("{l}");
                }
            }
            Ok(match checked.verdict {
                Verdict::Intact => ExitCode::SUCCESS,
                Verdict::Altered => ExitCode::from(1),
                Verdict::NotKeyed => ExitCode::from(2),
            })
        }
        AlertsWhat::Export { id, out } => {
            let files = super::cli::export::export(store, cfg, id, &out).await?;
            println!("alert #{id} exported to {}:", out.display());
            for (name, hash) in &files {
                println!("  {hash}  {name}");
            }
            println!(
                "  check with: (cd {} && sha256sum -c SHA256SUMS) and pollwatch evidence check {}",
                out.display(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        AlertsWhat::Chart {
            id,
            svg,
            png,
            output,
        } => {
            let png = png
                || (!svg
                    && output
                        .extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("png")));
            chart(store, cfg, id, png, &output).await
        }
    }
}

async fn chart(
    store: &Store,
    cfg: &Config,
    id: i64,
    png: bool,
    output: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    use sha2::{Digest, Sha256};
    let now = chrono::Utc::now();
    let data = evidence::alert_chart(store, cfg, id, now, evidence::ChartWindow::default())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no alert #{id}"))?;
    let svg = evidence::render_svg(&data);
    let bytes = if png {
        let fonts = evidence::Fonts::system();
        evidence::render_png(&svg, &fonts, evidence::PNG_SCALE)?
    } else {
        svg.into_bytes()
    };
    std::fs::write(output, &bytes)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", output.display()))?;
    let hash = super::cli::export::hex(&Sha256::digest(&bytes));
    println!(
        "alert #{id}: chart written to {} ({} bytes, sha256 {hash})",
        output.display(),
        bytes.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn transition(
    store: &Store,
    id: i64,
    to: AlertState,
    by: &str,
    note: &str,
) -> anyhow::Result<ExitCode> {
    match store
        .transition_alert(id, to, by, note, chrono::Utc::now())
        .await?
    {
        Some(a) => {
            println!("alert #{id} {} by {by}", a.state.as_str());
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!(
            "alert #{id} does not exist or cannot become {}",
            to.as_str()
        ),
    }
}
