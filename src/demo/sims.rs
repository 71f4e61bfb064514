//! The city's instruments: simulators speaking the real protocols over loopback
//! sockets, driven by the demo's scaled clock so that their data time is the
//! daemon's time. Curves come from [`super::scenarios`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::config::{
    DYEING_CT_RATIO, LOGGER_CEMENT, LOGGER_CHEMICAL, LOGGER_POWER, METER_DYE1, METER_WWT, REG_COD,
    REG_NH3N, REG_PH,
};
use super::scenarios as sc;
use crate::clock::{Clock, ScaledClock};
use crate::sim::hj212_logger::{cp_values, LoggerSim};
use crate::sim::modbus::{serve_tcp, ModbusSim, Point, Profile, RegisterKind};
use crate::sim::MeterSim;
use crate::sources::dlt645::types::MeterAddress;
use crate::sources::hj212::codec::crypt::Sm4Key;
use crate::sources::hj212::codec::time::LocalDateTime;
use crate::sources::modbus::decode::{DataType, WordOrder};

/// DL/T 645 data identifier of total active power (kW).
const DI_ACTIVE_POWER: u32 = 0x0203_0000;

/// Simulated time between two uploads or polls (loggers' usual real-time cadence).
pub const SAMPLE_EVERY_SIM: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SimsError {
    #[error("cannot bind a simulator on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    #[error("bad DL/T 645 meter address {0:?}")]
    MeterAddress(String),
}

/// The polled devices, listening before the config that names them is written.
pub struct Devices {
    pub modbus: SocketAddr,
    pub dlt645: SocketAddr,
}

/// Starts the wastewater plant's Modbus gateway and the dyeing factory's meter
/// bus; they serve until `stop`.
pub async fn start_devices(
    clock: &Arc<ScaledClock>,
    origin: DateTime<Utc>,
    stop: &watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) -> Result<Devices, SimsError> {
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let at = |min: f64| origin + chrono::Duration::milliseconds((min * 60_000.0) as i64);

    let wwtp = Arc::new(ModbusSim::new(dyn_clock.clone()));
    let f32p = |p: Profile| Point::new(p, DataType::F32, WordOrder::ABCD);
    let ph = sc::WWTP_PH.iter().map(|&(m, v)| (at(m), v)).collect();
    wwtp.set(1, RegisterKind::Holding, REG_PH, f32p(Profile::Script(ph)));
    let cod = Profile::Sine {
        mean: 22.0,
        amplitude: 3.0,
        period_secs: 40.0 * 60.0,
    };
    wwtp.set(1, RegisterKind::Holding, REG_COD, f32p(cod));
    let nh3n = Profile::Sine {
        mean: 1.2,
        amplitude: 0.2,
        period_secs: 55.0 * 60.0,
    };
    wwtp.set(1, RegisterKind::Holding, REG_NH3N, f32p(nh3n));
    let listener = bind().await?;
    let modbus = listener.local_addr().map_err(SimsError::Bind)?;
    let stop_m = stop.clone();
    tasks.spawn(async move {
        if let Err(e) = serve_tcp(listener, wwtp, stop_m).await {
            tracing::error!(error = %e, "demo Modbus simulator stopped");
        }
    });

    let meters = Arc::new(MeterSim::new(dyn_clock));
    let address = |s: &str| -> Result<MeterAddress, SimsError> {
        s.parse().map_err(|_| SimsError::MeterAddress(s.into()))
    };
    meters.set(
        address(METER_DYE1)?,
        DI_ACTIVE_POWER,
        Profile::Sine {
            mean: sc::DYEING_PRODUCTION_KW / DYEING_CT_RATIO,
            amplitude: 15.0 / DYEING_CT_RATIO,
            period_secs: 20.0 * 60.0,
        },
    );
    meters.set(
        address(METER_WWT)?,
        DI_ACTIVE_POWER,
        Profile::Step {
            before: sc::DYEING_TREATMENT_KW / DYEING_CT_RATIO,
            after: 0.0,
            at: at(sc::DYEING_TREATMENT_OFF_MIN),
        },
    );
    let listener = bind().await?;
    let dlt645 = listener.local_addr().map_err(SimsError::Bind)?;
    tasks.spawn(serve_meter_bus(listener, meters, stop.clone()));
    Ok(Devices { modbus, dlt645 })
}

async fn bind() -> Result<TcpListener, SimsError> {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(SimsError::Bind)
}

/// A serial-to-Ethernet converter in front of an RS-485 bus of DL/T 645 meters:
/// each TCP connection is the bus.
async fn serve_meter_bus(
    listener: TcpListener,
    sim: Arc<MeterSim>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let sim = sim.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    if let Err(e) = crate::sim::dlt645_meter::serve(stream, sim, stop).await {
                        tracing::debug!(error = %e, "demo meter bus connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "demo meter bus: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One data logger's script: which values to send at simulated minute `m`, and
/// until when (`None`: to the end).
struct LoggerPlan {
    who: (&'static str, &'static str, &'static str),
    st: &'static str,
    values: fn(f64) -> Vec<(&'static str, f64)>,
    silent_after_min: Option<f64>,
    /// An HJ 212-2025 logger encrypting its data areas with this key.
    sm4: Option<Sm4Key>,
}

/// Starts the three HJ 212 loggers against the daemon's listener.
pub fn start_loggers(
    hj212: SocketAddr,
    clock: &Arc<ScaledClock>,
    origin: DateTime<Utc>,
    tz: Tz,
    stop: &watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
    cement_key: Option<Sm4Key>,
) {
    let plans = [
        LoggerPlan {
            who: LOGGER_POWER,
            st: "31",
            values: sc::power_values,
            silent_after_min: None,
            sm4: None,
        },
        LoggerPlan {
            who: LOGGER_CHEMICAL,
            st: "32",
            values: sc::chemical_values,
            silent_after_min: Some(sc::CHEMICAL_SILENT_AFTER_MIN),
            sm4: None,
        },
        LoggerPlan {
            who: LOGGER_CEMENT,
            st: "31",
            values: sc::cement_values,
            silent_after_min: None,
            sm4: cement_key,
        },
    ];
    for plan in plans {
        tasks.spawn(run_logger(
            plan,
            hj212,
            clock.clone(),
            origin,
            tz,
            stop.clone(),
        ));
    }
}

async fn run_logger(
    plan: LoggerPlan,
    addr: SocketAddr,
    clock: Arc<ScaledClock>,
    origin: DateTime<Utc>,
    tz: Tz,
    mut stop: watch::Receiver<bool>,
) {
    let (enterprise, mn, password) = plan.who;
    let mut logger = LoggerSim::new(addr, mn, password);
    logger.st = plan.st.to_string();
    if let Some(key) = plan.sm4 {
        // HJ 212-2025: this revision, reply wanted; encrypted data areas.
        logger.flag = 9;
        logger.sm4_key = Some(key);
    }
    let mut tick = tokio::time::interval(clock.real(SAMPLE_EVERY_SIM));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let now = clock.now();
        let minute = (now - origin).num_milliseconds() as f64 / 60_000.0;
        if plan.silent_after_min.is_some_and(|s| minute >= s) {
            // Unplugged: the connection goes with it, as a dead logger's would.
            logger.disconnect();
            tracing::info!(enterprise, mn, "demo: logger falls silent");
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
        let local = now.with_timezone(&tz).format("%Y%m%d%H%M%S").to_string();
        let Ok(t) = LocalDateTime::parse_compact(&local) else {
            tracing::error!(local, "demo: cannot express the time as HJ 212 DataTime");
            continue;
        };
        let values: Vec<(&str, f64, char)> = (plan.values)(minute)
            .into_iter()
            .map(|(code, v)| (code, (v * 1000.0).round() / 1000.0, 'N'))
            .collect();
        let cp = cp_values("Rtd", &values);
        // A lost answer is what real loggers live with: log it and go on.
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = logger.upload("2011", t, &cp) => if let Err(e) = r {
                tracing::warn!(enterprise, mn, error = %e, "demo logger: upload not acknowledged");
            }
        }
    }
}
