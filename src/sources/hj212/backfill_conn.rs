//! The connection's side of backfill ([`super::backfill`]): sending a history
//! request when its slot comes, and following the logger's answers. Kept apart from
//! `conn` and `handle`, which call in here at four points (connected, answer, data
//! stored, disconnected) and from their select loop.

use std::ops::ControlFlow;

use super::backfill::{local, InFlight, Wake};
use super::codec::reply::{history_request, RequestHeader};
use super::codec::segment::{DataSegment, Flag as HjFlag};
use super::conn::{Conn, Flow};
use super::registry::Endpoint;
use crate::store::BackfillState;
use std::sync::Arc;

impl Conn {
    /// A logger's first frame on this connection: plan its backfill.
    pub(super) fn backfill_connected(&mut self, seg: &DataSegment<'_>, ep: &Arc<Endpoint>) {
        let version = seg.flag.map_or(1, |f| f.version_number());
        let st = seg.st.unwrap_or("32");
        self.backfill
            .connected(ep, self.ctx.clock.now(), st, version);
    }

    /// A 9011 or 9012 from a logger.
    pub(super) fn backfill_answer(&mut self, seg: &DataSegment<'_>, ep: &Endpoint) {
        let key = match seg.cn {
            "9011" => "QnRtn",
            "9012" => "ExeRtn",
            _ => return,
        };
        let now = self.ctx.clock.now();
        self.backfill
            .answer(&ep.origin.mn, seg.cn, seg.qn, seg.cp_get(key), now);
    }

    /// The connection ends: a request in flight will not be answered here.
    pub(super) fn backfill_closed(&mut self) {
        let now = self.ctx.clock.now();
        self.backfill.closed(now);
    }

    pub(super) async fn backfill_wake(&mut self, w: Wake) -> Flow {
        let now = self.ctx.clock.now();
        match w {
            Wake::Planned => ControlFlow::Continue(()),
            Wake::TimedOut => {
                self.backfill.finish(
                    BackfillState::Timeout,
                    None,
                    "no 9011, data or 9012 within backfill_timeout".into(),
                    now,
                );
                ControlFlow::Continue(())
            }
            Wake::Send(ep, period) => {
                if !self.has_logger(&ep.origin.mn) {
                    return ControlFlow::Continue(());
                }
                let (st, version) = self.backfill.header_of(&ep.origin.mn);
                let (_, qn) = self.request_qn();
                let tz = self.ctx.cfg.tz;
                let h = RequestHeader {
                    qn: &qn,
                    st: &st,
                    pw: &ep.password,
                    mn: &ep.origin.mn,
                    flag: HjFlag((version << 2) | 1),
                };
                let last = period.last(tz);
                let seg = history_request(&h, period.cn, local(period.begin, tz), local(last, tz));
                tracing::info!(enterprise = %ep.origin.enterprise, outlet = %ep.origin.outlet, mn = %ep.origin.mn, cn = period.cn, begin = %period.begin, end = %period.end, attempt = period.attempt, "hj212 backfill request");
                self.answer(seg, ep.crc, true).await?;
                let deadline = self.backfill.deadline_from_now();
                self.backfill.sent(
                    InFlight {
                        ep,
                        period,
                        qn,
                        deadline,
                        qn_rtn: None,
                        readings: 0,
                    },
                    now,
                );
                ControlFlow::Continue(())
            }
        }
    }
}
