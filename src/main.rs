//! The `pollwatch` command line. Everything here is edge: argument parsing, reading
//! the environment, signals, printing. The work is in the library.

mod alerts_cmd;
mod evidence_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};

use pollwatch::clock::SystemClock;
use pollwatch::config::{Config, LoadOptions};
use pollwatch::model::{DataKind, LocationKind, Stat};
use pollwatch::store::ReadingQuery;
use pollwatch::timefmt::{parse_user_time, rfc3339_local};

mod cli;
use cli::simulate::simulate_modbus;

#[derive(Parser)]
#[command(
    name = "pollwatch",
    version,
    about = "Off-site environmental enforcement daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ConfigArg {
    /// Config directory (pollwatch.toml, enterprises/, duty.toml).
    #[arg(long, short = 'c', default_value = "config", env = "POLLWATCH_CONFIG")]
    config: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Log format: auto (journald style under systemd, else human), human,
    /// journald (no timestamps: the journal adds them) or json.
    #[arg(long, value_enum, default_value = "auto", env = "POLLWATCH_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Auto,
    Human,
    Journald,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM or SIGINT; SIGHUP reloads the config.
    Run(RunArgs),
    /// Validate the whole config directory; print a summary or every error.
    CheckConfig(ConfigArg),
    /// Query stored readings.
    Readings(ReadingsArgs),
    /// List what the rules engine found, newest first.
    Findings(FindingsArgs),
    /// Alerts: list, show, ack, resolve, verify.
    Alerts(alerts_cmd::AlertsArgs),
    /// The bureau's reports: `report monthly --month YYYY-MM --out DIR`.
    Report(cli::report::ReportArgs),
    /// Evidence: create the key, anchor a day, retention, check an export.
    Evidence(evidence_cmd::EvidenceArgs),
    /// Backfill (history requests to loggers): status.
    Backfill(cli::completeness::BackfillArgs),
    /// Measure throughput on this machine.
    Bench(cli::bench::BenchArgs),
    /// Run a simulated device against a pollwatch (or any platform).
    Simulate(SimulateArgs),
    /// A small simulated city on this machine: readings to alerts in about a minute.
    Demo(cli::demo::DemoArgs),
}

#[derive(Args)]
struct SimulateArgs {
    #[command(subcommand)]
    what: SimulateWhat,
}

#[derive(Subcommand)]
enum SimulateWhat {
    /// Modbus TCP gateways on consecutive local ports, ten power meters (unit ids
    /// 1–10) behind each: total power (f32, input register 52) and energy (f32, 72).
    Modbus {
        #[arg(long, default_value_t = 1)]
        gateways: u16,
        #[arg(long, default_value_t = 15020)]
        base_port: u16,
    },
    /// An HJ 212 data logger: uploads values, waits for 9014, resends on timeout.
    Hj212(cli::simulate::Hj212SimArgs),
    /// N HJ 212 loggers at a steady rate, one connection each (the child of
    /// `bench hj212-steady`; steered on stdin: mark, report, idle, quit).
    Hj212Fleet(cli::simulate::Hj212FleetArgs),
    /// A power-monitoring gateway publishing JSON over MQTT (QoS 1, persistent session).
    Mqtt {
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        url: String,
        #[arg(long, default_value = "power/{enterprise}/{meter}/data")]
        topic: String,
        #[arg(long)]
        enterprise: String,
        #[arg(long = "meter", required = true)]
        meters: Vec<String>,
        /// Values as CODE=VALUE, e.g. e_p=120.5.
        #[arg(long = "value", required = true)]
        values: Vec<String>,
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long, default_value = "5s")]
        interval: String,
    },
}

#[derive(Args)]
struct FindingsArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[arg(long)]
    enterprise: Option<String>,
    /// Rule name, e.g. exceedance, offline, treatment_not_running.
    #[arg(long)]
    rule: Option<String>,
    /// Findings decided since: RFC 3339 or local "YYYY-MM-DD[ HH:MM[:SS]]".
    #[arg(long)]
    since: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// One JSON array on stdout, with the evidence.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ReadingsArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[arg(long)]
    enterprise: String,
    #[arg(long, conflicts_with = "meter", required_unless_present = "meter")]
    outlet: Option<String>,
    #[arg(long)]
    meter: Option<String>,
    /// Factor code, e.g. a21026.
    #[arg(long)]
    factor: Option<String>,
    /// rtd, min, hour or day.
    #[arg(long)]
    kind: Option<DataKind>,
    /// rtd, avg, min, max or cou.
    #[arg(long)]
    stat: Option<Stat>,
    /// Inclusive start: RFC 3339 or local "YYYY-MM-DD[ HH:MM[:SS]]".
    #[arg(long)]
    from: Option<String>,
    /// Exclusive end, same forms as --from.
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    limit: Option<u32>,
    /// One JSON array on stdout.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Benchmarks and simulators print their own results; the server's per-connection
    // log lines would drown them.
    let quiet = matches!(
        cli.command,
        Command::Bench(_) | Command::Simulate(_) | Command::Demo(_)
    );
    // stdout of `simulate` is read by the field benchmark: make sure it is flushed.
    let format = match &cli.command {
        Command::Run(r) => r.log_format,
        _ => LogFormat::Auto,
    };
    init_logging(if quiet { "warn" } else { "info,sqlx=warn" }, format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(default: &str, format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let format = match format {
        // Under systemd the journal stamps every line itself.
        LogFormat::Auto if std::env::var_os("JOURNAL_STREAM").is_some() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Human,
        f => f,
    };
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Journald => builder.without_time().with_ansi(false).init(),
        _ => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn load_options() -> LoadOptions {
    LoadOptions {
        default_state_dir: std::env::var_os("STATE_DIRECTORY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("state")),
    }
}

fn load(dir: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(dir, &load_options()).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn dispatch(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::CheckConfig(c) => match Config::load(&c.config, &load_options()) {
            Ok(cfg) => {
                let missing = pollwatch::config::secrets::environment_problems(&cfg);
                if let Some(w) = pollwatch::config::secrets::evidence_warning(&cfg) {
                    eprintln!("{w}");
                }
                if missing.is_empty() {
                    print!("{}", cfg.summary());
                    return Ok(ExitCode::SUCCESS);
                }
                // `run` starts with these (the channel is unavailable, its routes
                // fall back), but the sysadmin must hear of every one.
                eprint!("{}", pollwatch::config::ConfigErrors(missing));
                Ok(ExitCode::FAILURE)
            }
            Err(errors) => {
                eprint!("{errors}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Run(r) => {
            let shutdown = shutdown_signal()?;
            let (handle, requests) = pollwatch::daemon::reload::channel();
            reload_on_sighup(handle.clone())?;
            let cfg = load(&r.config.config)?;
            let opts = pollwatch::daemon::RunOptions {
                load: load_options(),
                reload: Some((handle, requests)),
                ..Default::default()
            };
            pollwatch::daemon::run(cfg, opts, Arc::new(SystemClock), shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => cli::demo::demo(args, shutdown_signal()?).await,
        Command::Readings(args) => readings(args).await,
        Command::Findings(args) => findings(args).await,
        Command::Alerts(args) => alerts_cmd::run(args).await,
        Command::Report(args) => cli::report::run(args).await,
        Command::Evidence(args) => evidence_cmd::run(args).await,
        Command::Backfill(args) => cli::completeness::backfill(args).await,
        Command::Bench(args) => {
            cli::bench::run(args.what).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(SimulateArgs {
            what:
                SimulateWhat::Modbus {
                    gateways,
                    base_port,
                },
        }) => simulate_modbus(gateways, base_port).await,
        Command::Simulate(SimulateArgs {
            what: SimulateWhat::Hj212(args),
        }) => cli::simulate::simulate_hj212(args).await,
        Command::Simulate(SimulateArgs {
            what: SimulateWhat::Hj212Fleet(args),
        }) => cli::simulate::simulate_hj212_fleet(args).await,
        Command::Simulate(SimulateArgs {
            what:
                SimulateWhat::Mqtt {
                    url,
                    topic,
                    enterprise,
                    meters,
                    values,
                    count,
                    interval,
                },
        }) => {
            let values = values
                .iter()
                .map(|v| {
                    let (k, x) = v
                        .split_once('=')
                        .ok_or_else(|| anyhow::anyhow!("--value {v:?}: expected CODE=VALUE"))?;
                    let x: f64 = x
                        .parse()
                        .map_err(|_| anyhow::anyhow!("--value {v:?}: {x:?} is not a number"))?;
                    Ok((k.to_string(), x))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let plan = pollwatch::sim::mqtt_pub::GatewayPlan {
                url,
                topic,
                enterprise,
                meters,
                values,
                count,
                interval: pollwatch::config::HumanDuration::parse(&interval)
                    .map_err(|e| anyhow::anyhow!("--interval: {e}"))?
                    .0,
            };
            pollwatch::sim::mqtt_pub::run_gateway(&plan, |round, acked| {
                println!("round {round}/{count}: {acked} message(s) acknowledged by the broker")
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn findings(a: FindingsArgs) -> anyhow::Result<ExitCode> {
    let cfg = load(&a.config.config)?;
    if let Some(r) = &a.rule {
        r.parse::<pollwatch::rules::RuleName>()?;
    }
    let tz = cfg.timezone;
    let q = pollwatch::store::FindingQuery {
        enterprise: a.enterprise,
        rule: a.rule,
        since: a.since.map(|s| parse_user_time(&s, tz)).transpose()?,
        limit: a.limit,
        ..Default::default()
    };
    let store = pollwatch::daemon::open_store(&cfg).await?;
    let rows = store.findings(&q).await?;
    store.close().await;
    if a.json {
        let out = rows
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(&s.finding)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("id".into(), s.id.into());
                    o.insert("created".into(), rfc3339_local(s.created, tz).into());
                }
                Ok(v)
            })
            .collect::<Result<Vec<serde_json::Value>, serde_json::Error>>()?;
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for s in &rows {
            let f = &s.finding;
            println!(
                "{:>6}  {}  {:<22} {:<9} {} {} {}  {}",
                s.id,
                rfc3339_local(f.window_start, tz),
                f.rule.as_str(),
                f.severity.as_str(),
                f.enterprise,
                f.location_text(),
                f.factor,
                f.message
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn readings(a: ReadingsArgs) -> anyhow::Result<ExitCode> {
    let cfg = load(&a.config.config)?;
    let (location_kind, location) = match (a.outlet, a.meter) {
        (Some(o), None) => (LocationKind::Outlet, o),
        (None, Some(m)) => (LocationKind::Meter, m),
        _ => bail!("give exactly one of --outlet or --meter"),
    };
    match cfg.enterprise(&a.enterprise) {
        None => eprintln!(
            "warning: enterprise {:?} is not in the config; showing what the store holds",
            a.enterprise
        ),
        Some(e) => {
            let known = match location_kind {
                LocationKind::Outlet => e.outlets.iter().any(|o| o.id == location),
                LocationKind::Meter => e.meters.iter().any(|m| m.id == location),
            };
            if !known {
                eprintln!(
                    "warning: {} {location:?} is not configured for {}; showing what the store holds",
                    location_kind.as_str(),
                    e.id
                );
            }
        }
    }
    let tz = cfg.timezone;
    let time = |s: Option<String>| s.map(|s| parse_user_time(&s, tz)).transpose();
    let q = ReadingQuery {
        enterprise: a.enterprise,
        location_kind,
        location,
        factor: a.factor,
        kind: a.kind,
        stat: a.stat,
        from: time(a.from)?,
        to: time(a.to)?,
        limit: a.limit,
    };
    let store = pollwatch::daemon::open_store(&cfg).await?;
    let rows = store.readings(&q).await?;
    let conflicts = store.conflicts(&q).await?;
    store.close().await;
    if a.json {
        // A reading resent later with another value carries those values along.
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut v = pollwatch::api::readings::reading_json(r, tz);
                let resent: Vec<_> = conflicts
                    .iter()
                    .filter(|c| {
                        (&c.factor, c.kind, c.stat, c.converted, c.ts)
                            == (&r.factor, r.kind, r.stat, r.converted, r.ts)
                    })
                    .map(|c| cli::export::conflict_json(c, tz)["resent"].clone())
                    .collect();
                if let (false, Some(obj)) = (resent.is_empty(), v.as_object_mut()) {
                    obj.insert("conflicting_resends".into(), resent.into());
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for r in &rows {
            println!(
                "{}  {:<8} {:<4} {}{:<3} {:>14} {:<6} {}  {}:{}{}",
                rfc3339_local(r.ts, tz),
                r.factor,
                r.kind.as_str(),
                if r.converted { "zs" } else { "" },
                r.stat.as_str(),
                r.value,
                r.unit,
                r.flag.as_str(),
                r.protocol.as_str(),
                r.device,
                // HJ 212-2025 RF=1: sent from the logger's backlog.
                if r.resend { "  resend" } else { "" }
            );
        }
        eprintln!("{} readings", rows.len());
        if !conflicts.is_empty() {
            println!("conflicting resends (the first value stands):");
            for c in &conflicts {
                println!(
                    "{}  {:<8} {:<4} {}{:<3} stored {} {} ({}:{} at {})  resent {} {} ({}:{} at {})",
                    rfc3339_local(c.ts, tz),
                    c.factor,
                    c.kind.as_str(),
                    if c.converted { "zs" } else { "" },
                    c.stat.as_str(),
                    c.first_value,
                    c.first_flag.as_str(),
                    c.first_protocol.as_str(),
                    c.first_device,
                    rfc3339_local(c.first_received, tz),
                    c.value,
                    c.flag.as_str(),
                    c.protocol.as_str(),
                    c.device,
                    rfc3339_local(c.received, tz),
                );
            }
            eprintln!("{} conflicting resends", conflicts.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP (systemd's `ExecReload`) asks the daemon to reload; the outcome is logged.
/// Registered before the config is loaded, so an early SIGHUP cannot kill us.
fn reload_on_sighup(handle: pollwatch::daemon::reload::ReloadHandle) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received");
            handle.request("signal");
        }
    });
    Ok(())
}

/// Registers for SIGTERM (systemd stop) and SIGINT (Ctrl-C) at once — a signal
/// that arrives while the daemon is still starting must not kill it uncleanly —
/// and returns a future that completes on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
