//! CRC checks used by HJ 212 frames.
//!
//! HJ 212's CRC is easy to mistake for CRC-16/MODBUS: both use the reflected
//! polynomial 0xA001 and start at 0xFFFF, but HJ 212 feeds each byte as
//! `crc = (crc >> 8) ^ b` instead of `crc ^= b`. After that step the register
//! holds a value below 0x100, so the eight shift rounds depend only on that byte
//! and the whole update collapses to one lookup in the ordinary reflected table:
//! `crc = TABLE[(crc >> 8) ^ b]`. The same table also serves MODBUS, which some
//! old loggers send byte-swapped; that variant is only ever used when a device
//! is configured for it, never guessed, because guessing would double the chance
//! of accepting a corrupted frame.
//!
//! [`CrcState`] exists so the frame finder can extend one running CRC while it
//! scans for a frame end, instead of re-hashing the segment per candidate.

/// Which checksum a device puts at the end of its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrcMode {
    /// The algorithm of the standard (the default for every device).
    #[default]
    Hj212,
    /// CRC-16/MODBUS with its two bytes swapped, sent by some old loggers.
    ModbusSwapped,
}

/// Reflected CRC-16 table for polynomial 0xA001, built at compile time so the
/// hot path is a lookup and there is no runtime initialisation to get wrong.
const TABLE: [u16; 256] = build_table();

/// `PAIR[(x << 8) | y]`: the register's high byte after mixing in the byte that
/// makes the index `x`, then byte `y`.
fn pair_table() -> &'static [u8; 65536] {
    static PAIR: std::sync::OnceLock<Box<[u8; 65536]>> = std::sync::OnceLock::new();
    PAIR.get_or_init(|| {
        let mut t = Box::new([0u8; 65536]);
        for x in 0..256usize {
            let h1 = (TABLE[x] >> 8) as u8;
            for y in 0..256usize {
                t[(x << 8) | y] = (TABLE[usize::from(h1 ^ y as u8)] >> 8) as u8;
            }
        }
        t
    })
}

const fn build_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u16;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// HJ 212 CRC of `data` (check value: `b"123456789"` → 0x2F80; empty → 0xFFFF).
pub fn crc16(data: &[u8]) -> u16 {
    CrcState::new(CrcMode::Hj212).update(data).finish()
}

/// CRC-16/MODBUS of `data` with its bytes swapped (`b"123456789"` → 0x374B).
pub fn crc16_modbus_swapped(data: &[u8]) -> u16 {
    CrcState::new(CrcMode::ModbusSwapped).update(data).finish()
}

impl CrcMode {
    /// Checksum of `data` under this mode.
    pub fn checksum(self, data: &[u8]) -> u16 {
        CrcState::new(self).update(data).finish()
    }
}

/// A running checksum, so callers can feed a segment piece by piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrcState {
    mode: CrcMode,
    reg: u16,
}

impl CrcState {
    /// A fresh register (both algorithms start at 0xFFFF).
    pub fn new(mode: CrcMode) -> Self {
        CrcState { mode, reg: 0xFFFF }
    }

    /// Feeds more bytes; returns the updated state so calls can be chained.
    pub fn update(mut self, data: &[u8]) -> Self {
        match self.mode {
            CrcMode::Hj212 => {
                // Each step keeps only the high byte of the register (the low byte
                // is shifted out before the next byte is mixed in), so two steps
                // collapse into one lookup in a 64 KiB table: half the dependent
                // loads on the hot path. The last byte needs the full register.
                let Some((&last, body)) = data.split_last() else {
                    return self;
                };
                let pair = pair_table();
                let mut h = (self.reg >> 8) as u8;
                let mut pairs = body.chunks_exact(2);
                for p in &mut pairs {
                    let idx = (usize::from(h ^ p[0]) << 8) | usize::from(p[1]);
                    h = pair[idx];
                }
                for &b in pairs.remainder() {
                    h = (TABLE[usize::from(h ^ b)] >> 8) as u8;
                }
                self.reg = TABLE[usize::from(h ^ last)];
            }
            CrcMode::ModbusSwapped => {
                for &b in data {
                    self.reg = (self.reg >> 8) ^ TABLE[usize::from(self.reg as u8 ^ b)];
                }
            }
        }
        self
    }

    /// The value as it is written in a frame (high byte first in the hex).
    pub fn finish(self) -> u16 {
        match self.mode {
            CrcMode::Hj212 => self.reg,
            CrcMode::ModbusSwapped => self.reg.swap_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bit-by-bit algorithm exactly as the standard describes it, kept as
    /// the reference the table version is checked against.
    fn hj212_bitwise(data: &[u8]) -> u16 {
        let mut crc: u16 = 0xFFFF;
        for &b in data {
            crc = (crc >> 8) ^ u16::from(b);
            for _ in 0..8 {
                let lsb = crc & 1;
                crc >>= 1;
                if lsb == 1 {
                    crc ^= 0xA001;
                }
            }
        }
        crc
    }

    #[test]
    fn check_values() {
        assert_eq!(crc16(b"123456789"), 0x2F80);
        assert_eq!(crc16(b""), 0xFFFF);
        assert_eq!(crc16_modbus_swapped(b"123456789"), 0x374B);
        assert_eq!(crc16_modbus_swapped(b""), 0xFFFF);
    }

    #[test]
    fn sample_segments() {
        let seg = b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&";
        assert_eq!(crc16(seg), 0x1C80);
        let reply = b"QN=20160801085857223;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&";
        assert_eq!(crc16(reply), 0x3240);
    }

    #[test]
    fn table_matches_bitwise_reference() {
        let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for end in 0..data.len() {
            assert_eq!(crc16(&data[..end]), hj212_bitwise(&data[..end]));
        }
    }

    #[test]
    fn every_byte_pair_matches_the_reference() {
        // Exercises every entry of the two-byte table.
        for x in 0..=255u8 {
            for y in 0..=255u8 {
                let data = [x, y, 0x5A];
                assert_eq!(crc16(&data), hj212_bitwise(&data), "{x:02X} {y:02X}");
            }
        }
    }

    #[test]
    fn valid_low_bytes() {
        // A property stated in the domain notes; a cheap sanity check of the table.
        for i in 0..=255u8 {
            let c = crc16(&[i, i.wrapping_mul(7)]);
            assert!(matches!(
                c & 0xFF,
                0x00 | 0x01 | 0x40 | 0x41 | 0x80 | 0x81 | 0xC0 | 0xC1
            ));
        }
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data = b"QN=1;ST=32;CN=2011;CP=&&a=1&&";
        for mode in [CrcMode::Hj212, CrcMode::ModbusSwapped] {
            for split in 0..data.len() {
                let (a, b) = data.split_at(split);
                let s = CrcState::new(mode).update(a).update(b).finish();
                assert_eq!(s, mode.checksum(data));
            }
        }
    }
}
