//! `pollwatch evidence …` (issue 18): the evidence key, the daily anchor, the
//! one retention command, and a third party's check of an exported record.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use pollwatch::evidence::anchor;
use pollwatch::store::AlertEvent;

#[derive(Args)]
pub struct EvidenceArgs {
    /// Config directory (pollwatch.toml, enterprises/, duty.toml).
    #[arg(long, short = 'c', default_value = "config", env = "POLLWATCH_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    what: EvidenceWhat,
}

#[derive(Subcommand)]
enum EvidenceWhat {
    /// Create an evidence key: 32 random bytes, mode 0600; never overwrites.
    InitKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the anchor of a local day (default: yesterday) to
    /// <state_dir>/anchors/YYYY-MM-DD.json and print its root.
    Anchor {
        /// YYYY-MM-DD; default yesterday, in [daemon] timezone.
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
    },
    /// Delete readings older than a date — the only way readings leave the
    /// store — and record the run (who, when, cutoff, rows) in retention_log.
    Retain {
        /// YYYY-MM-DD (local): readings before its start are deleted.
        #[arg(long)]
        before: chrono::NaiveDate,
        /// Who runs it, for the log.
        #[arg(long)]
        by: String,
    },
    /// Check an exported record (`alerts export`) against its anchors without
    /// the key or the database. Compare the printed roots with the published ones.
    Check { dir: PathBuf },
}

/// Readings younger than this are never deleted by retention.
const MIN_RETENTION_DAYS: i64 = 30;

pub async fn run(a: EvidenceArgs) -> anyhow::Result<ExitCode> {
    match a.what {
        EvidenceWhat::InitKey { out } => {
            let id = pollwatch::seal::init_key(&out)?;
            println!(
                "evidence key {id} written to {} (mode 0600). Set [evidence] key_file to it (under systemd: LoadCredential=evidence-key:{}); keep a copy offline.",
                out.display(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        EvidenceWhat::Check { dir } => check(&dir),
        EvidenceWhat::Anchor { date } => {
            let cfg = super::load(&a.config)?;
            let store = pollwatch::daemon::open_store(&cfg).await?;
            let now = chrono::Utc::now();
            let date = date.unwrap_or_else(|| {
                let today = now.with_timezone(&cfg.timezone).date_naive();
                today.pred_opt().unwrap_or(today)
            });
            let dir = anchor::anchor_dir(&cfg.state_dir);
            let r = anchor::write(&store, &dir, date, cfg.timezone, now).await;
            store.close().await;
            let (path, a) = r?;
            println!(
                "anchor of {date}: {} leaves, root {} — {}",
                a.leaves.len(),
                a.root,
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        EvidenceWhat::Retain { before, by } => {
            let cfg = super::load(&a.config)?;
            let store = pollwatch::daemon::open_store(&cfg).await?;
            let (cutoff, _) = anchor::day_bounds(before, cfg.timezone);
            let r = store
                .retain_readings(
                    cutoff,
                    &by,
                    chrono::Utc::now(),
                    chrono::Duration::days(MIN_RETENTION_DAYS),
                )
                .await;
            store.close().await;
            let rows = r?;
            println!("deleted {rows} readings before {before}; recorded in retention_log by {by}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let json = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("alert-") && n.ends_with(".json"))
        })
        .ok_or_else(|| anyhow::anyhow!("no alert-ID.json in {}", dir.display()))?;
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&json).with_context(|| format!("reading {}", json.display()))?,
    )
    .with_context(|| format!("{} is not JSON", json.display()))?;
    let timeline: Vec<AlertEvent> = serde_json::from_value(
        record
            .get("timeline")
            .cloned()
            .unwrap_or(serde_json::Value::Null),
    )
    .context("the export's timeline cannot be read")?;
    let proofs = record
        .get("anchors")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let (lines, mut ok) = anchor::check_export(&timeline, &proofs);
    // Each anchor file shipped with the export must give the root the proofs use.
    for p in proofs.as_array().into_iter().flatten() {
        let file = p.get("file").and_then(|f| f.as_str()).unwrap_or("");
        let root = p.get("root").and_then(|f| f.as_str()).unwrap_or("");
        match anchor::read(&dir.join(file)) {
            Ok(a) if a.root == root && a.consistent() => {}
            Ok(_) => {
                ok = false;
                println!("{file}: its root does not match the proofs, or does not follow from its leaves");
            }
            Err(e) => {
                ok = false;
                println!("{e}");
            }
        }
    }
    for l in &lines {
        println!("{l}");
    }
    if ok && !proofs.as_array().is_some_and(|a| a.is_empty()) {
        println!("every anchored row matches its anchor; compare the roots above with the published ones");
        Ok(ExitCode::SUCCESS)
    } else if ok {
        println!("no anchor covers this record yet");
        Ok(ExitCode::from(2))
    } else {
        Ok(ExitCode::from(1))
    }
}
