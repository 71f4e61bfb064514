//! `pollwatch report`: the bureau's reports from the store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use pollwatch::clock::{Clock, SystemClock};

#[derive(Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub what: ReportWhat,
}

#[derive(Subcommand)]
pub enum ReportWhat {
    /// The monthly report (非现场监管月报) as xlsx and printable HTML.
    Monthly {
        /// Config directory (pollwatch.toml, enterprises/, duty.toml).
        #[arg(long, short = 'c', default_value = "config", env = "POLLWATCH_CONFIG")]
        config: PathBuf,
        /// The month, YYYY-MM, in the daemon's time zone.
        #[arg(long)]
        month: String,
        /// Where to write 非现场监管月报-YYYY-MM.xlsx and .html (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Also print the numbers as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Transmission, validity and effective rates (传输率, 有效率, 有效传输率).
    Transmission(super::completeness::TransmissionArgs),
}

pub async fn run(a: ReportArgs) -> anyhow::Result<ExitCode> {
    match a.what {
        ReportWhat::Monthly {
            config,
            month,
            out,
            json,
        } => {
            let cfg = super::super::load(&config)?;
            // The month is checked before the store is opened: a typo costs nothing.
            pollwatch::report::month_bounds(&month, cfg.timezone)?;
            let store = pollwatch::daemon::open_store(&cfg).await?;
            let report = pollwatch::report::monthly(&store, &cfg, &month, SystemClock.now()).await;
            store.close().await;
            let report = report?;
            std::fs::create_dir_all(&out).with_context(|| format!("--out {}", out.display()))?;
            let stem = pollwatch::report::file_stem(&month);
            let xlsx = out.join(format!("{stem}.xlsx"));
            let html = out.join(format!("{stem}.html"));
            std::fs::write(&xlsx, pollwatch::report::xlsx::write(&report)?)
                .with_context(|| format!("writing {}", xlsx.display()))?;
            std::fs::write(&html, pollwatch::report::html::page(&report, true))
                .with_context(|| format!("writing {}", html.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            eprintln!("wrote {} and {}", xlsx.display(), html.display());
            Ok(ExitCode::SUCCESS)
        }
        ReportWhat::Transmission(a) => super::completeness::transmission(a).await,
    }
}
