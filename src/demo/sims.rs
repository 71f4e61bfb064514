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
use crate::sim::{Backlog, HistoryMode};
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
    /// The link is down from the first to the second simulated minute: the
    /// logger keeps measuring, keeps its hourly values, and uploads again after.
    link_down_min: Option<(f64, f64)>,
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
            link_down_min: None,
            sm4: None,
        },
        LoggerPlan {
            who: LOGGER_CHEMICAL,
            st: "32",
            values: sc::chemical_values,
            silent_after_min: Some(sc::CHEMICAL_SILENT_AFTER_MIN),
            link_down_min: None,
            sm4: None,
        },
        LoggerPlan {
            who: LOGGER_CEMENT,
            st: "31",
            values: sc::cement_values,
            silent_after_min: None,
            link_down_min: Some(sc::CEMENT_LINK_DOWN_MIN),
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

/// A logger's hourly means (2061) as it keeps them: the values it measured in
/// each hour, whether or not its link was up.
#[derive(Default)]
struct Hours {
    hour: Option<DateTime<Utc>>,
    sums: Vec<(&'static str, f64, u32)>,
}

impl Hours {
    /// Adds one sample at `now`; the CP of the hour that just ended, if any.
    fn sample(
        &mut self,
        now: DateTime<Utc>,
        values: &[(&'static str, f64, char)],
    ) -> Option<(DateTime<Utc>, String)> {
        let hour = crate::completeness::rates::floor_hour(now);
        let mut ended = None;
        if self.hour.is_some_and(|h| h != hour) && !self.sums.is_empty() {
            let means: Vec<(&str, f64, char)> = self
                .sums
                .iter()
                .map(|(c, s, n)| (*c, (s / f64::from(*n) * 1000.0).round() / 1000.0, 'N'))
                .collect();
            ended = self.hour.map(|h| (h, cp_values("Avg", &means)));
            self.sums.clear();
        }
        self.hour = Some(hour);
        for (code, v, _) in values {
            match self.sums.iter_mut().find(|(c, _, _)| c == code) {
                Some((_, s, n)) => {
                    *s += v;
                    *n += 1;
                }
                None => self.sums.push((code, *v, 1)),
            }
        }
        ended
    }
}

fn local_time(t: DateTime<Utc>, tz: Tz) -> Option<LocalDateTime> {
    let text = t.with_timezone(&tz).format("%Y%m%d%H%M%S").to_string();
    LocalDateTime::parse_compact(&text).ok()
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
    let mut hours = Hours::default();
    let mut backlog = Backlog::default();
    let mut link_down = false;
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
        let Some(t) = local_time(now, tz) else {
            tracing::error!(%now, "demo: cannot express the time as HJ 212 DataTime");
            continue;
        };
        let values: Vec<(&str, f64, char)> = (plan.values)(minute)
            .into_iter()
            .map(|(code, v)| (code, (v * 1000.0).round() / 1000.0, 'N'))
            .collect();
        // The logger with a link that drops also keeps and sends hourly means.
        let ended = plan.link_down_min.and_then(|_| hours.sample(now, &values));
        if let Some((h, cp)) = &ended {
            if let Some(lt) = local_time(*h, tz) {
                backlog.keep("2061", lt, cp);
            }
        }
        let down = plan
            .link_down_min
            .is_some_and(|(from, to)| minute >= from && minute < to);
        if down != link_down {
            link_down = down;
            if down {
                logger.disconnect();
                tracing::info!(
                    enterprise,
                    mn,
                    "demo: the logger's link drops; it keeps its data"
                );
            } else {
                tracing::info!(enterprise, mn, "demo: the logger's link is back");
            }
        }
        if down {
            continue;
        }
        let cp = cp_values("Rtd", &values);
        // A lost answer is what real loggers live with: log it and go on.
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = upload(&mut logger, t, &cp, ended.as_ref().and_then(|(h, cp)| Some((local_time(*h, tz)?, cp.as_str())))) => if let Err(e) = r {
                tracing::warn!(enterprise, mn, error = %e, "demo logger: upload not acknowledged");
            }
        }
        // History requests that came meanwhile: answered from what it kept
        // (ExeRtn=100 for periods it has nothing for).
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = logger.answer_received(&backlog, HistoryMode::Answer) => match r {
                Ok(answered) => {
                    for req in answered.iter().filter(|r| r.uploaded > 0) {
                        tracing::info!(enterprise, mn, cn = req.cn, begin = %req.begin, uploaded = req.uploaded, "demo: the logger filled a gap on request");
                    }
                }
                Err(e) => tracing::warn!(enterprise, mn, error = %e, "demo logger: history answer not acknowledged"),
            }
        }
    }
}

/// The real-time upload, and the hour that just ended when its link is up.
async fn upload(
    logger: &mut LoggerSim,
    t: LocalDateTime,
    cp: &str,
    hour: Option<(LocalDateTime, &str)>,
) -> Result<(), crate::sim::SimError> {
    logger.upload("2011", t, cp).await?;
    if let Some((h, cp)) = hour {
        logger.upload("2061", h, cp).await?;
    }
    Ok(())
}
