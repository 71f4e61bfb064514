//! `pollwatch simulate …`: device simulators for demos, benchmarks and testing a
//! platform by hand.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use pollwatch::clock::SystemClock;

/// Serves simulated Modbus TCP gateways until killed.
pub async fn simulate_modbus(gateways: u16, base_port: u16) -> anyhow::Result<ExitCode> {
    use pollwatch::sim::modbus::{serve_tcp, ModbusSim, Point};
    use pollwatch::sim::profile::Profile;
    use pollwatch::sources::modbus::decode::{DataType, WordOrder};
    use pollwatch::sources::modbus::plan::RegisterKind;
    let sim = Arc::new(ModbusSim::new(Arc::new(SystemClock)));
    for unit in 1..=10u8 {
        sim.add_unit(unit);
        let power = Profile::Sine {
            mean: 50.0 * f64::from(unit),
            amplitude: 5.0,
            period_secs: 600.0,
        };
        sim.set(
            unit,
            RegisterKind::Input,
            52,
            Point::new(power, DataType::F32, WordOrder::ABCD),
        );
        let energy = Profile::Ramp {
            start: 1000.0,
            per_sec: 0.01,
        };
        sim.set(
            unit,
            RegisterKind::Input,
            54,
            Point::new(energy, DataType::F32, WordOrder::ABCD),
        );
    }
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for g in 0..gateways {
        let port = base_port
            .checked_add(g)
            .context("--base-port + --gateways exceeds 65535")?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        tasks.spawn(serve_tcp(listener, sim.clone(), stop_rx.clone()));
    }
    println!(
        "simulating {gateways} Modbus TCP gateways on 127.0.0.1:{base_port}.. (10 meters each)"
    );
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            eprintln!("simulator: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pollwatch simulate hj212`.
#[derive(Debug, clap::Args)]
pub struct Hj212SimArgs {
    /// Platform address.
    #[arg(long, default_value = "127.0.0.1:9212")]
    addr: std::net::SocketAddr,
    #[arg(long)]
    mn: String,
    #[arg(long)]
    password: String,
    /// System code: 31 flue gas, 32 wastewater.
    #[arg(long, default_value = "32")]
    st: String,
    /// 2011 real-time, 2051 minute, 2061 hourly, 2031 daily (2025: 2111 furnace
    /// temperature 5-minute means).
    #[arg(long, default_value = "2011")]
    cn: String,
    /// Values as CODE=VALUE or CODE=VALUE:FLAG, e.g. a21026=41.2 or w01001=5.8:N.
    #[arg(long = "value", required = true)]
    values: Vec<String>,
    /// Uploads to send, one per interval, DataTime advancing by the interval.
    #[arg(long, default_value_t = 1)]
    count: u32,
    #[arg(long, default_value = "1s")]
    interval: String,
    /// Protocol generation: 2017 (Flag 5) or 2025 (Flag 9).
    #[arg(long, default_value = "2017", value_parser = ["2017", "2025"])]
    version: String,
    /// HJ 212-2025: encrypt data areas with the SM4 key in this file (32 hex digits).
    #[arg(long)]
    sm4_key_file: Option<std::path::PathBuf>,
    /// HJ 212-2025: mark uploads as resends from the backlog (RF=1).
    #[arg(long)]
    resend: bool,
}

/// Sends uploads like a logger and prints each answer's latency.
pub async fn simulate_hj212(a: Hj212SimArgs) -> anyhow::Result<ExitCode> {
    use pollwatch::sources::hj212::codec::crypt::Sm4Key;
    use pollwatch::sources::hj212::codec::time::LocalDateTime;
    let interval = pollwatch::config::HumanDuration::parse(&a.interval)
        .map_err(|e| anyhow::anyhow!("--interval: {e}"))?
        .0;
    let v2025 = a.version == "2025";
    if !v2025 && (a.sm4_key_file.is_some() || a.resend) {
        anyhow::bail!("--sm4-key-file and --resend are HJ 212-2025 features: add --version 2025");
    }
    let cp = simulate_cp(&a.cn, &a.values)?;
    let mut sim = pollwatch::sim::LoggerSim::new(a.addr, &a.mn, &a.password);
    sim.st = a.st;
    if v2025 {
        sim.flag = 9;
        sim.resend = a.resend;
    }
    if let Some(path) = &a.sm4_key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--sm4-key-file {}", path.display()))?;
        let key = Sm4Key::from_hex(&text)
            .with_context(|| format!("--sm4-key-file {}", path.display()))?;
        sim.sm4_key = Some(key);
    }
    let tz = chrono_tz::Asia::Shanghai;
    for i in 0..a.count {
        let now = chrono::Utc::now().with_timezone(&tz);
        let t = LocalDateTime::parse_compact(&now.format("%Y%m%d%H%M%S").to_string())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let d = sim.upload(&a.cn, t, &cp).await?;
        println!(
            "upload {}/{} CN={} DataTime={t}: 9014 after {} attempt(s), {:.1} ms",
            i + 1,
            a.count,
            a.cn,
            d.attempts,
            d.latency.as_secs_f64() * 1e3
        );
        if i + 1 < a.count {
            tokio::time::sleep(interval).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// CP fields from `CODE=VALUE[:FLAG]` arguments, with the suffix `cn` uses.
pub fn simulate_cp(cn: &str, values: &[String]) -> anyhow::Result<String> {
    let suffix = if cn == "2011" { "Rtd" } else { "Avg" };
    let mut items = Vec::new();
    for v in values {
        let (code, rest) = v
            .split_once('=')
            .with_context(|| format!("--value {v:?}: expected CODE=VALUE[:FLAG]"))?;
        let (value, flag) = rest.split_once(':').unwrap_or((rest, "N"));
        let value: f64 = value
            .parse()
            .with_context(|| format!("--value {v:?}: {value:?} is not a number"))?;
        items.push(format!("{code}-{suffix}={value},{code}-Flag={flag}"));
    }
    Ok(items.join(";"))
}

/// `pollwatch simulate hj212-fleet`.
#[derive(Debug, clap::Args)]
pub struct Hj212FleetArgs {
    /// Platform address.
    #[arg(long, default_value = "127.0.0.1:9212")]
    addr: std::net::SocketAddr,
    /// Loggers, MN00000000.., password 123456, one TCP connection each.
    #[arg(long, default_value_t = 1000)]
    loggers: usize,
    /// Seconds between one logger's 2011 uploads (sends spread over it).
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Factors per upload.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=10))]
    factors: u8,
    /// Exit after this many seconds (default: when killed or told `quit`).
    #[arg(long)]
    seconds: Option<u64>,
    /// Stop uploading after this many seconds, keeping the connections open.
    #[arg(long)]
    idle_after: Option<u64>,
}

/// Runs a fleet, printing a `fleet tick: …` line a second while it sends, and
/// obeying commands on stdin: `mark` (a new window), `report` (print a `fleet
/// report: …` line for the window), `idle` (stop uploading), `quit`.
pub async fn simulate_hj212_fleet(a: Hj212FleetArgs) -> anyhow::Result<ExitCode> {
    use pollwatch::sim::hj212_fleet::{Fleet, FleetOptions};
    use tokio::time::{sleep_until, Duration, Instant};
    anyhow::ensure!(a.loggers > 0, "--loggers must be at least 1");
    anyhow::ensure!(a.interval > 0, "--interval must be at least 1 s");
    let fleet = Fleet::start(&FleetOptions {
        addr: a.addr,
        loggers: a.loggers,
        interval: Duration::from_secs(a.interval),
        factors: usize::from(a.factors),
        tz: chrono_tz::Asia::Shanghai,
    });
    let (tx, mut commands) = tokio::sync::mpsc::channel::<String>(8);
    // A plain thread, not tokio's stdin: the runtime would wait at exit for a
    // blocking read that only ends when the parent closes the pipe.
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line.trim().to_string()).is_err() {
                break;
            }
        }
    });
    let far = Instant::now() + Duration::from_secs(100 * 365 * 86_400);
    let at = |s: Option<u64>| s.map_or(far, |s| Instant::now() + Duration::from_secs(s));
    let (end, mut idle_at) = (at(a.seconds), at(a.idle_after));
    let mut ticks = tokio::time::interval_at(
        Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut idle = false;
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = ticks.tick(), if !idle => println!("{}", fleet.line("tick")),
            _ = sleep_until(idle_at), if !idle => {
                fleet.idle();
                idle = true;
                idle_at = far;
            }
            _ = sleep_until(end) => break,
            cmd = commands.recv(), if stdin_open => match cmd.as_deref() {
                Some("mark") => fleet.mark(),
                Some("report") => println!("{}", fleet.line("report")),
                Some("idle") => {
                    fleet.idle();
                    idle = true;
                }
                Some("quit") => break,
                Some("") => {}
                Some(other) => eprintln!("fleet: unknown command {other:?}"),
                // stdin closed (e.g. /dev/null): run on by the clock alone.
                None => stdin_open = false,
            },
        }
    }
    println!("{}", fleet.line("end"));
    fleet.stop().await;
    Ok(ExitCode::SUCCESS)
}
