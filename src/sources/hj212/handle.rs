//! What the server does with one frame once the decoder found it: authenticate it,
//! decrypt an HJ 212-2025 data area, act on its command, store, and answer.
//!
//! **Encrypted data areas.** The header of an encrypted segment is plaintext, so the
//! frame is authenticated (MN and password) first and then decrypted with *that
//! MN's* key — on a relayed connection every frame has its own. The CRC of an
//! encrypted frame covers the plaintext, so the decoder could not check it; it is
//! checked here, after decryption. A frame that cannot be decrypted (no key, not
//! `{0xNN,…}`, not whole blocks, or a wrong key: the blocks do not decrypt to text)
//! is a dead letter `bad_decrypt`, one whose CRC fails after decryption a dead letter
//! `bad_crc`; neither is answered, so the logger resends. With `require_encryption`
//! a plaintext data upload (CN 2xxx) is a dead letter `not_encrypted` and is not
//! answered either. Dead letters of decrypted frames keep the plaintext segment
//! (readable evidence); those refused before decryption keep the bytes as received.
//!
//! **Answers.** An upload is answered (9014) only once what it carried is durable
//! (invariant 1); notifications and heartbeats (1013, 9015, 9021) get 9013.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use tokio::io::AsyncWriteExt;

use super::codec::crc::CrcMode;
use super::codec::crypt::{self, DecryptError};
use super::codec::reply::{
    data_answer_9014, encode_frame_with, make_qn, notification_answer_9013, set_time_1012,
    RequestHeader,
};
use super::codec::segment::{DataSegment, Flag as HjFlag};
use super::codec::time::LocalDateTime;
use super::conn::{Conn, Flow, WRITE_TIMEOUT};
use super::mapping::{self, Command, MapError, Mapped};
use super::registry::Endpoint;
use crate::model::check::{self, Skewed};
use crate::model::Location;
use crate::store::{Batch, StatusEvent};

/// Event details are capped (a device event is a line on a page, not a file),
/// except raw data, which is kept whole: a frame is at most 9999 bytes anyway.
const EVENT_DETAIL_CHARS: usize = 2000;

impl Conn {
    /// A frame found by the decoder (or a segment accepted under a CRC variant
    /// configured for its MN). `pending_crc`: the CRC the sender wrote, still to be
    /// checked over the plaintext of an encrypted data area.
    pub(super) async fn frame(
        &mut self,
        raw: &[u8],
        crc: CrcMode,
        pending_crc: Option<u16>,
    ) -> Flow {
        let text = String::from_utf8_lossy(raw);
        let seg = match DataSegment::parse(&text) {
            Ok(seg) => seg,
            Err(e) => {
                self.reject("bad_segment", format!("data segment: {e}"), raw)
                    .await;
                return self.failed_frame();
            }
        };
        let Some(ep) = self.authenticate(&seg, raw, crc).await? else {
            return ControlFlow::Continue(());
        };
        if !crypt::is_encrypted(raw) {
            if ep.require_encryption && is_data_upload(seg.cn) {
                let detail = format!(
                    "MN {}: CN {} sent in plaintext, but this logger must encrypt its data (require_encryption)",
                    ep.origin.mn, seg.cn
                );
                self.reject("not_encrypted", detail, raw).await;
                return ControlFlow::Continue(());
            }
            return self.command(&seg, &ep, raw, crc).await;
        }
        let plain = match decrypt(&text, &ep, crc, pending_crc) {
            Ok(p) => p,
            Err((reason, detail)) => {
                self.reject(reason, format!("MN {}: {detail}", ep.origin.mn), raw)
                    .await;
                return ControlFlow::Continue(());
            }
        };
        let seg = match DataSegment::parse(&plain) {
            Ok(seg) => seg,
            Err(e) => {
                let detail = format!("decrypted data segment: {e}");
                self.reject("bad_segment", detail, plain.as_bytes()).await;
                return ControlFlow::Continue(());
            }
        };
        self.command(&seg, &ep, plain.as_bytes(), crc).await
    }

    /// Acts on an authenticated plaintext segment.
    async fn command(
        &mut self,
        seg: &DataSegment<'_>,
        ep: &Endpoint,
        raw: &[u8],
        crc: CrcMode,
    ) -> Flow {
        let now = self.ctx.clock.now();
        match Command::of(seg.cn) {
            Command::Data(kind) => {
                let mut mapped = mapping::map_values(seg, kind, &ep.origin, self.ctx.cfg.tz);
                if let Ok(m) = &mut mapped {
                    mapping::route_power(&mut m.readings, &ep.power);
                }
                self.store_upload(seg, ep, raw, crc, mapped).await
            }
            Command::DeviceStatus | Command::DeviceRunTime => {
                let mapped = mapping::map_devices(seg, &ep.origin, self.ctx.cfg.tz);
                self.store_upload(seg, ep, raw, crc, mapped).await
            }
            Command::Event(status) => {
                let batch = Batch::status_event(StatusEvent {
                    at: now,
                    enterprise: ep.origin.enterprise.to_string(),
                    device: ep.origin.mn.to_string(),
                    status: status.to_string(),
                    detail: event_detail(status, seg.cp_raw.unwrap_or("")),
                });
                self.ctx.stats.seen(&ep.origin.mn, now, 0);
                self.durable_then_answer(seg, crc, batch).await
            }
            Command::Other => {
                self.ctx.stats.seen(&ep.origin.mn, now, 0);
                self.ctx.stats.reject("unsupported_cn", Some(&ep.origin.mn));
                self.log(
                    "unsupported_cn",
                    format_args!("CN {} kept as a dead letter", seg.cn),
                );
                let batch = self.dead_letter(
                    "unsupported_cn",
                    format!("CN {} is not interpreted; kept raw", seg.cn),
                    raw,
                );
                self.durable_then_answer(seg, crc, batch).await
            }
            Command::TimeRequest => {
                self.ctx.stats.seen(&ep.origin.mn, now, 0);
                self.answer(notification_answer_9013(seg), crc, true)
                    .await?;
                self.send_time(seg, ep, crc).await
            }
            Command::Heartbeat => {
                self.ctx.stats.seen(&ep.origin.mn, now, 0);
                if seg.reply_wanted() {
                    return self.answer(notification_answer_9013(seg), crc, true).await;
                }
                ControlFlow::Continue(())
            }
            Command::Answer => {
                self.ctx.stats.seen(&ep.origin.mn, now, 0);
                self.backfill_answer(seg, ep);
                tracing::debug!(mn = %ep.origin.mn, cn = seg.cn, qn = seg.qn.unwrap_or("-"), cp = seg.cp_raw.unwrap_or(""), "hj212 answer from logger");
                ControlFlow::Continue(())
            }
        }
    }

    async fn store_upload(
        &mut self,
        seg: &DataSegment<'_>,
        ep: &Endpoint,
        raw: &[u8],
        crc: CrcMode,
        mapped: Result<Mapped, MapError>,
    ) -> Flow {
        let now = self.ctx.clock.now();
        let batch = match mapped {
            Ok(m) => {
                for code in &m.unknown_codes {
                    if self.ctx.stats.unknown_code(code) == 1 {
                        tracing::info!(mn = %ep.origin.mn, code, "hj212: unknown factor code, stored as received");
                    }
                }
                if let Some(batch) = self.refuse_message(ep, raw, &m.readings, now) {
                    self.ctx.stats.seen(&ep.origin.mn, now, 0);
                    return self.durable_then_answer(seg, crc, batch).await;
                }
                let mut batch = Batch::default();
                if !m.problems.is_empty() {
                    self.ctx.stats.reject("bad_value", Some(&ep.origin.mn));
                    let detail = m
                        .problems
                        .iter()
                        .map(|p| format!("{}={:?}: {}", p.key, p.value, p.reason))
                        .collect::<Vec<_>>()
                        .join("; ");
                    self.log("bad_value", format_args!("MN {}: {detail}", ep.origin.mn));
                    batch = self.dead_letter("bad_value", detail, raw);
                }
                batch.readings = m.readings;
                batch
            }
            Err(e) => {
                self.ctx.stats.reject("bad_data_time", Some(&ep.origin.mn));
                self.log("bad_data_time", format_args!("MN {}: {e}", ep.origin.mn));
                self.dead_letter("bad_data_time", e.to_string(), raw)
            }
        };
        self.ctx
            .stats
            .seen(&ep.origin.mn, now, batch.readings.len() as u64);
        self.backfill
            .data(&ep.origin.mn, seg.cn, batch.readings.len() as u64);
        self.durable_then_answer(seg, crc, batch).await
    }

    /// A frame whose readings fail the per-message checks (codes, values: see
    /// [`check`]) or whose DataTime its logger's clock cannot mean: the dead letter
    /// that stands for the whole frame, its readings dropped. The frame is still
    /// answered once the dead letter is durable, so the logger moves on.
    fn refuse_message(
        &mut self,
        ep: &Endpoint,
        raw: &[u8],
        readings: &[crate::model::Reading],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Batch> {
        let (reason, detail) = match check::readings(readings) {
            Err(e) => (e.reason, e.detail),
            Ok(()) => match check::data_times(readings, now, ep.clock) {
                Ok(()) => return None,
                Err(skew) => {
                    self.ctx.writer.clock_skew().report(Skewed {
                        enterprise: ep.origin.enterprise.clone(),
                        location: Location::Outlet(ep.origin.outlet.clone()),
                        at: now,
                        skew: skew.clone(),
                    });
                    ("clock_skew", skew.to_string())
                }
            },
        };
        self.ctx.stats.reject(reason, Some(&ep.origin.mn));
        self.log(reason, format_args!("MN {}: {detail}", ep.origin.mn));
        Some(self.dead_letter(reason, format!("MN {}: {detail}", ep.origin.mn), raw))
    }

    /// Stores the batch, then sends 9014 if the logger asked for one.
    async fn durable_then_answer(
        &mut self,
        seg: &DataSegment<'_>,
        crc: CrcMode,
        batch: Batch,
    ) -> Flow {
        if std::mem::take(&mut self.unstored) {
            // Its dead letter was not written (cap or sampling): never "stored".
            self.log(
                "not_recorded",
                format_args!("frame not recorded (dead-letter limit); not answered"),
            );
            return self.over_cap();
        }
        if !batch.is_empty() {
            if let Err(e) = self.ctx.writer.write(batch).await {
                // Not durable: stay silent, the logger will resend.
                tracing::error!(peer = %self.peer, error = %e, "hj212: upload not stored; no 9014 sent");
                self.ctx.stats.reject("store_failed", self.mn());
                return ControlFlow::Continue(());
            }
        }
        if seg.reply_wanted() {
            return self.answer(data_answer_9014(seg), crc, false).await;
        }
        ControlFlow::Continue(())
    }

    pub(super) async fn answer(
        &mut self,
        segment: Result<String, super::codec::error::ReplyError>,
        crc: CrcMode,
        notification: bool,
    ) -> Flow {
        let bytes = match segment.and_then(|s| encode_frame_with(&s, crc)) {
            Ok(b) => b,
            Err(e) => {
                self.log("reply", format_args!("cannot build answer: {e}"));
                return ControlFlow::Continue(());
            }
        };
        match tokio::time::timeout(WRITE_TIMEOUT, self.wr.write_all(&bytes)).await {
            Ok(Ok(())) => {
                let counter = if notification {
                    &self.ctx.stats.replies_9013
                } else {
                    &self.ctx.stats.replies_9014
                };
                counter.fetch_add(1, Ordering::Relaxed);
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Break(()),
        }
    }

    pub(super) async fn send_time(
        &mut self,
        seg: &DataSegment<'_>,
        ep: &Endpoint,
        crc: CrcMode,
    ) -> Flow {
        let (now, qn) = self.request_qn();
        let h = header(seg, ep, &qn);
        self.answer(set_time_1012(&h, now), crc, true).await
    }

    /// The local time now, and a QN for a request of ours: the time to the
    /// millisecond, and never one this connection used before (a retry sent in
    /// the same millisecond as, or with the clock set back below, an earlier
    /// request would otherwise be taken for it).
    pub(super) fn request_qn(&mut self) -> (LocalDateTime, String) {
        let now = self.ctx.clock.now();
        let at = match self.last_request_qn {
            Some(last) if now <= last => last + chrono::Duration::milliseconds(1),
            _ => now,
        };
        self.last_request_qn = Some(at);
        let tz = self.ctx.cfg.tz;
        let millis = (at.timestamp_subsec_millis()).min(999) as u16;
        (
            super::backfill::local(now, tz),
            make_qn(super::backfill::local(at, tz), millis),
        )
    }
}

/// Data uploads (CN 2000–2999), which HJ 212-2025 requires to be encrypted.
fn is_data_upload(cn: &str) -> bool {
    cn.len() == 4 && cn.starts_with('2') && cn.bytes().all(|b| b.is_ascii_digit())
}

/// The plaintext segment of an encrypted frame, its CRC checked when the decoder
/// could not; or the dead-letter reason and detail.
fn decrypt(
    text: &str,
    ep: &Endpoint,
    crc: CrcMode,
    pending_crc: Option<u16>,
) -> Result<String, (&'static str, String)> {
    let Some(key) = &ep.sm4_key else {
        let detail = "encrypted data area, but this logger has no usable SM4 key (none configured, or `pollwatch check-config` says why it cannot be read)";
        return Err(("bad_decrypt", detail.to_string()));
    };
    let plain = crypt::decrypt_segment(text, key).map_err(|e| {
        let e = match e {
            DecryptError::NotText => "the data area does not decrypt with the configured key (wrong key, or the logger's key was changed)".to_string(),
            e => e.to_string(),
        };
        ("bad_decrypt", e)
    })?;
    if let Some(sent) = pending_crc {
        let computed = crc.checksum(plain.as_bytes());
        if computed != sent {
            let detail =
                format!("bad CRC over the decrypted segment: frame says {sent:04X}, computed {computed:04X}");
            return Err(("bad_crc", detail));
        }
    }
    Ok(plain)
}

/// What a device event records: the CP area, capped, with a key the platform would
/// set (`NewSK`, 1014) blanked — keys are never stored or logged.
fn event_detail(status: &str, cp: &str) -> String {
    let text: String = if status == "raw_data" {
        cp.to_string()
    } else {
        cp.chars().take(EVENT_DETAIL_CHARS).collect()
    };
    if !text.contains("NewSK=") {
        return text;
    }
    text.split(';')
        .map(|item| {
            item.split(',')
                .map(|f| match f.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("NewSK") => format!("{k}=<redacted>"),
                    _ => f.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Header for a platform request to this logger: its own ST, version, reply wanted.
pub(super) fn header<'a>(
    seg: &DataSegment<'a>,
    ep: &'a Endpoint,
    qn: &'a str,
) -> RequestHeader<'a> {
    let version = seg.flag.map_or(1, |f| f.version_number());
    RequestHeader {
        qn,
        st: seg.st.unwrap_or("32"),
        pw: &ep.password,
        mn: &ep.origin.mn,
        flag: HjFlag((version << 2) | 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_uploads_and_key_redaction() {
        assert!(is_data_upload("2011") && is_data_upload("2111"));
        assert!(!is_data_upload("9015") && !is_data_upload("1014") && !is_data_upload("2x11"));
        assert_eq!(
            event_detail("key_request", "SKCreateTime=20260101000000;NewSK=0011,x=1"),
            "SKCreateTime=20260101000000;NewSK=<redacted>,x=1"
        );
        let long = "a".repeat(3000);
        assert_eq!(event_detail("info", &long).len(), EVENT_DETAIL_CHARS);
        assert_eq!(event_detail("raw_data", &long).len(), 3000);
    }
}
