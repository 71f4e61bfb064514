//! A Modbus TCP master for one gateway connection: one request at a time, one
//! `write` and (normally) one `read` per exchange, into buffers the connection
//! keeps.
//!
//! Why not tokio-modbus here (it still serves RTU framing): its client runs each
//! call through a boxed future, a `Framed` codec and a fresh reply vector, and at
//! thousands of polls a second that bookkeeping was a visible share of the poll
//! path. The protocol side is small — a 12-byte request and an MBAP-framed reply —
//! and every check a hostile gateway needs is kept: the transaction id, protocol
//! id, unit id and function code must be ours, the length must be sane and match
//! the byte count asked for, and a reply longer than its frame is refused (the
//! caller then drops the connection, so no stray byte is ever read as the next
//! device's answer).

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::sources::modbus::plan::RegisterKind;

/// MBAP header (7) + function code, byte count and at most 250 bytes of data.
const MAX_ADU: usize = 260;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TcpError {
    #[error("i/o: {0}")]
    Io(String),
    #[error("connection closed by the gateway")]
    Closed,
    #[error("bad reply: {0}")]
    Protocol(String),
}

/// What a device answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    /// The data bytes of the reply (after the byte count).
    Data(&'a [u8]),
    /// A Modbus exception code.
    Exception(u8),
}

pub struct TcpMaster {
    stream: TcpStream,
    transaction: u16,
    buf: [u8; MAX_ADU],
}

impl TcpMaster {
    pub fn new(stream: TcpStream) -> TcpMaster {
        TcpMaster {
            stream,
            transaction: 0,
            buf: [0; MAX_ADU],
        }
    }

    /// One read request and its reply.
    pub async fn read(
        &mut self,
        unit: u8,
        kind: RegisterKind,
        start: u16,
        count: u16,
    ) -> Result<Answer<'_>, TcpError> {
        self.transaction = self.transaction.wrapping_add(1);
        let function = function_code(kind);
        let request = encode(self.transaction, unit, function, start, count);
        self.stream
            .write_all(&request)
            .await
            .map_err(|e| TcpError::Io(e.to_string()))?;
        let mut filled = 0;
        let total = loop {
            let n = self
                .stream
                .read(self.buf.get_mut(filled..).unwrap_or(&mut []))
                .await
                .map_err(|e| TcpError::Io(e.to_string()))?;
            if n == 0 {
                return Err(TcpError::Closed);
            }
            filled += n;
            if let Some(total) = frame_len(self.buf.get(..filled).unwrap_or(&[]))? {
                if filled >= total {
                    break total;
                }
            }
        };
        if filled > total {
            return Err(TcpError::Protocol(format!(
                "{} bytes after the reply frame",
                filled - total
            )));
        }
        // The reply is in and nothing more is owed: tell the reactor the socket
        // is drained, so that the next exchange waits for its reply's readiness
        // event instead of first trying a read that can only fail (one system
        // call per poll). Bytes nobody asked for that came with this reply's
        // edge are then only seen with the next reply, which they spoil: the
        // exchange fails its checks and the caller opens a fresh connection.
        let _ = self.stream.try_io(Interest::READABLE, || {
            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
        });
        let frame = self.buf.get(..total).unwrap_or(&[]);
        check(frame, self.transaction, unit, function, kind, count)
    }
}

fn function_code(kind: RegisterKind) -> u8 {
    match kind {
        RegisterKind::Coil => 0x01,
        RegisterKind::Discrete => 0x02,
        RegisterKind::Holding => 0x03,
        RegisterKind::Input => 0x04,
    }
}

fn encode(transaction: u16, unit: u8, function: u8, start: u16, count: u16) -> [u8; 12] {
    let [t0, t1] = transaction.to_be_bytes();
    let [s0, s1] = start.to_be_bytes();
    let [c0, c1] = count.to_be_bytes();
    [t0, t1, 0, 0, 0, 6, unit, function, s0, s1, c0, c1]
}

/// The whole frame's length once the MBAP header is in; errs on a length no
/// reply can have.
fn frame_len(got: &[u8]) -> Result<Option<usize>, TcpError> {
    let Some(&[hi, lo]) = got.get(4..6) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    // Unit id + function code + at least one byte; at most what fits an ADU.
    if !(3..=MAX_ADU - 6).contains(&len) {
        return Err(TcpError::Protocol(format!("MBAP length {len}")));
    }
    Ok(Some(6 + len))
}

fn check(
    frame: &[u8],
    transaction: u16,
    unit: u8,
    function: u8,
    kind: RegisterKind,
    count: u16,
) -> Result<Answer<'_>, TcpError> {
    let bad = |what: String| Err(TcpError::Protocol(what));
    let (Some(&[t0, t1, p0, p1]), Some(&u), Some(&f)) =
        (frame.get(..4), frame.get(6), frame.get(7))
    else {
        return bad("short frame".into());
    };
    if u16::from_be_bytes([t0, t1]) != transaction {
        return bad(format!(
            "transaction {} where {transaction} was asked",
            u16::from_be_bytes([t0, t1])
        ));
    }
    if [p0, p1] != [0, 0] {
        return bad("protocol id is not 0".into());
    }
    if u != unit {
        return bad(format!("unit {u} answered for unit {unit}"));
    }
    if f == function | 0x80 {
        return match frame.get(8..) {
            Some(&[code]) => Ok(Answer::Exception(code)),
            _ => bad("exception reply of the wrong length".into()),
        };
    }
    if f != function {
        return bad(format!("function {f:#04x} answered for {function:#04x}"));
    }
    let want = if kind.is_bit() {
        usize::from(count).div_ceil(8)
    } else {
        2 * usize::from(count)
    };
    match (frame.get(8), frame.get(9..)) {
        (Some(&n), Some(data)) if usize::from(n) == want && data.len() == want => {
            Ok(Answer::Data(data))
        }
        (Some(&n), Some(data)) => bad(format!(
            "{n} data bytes announced, {} sent, {want} expected",
            data.len()
        )),
        _ => bad("no byte count".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(t: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
        let mut v = t.to_be_bytes().to_vec();
        v.extend([0, 0]);
        v.extend(((pdu.len() + 1) as u16).to_be_bytes());
        v.push(unit);
        v.extend(pdu);
        v
    }

    #[test]
    fn request_bytes() {
        assert_eq!(
            encode(0x0102, 7, 0x04, 52, 4),
            [1, 2, 0, 0, 0, 6, 7, 4, 0, 52, 0, 4]
        );
    }

    #[test]
    fn accepts_only_our_reply() {
        let ok = reply(9, 3, &[0x04, 4, 0x12, 0x34, 0x56, 0x78]);
        assert_eq!(frame_len(&ok), Ok(Some(ok.len())));
        let data = [0x12, 0x34, 0x56, 0x78];
        assert_eq!(
            check(&ok, 9, 3, 0x04, RegisterKind::Input, 2),
            Ok(Answer::Data(&data[..]))
        );
        // Another transaction (a late answer), unit, function, or a short count.
        assert!(check(&ok, 8, 3, 0x04, RegisterKind::Input, 2).is_err());
        assert!(check(&ok, 9, 4, 0x04, RegisterKind::Input, 2).is_err());
        assert!(check(&ok, 9, 3, 0x03, RegisterKind::Holding, 2).is_err());
        assert!(check(&ok, 9, 3, 0x04, RegisterKind::Input, 3).is_err());
        let mut wrong_protocol = ok.clone();
        wrong_protocol[3] = 1;
        assert!(check(&wrong_protocol, 9, 3, 0x04, RegisterKind::Input, 2).is_err());
        let bits = reply(1, 1, &[0x01, 2, 0xff, 0x01]);
        assert_eq!(
            check(&bits, 1, 1, 0x01, RegisterKind::Coil, 9),
            Ok(Answer::Data(&[0xff, 0x01][..]))
        );
    }

    #[test]
    fn exceptions_and_garbage() {
        let ex = reply(5, 1, &[0x84, 0x02]);
        assert_eq!(
            check(&ex, 5, 1, 0x04, RegisterKind::Input, 2),
            Ok(Answer::Exception(2))
        );
        assert!(check(&reply(5, 1, &[0x84]), 5, 1, 0x04, RegisterKind::Input, 2).is_err());
        assert_eq!(frame_len(&[0, 1, 0, 0]), Ok(None));
        assert!(frame_len(&[0, 1, 0, 0, 0, 0]).is_err());
        assert!(frame_len(&[0, 1, 0, 0, 0xff, 0xff]).is_err());
        assert!(check(&[], 1, 1, 0x04, RegisterKind::Input, 2).is_err());
    }

    #[tokio::test]
    async fn one_exchange_over_a_socket_and_trailing_bytes_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 12];
            s.read_exact(&mut req).await.unwrap();
            assert_eq!(&req[6..], &[2, 3, 0, 10, 0, 1]);
            let t = u16::from_be_bytes([req[0], req[1]]);
            // Sent in two pieces: the master must wait for the rest.
            let r = reply(t, 2, &[0x03, 2, 0xab, 0xcd]);
            s.write_all(&r[..5]).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            s.write_all(&r[5..]).await.unwrap();
            // After a whole reply, the next one again in two pieces.
            s.read_exact(&mut req).await.unwrap();
            let t = u16::from_be_bytes([req[0], req[1]]);
            let r = reply(t, 2, &[0x03, 2, 0x12, 0x34]);
            s.write_all(&r[..3]).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            s.write_all(&r[3..]).await.unwrap();
            s.read_exact(&mut req).await.unwrap();
            let t = u16::from_be_bytes([req[0], req[1]]);
            let mut r = reply(t, 2, &[0x03, 2, 0, 1]);
            r.push(0x99);
            s.write_all(&r).await.unwrap();
        });
        let mut m = TcpMaster::new(TcpStream::connect(addr).await.unwrap());
        assert_eq!(
            m.read(2, RegisterKind::Holding, 10, 1).await,
            Ok(Answer::Data(&[0xab, 0xcd][..]))
        );
        assert_eq!(
            m.read(2, RegisterKind::Holding, 10, 1).await,
            Ok(Answer::Data(&[0x12, 0x34][..]))
        );
        assert!(matches!(
            m.read(2, RegisterKind::Holding, 10, 1).await,
            Err(TcpError::Protocol(_))
        ));
        server.await.unwrap();
    }
}
