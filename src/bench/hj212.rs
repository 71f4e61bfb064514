//! HJ 212 figures: the codec alone on one core, and the whole path from simulated
//! loggers over TCP to durable SQLite with 9014 answers — each for 2017 frames and
//! for HJ 2025 frames whose data areas are SM4-encrypted (decrypted, then the CRC
//! checked over the plaintext).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::BenchError;
use crate::clock::SystemClock;
use crate::sim::hj212_logger::cp_values;
use crate::sim::LoggerSim;
use crate::sources::hj212::codec::crc::CrcMode;
use crate::sources::hj212::codec::crypt::{decrypt_segment, Sm4Key};
use crate::sources::hj212::codec::frame::{Frame, FrameDecoder};
use crate::sources::hj212::codec::reply::{encode_encrypted_frame, encode_frame};
use crate::sources::hj212::codec::segment::DataSegment;
use crate::sources::hj212::codec::time::LocalDateTime;
use crate::sources::hj212::mapping::Origin;
use crate::sources::hj212::registry::Endpoint;
use crate::sources::hj212::{Hj212Server, Registry, ServerConfig};
use crate::store::{Store, StoreOptions, Writer, WriterOptions, WriterTask};

/// The key of the benchmarks' 2025 loggers.
fn bench_key() -> Sm4Key {
    Sm4Key::new(*b"pollwatch-bench!")
}

/// A realistic flue-gas real-time upload with `factors` factors; with `key`, an
/// HJ 212-2025 frame (Flag 9) with its data area encrypted.
pub fn sample_frame(factors: usize, minute: u8, key: Option<&Sm4Key>) -> Vec<u8> {
    const CODES: [&str; 10] = [
        "a21026", "a21002", "a34013", "a19001", "a00000", "a01011", "a01012", "a01013", "a01014",
        "a21005",
    ];
    let values: Vec<(&str, f64, char)> = (0..factors)
        .map(|i| (CODES[i % CODES.len()], 10.0 + i as f64 * 1.25, 'N'))
        .collect();
    let flag = if key.is_some() { 9 } else { 5 };
    let seg = format!(
        "QN=20261127100{minute:02}0000;ST=31;CN=2011;PW=123456;MN=88888880000001;Flag={flag};CP=&&DataTime=2026112710{minute:02}00;{}&&",
        cp_values("Rtd", &values)
    );
    match key {
        Some(k) => encode_encrypted_frame(&seg, k, CrcMode::Hj212).unwrap_or_default(),
        None => encode_frame(&seg).unwrap_or_default(),
    }
}

#[derive(Debug, Clone)]
pub struct CodecReport {
    /// HJ 212-2025 frames with SM4-encrypted data areas.
    pub sm4: bool,
    pub frames: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl fmt::Display for CodecReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "hj212 codec{}: {} frames ({:.0} bytes each) framed, {}CRC-checked and parsed in {:.2} s on one core = {:.0} frames/s ({:.0} MB/s)",
            if self.sm4 { " (2025, SM4)" } else { "" },
            self.frames,
            self.bytes as f64 / self.frames.max(1) as f64,
            if self.sm4 { "decrypted, " } else { "" },
            secs,
            self.frames as f64 / secs,
            self.bytes as f64 / secs / 1e6
        )
    }
}

/// Frames, checks and parses `frames` frames of 10 factors from a byte stream fed
/// in 8 KiB reads, as the server reads a socket; with `sm4`, 2025 frames that are
/// also decrypted (and their CRC checked over the plaintext) as the server does.
pub fn codec(frames: usize, sm4: bool) -> CodecReport {
    let key = bench_key();
    let key = sm4.then_some(&key);
    let stream: Vec<u8> = (0..60u8).flat_map(|m| sample_frame(10, m, key)).collect();
    let mut decoder = FrameDecoder::with_config(9999, CrcMode::Hj212);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut done = 0u64;
    let mut bytes = 0u64;
    let mut fields = 0usize;
    let started = Instant::now();
    for chunk in stream.chunks(8192).cycle() {
        if done as usize >= frames {
            break;
        }
        buf.extend_from_slice(chunk);
        bytes += chunk.len() as u64;
        while let Some(Ok(frame)) = decoder.decode(&mut buf) {
            let plain = match key {
                Some(k) => plaintext(&frame, k),
                None => String::from_utf8(frame.segment).ok(),
            };
            if let Some(text) = plain {
                if let Ok(seg) = DataSegment::parse(&text) {
                    fields += seg.factors().count();
                }
            }
            done += 1;
        }
    }
    let elapsed = started.elapsed();
    // Keeps the parse from being optimised away.
    std::hint::black_box(fields);
    CodecReport {
        sm4,
        frames: done,
        bytes,
        elapsed,
    }
}

/// What the server does with an encrypted frame before parsing it.
fn plaintext(frame: &Frame, key: &Sm4Key) -> Option<String> {
    let plain = decrypt_segment(&frame.segment_text(), key).ok()?;
    let crc_ok =
        !frame.crc_pending || CrcMode::Hj212.checksum(plain.as_bytes()) == frame.crc_sent();
    crc_ok.then_some(plain)
}

#[derive(Debug, Clone)]
pub struct E2eReport {
    pub sm4: bool,
    pub loggers: usize,
    pub frames: u64,
    pub readings: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub resends: u64,
}

impl fmt::Display for E2eReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "hj212 end-to-end{}: {} loggers, {} frames ({} readings) durable and answered in {:.2} s = {:.0} frames/s; send→9014 p50 {:.1} ms, p99 {:.1} ms; {} resends",
            if self.sm4 { " (2025, SM4)" } else { "" },
            self.loggers,
            self.frames,
            self.readings,
            secs,
            self.frames as f64 / secs,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.resends
        )
    }
}

/// A simulated logger of the benchmarks: password `123456`, plaintext, no
/// backfill, and any data age accepted (their frames carry fixed DataTimes; the
/// benches measure ingest, not the clock check).
pub(super) fn logger(enterprise: &str, outlet: &str, mn: &str) -> Endpoint {
    Endpoint {
        origin: Origin {
            enterprise: enterprise.into(),
            outlet: outlet.into(),
            mn: mn.into(),
        },
        password: "123456".into(),
        crc: CrcMode::Hj212,
        set_time_on_connect: false,
        rtd_interval: None,
        sm4_key: None,
        require_encryption: false,
        power: Vec::new(),
        backfill: false,
        factors: Vec::new(),
        kinds: Default::default(),
        clock: crate::config::ClockBounds {
            max_age: chrono::Duration::days(365 * 100),
            ..Default::default()
        },
    }
}

/// A loopback server for `max_connections` simulated loggers (benchmarks).
pub(super) fn server_config(max_connections: usize) -> ServerConfig {
    ServerConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        max_connections,
        idle_timeout: Duration::from_secs(600),
        handshake_timeout: Duration::from_secs(60),
        max_auth_failures: 5,
        max_frame_len: 9999,
        // Every simulated logger connects from loopback.
        max_connections_per_address: max_connections,
        lockout_after: 0,
        dead_letters_per_minute: 60,
        dead_letters_per_connection: 50,
        quiet: Duration::from_millis(1500),
        tz: chrono_tz::Asia::Shanghai,
    }
}

/// The store at `url` (default options: SQLite `synchronous = FULL`) and a writer
/// on it with default options, as the daemon runs them.
pub(super) async fn store_and_writer(url: &str) -> Result<(Store, Writer, WriterTask), BenchError> {
    let store = Store::open(url, &StoreOptions::default()).await?;
    let (writer, task) = Writer::spawn(
        store.clone(),
        WriterOptions::default(),
        Arc::new(SystemClock),
    );
    Ok((store, writer, task))
}

/// An in-process server on loopback and its store writer on a fresh store at
/// `url`, with `loggers` benchmark loggers registered: MN `MN{i:08}`, four outlets
/// per enterprise; with `sm4`, as HJ 212-2025 loggers that must encrypt.
pub(super) struct BenchServer {
    pub store: Store,
    pub writer: Writer,
    pub server: Hj212Server,
    task: WriterTask,
    stop: watch::Sender<bool>,
    _registry: watch::Sender<Arc<Registry>>,
}

impl BenchServer {
    pub async fn start(url: &str, loggers: usize, sm4: bool) -> Result<Self, BenchError> {
        let (store, writer, task) = store_and_writer(url).await?;
        let mut registry = Registry::default();
        for i in 0..loggers {
            registry.insert(Endpoint {
                sm4_key: sm4.then(bench_key),
                require_encryption: sm4,
                ..logger(
                    &format!("E{:04}", i / 4),
                    &format!("DA{:03}", i % 4),
                    &format!("MN{i:08}"),
                )
            });
        }
        let (registry, reg_rx) = watch::channel(Arc::new(registry));
        let (stop, stop_rx) = watch::channel(false);
        let cfg = server_config(loggers + 16);
        let server =
            Hj212Server::start(cfg, reg_rx, writer.clone(), Arc::new(SystemClock), stop_rx)
                .await
                .map_err(|e| BenchError::Setup(e.to_string()))?;
        Ok(BenchServer {
            store,
            writer,
            server,
            task,
            stop,
            _registry: registry,
        })
    }

    /// Stops the server, drains the writer and closes the store.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        self.server.join().await;
        drop(self.writer);
        self.task.finish(Duration::from_secs(10)).await;
        self.store.close().await;
    }
}

/// `loggers` simulated loggers, each uploading `per_logger` real-time frames of 10
/// factors and waiting for each 9014, against an in-process server writing to the
/// store at `url`; with `sm4`, as HJ 212-2025 loggers encrypting their data areas.
pub async fn end_to_end(
    url: &str,
    loggers: usize,
    per_logger: usize,
    sm4: bool,
) -> Result<E2eReport, BenchError> {
    let bench = BenchServer::start(url, loggers, sm4).await?;
    let addr = bench.server.local_addr();
    // Every logger connects and sends one upload first (creating its series in
    // the store, a one-time cost), then all start together: the figures are the
    // steady state a running city sees.
    let barrier = Arc::new(tokio::sync::Barrier::new(loggers + 1));
    let mut handles = Vec::new();
    for i in 0..loggers {
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            let mut sim = LoggerSim::new(addr, &format!("MN{i:08}"), "123456");
            sim.st = "31".into();
            sim.answer_timeout = Duration::from_secs(10);
            if sm4 {
                sim.flag = 9;
                sim.sm4_key = Some(bench_key());
            }
            let mut lat = Vec::with_capacity(per_logger);
            let mut resends = 0;
            let values: Vec<(&str, f64, char)> = [
                "a21026", "a21002", "a34013", "a19001", "a00000", "a01011", "a01012", "a01013",
                "a01014", "a21005",
            ]
            .iter()
            .enumerate()
            .map(|(k, c)| (*c, 10.0 + k as f64, 'N'))
            .collect();
            let cp = cp_values("Rtd", &values);
            let warm = LocalDateTime {
                year: 2026,
                month: 10,
                day: 31,
                hour: 0,
                minute: 0,
                second: 0,
            };
            let warmed = sim.upload("2011", warm, &cp).await;
            barrier.wait().await;
            warmed?;
            for n in 0..per_logger {
                let t = LocalDateTime {
                    year: 2026,
                    month: 11,
                    day: 1 + (n / 1440) as u8 % 28,
                    hour: ((n / 60) % 24) as u8,
                    minute: (n % 60) as u8,
                    second: 0,
                };
                let d = sim.upload("2011", t, &cp).await?;
                resends += u64::from(d.attempts - 1);
                lat.push(d.latency);
            }
            Ok::<_, crate::sim::SimError>((lat, resends))
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut lat = Vec::new();
    let mut resends = 0;
    for h in handles {
        let (l, r) = h.await?.map_err(|e| BenchError::Setup(e.to_string()))?;
        lat.extend(l);
        resends += r;
    }
    let elapsed = started.elapsed();
    bench.finish().await;
    lat.sort();
    Ok(E2eReport {
        sm4,
        loggers,
        // Every timed upload was answered with a 9014, i.e. stored: count those.
        frames: lat.len() as u64,
        readings: lat.len() as u64 * 10,
        elapsed,
        p50: super::percentile(&lat, 0.5),
        p99: super::percentile(&lat, 0.99),
        resends,
    })
}
