//! Who is on duty for a team at an instant.
//!
//! A rotation hands over at a local time (`handover`, in the daemon's time zone):
//! the shift in force at `t` is the one that began at the latest handover at or
//! before `t`. Its *shift date* is that handover's local date — so at 07:59 on the
//! 2nd, with an 08:00 handover, the shift of the 1st is still on. Daily rotations
//! advance one officer per shift date, weekly ones one per seven. An override names
//! the officer for the shifts whose dates it covers. A team without a rotation has
//! all its members on duty.

use std::collections::HashMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::config::{Duty, Officer, Override, Rotation, ShiftKind, Team};

#[derive(Debug, Clone)]
pub struct Roster {
    tz: Tz,
    officers: HashMap<String, Officer>,
    teams: HashMap<String, Team>,
    rotations: HashMap<String, Rotation>,
    overrides: Vec<Override>,
}

impl Roster {
    pub fn new(duty: &Duty, tz: Tz) -> Roster {
        Roster {
            tz,
            officers: duty
                .officers
                .iter()
                .map(|o| (o.id.clone(), o.clone()))
                .collect(),
            teams: duty
                .teams
                .iter()
                .map(|t| (t.id.clone(), t.clone()))
                .collect(),
            rotations: duty
                .rotations
                .iter()
                .map(|r| (r.team.clone(), r.clone()))
                .collect(),
            overrides: duty.overrides.clone(),
        }
    }

    pub fn officer(&self, id: &str) -> Option<&Officer> {
        self.officers.get(id)
    }

    /// The local date of the handover that began the shift in force at `t`.
    pub fn shift_date(&self, rotation: &Rotation, t: DateTime<Utc>) -> NaiveDate {
        let local = t.with_timezone(&self.tz);
        let date = local.date_naive();
        if local.time() >= rotation.handover {
            date
        } else {
            date.checked_sub_days(Days::new(1)).unwrap_or(date)
        }
    }

    /// The officers on duty for `team` at `t`: one with a rotation, all members
    /// without. Empty for an unknown team.
    pub fn on_duty(&self, team: &str, t: DateTime<Utc>) -> Vec<&Officer> {
        let Some(rotation) = self.rotations.get(team) else {
            return self
                .teams
                .get(team)
                .map(|tm| {
                    tm.members
                        .iter()
                        .filter_map(|m| self.officers.get(m))
                        .collect()
                })
                .unwrap_or_default();
        };
        let date = self.shift_date(rotation, t);
        // The last override written wins, as when a swap is corrected further down.
        if let Some(o) = self
            .overrides
            .iter()
            .rev()
            .find(|o| o.team == team && o.from <= date && date <= o.until.unwrap_or(o.from))
        {
            return self.officers.get(&o.officer).into_iter().collect();
        }
        let order: &[String] = if rotation.officers.is_empty() {
            self.teams
                .get(team)
                .map(|t| t.members.as_slice())
                .unwrap_or(&[])
        } else {
            &rotation.officers
        };
        if order.is_empty() {
            return Vec::new();
        }
        let days = (date - rotation.start).num_days();
        let shift = match rotation.shift {
            ShiftKind::Daily => days,
            ShiftKind::Weekly => days.div_euclid(7),
        };
        let idx = shift.rem_euclid(order.len() as i64) as usize;
        self.officers.get(&order[idx]).into_iter().collect()
    }
}
