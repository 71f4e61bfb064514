//! Data anomalies: findings that are not exceedances but may be faults or
//! falsification (RULES.md, 数据异常) — constant values, zero and negative values
//! under production, values over the analyzer's range, flow at zero while the
//! concentrations still move. Offline lives in `eval.rs` (it needs a clock), and
//! maintenance share in the day window.

use chrono::{DateTime, Duration, Utc};

use super::eval::Output;
use super::finding::{Evidence, EvidenceValue, Finding, RuleName};
use super::outlet::Ctx;
use super::window::hour_start;
use crate::model::{Id, Reading};

/// A run of identical values.
#[derive(Debug, Clone, Default)]
pub(crate) struct Run {
    start: Option<DateTime<Utc>>,
    /// `start + constant_for`, computed on the first repeat (most runs end at
    /// their first value), then one comparison per value.
    due: Option<DateTime<Utc>>,
    value: f64,
    raised: bool,
    first_flag: Option<crate::model::Flag>,
}

impl Run {
    fn start(r: &Reading) -> Run {
        Run {
            start: Some(r.ts),
            due: None,
            value: r.value,
            raised: false,
            first_flag: Some(r.flag),
        }
    }
}

pub(crate) struct SeriesView<'a> {
    pub factor: &'a Id,
    pub is_flow: bool,
    pub range: Option<f64>,
    pub run: &'a mut Run,
    pub zero_hour: &'a mut Option<DateTime<Utc>>,
    pub negative_hour: &'a mut Option<DateTime<Utc>>,
    pub range_hour: &'a mut Option<DateTime<Utc>>,
}

pub(super) fn ev(r: &Reading) -> EvidenceValue {
    EvidenceValue {
        ts: r.ts,
        factor: r.factor.clone(),
        value: r.value,
        flag: r.flag,
        corrected: None,
        o2: None,
        resend: r.source.resend,
    }
}

/// Once per hour per series: a stuck zero must not raise 120 findings an hour.
fn once_per_hour(
    slot: &mut Option<DateTime<Utc>>,
    ctx: &Ctx<'_>,
    ts: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let h = hour_start(ts, ctx.tz);
    if *slot == Some(h) {
        return None;
    }
    *slot = Some(h);
    Some(h)
}

/// Checks one valid real-time or minute value, newer than any before it.
pub(crate) fn check_value(s: SeriesView<'_>, ctx: &Ctx<'_>, r: &Reading, out: &mut Output) {
    if r.value < 0.0 {
        if let Some(h) = once_per_hour(s.negative_hour, ctx, r.ts) {
            out.findings.push(
                Finding::new(
                    RuleName::NegativeValue,
                    ctx.plan,
                    ctx.loc(),
                    s.factor,
                    h,
                    h + Duration::hours(1),
                )
                .value(r.value)
                .threshold(0.0)
                .message(format!(
                    "{} {}: negative value {} at {}",
                    ctx.op.id, s.factor, r.value, r.ts
                ))
                .evidence(Evidence {
                    values: vec![ev(r)],
                    ..Evidence::default()
                }),
            );
        }
    } else if r.value == 0.0 && !s.is_flow && ctx.production(r.ts) != Some(false) {
        if let Some(h) = once_per_hour(s.zero_hour, ctx, r.ts) {
            out.findings.push(
                Finding::new(
                    RuleName::ZeroValue,
                    ctx.plan,
                    ctx.loc(),
                    s.factor,
                    h,
                    h + Duration::hours(1),
                )
                .value(0.0)
                .message(format!(
                    "{} {}: zero value at {} while production is {}",
                    ctx.op.id,
                    s.factor,
                    r.ts,
                    production_text(ctx.production(r.ts))
                ))
                .evidence(
                    Evidence {
                        values: vec![ev(r)],
                        ..Evidence::default()
                    }
                    .param("production", ctx.production(r.ts)),
                ),
            );
        }
    }
    if let Some(range) = s.range.filter(|range| r.value > *range) {
        if let Some(h) = once_per_hour(s.range_hour, ctx, r.ts) {
            out.findings.push(
                Finding::new(
                    RuleName::OverRange,
                    ctx.plan,
                    ctx.loc(),
                    s.factor,
                    h,
                    h + Duration::hours(1),
                )
                .value(r.value)
                .threshold(range)
                .message(format!(
                    "{} {}: value {} above the analyzer's range {range}",
                    ctx.op.id, s.factor, r.value
                ))
                .evidence(
                    Evidence {
                        values: vec![ev(r)],
                        ..Evidence::default()
                    }
                    .param("range", range),
                ),
            );
        }
    }
    // Flow legitimately sits at zero when nothing is discharged.
    if s.is_flow {
        *s.run = Run::default();
        return;
    }
    let run = s.run;
    match run.start {
        Some(start) if (r.value - run.value).abs() <= ctx.op.constant_epsilon => {
            let due = *run.due.get_or_insert_with(|| start + ctx.op.constant_for);
            if r.ts >= due && !run.raised {
                // A stopped plant legitimately reads flat: the run counts from
                // when production is seen again.
                if ctx.production(r.ts) == Some(false) {
                    *run = Run::start(r);
                    return;
                }
                let held = r.ts - start;
                run.raised = true;
                // The run's first value as it was read (equal within epsilon,
                // not necessarily identical to the latest).
                let first = run.first_flag.map(|flag| EvidenceValue {
                    ts: start,
                    flag,
                    value: run.value,
                    ..ev(r)
                });
                let values = first.into_iter().chain([ev(r)]).collect();
                out.findings.push(
                    Finding::new(
                        RuleName::ConstantValue,
                        ctx.plan,
                        ctx.loc(),
                        s.factor,
                        start,
                        r.ts,
                    )
                    .value(run.value)
                    .threshold(ctx.op.constant_for.num_minutes() as f64)
                    .message(format!(
                        "{} {}: value {} unchanged for {} min since {start}",
                        ctx.op.id,
                        s.factor,
                        run.value,
                        held.num_minutes()
                    ))
                    .evidence(
                        Evidence {
                            values,
                            ..Evidence::default()
                        }
                        .param("constant_for_minutes", ctx.op.constant_for.num_minutes())
                        .param("constant_epsilon", ctx.op.constant_epsilon),
                    ),
                );
            }
        }
        _ => *run = Run::start(r),
    }
}

fn production_text(p: Option<bool>) -> &'static str {
    match p {
        Some(true) => "running",
        Some(false) => "stopped",
        None => "not metered",
    }
}

/// Wastewater: flow at zero for the hour while a concentration keeps changing
/// (a bypassed or stopped flow meter, or values that do not come from the water).
#[derive(Debug, Clone, Default)]
pub(crate) struct FlowHour {
    start: Option<DateTime<Utc>>,
    flow_values: u32,
    flow_nonzero: bool,
    changes: u32,
    values: Vec<EvidenceValue>,
}

impl FlowHour {
    pub fn observe(
        &mut self,
        ctx: &Ctx<'_>,
        r: &Reading,
        is_flow: bool,
        changed: bool,
        out: &mut Output,
    ) {
        if !is_flow && !changed {
            return;
        }
        match self.start {
            Some(s) if r.ts >= s && r.ts < s + Duration::hours(1) => {}
            Some(s) if r.ts < s => return,
            _ => {
                self.close(ctx, out);
                self.start = Some(hour_start(r.ts, ctx.tz));
            }
        }
        if is_flow {
            self.flow_values += 1;
            self.flow_nonzero |= r.value.abs() > ctx.op.constant_epsilon;
        } else {
            self.changes += 1;
        }
        if self.values.len() < super::window::EVIDENCE_VALUES {
            self.values.push(ev(r));
        }
    }

    pub fn tick(&mut self, ctx: &Ctx<'_>, now: DateTime<Utc>, out: &mut Output) {
        if self
            .start
            .is_some_and(|s| now >= s + Duration::hours(1) + ctx.opts.close_after)
        {
            self.close(ctx, out);
        }
    }

    fn close(&mut self, ctx: &Ctx<'_>, out: &mut Output) {
        let done = std::mem::take(self);
        let Some(start) = done.start else { return };
        if done.flow_values >= 2 && !done.flow_nonzero && done.changes >= 2 {
            out.findings.push(
                Finding::new(RuleName::FlowMismatch, ctx.plan, ctx.loc(), ctx.op.flow_factor(), start, start + Duration::hours(1))
                    .value(0.0)
                    .message(format!("{}: flow at zero for the hour ({} values) while concentrations changed {} times", ctx.op.id, done.flow_values, done.changes))
                    .evidence(Evidence { values: done.values, ..Evidence::default() }.param("flow_values", done.flow_values).param("concentration_changes", done.changes)),
            );
        }
    }
}
