//! Rules-engine throughput: readings per second through every rule for a
//! city-sized config, on one core, evaluator alone (no store, no channels).
//!
//! The city: `enterprises` with a flue-gas outlet (SO2, NOx, PM with hourly limits,
//! O2, flow; an emission cap), a wastewater outlet (COD, NH3-N daily, pH instant,
//! flow) and two power meters in a linkage, plus a limit order. Every outlet
//! uploads every 30 s and every meter every 30 s, for `hours` of data time; the
//! evaluator is ticked every 10 s of data time as the daemon does. Readings are
//! generated before the clock starts.

use std::fmt;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};

use super::cpu_time;
use crate::config::{Config, LoadOptions};
use crate::model::{DataKind, Flag, Id, Location, Protocol, Reading, SourceRef, Stat};
use crate::rules::{Evaluator, Options, Output, Plan};

#[derive(Debug, Clone)]
pub struct RulesReport {
    pub enterprises: usize,
    pub series: usize,
    pub readings: u64,
    pub elapsed: Duration,
    /// Of `elapsed`, the time spent in `tick` (offline, windows closing).
    pub ticking: Duration,
    /// CPU time of the process over the run (user + system), where the OS tells;
    /// on a shared machine wall time overstates the cost.
    pub cpu: Option<Duration>,
    pub findings: usize,
    /// A reload that changes one enterprise: compiling the new plan, then
    /// swapping it in (comparing every enterprise's plan, keeping their state).
    pub compile: Duration,
    pub swap: Duration,
    /// Enterprises the swap left to be replayed from the store.
    pub replay: usize,
}

impl RulesReport {
    pub fn per_second(&self) -> f64 {
        self.readings as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for RulesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rules: {} enterprises, {} series, {} readings in {:.2} s (ticks {:.2} s) = {:.0} readings/s on one core",
            self.enterprises,
            self.series,
            self.readings,
            self.elapsed.as_secs_f64(),
            self.ticking.as_secs_f64(),
            self.per_second(),
        )?;
        if let Some(cpu) = self.cpu {
            write!(
                f,
                "; {:.2} s CPU = {:.0} readings per CPU-second",
                cpu.as_secs_f64(),
                self.readings as f64 / cpu.as_secs_f64().max(1e-9)
            )?;
        }
        write!(f, " ({} findings)", self.findings)?;
        write!(
            f,
            "\nplan swap (one enterprise changed): compile {:.1} ms, swap {:.1} ms, {} of {} enterprises to replay",
            self.compile.as_secs_f64() * 1e3,
            self.swap.as_secs_f64() * 1e3,
            self.replay,
            self.enterprises
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RulesBenchError {
    #[error("writing the benchmark config: {0}")]
    Io(#[from] std::io::Error),
    #[error("the generated config is invalid: {0}")]
    Config(#[from] crate::config::ConfigErrors),
}

fn enterprise_toml(i: usize) -> String {
    format!(
        r#"id = "E{i:04}"
name = "企业{i}"
district = "吴中区"
industry = "火电"

[[outlets]]
id = "DA001"
name = "烟囱"
kind = "flue_gas"
o2_reference = 6.0
analyzers = [{{ factor = "a21026", range = 500.0 }}]

[[outlets.limits]]
factor = "a21026"
max = 35.0
basis = "hour"

[[outlets.limits]]
factor = "a21002"
max = 50.0
basis = "hour"

[[outlets.limits]]
factor = "a34013"
max = 10.0
basis = "hour"

[[outlets]]
id = "DW001"
name = "总排口"
kind = "wastewater"

[[outlets.limits]]
factor = "w01018"
max = 100.0
basis = "day"

[[outlets.limits]]
factor = "w21003"
max = 15.0
basis = "day"

[[outlets.limits]]
factor = "w01001"
min = 6.0
max = 9.0
basis = "instant"

[[meters]]
id = "M-PROD"
name = "生产"
role = "production"
baseline_kw = 500.0

[[meters]]
id = "M-TREAT"
name = "治污"
role = "treatment"

[[linkages]]
id = "l1"
production = ["M-PROD"]
production_on_kw = 50.0
treatment = ["M-TREAT"]
treatment_normal_kw = 100.0

[[orders]]
id = "o1"
kind = "limit"
start = 2026-11-27T10:00:00+08:00
end = 2026-11-27T12:00:00+08:00
allowed_share = 0.6

[[emission_caps]]
factor = "a21026"
tonnes_per_year = 100.0
"#
    )
}

/// The city config, written to a temporary directory and loaded like any other.
pub fn city_config(enterprises: usize) -> Result<Config, RulesBenchError> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("enterprises"))?;
    std::fs::write(
        dir.path().join("pollwatch.toml"),
        "[daemon]\ntimezone = \"Asia/Shanghai\"\n",
    )?;
    for i in 0..enterprises {
        std::fs::write(
            dir.path().join(format!("enterprises/e{i:04}.toml")),
            enterprise_toml(i),
        )?;
    }
    Ok(Config::load(dir.path(), &LoadOptions::default())?)
}

/// Uploads of the whole city, one `Vec` per 30-s step (what a few commits hold).
pub fn city_readings(enterprises: usize, hours: u32) -> Vec<Vec<Reading>> {
    let start = Utc
        .with_ymd_and_hms(2026, 11, 27, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let source = SourceRef {
        protocol: Protocol::Sim,
        device: "sim".into(),
        resend: false,
    };
    let ids: Vec<Id> = (0..enterprises)
        .map(|i| Id::from(format!("E{i:04}")))
        .collect();
    let (gas, water): (Location, Location) = (
        Location::Outlet("DA001".into()),
        Location::Outlet("DW001".into()),
    );
    let (prod, treat) = (
        Location::Meter("M-PROD".into()),
        Location::Meter("M-TREAT".into()),
    );
    let factors: Vec<Id> = [
        "a21026", "a21002", "a34013", "a19001", "a00000", "w01018", "w21003", "w01001", "w00000",
        "e_p",
    ]
    .iter()
    .map(|f| Id::from(*f))
    .collect();
    let steps = hours as i64 * 120;
    let mut out = Vec::with_capacity(steps as usize);
    for step in 0..steps {
        let ts = start + chrono::Duration::seconds(30 * step);
        let mut batch = Vec::with_capacity(enterprises * 11);
        for (e, id) in ids.iter().enumerate() {
            // Deterministic wobble so averages, constants and warnings all work.
            let w = ((step as usize * 7 + e * 13) % 11) as f64;
            let values: [(&Location, usize, f64); 11] = [
                (&gas, 0, 20.0 + w),
                (&gas, 1, 30.0 + w),
                (&gas, 2, 5.0 + w * 0.2),
                (&gas, 3, 7.0 + w * 0.1),
                (&gas, 4, 120.0 + w),
                (&water, 5, 60.0 + w * 3.0),
                (&water, 6, 8.0 + w * 0.3),
                (&water, 7, 7.0 + w * 0.1),
                (&water, 8, 25.0 + w),
                (&prod, 9, 300.0 + w),
                (&treat, 9, if e % 50 == 0 { 3.0 } else { 95.0 + w }),
            ];
            for (loc, f, value) in values {
                batch.push(Reading {
                    enterprise: id.clone(),
                    location: loc.clone(),
                    factor: factors[f].clone(),
                    unit: "".into(),
                    ts,
                    value,
                    kind: DataKind::Rtd,
                    stat: Stat::Rtd,
                    converted: false,
                    flag: Flag::N,
                    source: source.clone(),
                });
            }
        }
        out.push(batch);
    }
    out
}

/// Runs the benchmark.
pub fn rules(enterprises: usize, hours: u32) -> Result<RulesReport, RulesBenchError> {
    let config = city_config(enterprises)?;
    let plan = Plan::new(&config);
    let batches = city_readings(enterprises, hours);
    let mut ev = Evaluator::new(plan, Options::default());
    let mut out = Output::default();
    let mut findings = 0;
    let mut readings = 0u64;
    let mut ticking = Duration::ZERO;
    let cpu_before = cpu_time();
    let started = Instant::now();
    for batch in &batches {
        ev.ingest(batch, &mut out);
        readings += batch.len() as u64;
        if let Some(r) = batch.first() {
            // Ticks every 10 s of data time, as the daemon does: three per step.
            let t = Instant::now();
            for k in 0..3 {
                ev.tick(r.ts + chrono::Duration::seconds(10 * k), &mut out);
            }
            ticking += t.elapsed();
        }
        findings += out.findings.len();
        out.findings.clear();
        out.emissions.clear();
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let mut changed = config.clone();
    if let Some(l) = changed
        .enterprises
        .first_mut()
        .and_then(|e| e.outlets.first_mut())
        .and_then(|o| o.limits.first_mut())
    {
        l.max = l.max.map(|m| m * 0.9);
    }
    let t = Instant::now();
    let new_plan = Plan::new(&changed);
    let compile = t.elapsed();
    let t = Instant::now();
    let replay = ev.replace_plan(new_plan).len();
    let swap = t.elapsed();
    Ok(RulesReport {
        enterprises,
        series: ev.series(),
        readings,
        elapsed,
        ticking,
        cpu,
        findings,
        compile,
        swap,
        replay,
    })
}
