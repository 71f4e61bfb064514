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
            72,
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
