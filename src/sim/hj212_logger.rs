//! A simulated HJ 212 data logger: connects to the platform like a real one, uploads
//! 2011/2051/2061/… frames with chosen values and flags, waits for the 9014 that
//! matches its QN, and resends on timeout the way loggers do (same QN, three
//! tries by default), reconnecting if the connection dropped.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::sources::hj212::codec::crc::CrcMode;
use crate::sources::hj212::codec::crypt::Sm4Key;
use crate::sources::hj212::codec::error::ReplyError;
use crate::sources::hj212::codec::frame::{FrameDecoder, MAX_FRAME_LEN};
use crate::sources::hj212::codec::reply::{encode_encrypted_frame, encode_frame_with, make_qn};
use crate::sources::hj212::codec::segment::DataSegment;
use crate::sources::hj212::codec::time::LocalDateTime;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no 9014 for QN {qn} after {attempts} attempts")]
    NoAnswer { qn: String, attempts: u32 },
    #[error(transparent)]
    Encode(#[from] ReplyError),
}

/// How an upload was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub attempts: u32,
    /// From the last send to the matching 9014.
    pub latency: Duration,
}

pub struct LoggerSim {
    addr: SocketAddr,
    pub mn: String,
    pub password: String,
    /// System code: 31 flue gas, 32 wastewater.
    pub st: String,
    /// 5 = HJ 212-2017 with a reply wanted.
    pub flag: u8,
    pub answer_timeout: Duration,
    pub tries: u32,
    /// The CRC this logger writes and expects (old loggers: swapped CRC-16/MODBUS).
    pub crc: CrcMode,
    /// HJ 212-2025: encrypt data areas with this SM4 key (set `flag` to 9).
    pub sm4_key: Option<Sm4Key>,
    /// HJ 212-2025: mark uploads as resends from the backlog (`RF=1`).
    pub resend: bool,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    decoder: FrameDecoder,
    seq: u64,
    /// TCP connections opened so far (a test can tell a kept connection from a
    /// silent reconnect).
    pub connects: u64,
    /// Every frame the platform sent us other than the 9014s we waited for
    /// (9013s, 1012 set-time, 1062 set-interval…), as segment text.
    pub received: Vec<String>,
    /// Every history request answered (2031/2051/2061…), as segment text.
    pub history: Vec<String>,
}

impl LoggerSim {
    pub fn new(addr: SocketAddr, mn: &str, password: &str) -> Self {
        LoggerSim {
            addr,
            mn: mn.to_string(),
            password: password.to_string(),
            st: "32".to_string(),
            flag: 5,
            answer_timeout: Duration::from_secs(5),
            tries: 3,
            crc: CrcMode::Hj212,
            sm4_key: None,
            resend: false,
            stream: None,
            buf: Vec::new(),
            decoder: FrameDecoder::new(),
            seq: 0,
            connects: 0,
            received: Vec::new(),
            history: Vec::new(),
        }
    }

    pub async fn connect(&mut self) -> Result<(), SimError> {
        let s = TcpStream::connect(self.addr)
            .await
            .map_err(|source| SimError::Connect {
                addr: self.addr,
                source,
            })?;
        let _ = s.set_nodelay(true);
        self.connects += 1;
        self.stream = Some(s);
        self.buf.clear();
        self.decoder = FrameDecoder::with_config(MAX_FRAME_LEN, self.crc);
        Ok(())
    }

    pub fn disconnect(&mut self) {
        self.stream = None;
    }

    /// A segment for `cn` at `data_time` with CP fields `cp` (without DataTime),
    /// and its QN.
    pub fn segment(&mut self, cn: &str, data_time: LocalDateTime, cp: &str) -> (String, String) {
        self.seq += 1;
        let qn = make_qn(data_time, (self.seq % 1000) as u16);
        let cp = if cp.is_empty() {
            format!("DataTime={data_time}")
        } else {
            format!("DataTime={data_time};{cp}")
        };
        let rf = if self.resend { ";RF=1" } else { "" };
        let seg = format!(
            "QN={qn};ST={};CN={cn};PW={};MN={};Flag={}{rf};CP=&&{cp}&&",
            self.st, self.password, self.mn, self.flag
        );
        (qn, seg)
    }

    /// Uploads and waits for the matching 9014, resending like a real logger.
    pub async fn upload(
        &mut self,
        cn: &str,
        data_time: LocalDateTime,
        cp: &str,
    ) -> Result<Delivery, SimError> {
        let (qn, seg) = self.segment(cn, data_time, cp);
        let frame = self.encode(&seg)?;
        self.send_until_answered(&qn, &frame).await
    }

    /// A segment as this logger sends it: encrypted when it has a key.
    pub fn encode(&self, seg: &str) -> Result<Vec<u8>, SimError> {
        Ok(match &self.sm4_key {
            Some(key) => encode_encrypted_frame(seg, key, self.crc)?,
            None => encode_frame_with(seg, self.crc)?,
        })
    }

    /// Sends `frame` and waits for a 9014 with `qn`, up to `tries` times.
    pub async fn send_until_answered(
        &mut self,
        qn: &str,
        frame: &[u8],
    ) -> Result<Delivery, SimError> {
        for attempt in 1..=self.tries {
            if self.stream.is_none() && self.connect().await.is_err() {
                tokio::time::sleep(self.answer_timeout.min(Duration::from_millis(200))).await;
                continue;
            }
            let sent = Instant::now();
            if self.send_raw(frame).await.is_err() {
                self.disconnect();
                continue;
            }
            let deadline = sent + self.answer_timeout;
            while let Some(seg) = self.next_segment(deadline).await {
                let answered = DataSegment::parse(&seg)
                    .map(|s| s.cn == "9014" && s.qn == Some(qn))
                    .unwrap_or(false);
                if answered {
                    return Ok(Delivery {
                        attempts: attempt,
                        latency: sent.elapsed(),
                    });
                }
                self.received.push(seg);
            }
        }
        Err(SimError::NoAnswer {
            qn: qn.to_string(),
            attempts: self.tries,
        })
    }

    /// Writes raw bytes (tests send garbage and broken frames this way).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.stream.as_mut() {
            Some(s) => s.write_all(bytes).await,
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    /// The next frame from the platform before `deadline`, as segment text; `None`
    /// on timeout or when the connection is gone (then it is dropped).
    pub async fn next_segment(&mut self, deadline: Instant) -> Option<String> {
        loop {
            if let Some(Ok(frame)) = self.decoder.decode(&mut self.buf) {
                return Some(frame.segment_text().into_owned());
            }
            let stream = self.stream.as_mut()?;
            let mut chunk = [0u8; 4096];
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.stream = None;
                    return None;
                }
                Ok(Ok(n)) => self.buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                Err(_) => return None,
            }
        }
    }

    /// Whether the platform has closed the connection (reads EOF within `wait`).
    pub async fn closed_by_peer(&mut self, wait: Duration) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return true;
        };
        let mut chunk = [0u8; 256];
        match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.stream = None;
                true
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                false
            }
            Err(_) => false,
        }
    }
}

/// CP text for one value per factor: `a21026-Rtd=41.2,a21026-Flag=N;…`.
pub fn cp_values(suffix: &str, values: &[(&str, f64, char)]) -> String {
    values
        .iter()
        .map(|(code, v, flag)| format!("{code}-{suffix}={v},{code}-Flag={flag}"))
        .collect::<Vec<_>>()
        .join(";")
}
