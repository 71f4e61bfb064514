//! Emission totals against the permit's annual quantity (许可排放量): per hour,
//! the logger's `-Cou` where it sends one, else C × Q of the valid hour; tiers at
//! 80 / 90 / 100 % of the cap, and a warning when the year-to-date total runs ahead
//! of the pro-rata share (checked from the second month on, when a share means
//! something).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::eval::{EmissionHour, Output};
use super::finding::{Evidence, Finding, RuleName, Severity};
use super::plan::EnterprisePlan;
use super::window::{day_start, year_bounds};

pub const TIERS: [f64; 3] = [0.8, 0.9, 1.0];
/// Pro-rata warnings start once this share of the year has passed.
pub const PRO_RATA_FROM: f64 = 1.0 / 12.0;

#[derive(Debug, Clone, Default)]
pub(crate) struct CapState {
    year: Option<DateTime<Utc>>,
    /// (outlet, hour) → (from -Cou, tonnes).
    hours: HashMap<(usize, DateTime<Utc>), (bool, f64)>,
    total: f64,
    tiers: u8,
    pro_rata_day: Option<DateTime<Utc>>,
}

impl CapState {
    /// Starts the year with what the store already holds for it.
    pub fn seed(&mut self, year_start: DateTime<Utc>, tonnes: f64) {
        *self = CapState {
            year: Some(year_start),
            total: tonnes,
            ..CapState::default()
        };
    }

    /// Adds tonnes emitted earlier in the year (from the store, at start-up).
    pub fn add_seed(&mut self, year_start: DateTime<Utc>, tonnes: f64) {
        if self.year != Some(year_start) {
            self.seed(year_start, 0.0);
        }
        self.total += tonnes;
    }

    pub fn total(&self) -> f64 {
        self.total
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    plan: &EnterprisePlan,
    caps: &mut [CapState],
    c: usize,
    op: &super::plan::OutletPlan,
    hour: DateTime<Utc>,
    tonnes: f64,
    source: &'static str,
    tz: Tz,
    out: &mut Output,
) {
    if !tonnes.is_finite() || tonnes < 0.0 {
        return;
    }
    let cap = &plan.caps[c];
    let Some(oi) = plan.outlet_ix.get(&*op.id).copied() else {
        return;
    };
    let st = &mut caps[c];
    let (ys, ye) = year_bounds(hour, tz);
    match st.year {
        Some(y) if y == ys => {}
        Some(y) if hour < y => return,
        _ => st.seed(ys, 0.0),
    }
    let cou = source == "cou";
    let old = st.hours.get(&(oi, hour)).copied();
    if old.is_some_and(|(was_cou, _)| was_cou && !cou) {
        return;
    }
    st.hours.insert((oi, hour), (cou, tonnes));
    st.total += tonnes - old.map_or(0.0, |(_, t)| t);
    out.emissions.push(EmissionHour {
        enterprise: plan.id.clone(),
        outlet: op.id.clone(),
        factor: cap.factor.clone(),
        hour,
        tonnes,
        source,
    });
    let share = st.total / cap.tonnes_per_year;
    let ev = || {
        Evidence::default()
            .param("tonnes_per_year", cap.tonnes_per_year)
            .param("year_to_date_tonnes", st.total)
            .param("share", share)
            .param("config", format!("{} {}", plan.file, cap.key))
    };
    for (bit, tier) in TIERS.iter().enumerate() {
        if share >= *tier && st.tiers & (1 << bit) == 0 {
            st.tiers |= 1 << bit;
            let mut f =
                Finding::new(RuleName::EmissionTotal, plan, None, &cap.factor, ys, ye)
                    .value(st.total)
                    .threshold(tier * cap.tonnes_per_year)
                    .detail(format!("{:.0}%", tier * 100.0))
                    .message(format!(
                    "{} {}: year-to-date emission {:.3} t reached {:.0} % of the permitted {} t",
                    plan.id, cap.factor, st.total, tier * 100.0, cap.tonnes_per_year
                ))
                    .evidence(ev());
            if *tier >= 1.0 {
                f = f.severity(Severity::Violation);
            }
            out.findings.push(f);
        }
    }
    let end = hour + Duration::hours(1);
    let elapsed = (end - ys).num_seconds() as f64 / (ye - ys).num_seconds().max(1) as f64;
    let day = day_start(hour, tz);
    if elapsed >= PRO_RATA_FROM
        && st.total > cap.tonnes_per_year * elapsed
        && st.pro_rata_day != Some(day)
    {
        st.pro_rata_day = Some(day);
        let allowed = cap.tonnes_per_year * elapsed;
        out.findings.push(
            Finding::new(RuleName::EmissionTotal, plan, None, &cap.factor, day, day_start(day + Duration::hours(36), tz))
                .value(st.total)
                .threshold(allowed)
                .detail("pro_rata")
                .message(format!(
                    "{} {}: year-to-date emission {:.3} t is ahead of the pro-rata share {:.3} t ({:.1} % of the year)",
                    plan.id, cap.factor, st.total, allowed, elapsed * 100.0
                ))
                .evidence(ev().param("year_elapsed", elapsed)),
        );
    }
}
