//! `pollwatch report transmission` and `pollwatch backfill status`: data
//! completeness on the command line (issue #20).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use pollwatch::completeness::report::{parse_date, report_json, report_table};
use pollwatch::timefmt::rfc3339_local;

use crate::{load, ConfigArg};

#[derive(Args)]
pub struct TransmissionArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// First local day, YYYY-MM-DD (inclusive).
    #[arg(long)]
    from: String,
    /// Local day after the last, YYYY-MM-DD (exclusive).
    #[arg(long)]
    to: String,
    #[arg(long)]
    enterprise: Option<String>,
    /// One JSON object on stdout; rates as fractions 0–1.
    #[arg(long)]
    json: bool,
}

pub async fn transmission(a: TransmissionArgs) -> anyhow::Result<ExitCode> {
    let cfg = load(&a.config.config)?;
    let (from, to) = (parse_date(&a.from)?, parse_date(&a.to)?);
    pollwatch::completeness::report::check_range(from, to)?;
    let store = pollwatch::daemon::open_store(&cfg).await?;
    let r = pollwatch::completeness::transmission_report(
        &cfg,
        &store,
        from,
        to,
        a.enterprise.as_deref(),
        chrono::Utc::now(),
    )
    .await;
    store.close().await;
    let r = r?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report_json(&r))?);
    } else {
        print!("{}", report_table(&r));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct BackfillArgs {
    #[command(subcommand)]
    what: BackfillWhat,
}

#[derive(Subcommand)]
enum BackfillWhat {
    /// History requests sent to loggers and how they ended, newest first.
    Status(StatusArgs),
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[arg(long)]
    enterprise: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// One JSON array on stdout.
    #[arg(long)]
    json: bool,
}

pub async fn backfill(a: BackfillArgs) -> anyhow::Result<ExitCode> {
    let BackfillWhat::Status(a) = a.what;
    let cfg = load(&a.config.config)?;
    let tz = cfg.timezone;
    let store = pollwatch::daemon::open_store(&cfg).await?;
    let rows = store
        .backfill_requests(a.enterprise.as_deref(), None, None, a.limit.min(10_000))
        .await;
    store.close().await;
    let rows = rows?;
    if a.json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| pollwatch::api::reports::backfill_json(r, tz))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in &rows {
        let q = &r.request;
        println!(
            "{:>6}  {}  {} {} {}  CN {} {} – {}  try {}  {:<8} QnRtn {} ExeRtn {}  {} readings  {}",
            r.id,
            rfc3339_local(q.requested_at, tz),
            q.enterprise,
            q.outlet,
            q.mn,
            q.cn,
            rfc3339_local(q.begin, tz),
            rfc3339_local(q.end, tz),
            q.attempt,
            r.state.as_str(),
            r.qn_rtn.map_or("-".into(), |x| x.to_string()),
            r.exe_rtn.map_or("-".into(), |x| x.to_string()),
            r.readings,
            r.detail
        );
    }
    eprintln!("{} requests", rows.len());
    Ok(ExitCode::SUCCESS)
}
