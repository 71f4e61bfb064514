//! Closing windows: an hour's validity and verdict, its contribution to the day
//! and to emission totals; a day's verdict; and the logger's own hourly and daily
//! averages (2061/2031), judged or cross-checked as the outlet's `aggregates` says.

use chrono::Duration;

use super::day::{ComputedHour, DayWin, SuppliedHour};
use super::eval::Output;
use super::finding::{Counts, Evidence, EvidenceValue, Finding, RuleName};
use super::o2;
use super::outlet::{not_judgeable, Ctx, Series};
use super::totals;
use super::window::{day_start, HourWin};
use crate::config::{Aggregates, Basis};
use crate::model::{DataKind, Reading};

impl Series {
    pub(crate) fn close_hour(&mut self, ctx: &mut Ctx<'_>, h: HourWin, out: &mut Output) {
        let st = h.stats(60);
        let valid = st.valid_minutes >= ctx.op.min_valid_minutes;
        let mut counts = h.counts.clone();
        counts.valid_minutes = Some(st.valid_minutes);
        if self.day.as_ref().is_none_or(|d| h.start >= d.end) {
            if let Some(d) = self.day.take() {
                self.close_day(ctx, d, out);
            }
            let d = day_start(h.start, ctx.tz);
            self.day = Some(DayWin::new(d, day_start(d + Duration::hours(36), ctx.tz)));
        }
        // With `supplied` aggregates the logger's own hourly value is the hour's
        // value: a valid one makes the hour valid whatever minutes we lost.
        let supplied_stands =
            ctx.op.aggregates == Aggregates::Supplied && self.supplied_hours.get(h.start).is_some();
        if !valid {
            if !self.limits.is_empty() && !supplied_stands {
                out.findings.push(
                    Finding::new(RuleName::MissingData, ctx.plan, ctx.loc(), &self.factor, h.start, h.end())
                        .value(f64::from(st.valid_minutes))
                        .threshold(f64::from(ctx.op.min_valid_minutes))
                        .detail("hour")
                        .message(format!("{} {}: hour starting {} has {} valid minutes (< {}): not a valid hourly mean", ctx.op.id, self.factor, h.start, st.valid_minutes, ctx.op.min_valid_minutes))
                        .evidence(Evidence { values: h.recent.clone(), counts: Some(counts.clone()), ..Evidence::default() }.param("min_valid_minutes", ctx.op.min_valid_minutes)),
                );
            }
        } else if let (Some(mean), Some(measured)) = (st.mean, st.measured_mean) {
            self.computed_hours.put(h.start, mean);
            let supplied = self.supplied_hours.get(h.start);
            if let Some(s) = supplied {
                self.mismatch(ctx, Basis::Hour, h.start, h.end(), s, mean, out);
            }
            if ctx.op.aggregates == Aggregates::Computed || supplied.is_none() {
                let ev = Evidence {
                    values: h.recent.clone(),
                    counts: Some(counts.clone()),
                    average: Some(mean),
                    measured_average: Some(measured),
                    aggregate: Some("computed".into()),
                    ..Evidence::default()
                };
                self.judge(ctx, Basis::Hour, h.start, h.end(), mean, ev, h.warned, out);
            }
            for &c in &self.caps.clone() {
                if st.q_n > 0 {
                    // Mean C × Q in mg/s over the hour → tonnes.
                    let tonnes = st.sum_cq / f64::from(st.q_n) * 3600.0 * 1e-9;
                    totals::record(
                        ctx.plan, ctx.caps, c, ctx.op, h.start, tonnes, "computed", ctx.tz, out,
                    );
                }
            }
        }
        let Some(day) = self.day.as_mut() else { return };
        day.counts.merge(&h.counts);
        day.maintenance_minutes += st.maintenance_minutes;
        if let (Some(mean), Some(measured)) = (st.mean, st.measured_mean) {
            // Weighted only when every valid value had its flow: a partial ΣQ
            // would weigh the hour wrongly.
            let weighted = (self.weight && st.sum_q > 0.0 && st.q_n == counts.valid_values)
                .then(|| (st.sum_cq / st.sum_q, st.sum_q / f64::from(st.q_n) * 3.6));
            day.put_computed(
                h.start,
                ComputedHour {
                    valid,
                    mean,
                    measured,
                    weighted,
                },
            );
        }
        let share = ctx.op.maintenance_max_share;
        if !day.maintenance_raised && f64::from(day.maintenance_minutes) > share * 1440.0 {
            day.maintenance_raised = true;
            out.findings.push(
                Finding::new(RuleName::MaintenanceOveruse, ctx.plan, ctx.loc(), &self.factor, day.start, day.end)
                    .value(f64::from(day.maintenance_minutes) / 1440.0)
                    .threshold(share)
                    .detail("day")
                    .message(format!("{} {}: {} minutes flagged maintenance/calibration today (> {:.0} % of the day)", ctx.op.id, self.factor, day.maintenance_minutes, share * 100.0))
                    .evidence(Evidence { counts: Some(day.counts.clone()), ..Evidence::default() }.param("maintenance_minutes", day.maintenance_minutes).param("maintenance_max_share", share)),
            );
        }
        if valid && self.has_basis(Basis::Day) {
            self.running_day(ctx, h.end(), out);
        }
    }

    pub(crate) fn close_day(&mut self, ctx: &mut Ctx<'_>, d: DayWin, out: &mut Output) {
        if !self.has_basis(Basis::Day) {
            return;
        }
        if d.late {
            // Values of its hours came after those hours had closed: the day is
            // judged again from the store, with them.
            self.reopen(ctx, None, d.start, out);
        }
        let agg = d.aggregate(ctx.flows, self.weight);
        let counts = Counts {
            valid_hours: Some(agg.valid_hours()),
            ..d.counts.clone()
        };
        let hours = d.evidence(&agg);
        if agg.valid_hours() < ctx.op.min_valid_hours {
            out.findings.push(
                Finding::new(
                    RuleName::MissingData,
                    ctx.plan,
                    ctx.loc(),
                    &self.factor,
                    d.start,
                    d.end,
                )
                .value(f64::from(agg.valid_hours()))
                .threshold(f64::from(ctx.op.min_valid_hours))
                .detail("day")
                .message(format!(
                    "{} {}: day starting {} has {} valid hours (< {}): not a valid daily mean",
                    ctx.op.id,
                    self.factor,
                    d.start,
                    agg.valid_hours(),
                    ctx.op.min_valid_hours
                ))
                .evidence(
                    Evidence {
                        counts: Some(counts),
                        hours,
                        ..Evidence::default()
                    }
                    .param("min_valid_hours", ctx.op.min_valid_hours),
                ),
            );
            return;
        }
        let Some(mean) = agg.mean() else { return };
        self.computed_days.put(d.start, mean);
        let supplied = self.supplied_days.get(d.start);
        if let Some(s) = supplied {
            self.mismatch(ctx, Basis::Day, d.start, d.end, s, mean, out);
        }
        if ctx.op.aggregates == Aggregates::Computed || supplied.is_none() {
            let (sum_cq, sum_q) = agg.sums();
            let ev = Evidence {
                counts: Some(counts),
                average: Some(mean),
                measured_average: agg.plain_mean(),
                aggregate: Some(agg.aggregate_label()),
                hours,
                ..Evidence::default()
            }
            .param("sum_cq", sum_cq)
            .param("sum_q", sum_q);
            self.judge(ctx, Basis::Day, d.start, d.end, mean, ev, d.warned, out);
        }
    }

    /// A logger-supplied hourly (2061) or daily (2031) average. Returns true when
    /// it belongs to a day already closed (late: the caller has it re-judged).
    /// A valid hourly value for an hour that closed short (a backfilled hour of
    /// an outage) is reported for re-judging here, so that the hour's
    /// `missing_data` is superseded.
    pub(crate) fn supplied(
        &mut self,
        ctx: &mut Ctx<'_>,
        r: &Reading,
        o2: Option<f64>,
        out: &mut Output,
    ) -> bool {
        let basis = if r.kind == DataKind::Hour {
            Basis::Hour
        } else {
            Basis::Day
        };
        let (start, end) = match basis {
            Basis::Hour => (r.ts, r.ts + Duration::hours(1)),
            _ => (r.ts, day_start(r.ts + Duration::hours(36), ctx.tz)),
        };
        let mut ev = EvidenceValue {
            ts: r.ts,
            factor: r.factor.clone(),
            value: r.value,
            flag: r.flag,
            corrected: None,
            o2,
            resend: r.source.resend,
        };
        let judged = if !r.flag.valid_for_judging() {
            None
        } else {
            match self.o2_reference {
                Some(reference) => match o2::correct(r.value, reference, o2) {
                    Ok(c) => Some(c),
                    Err(nj) => {
                        let counts = Counts {
                            values: 1,
                            not_judgeable: 1,
                            ..Counts::default()
                        };
                        not_judgeable(
                            ctx,
                            &self.factor,
                            (start, end, vec![ev.clone()], counts),
                            nj,
                            out,
                        );
                        None
                    }
                },
                None => Some(r.value),
            }
        };
        // An hour already closed without a valid hourly value of ours (short, or
        // out of the recent window) that now has the logger's valid one: its
        // `missing_data` no longer stands, so the hour is judged again.
        let closed_short = basis == Basis::Hour
            && ctx.op.aggregates == Aggregates::Supplied
            && judged.is_some()
            && !self.limits.is_empty()
            && self.hour.as_ref().is_some_and(|h| r.ts < h.start)
            && self.computed_hours.get(start).is_none();
        // Whether we build this period ourselves (a computed hour, a day from
        // hours): before the day takes this hour in.
        let built = match basis {
            Basis::Hour => self.hour.is_some(),
            _ => self.day.as_ref().is_some_and(|d| d.start <= r.ts),
        };
        let late = basis == Basis::Hour
            && self.has_basis(Basis::Day)
            && self.day_hour(ctx, r, judged, out);
        if closed_short {
            self.reopen(ctx, Some(start), day_start(start, ctx.tz), out);
        }
        let Some(judged) = judged else {
            return late;
        };
        if self.o2_reference.is_some() {
            ev.corrected = Some(judged);
        }
        let computed = match basis {
            Basis::Hour => {
                self.supplied_hours.put(start, judged);
                self.computed_hours.get(start)
            }
            _ => {
                self.supplied_days.put(start, judged);
                self.computed_days.get(start)
            }
        };
        if let Some(c) = computed {
            self.mismatch(ctx, basis, start, end, judged, c, out);
        }
        // With `computed`, a period we have nothing to build from (hourly or daily
        // uploads only) is judged on the logger's value: every limit is judged.
        if ctx.op.aggregates == Aggregates::Supplied || !built {
            let e = Evidence {
                values: vec![ev],
                average: Some(judged),
                aggregate: Some("supplied".into()),
                ..Evidence::default()
            };
            self.judge(ctx, basis, start, end, judged, e, 0, out);
        }
        late
    }

    /// A supplied hour joins its day. A later day's hour closes the open day
    /// (data of a later period arrived); an hour of a day already closed is late.
    fn day_hour(
        &mut self,
        ctx: &mut Ctx<'_>,
        r: &Reading,
        judged: Option<f64>,
        out: &mut Output,
    ) -> bool {
        let ds = day_start(r.ts, ctx.tz);
        if self.day.as_ref().is_some_and(|d| ds < d.start) {
            return true;
        }
        self.roll(ctx, r.ts, true, out);
        if self.day.is_none() {
            self.day = Some(DayWin::new(ds, day_start(ds + Duration::hours(36), ctx.tz)));
        }
        let Some(day) = self.day.as_mut().filter(|d| d.start == ds) else {
            return false;
        };
        let first = day.put_supplied(
            r.ts,
            SuppliedHour {
                judged: judged.unwrap_or(r.value),
                measured: r.value,
                flag: r.flag,
                valid: judged.is_some(),
            },
        );
        if first {
            day.counts.values += 1;
            day.counts.add_flag(r.flag);
            if judged.is_some() {
                day.counts.valid_values += 1;
            }
        }
        if judged.is_some() {
            self.running_day(ctx, r.ts + Duration::hours(1), out);
        }
        false
    }
}
