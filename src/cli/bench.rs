//! `pollwatch bench …`: each benchmark prints its own figures (BENCHMARKS.md
//! collects them).

use anyhow::Context as _;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Subcommand)]
pub enum BenchWhat {
    /// Field polling: N simulated Modbus TCP devices each polled every second.
    Field {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 21000)]
        base_port: u16,
        /// Store URL; default a fresh SQLite file in a temporary directory.
        #[arg(long)]
        url: Option<String>,
        /// Then run this bare client against the same simulators for as long
        /// and report pollwatch's CPU per poll as a ratio to it, e.g.
        /// `node benches/peer/modbus-serial.js` (see benches/peer/README.md).
        #[arg(long)]
        peer_cmd: Option<String>,
    },
    /// HJ 212 codec: frames framed, CRC-checked and parsed per second on one core.
    Hj212Codec {
        #[arg(long, default_value_t = 2_000_000)]
        frames: usize,
        /// HJ 212-2025 frames with SM4-encrypted data areas (decrypted too).
        #[arg(long)]
        sm4: bool,
    },
    /// HJ 212 end to end: simulated loggers → TCP → durable store → 9014.
    Hj212 {
        /// Store URL; default a fresh SQLite file in a temporary directory.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value_t = 200)]
        loggers: usize,
        #[arg(long, default_value_t = 200)]
        frames_per_logger: usize,
        /// HJ 212-2025 loggers encrypting their data areas (SM4).
        #[arg(long)]
        sm4: bool,
    },
    /// HJ 212 at a steady rate (issue 23): server + writer CPU per stored frame
    /// with N loggers in a child process each uploading every interval, then the
    /// idle floor with them connected and quiet, and with none connected.
    Hj212Steady {
        /// Store URL; default a fresh SQLite file in a temporary directory.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value_t = 1000)]
        loggers: usize,
        /// Seconds between one logger's uploads.
        #[arg(long, default_value_t = 10)]
        interval: u64,
        /// Seconds measured at the steady rate.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Seconds measured for each idle floor.
        #[arg(long, default_value_t = 20)]
        idle_seconds: u64,
        /// The shortest warm-up, seconds (it also waits for every logger's first
        /// frame to be stored).
        #[arg(long, default_value_t = 5)]
        warmup: u64,
        /// Factors per frame (1 to 10).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=10))]
        factors: u8,
    },
    /// HJ 212 backfill: loggers back after a city-wide outage are asked for their
    /// gap (CN 2061) while live loggers keep uploading real-time data.
    Hj212Backfill {
        /// Store URL; default a fresh SQLite file in a temporary directory.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value_t = 500)]
        loggers: usize,
        /// Hours of outage each logger kept.
        #[arg(long, default_value_t = 24)]
        hours: u32,
        /// Loggers never cut off, uploading real-time data every 200 ms meanwhile.
        #[arg(long, default_value_t = 50)]
        live: usize,
        /// backfill_rate: request starts per second.
        #[arg(long, default_value_t = 10)]
        rate: u32,
    },
    /// MQTT: QoS 1 messages through a private Mosquitto to durable SQLite, beside
    /// mosquitto_sub on the same broker.
    Mqtt {
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
        #[arg(long, default_value_t = 1000)]
        meters: u64,
        #[arg(long, default_value_t = 4)]
        values_per_message: usize,
        #[arg(long, default_value_t = 4)]
        publishers: u64,
        /// The broker's max_inflight_messages (Mosquitto's default is 20).
        #[arg(long, default_value_t = 1000)]
        broker_inflight: u32,
        /// Publish first, then time how fast pollwatch and mosquitto_sub drain.
        #[arg(long)]
        backlog: bool,
    },
    /// Cluster mode: the store-fed rules path against the in-process tap, on
    /// one PostgreSQL server, side by side.
    ClusterFeed {
        /// A PostgreSQL server URL; a fresh database is made and dropped on it.
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 200_000)]
        readings: usize,
        /// Readings per write (one logger frame is 10–50).
        #[arg(long, default_value_t = 20)]
        batch: usize,
    },
    /// Cluster mode: SIGKILL the leader of two `pollwatch run` nodes again and
    /// again; time until the survivor's leader term runs.
    ClusterFailover {
        /// A PostgreSQL server URL; a fresh database is made and dropped on it.
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 10)]
        kills: usize,
        #[arg(long, default_value = "10s")]
        lease: String,
        /// Enterprises (two outlets each, 5 h of minute values to rebuild).
        #[arg(long, default_value_t = 300)]
        enterprises: usize,
    },
    /// Rules engine: readings per second through every rule on one core.
    Rules {
        /// Enterprises, each with a flue-gas and a wastewater outlet and two meters.
        #[arg(long, default_value_t = 900)]
        enterprises: usize,
        /// Hours of data (one upload per outlet and meter every 30 s).
        #[arg(long, default_value_t = 2)]
        hours: u32,
        /// Then a week (`--backfill-days`) of late hourly data for this many
        /// wastewater loggers, judged again from a SQLite store (0: skip).
        #[arg(long, default_value_t = 500)]
        backfill_loggers: usize,
        #[arg(long, default_value_t = 7)]
        backfill_days: u32,
    },
    /// Evidence chart: hourly means, SVG and PNG for N real-time values.
    Chart {
        #[arg(long, default_value_t = 1500)]
        points: usize,
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Also write the last chart here (SVG) and beside it (.png).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Alerting with every channel hanging: time for a burst of alerts to open,
    /// and the escalation tick's cost over them.
    AlertLoad {
        #[arg(long, default_value_t = 10_000)]
        alerts: usize,
        #[arg(long, default_value_t = 10)]
        ticks: u32,
        /// Store URL; default a fresh SQLite file in a temporary directory.
        #[arg(long)]
        url: Option<String>,
    },
    /// Evidence (issue 18): the keyed chain and readings digest per alert event,
    /// and alerts verify per alert.
    Evidence {
        #[arg(long, default_value_t = 1000)]
        events: usize,
        /// Readings in each finding's window (60: an hour of minute values).
        #[arg(long, default_value_t = 60)]
        window: usize,
    },
    /// Alert latency: finding → alert → notification accepted by a local receiver.
    Alerts {
        #[arg(long, default_value_t = 1000)]
        alerts: usize,
    },
    /// The monthly report for a city: N enterprises × D days of real-time data,
    /// seeded into a fresh store, then computed cold, after closing the days, and
    /// rendered (xlsx, HTML).
    ReportMonthly {
        /// Store URL; default a fresh SQLite file in a temporary directory
        /// (PostgreSQL: a scratch database beside the one named, dropped after).
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value_t = 300)]
        enterprises: usize,
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Seconds between real-time values.
        #[arg(long, default_value_t = 30)]
        interval: u32,
    },
    /// Store throughput: readings committed per second through the batched writer.
    Store {
        /// Store URL; default a fresh SQLite file in a temporary directory.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value_t = 1_000_000)]
        readings: usize,
        /// Readings per write request (an HJ 212 frame carries about 10–30).
        #[arg(long, default_value_t = 10)]
        per_request: usize,
        /// Concurrent senders.
        #[arg(long, default_value_t = 64)]
        senders: usize,
        /// Outlets of 10 factors each (series = 10 × outlets).
        #[arg(long, default_value_t = 1000)]
        outlets: usize,
    },
}

/// The store to measure: the one given, or a fresh SQLite file in a temporary
/// directory that lives as long as the returned guard.
fn store_url(url: Option<String>) -> anyhow::Result<(tempfile::TempDir, String)> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let url = url.unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display()));
    Ok((dir, url))
}

pub async fn run(what: BenchWhat) -> anyhow::Result<()> {
    match what {
        BenchWhat::Field {
            devices,
            seconds,
            base_port,
            url,
            peer_cmd,
        } => {
            let (_dir, url) = store_url(url)?;
            let report = pollwatch::bench::field::modbus(
                &url,
                devices,
                base_port,
                seconds,
                peer_cmd.as_deref(),
            )
            .await?;
            println!("{report}");
        }
        BenchWhat::Mqtt {
            messages,
            meters,
            values_per_message,
            publishers,
            broker_inflight,
            backlog,
        } => {
            let opts = pollwatch::bench::mqtt::MqttBench {
                messages,
                meters,
                values_per_message,
                publishers,
                broker_inflight,
                backlog,
            };
            println!("{}", pollwatch::bench::mqtt::mqtt(&opts).await?);
        }
        BenchWhat::ClusterFeed {
            url,
            readings,
            batch,
        } => {
            println!(
                "{}",
                pollwatch::bench::cluster::feed(&url, readings, batch).await?
            );
        }
        BenchWhat::ClusterFailover {
            url,
            kills,
            lease,
            enterprises,
        } => {
            println!(
                "{}",
                pollwatch::bench::cluster::failover(&url, kills, &lease, enterprises).await?
            );
        }
        BenchWhat::Rules {
            enterprises,
            hours,
            backfill_loggers,
            backfill_days,
        } => {
            println!("{}", pollwatch::bench::rules::rules(enterprises, hours)?);
            if backfill_loggers > 0 {
                println!(
                    "{}",
                    pollwatch::bench::backfill::backfill(backfill_loggers, backfill_days).await?
                );
            }
        }
        BenchWhat::Chart { points, runs, out } => {
            let report = pollwatch::bench::chart::chart(points, runs, out.as_deref())?;
            println!("{report}");
        }
        BenchWhat::AlertLoad { alerts, ticks, url } => {
            let r = pollwatch::bench::alert_load::alert_load(alerts, ticks, url.as_deref()).await?;
            println!("{r}");
        }
        BenchWhat::Evidence { events, window } => {
            println!(
                "{}",
                pollwatch::bench::evidence::evidence(events, window).await?
            );
        }
        BenchWhat::Alerts { alerts } => {
            println!("{}", pollwatch::bench::alerts::alerts(alerts).await?);
        }
        BenchWhat::Hj212Codec { frames, sm4 } => {
            println!("{}", pollwatch::bench::hj212::codec(frames, sm4));
        }
        BenchWhat::Hj212 {
            url,
            loggers,
            frames_per_logger,
            sm4,
        } => {
            let (_dir, url) = store_url(url)?;
            let report =
                pollwatch::bench::hj212::end_to_end(&url, loggers, frames_per_logger, sm4).await?;
            println!("{report}");
        }
        BenchWhat::Hj212Steady {
            url,
            loggers,
            interval,
            seconds,
            idle_seconds,
            warmup,
            factors,
        } => {
            let (_dir, url) = store_url(url)?;
            let opts = pollwatch::bench::hj212_steady::SteadyOptions {
                url,
                loggers,
                interval_secs: interval,
                seconds,
                idle_seconds,
                factors: usize::from(factors),
                min_warmup: std::time::Duration::from_secs(warmup),
                fleet_exe: std::env::current_exe().context("finding the pollwatch binary")?,
            };
            print!("{}", pollwatch::bench::hj212_steady::steady(&opts).await?);
        }
        BenchWhat::Hj212Backfill {
            url,
            loggers,
            hours,
            live,
            rate,
        } => {
            let (_dir, url) = store_url(url)?;
            let report = pollwatch::bench::logger_backfill::logger_backfill(
                &url, loggers, hours, live, rate,
            )
            .await?;
            println!("{report}");
        }
        BenchWhat::ReportMonthly {
            url,
            enterprises,
            days,
            interval,
        } => {
            let (_dir, url) = store_url(url)?;
            let opts = pollwatch::bench::report::ReportBench {
                url,
                enterprises,
                days,
                interval_s: interval,
            };
            println!("{}", pollwatch::bench::report::report(&opts).await?);
        }
        BenchWhat::Store {
            url,
            readings,
            per_request,
            senders,
            outlets,
        } => {
            let (_dir, url) = store_url(url)?;
            let opts = pollwatch::bench::StoreBench {
                url,
                readings,
                per_request,
                senders,
                outlets,
            };
            let report = pollwatch::bench::store(&opts).await?;
            println!("{report}");
        }
    }
    Ok(())
}
