//! The rules engine: judges readings against each enterprise's permit exactly as
//! the standards say, and reports what it finds as [`Finding`]s with their evidence.
//! The numbers come from HJ 75/76-2017 (valid hour ≥ 45 minutes, valid day ≥ 20
//! hours, flags F M C D B not valid), the emission standards' reference O2 and the
//! enterprise's permit; the limit always comes from config, never from code.
//!
//! # Shape
//!
//! The [`Evaluator`] is a pure, synchronous state machine: [`Evaluator::ingest`]
//! takes readings that are already durable, [`Evaluator::tick`] moves time on for the
//! rules that fire on silence (offline, windows closing). It never reads a clock:
//! time is the data's time or the `now` it is given, so a test runs days of data in
//! milliseconds and a replay after a restart reaches the same verdicts. The config
//! is compiled once into a [`Plan`] of indexed tables; the hot path is a few hash
//! lookups on borrowed strings and arithmetic on per-series state.
//!
//! The daemon feeds it from the store writer's tap (readings after they commit; see
//! [`task`]), writes findings to the `findings` table — where a natural key makes a
//! replayed finding a no-op — and hands the new ones to the alerts engine.
//!
//! # Rules and their config (enterprise files)
//!
//! ```toml
//! [[outlets]]
//! id = "DA001"
//! kind = "flue_gas"
//! o2_reference = 6.0
//! aggregates = "supplied"        # judge the logger's 2061/2031 averages (default);
//!                                # "computed": judge ours. The other is a cross-check
//! mismatch_tolerance = 0.05      # data_mismatch above 5 % difference (default)
//! min_valid_minutes = 45         # valid hour (HJ 75, default)
//! min_valid_hours = 20           # valid day (HJ 75, default)
//! offline_after = "30m"          # offline (default)
//! constant_for = "4h"            # constant_value (default)
//! constant_epsilon = 1e-6        # "identical" (default)
//! maintenance_max_share = 0.1    # maintenance_overuse: M/C minutes per day (default)
//! analyzers = [{ factor = "a21026", range = 200.0 }]   # over_range
//!
//! [[outlets.limits]]
//! factor = "a21026"
//! max = 35.0
//! basis = "hour"                 # instant | hour | day
//! warn_at = 0.8                  # early_warning (hour/day default 0.8)
//!
//! [[outlets.limits]]             # (on a wastewater outlet)
//! factor = "w01001"
//! min = 6.0
//! max = 9.0
//! basis = "instant"
//! for = "10m"                    # or repeat = 3: suppress single spikes
//!
//! [[meters]]
//! id = "M-DYE1"
//! role = "production"
//! baseline_kw = 450.0            # orders are a share of it
//!
//! [[linkages]]                   # treatment_not_running / treatment_underpowered
//! id = "dye-wwt"
//! production = ["M-DYE1"]
//! production_on_kw = 50.0
//! treatment = ["M-WWT"]
//! treatment_normal_kw = 120.0
//! off_below = 0.1                # default
//! underpowered_below = 0.5       # default
//! grace = "15m"                  # default
//!
//! [[orders]]                     # order_violation
//! id = "2026-11-orange"
//! kind = "limit"                 # stop (allowed_share default 0.1) | limit
//! start = 2026-11-28T00:00:00+08:00
//! end = 2026-11-30T00:00:00+08:00
//! allowed_share = 0.6
//! grace = "15m"                  # default
//!
//! [[outlets]]                    # furnace_temperature (waste incineration)
//! id = "DA002"
//! kind = "flue_gas"
//! furnace = { factor = "a01902", min_c = 850.0, max_per_day = 5 }
//!
//! [[emission_caps]]              # emission_total
//! factor = "w01018"
//! tonnes_per_year = 36.5
//! ```
//!
//! # Decisions worth knowing
//!
//! - Exceedance is strictly above `max` / below `min`; early warning is at or above
//!   `warn_at × max`. A projected exceedance is raised when the period's mean, if
//!   every remaining minute (hour basis) or hour (day basis) repeated the last
//!   value, would exceed the limit.
//! - Flue-gas pollutants are corrected per value with the O2 value of the same time
//!   (or the latest one at most 5 minutes older); values sent already corrected
//!   (`ZsRtd`, `converted`) are stored but not judged, so one formula decides.
//! - Hours close `close_after` (5 min) after they end, or when a later hour's value
//!   arrives. A day closes when a later day's data arrives, or by the clock at its
//!   end — an hour later when its hours came from the logger's 2061, which is sent
//!   after the hour. A tracked series keeps its hours and days rolling through
//!   silence, so a silent hour or day is judged missing.
//! - A day is built per hour from the best data the hour has ([`day`]): our mean
//!   of real-time/minute values when the hour is valid, else the logger's hourly
//!   average; flow-weighted for wastewater with each hour's discharge (`-Cou`,
//!   else the mean flow × 3600 s). So loggers and platforms that send hourly and
//!   daily values only have their daily limits judged, and the evidence lists each
//!   hour with its source and weight.
//! - With `aggregates = "supplied"`, a supplied hourly or daily value is judged
//!   when it arrives and cross-checked against the period we build
//!   (`data_mismatch`); if none has arrived when the period closes, the built mean
//!   is judged so that nothing goes unjudged. With `computed`, the built mean is
//!   judged, and the supplied value only where we have nothing to build from.
//! - Values for a closed period are late: never taken into the open windows
//!   (late data never moves an open window), but reported
//!   ([`Output::reopened`]) and judged again from the store ([`rejudge`]); the
//!   stored finding is revised under its natural key, or superseded when no
//!   longer found. Replays raise the same findings, which the store keeps once.

mod anomaly;
mod close;
pub mod day;
mod eval;
pub mod finding;
mod furnace;
mod limits;
mod o2;
mod outlet;
pub mod plan;
mod power;
pub mod rebuild;
pub mod rejudge;
mod roll;
pub mod task;
mod totals;
pub mod window;

pub use eval::{EmissionHour, Evaluator, Options, Output, Reopened};
pub use finding::{Counts, Evidence, EvidenceValue, Finding, LimitRef, RuleName, Severity};
pub use o2::{correct, NotJudgeable, NOT_JUDGEABLE_O2};
pub use plan::Plan;
