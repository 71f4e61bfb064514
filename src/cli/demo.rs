//! `pollwatch demo`: prints what runs where, then every message the duty officer
//! receives, and a summary of which scenarios reached the officer and how fast.
//! Logs go to stderr (warn by default) so that stdout reads like the phone.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use pollwatch::config::HumanDuration;
use pollwatch::demo::scenarios::{Tracker, CEMENT, CEMENT_LINK_DOWN_MIN, SCENARIOS};
use pollwatch::demo::{Demo, DemoOptions};

#[derive(Args)]
pub struct DemoArgs {
    /// Simulated seconds per real second (1–300). 60: a real second is a
    /// simulated minute, and the first hourly means close after a minute.
    #[arg(long, default_value_t = 60.0)]
    speed: f64,
    /// Stop after this long (real time, e.g. "5m"); default: run until Ctrl-C.
    #[arg(long)]
    duration: Option<String>,
    /// Exit (status 0) once every scenario's alert has reached the officer.
    #[arg(long)]
    exit_when_done: bool,
    /// With --exit-when-done: give up and exit 1 if they have not all arrived
    /// after this long (real time).
    #[arg(long, default_value = "120s", requires = "exit_when_done")]
    timeout: String,
    /// Keep the temporary state directory (config, SQLite) and print where it is.
    #[arg(long)]
    keep_state: bool,
}

enum End {
    Interrupted,
    Duration,
    Done,
    Timeout,
}

fn duration_arg(flag: &str, s: &str) -> anyhow::Result<Duration> {
    HumanDuration::parse(s)
        .map(|d| d.0)
        .map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
}

pub async fn demo(
    args: DemoArgs,
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    let duration = args
        .duration
        .as_deref()
        .map(|s| duration_arg("duration", s))
        .transpose()?;
    let timeout = duration_arg("timeout", &args.timeout)?;
    let mut demo = Demo::start(DemoOptions { speed: args.speed })
        .await
        .context("starting the demo")?;
    print_banner(&demo);

    let mut tracker = Tracker::default();
    let mut received = 0usize;
    let mut cement_alerts = 0usize;
    let sleep_or_never = |d: Option<Duration>| async move {
        match d {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let stop_after = sleep_or_never(duration);
    let give_up = sleep_or_never(args.exit_when_done.then_some(timeout));
    tokio::pin!(interrupt, stop_after, give_up);
    let end = loop {
        tokio::select! {
            _ = &mut interrupt => break Ok(End::Interrupted),
            _ = &mut stop_after => break Ok(End::Duration),
            _ = &mut give_up => break Ok(End::Timeout),
            m = demo.next_message() => {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => break Err(e),
                };
                received += 1;
                if m.enterprise_id == CEMENT {
                    cement_alerts += 1;
                }
                let after = m.received_real.map(|t| t.duration_since(demo.started));
                println!("{}", m.render(demo.tz, after));
                if let Some(s) = tracker.record(&m, after.unwrap_or_default()) {
                    println!("✔ scenario {} reached the duty officer: {}\n", s.key, s.story);
                }
                if args.exit_when_done && tracker.all_done() {
                    break Ok(End::Done);
                }
            }
        }
    };
    let elapsed = demo.started.elapsed();
    let gaps = filled_gaps(&demo).await;
    let stopped = demo.stop(args.keep_state).await;

    println!("── summary after {:.0} s (real) ──", elapsed.as_secs_f64());
    for (s, after) in tracker.results() {
        match after {
            Some(d) => println!(
                "  ✔ {:<8} first alert after {:>5.1} s  {}",
                s.key,
                d.as_secs_f64(),
                s.story
            ),
            None => println!("  ✘ {:<8} no alert yet          {}", s.key, s.story),
        }
    }
    println!("  messages received by the officer: {received}; from 西山水泥 (all normal): {cement_alerts}");
    match gaps {
        Ok(lines) if lines.is_empty() => println!(
            "  西山水泥's logger: no gap filled yet (its link is down from minute {:.0} to {:.0})",
            CEMENT_LINK_DOWN_MIN.0, CEMENT_LINK_DOWN_MIN.1
        ),
        Ok(lines) => {
            println!("  西山水泥's logger lost its link and, once back, sent what was missing on request:");
            for l in lines {
                println!("    {l}");
            }
        }
        Err(e) => println!("  backfill requests: cannot read them ({e:#})"),
    }
    match &stopped {
        Ok(Some(dir)) => println!("  state kept in {}", dir.display()),
        Ok(None) => println!("  state directory removed"),
        Err(_) => {}
    }
    let end = end.context("the demo failed")?;
    stopped.context("stopping the demo")?;
    Ok(match end {
        End::Done | End::Interrupted | End::Duration => ExitCode::SUCCESS,
        End::Timeout => {
            eprintln!(
                "error: not every scenario reached the officer within {}",
                args.timeout
            );
            ExitCode::FAILURE
        }
    })
}

fn print_banner(d: &Demo) {
    let api = d.api_url();
    let start = d.origin.with_timezone(&d.tz).format("%Y-%m-%d %H:%M");
    println!("pollwatch demo: a small simulated city, time running {}× (one real second = {} simulated seconds)", d.speed, d.speed);
    println!("  simulated time starts at {start} ({})", d.tz);
    println!(
        "  HTTP API    {api}  viewer token {}  operator token {}",
        d.viewer_token, d.operator_token
    );
    println!(
        "              curl -H 'Authorization: Bearer {}' {api}/api/v1/alerts",
        d.viewer_token
    );
    println!(
        "  HJ 212      {}  ← data loggers of 东山热电, 北湖精细化工, 西山水泥",
        d.bound.hj212
    );
    println!(
        "              西山水泥's logger loses its link from minute {:.0} to {:.0}; once back it is asked for the hour it kept (see the summary, or /enterprises/{CEMENT})",
        CEMENT_LINK_DOWN_MIN.0, CEMENT_LINK_DOWN_MIN.1
    );
    println!(
        "  Modbus TCP  {}  ← 城南污水处理厂's analyzers (polled)",
        d.devices.modbus
    );
    println!(
        "  DL/T 645    {}  ← 星河印染's meters behind a serial-to-Ethernet converter (polled)",
        d.devices.dlt645
    );
    println!(
        "  state       {}  (SQLite and the generated config; removed at exit unless --keep-state)",
        d.state_dir.display()
    );
    println!("Scenarios, each should reach the duty officer within about a minute:");
    for (i, s) in SCENARIOS.iter().enumerate() {
        println!("  {}. {:<8} {}", i + 1, s.key, s.story);
    }
    println!("  and 西山水泥, where everything stays within limits.");
    println!("What the duty officer 张伟 receives (Ctrl-C to stop):\n");
}

/// The history requests that filled a gap of 西山水泥's logger, one line each
/// (from the API, as an officer's tools would read them).
async fn filled_gaps(d: &Demo) -> anyhow::Result<Vec<String>> {
    let url = format!("{}/api/v1/backfill?enterprise={CEMENT}", d.api_url());
    let v: serde_json::Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(&d.viewer_token)
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let rows = v["requests"].as_array().cloned().unwrap_or_default();
    Ok(rows
        .iter()
        .filter(|r| r["state"] == "done")
        .map(|r| {
            format!(
                "CN {} {} – {}: {} values stored (requested {}, done {})",
                r["cn"].as_str().unwrap_or("?"),
                r["begin"].as_str().unwrap_or("?"),
                r["end"].as_str().unwrap_or("?"),
                r["readings"],
                r["requested_at"].as_str().unwrap_or("?"),
                r["finished_at"].as_str().unwrap_or("?"),
            )
        })
        .collect())
}
