//! Judging against permit limits: instant values (with `for`/`repeat`), hourly and
//! daily means, early warning at `warn_at × max`, and projection of the running
//! mean to the end of its period.

use chrono::{DateTime, Utc};

use super::eval::Output;
use super::finding::{Counts, Evidence, EvidenceValue, Finding, RuleName};
use super::outlet::{Ctx, Series, Streak};
use super::plan::LimitPlan;
use crate::config::Basis;

impl Series {
    pub(crate) fn instant(
        &mut self,
        ctx: &mut Ctx<'_>,
        ts: DateTime<Utc>,
        v: f64,
        ev: EvidenceValue,
        out: &mut Output,
    ) {
        for (li, l) in self.limits.iter().enumerate() {
            if l.basis != Basis::Instant {
                continue;
            }
            let st = &mut self.streaks[li];
            if !l.exceeded(v) {
                *st = Streak::default();
                if let (Some(w), Some(h)) = (l.warn_threshold(), self.hour.as_mut()) {
                    if v >= w && h.warned & (1 << li) == 0 {
                        h.warned |= 1 << li;
                        let f = Finding::new(
                            RuleName::EarlyWarning,
                            ctx.plan,
                            ctx.loc(),
                            &self.factor,
                            h.start,
                            h.end(),
                        )
                        .value(v)
                        .threshold(w)
                        .detail(l.source.key.clone())
                        .message(format!(
                            "{} {}: value {v} at {ts} reached {} × limit {}",
                            ctx.op.id,
                            self.factor,
                            l.warn_at.unwrap_or(1.0),
                            l.max.unwrap_or(f64::NAN)
                        ))
                        .evidence(Evidence {
                            values: vec![ev.clone()],
                            limit: Some(l.source.clone()),
                            ..Evidence::default()
                        });
                        out.findings.push(f);
                    }
                }
                continue;
            }
            let start = *st.start.get_or_insert(ts);
            st.count += 1;
            if st.values.len() < super::window::EVIDENCE_VALUES {
                st.values.push(ev.clone());
            }
            let held = match l.hold_for {
                Some(d) => ts - start >= d,
                None => st.count >= l.repeat,
            };
            if held && !st.raised {
                st.raised = true;
                let mut values = st.values.clone();
                if values.last().is_none_or(|x| x.ts != ts) {
                    values.push(ev.clone());
                }
                let f = Finding::new(
                    RuleName::Exceedance,
                    ctx.plan,
                    ctx.loc(),
                    &self.factor,
                    start,
                    ts,
                )
                .value(v)
                .threshold(if l.max.is_some_and(|m| v > m) {
                    l.max.unwrap_or(v)
                } else {
                    l.min.unwrap_or(v)
                })
                .detail(l.source.key.clone())
                .message(format!(
                    "{} {}: value {v} outside {} since {start} ({} values)",
                    ctx.op.id,
                    self.factor,
                    range_text(l),
                    st.count
                ))
                .evidence(
                    Evidence {
                        values,
                        limit: Some(l.source.clone()),
                        ..Evidence::default()
                    }
                    .param("for_seconds", l.hold_for.map(|d| d.num_seconds()))
                    .param("repeat", l.repeat),
                );
                out.findings.push(f);
            }
        }
    }

    /// Early warning and projection on the running mean of minutes `[0, m)`.
    pub(crate) fn running_hour(&mut self, ctx: &mut Ctx<'_>, m: u8, out: &mut Output) {
        let Some(h) = self.hour.as_mut() else { return };
        h.evaluated_minute = m;
        if !self.limits.iter().any(|l| l.basis == Basis::Hour) {
            return;
        }
        let st = h.stats(usize::from(m));
        let (Some(mean), Some(last)) = (st.mean, st.last) else {
            return;
        };
        let left = f64::from(60 - u32::from(m));
        let valid = f64::from(st.valid_minutes);
        let projected = (mean * valid + last * left) / (valid + left);
        for (li, l) in self.limits.iter().enumerate() {
            if l.basis != Basis::Hour {
                continue;
            }
            let mut counts = h.counts.clone();
            counts.valid_minutes = Some(st.valid_minutes);
            let evidence = || Evidence {
                values: h.recent.clone(),
                counts: Some(counts.clone()),
                average: Some(mean),
                measured_average: st.measured_mean,
                aggregate: Some("computed".into()),
                limit: Some(l.source.clone()),
                ..Evidence::default()
            };
            if let Some(max) = l.max {
                if projected > max && h.projected & (1 << li) == 0 {
                    h.projected |= 1 << li;
                    out.findings.push(
                        Finding::new(RuleName::ProjectedExceedance, ctx.plan, ctx.loc(), &self.factor, h.start, h.end())
                            .value(projected)
                            .threshold(max)
                            .detail(l.source.key.clone())
                            .message(format!("{} {}: hourly mean heading for {projected:.3} > {max} (running mean {mean:.3} over {} min, last {last:.3})", ctx.op.id, self.factor, st.valid_minutes))
                            .evidence(evidence().param("minutes_left", 60 - u32::from(m)).param("last_value", last)),
                    );
                }
            }
            if let Some(w) = l.warn_threshold() {
                if mean >= w && h.warned & (1 << li) == 0 {
                    h.warned |= 1 << li;
                    out.findings.push(
                        Finding::new(
                            RuleName::EarlyWarning,
                            ctx.plan,
                            ctx.loc(),
                            &self.factor,
                            h.start,
                            h.end(),
                        )
                        .value(mean)
                        .threshold(w)
                        .detail(l.source.key.clone())
                        .message(format!(
                            "{} {}: running hourly mean {mean:.3} reached {} of limit {}",
                            ctx.op.id,
                            self.factor,
                            l.warn_at.unwrap_or(1.0),
                            l.max.unwrap_or(f64::NAN)
                        ))
                        .evidence(evidence()),
                    );
                }
            }
        }
    }

    pub(crate) fn running_day(&mut self, ctx: &mut Ctx<'_>, at: DateTime<Utc>, out: &mut Output) {
        let Some(day) = self.day.as_mut() else { return };
        let hours_left = ((day.end - at).num_minutes() / 60).max(0) as u32;
        let agg = day.aggregate(ctx.flows, self.weight);
        let (Some(mean), Some(projected)) = (agg.mean(), agg.projected(hours_left)) else {
            return;
        };
        let base = Evidence {
            counts: Some(Counts {
                valid_hours: Some(agg.valid_hours()),
                ..day.counts.clone()
            }),
            average: Some(mean),
            measured_average: agg.plain_mean(),
            aggregate: Some(agg.aggregate_label()),
            hours: day.evidence(&agg),
            ..Evidence::default()
        };
        for (li, l) in self.limits.iter().enumerate() {
            if l.basis != Basis::Day {
                continue;
            }
            let ev = || Evidence {
                limit: Some(l.source.clone()),
                ..base.clone()
            };
            if let Some(max) = l.max {
                if projected > max && day.projected & (1 << li) == 0 && hours_left > 0 {
                    day.projected |= 1 << li;
                    out.findings.push(
                        Finding::new(
                            RuleName::ProjectedExceedance,
                            ctx.plan,
                            ctx.loc(),
                            &self.factor,
                            day.start,
                            day.end,
                        )
                        .value(projected)
                        .threshold(max)
                        .detail(l.source.key.clone())
                        .message(format!(
                            "{} {}: daily mean heading for {projected:.3} > {max}",
                            ctx.op.id, self.factor
                        ))
                        .evidence(ev().param("hours_left", hours_left)),
                    );
                }
            }
            if let Some(w) = l.warn_threshold() {
                if mean >= w && day.warned & (1 << li) == 0 {
                    day.warned |= 1 << li;
                    out.findings.push(
                        Finding::new(
                            RuleName::EarlyWarning,
                            ctx.plan,
                            ctx.loc(),
                            &self.factor,
                            day.start,
                            day.end,
                        )
                        .value(mean)
                        .threshold(w)
                        .detail(l.source.key.clone())
                        .message(format!(
                            "{} {}: running daily mean {mean:.3} reached {} of limit {max}",
                            ctx.op.id,
                            self.factor,
                            l.warn_at.unwrap_or(1.0),
                            max = l.max.unwrap_or(f64::NAN)
                        ))
                        .evidence(ev()),
                    );
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn mismatch(
        &self,
        ctx: &Ctx<'_>,
        basis: Basis,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        supplied: f64,
        computed: f64,
        out: &mut Output,
    ) {
        let tol = ctx.op.mismatch_tolerance;
        let scale = supplied.abs().max(computed.abs());
        if scale == 0.0 || (supplied - computed).abs() <= tol * scale {
            return;
        }
        out.findings.push(
            Finding::new(RuleName::DataMismatch, ctx.plan, ctx.loc(), &self.factor, start, end)
                .value(supplied)
                .threshold(computed)
                .detail(basis.as_str())
                .message(format!("{} {}: supplied {} mean {supplied:.3} differs from computed {computed:.3} by more than {:.0} %", ctx.op.id, self.factor, basis.as_str(), tol * 100.0))
                .evidence(Evidence::default().param("supplied", supplied).param("computed", computed).param("mismatch_tolerance", tol)),
        );
    }

    /// Judges an average against the limits of its basis.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn judge(
        &self,
        ctx: &Ctx<'_>,
        basis: Basis,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        mean: f64,
        ev: Evidence,
        warned: u32,
        out: &mut Output,
    ) {
        for (li, l) in self.limits.iter().enumerate() {
            if l.basis != basis {
                continue;
            }
            let e = Evidence {
                limit: Some(l.source.clone()),
                ..ev.clone()
            };
            let what = if basis == Basis::Hour {
                "hourly"
            } else {
                "daily"
            };
            if l.exceeded(mean) {
                out.findings.push(
                    Finding::new(
                        RuleName::Exceedance,
                        ctx.plan,
                        ctx.loc(),
                        &self.factor,
                        start,
                        end,
                    )
                    .value(mean)
                    .threshold(if l.max.is_some_and(|m| mean > m) {
                        l.max.unwrap_or(mean)
                    } else {
                        l.min.unwrap_or(mean)
                    })
                    .detail(l.source.key.clone())
                    .message(format!(
                        "{} {}: {what} mean {mean:.3} outside {} ({})",
                        ctx.op.id,
                        self.factor,
                        range_text(l),
                        e.aggregate.as_deref().unwrap_or("computed")
                    ))
                    .evidence(e),
                );
            } else if let Some(w) = l
                .warn_threshold()
                .filter(|w| mean >= *w && warned & (1 << li) == 0)
            {
                out.findings.push(
                    Finding::new(
                        RuleName::EarlyWarning,
                        ctx.plan,
                        ctx.loc(),
                        &self.factor,
                        start,
                        end,
                    )
                    .value(mean)
                    .threshold(w)
                    .detail(l.source.key.clone())
                    .message(format!(
                        "{} {}: {what} mean {mean:.3} at or above {w:.3} ({} × limit)",
                        ctx.op.id,
                        self.factor,
                        l.warn_at.unwrap_or(1.0)
                    ))
                    .evidence(e),
                );
            }
        }
    }
}

pub(crate) fn range_text(l: &LimitPlan) -> String {
    match (l.min, l.max) {
        (Some(a), Some(b)) => format!("{a}–{b}"),
        (None, Some(b)) => format!("≤ {b}"),
        (Some(a), None) => format!("≥ {a}"),
        (None, None) => String::new(),
    }
}
