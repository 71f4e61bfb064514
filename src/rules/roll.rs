//! Time moving a series' windows on: hours and days close when a later period's
//! data arrives or when the clock passes their end, and a value for a period
//! already closed is reported for re-judging ([`super::rejudge`]) — it never
//! moves an open window.

use chrono::{DateTime, Duration, Utc};

use super::day::DayWin;
use super::eval::{Output, Reopened};
use super::outlet::{Ctx, Series};
use super::window::{day_start, HourWin};
use crate::config::Basis;

impl Series {
    /// When this series next has a window to close.
    pub(crate) fn due(&self) -> Option<DateTime<Utc>> {
        match (&self.hour, &self.day) {
            (Some(h), _) => Some(h.end()),
            (None, Some(d)) => Some(Self::day_due(d)),
            (None, None) => None,
        }
    }

    /// When time alone closes a day without real-time values: the logger's
    /// hourly average of its last hour is sent after the day ends, so an hour
    /// later when hours came from the logger.
    fn day_due(d: &DayWin) -> DateTime<Utc> {
        if d.has_supplied() {
            d.end + Duration::hours(1)
        } else {
            d.end
        }
    }

    /// Closes every hour (and day) that ended before `t`, and makes sure a window
    /// is open for `t` if the series is tracked or has data there. `by_data`: `t`
    /// is the time of a value just received (a later period's data closes the
    /// earlier ones at once), else the clock's (see [`Self::day_due`]).
    pub(crate) fn roll(
        &mut self,
        ctx: &mut Ctx<'_>,
        t: DateTime<Utc>,
        by_data: bool,
        out: &mut Output,
    ) {
        while let Some(h) = &self.hour {
            if t < h.end() {
                break;
            }
            let next = h.end();
            let Some(h) = self.hour.take() else { break };
            self.close_hour(ctx, h, out);
            if self.tracked() && next <= t {
                self.hour = Some(HourWin::new(next));
            }
        }
        while let Some(d) = &self.day {
            let due = if by_data || self.hour.is_some() {
                d.end
            } else {
                Self::day_due(d)
            };
            if t < due || self.hour.as_ref().is_some_and(|h| h.start < d.end) {
                break;
            }
            let Some(d) = self.day.take() else { break };
            let end = d.end;
            self.close_day(ctx, d, out);
            // Without real-time values no hour opens the next day: a tracked
            // series keeps its days rolling so that a silent day is judged.
            if self.hour.is_none() && self.tracked() && self.has_basis(Basis::Day) {
                self.day = Some(DayWin::new(
                    end,
                    day_start(end + Duration::hours(36), ctx.tz),
                ));
            }
        }
    }

    /// Asks for a closed period to be judged again from the store.
    pub(crate) fn reopen(
        &self,
        ctx: &Ctx<'_>,
        hour: Option<DateTime<Utc>>,
        day: DateTime<Utc>,
        out: &mut Output,
    ) {
        let open_day = self
            .day
            .as_ref()
            .map(|d| d.start)
            .or_else(|| self.hour.as_ref().map(|h| day_start(h.start, ctx.tz)));
        out.reopened.push(Reopened {
            enterprise: ctx.plan.id.clone(),
            outlet: ctx.op.id.clone(),
            factor: self.factor.clone(),
            day,
            hour,
            day_closed: open_day.is_none_or(|o| day < o),
        });
    }
}
