//! The simulated logger's backlog and its answers to history requests (反控): what
//! a real logger does when the platform asks (CN 2031/2051/2061 with
//! `BeginTime`/`EndTime`): 9011 with `QnRtn`, the data it kept (each upload
//! answered 9014, as real-time ones), then 9012 with `ExeRtn`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::hj212_logger::{LoggerSim, SimError};
use crate::sources::hj212::codec::segment::DataSegment;
use crate::sources::hj212::codec::time::LocalDateTime;

/// What the logger kept while its link was down: per CN, period start → CP
/// fields (without DataTime).
#[derive(Debug, Clone, Default)]
pub struct Backlog {
    pub periods: BTreeMap<(String, LocalDateTime), String>,
}

impl Backlog {
    pub fn keep(&mut self, cn: &str, at: LocalDateTime, cp: &str) {
        self.periods.insert((cn.to_string(), at), cp.to_string());
    }
}

/// How the logger answers history requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryMode {
    /// QnRtn=1, the backlog's data, ExeRtn=1 (ExeRtn=100 when it has none).
    Answer,
    /// 9011 with this QnRtn (2 = refused) and nothing else.
    Refuse(u16),
    /// QnRtn=1, then ExeRtn=100 whatever the backlog holds.
    NoData,
    /// QnRtn=1, then this ExeRtn (e.g. 2: execution failed) and no data.
    Fail(u16),
}

/// A history request the logger received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRequest {
    pub qn: String,
    pub cn: String,
    pub begin: LocalDateTime,
    pub end: LocalDateTime,
    /// Periods uploaded in answer.
    pub uploaded: u32,
}

impl LoggerSim {
    /// The 9011/9012 answer to a platform request.
    fn request_answer(&mut self, qn: &str, cn: &str, cp: &str) -> Result<Vec<u8>, SimError> {
        let flag = self.flag & !1;
        let seg = format!(
            "QN={qn};ST=91;CN={cn};PW={};MN={};Flag={flag};CP=&&{cp}&&",
            self.password, self.mn
        );
        self.encode(&seg)
    }

    /// Waits up to `wait` for history requests and answers each from `backlog`
    /// in `mode`; returns after the first one answered (or `None` on timeout).
    /// Backlog uploads carry `RF=1` when the logger speaks HJ 212-2025.
    pub async fn answer_history(
        &mut self,
        backlog: &Backlog,
        mode: HistoryMode,
        wait: Duration,
    ) -> Result<Option<HistoryRequest>, SimError> {
        let deadline = Instant::now() + wait;
        while let Some(text) = self.next_segment(deadline).await {
            match self.answer_request(&text, backlog, mode).await? {
                Some(req) => return Ok(Some(req)),
                None => self.received.push(text),
            }
        }
        Ok(None)
    }

    /// Answers the history requests that came while this logger waited for the
    /// answers to its uploads (kept in `received`), as a logger does between two
    /// real-time uploads: what was answered, in order.
    pub async fn answer_received(
        &mut self,
        backlog: &Backlog,
        mode: HistoryMode,
    ) -> Result<Vec<HistoryRequest>, SimError> {
        let mut answered = Vec::new();
        let mut i = 0;
        while i < self.received.len() {
            if !is_history_request(&self.received[i]) {
                i += 1;
                continue;
            }
            let text = self.received.remove(i);
            if let Some(req) = self.answer_request(&text, backlog, mode).await? {
                answered.push(req);
            }
        }
        Ok(answered)
    }

    /// Answers `text` if it is a history request (CN 2031/2051/2061 or any other
    /// with BeginTime and EndTime): 9011, the backlog's data of that CN in the
    /// period, 9012.
    pub async fn answer_request(
        &mut self,
        text: &str,
        backlog: &Backlog,
        mode: HistoryMode,
    ) -> Result<Option<HistoryRequest>, SimError> {
        let Ok(seg) = DataSegment::parse(text) else {
            return Ok(None);
        };
        let (Some(qn), Some(b), Some(e)) = (seg.qn, seg.cp_get("BeginTime"), seg.cp_get("EndTime"))
        else {
            return Ok(None);
        };
        let (Ok(begin), Ok(end)) = (
            LocalDateTime::parse_compact(b),
            LocalDateTime::parse_compact(e),
        ) else {
            return Ok(None);
        };
        let (qn, cn) = (qn.to_string(), seg.cn.to_string());
        self.history.push(text.to_string());
        let mut req = HistoryRequest {
            qn: qn.clone(),
            cn: cn.clone(),
            begin,
            end,
            uploaded: 0,
        };
        let rtn = match mode {
            HistoryMode::Refuse(r) => r,
            _ => 1,
        };
        let frame = self.request_answer(&qn, "9011", &format!("QnRtn={rtn}"))?;
        let _ = self.send_raw(&frame).await;
        if rtn != 1 {
            return Ok(Some(req));
        }
        let wanted: Vec<(LocalDateTime, String)> = self
            .periods_in(backlog, &cn, begin, end)
            .into_iter()
            .filter(|_| mode == HistoryMode::Answer)
            .collect();
        let resend = self.resend;
        self.resend = resend || self.flag >= 8;
        let mut result = Ok(());
        for (at, cp) in &wanted {
            if let Err(e) = self.upload(&cn, *at, cp).await {
                result = Err(e);
                break;
            }
            req.uploaded += 1;
        }
        self.resend = resend;
        result?;
        let exe = match mode {
            HistoryMode::Fail(code) => code,
            _ if req.uploaded == 0 => 100,
            _ => 1,
        };
        let frame = self.request_answer(&qn, "9012", &format!("ExeRtn={exe}"))?;
        let _ = self.send_raw(&frame).await;
        Ok(Some(req))
    }

    fn periods_in(
        &self,
        backlog: &Backlog,
        cn: &str,
        begin: LocalDateTime,
        end: LocalDateTime,
    ) -> Vec<(LocalDateTime, String)> {
        backlog
            .periods
            .iter()
            .filter(|((c, at), _)| c == cn && *at >= begin && *at <= end)
            .map(|((_, at), cp)| (*at, cp.clone()))
            .collect()
    }
}

/// Whether a platform frame asks for history (it has BeginTime and EndTime).
fn is_history_request(text: &str) -> bool {
    text.contains("BeginTime=") && text.contains("EndTime=")
}
