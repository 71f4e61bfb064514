//! The serving loop the Modbus and DL/T 645 simulators share: read bytes,
//! cut them into request frames, write replies — some of them late.
//!
//! Late replies are scheduled, not slept on: while one simulated slave
//! "thinks", the loop keeps reading, so a request to another slave on the
//! same bus is answered at once and the slow slave's reply lands whenever it
//! is due — possibly after the master gave up and asked something else. That
//! is the situation pollers must survive (stale frames, one dead slave not
//! delaying the rest), so the simulator must be able to produce it.

use std::future::pending;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// Bytes to send back after `delay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub delay: Duration,
    pub bytes: Vec<u8>,
}

/// What the frame cutter made of the front of the buffer.
pub(crate) enum Step {
    /// Drop `n` bytes (a frame, or garbage) and maybe answer.
    Consumed(usize, Option<Reply>),
    NeedMore,
    /// The stream is beyond repair: stop serving it.
    Close,
}

/// Resolves once shutdown is signalled or its sender is gone (nobody can
/// signal any more, so nobody is waiting for us either).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

pub(crate) fn is_stopped(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Serves `stream` until EOF, shutdown, or `Step::Close`.
///
/// `idle_reset`: bytes of an unfinished frame that sit this long are thrown
/// away, as a serial device does after the t3.5 silence; without it one
/// noise byte could leave the cutter waiting forever for a frame's end.
pub(crate) async fn serve_frames<S, F>(
    stream: S,
    mut shutdown: watch::Receiver<bool>,
    idle_reset: Option<Duration>,
    mut cut: F,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(&[u8]) -> Step,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (late_tx, mut late_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let waiting = idle_reset.filter(|_| !buf.is_empty());
        let reset = async move {
            match waiting {
                Some(gap) => tokio::time::sleep(gap).await,
                None => pending::<()>().await,
            }
        };
        tokio::select! {
            _ = stopped(&mut shutdown) => return Ok(()),
            Some(bytes) = late_rx.recv() => wr.write_all(&bytes).await?,
            _ = reset => buf.clear(),
            read = rd.read(&mut chunk) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                loop {
                    match cut(&buf) {
                        Step::NeedMore => break,
                        Step::Close => return Ok(()),
                        Step::Consumed(n, reply) => {
                            buf.drain(..n.min(buf.len()));
                            match reply {
                                Some(r) if r.delay.is_zero() => wr.write_all(&r.bytes).await?,
                                Some(r) => {
                                    let tx = late_tx.clone();
                                    tokio::spawn(async move {
                                        tokio::time::sleep(r.delay).await;
                                        // The connection may be gone by now;
                                        // a lost late reply is what we want then.
                                        let _ = tx.send(r.bytes);
                                    });
                                }
                                None => {}
                            }
                            if n == 0 {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}
