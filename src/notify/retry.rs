//! Back-off between retries of one channel: exponential with jitter, so that many
//! pollwatch instances (or many queued messages) hit a recovering provider spread
//! out rather than in lockstep. The jitter comes from a seeded generator: tests fix
//! the seed and see the same delays every run.

use std::time::Duration;

/// splitmix64: tiny, good enough to spread retries, and reproducible from a seed.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Jitter(seed)
    }

    /// A number in [0, 1).
    pub fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: f64,
}

impl Default for Backoff {
    /// Alertmanager's numbers, doubled per step: 0.5 s, 1 s, 2 s … at most 60 s.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            factor: 2.0,
        }
    }
}

impl Backoff {
    /// The wait before retry number `retry` (0 = first retry): the exponential step,
    /// capped, then scaled into [½, 1] of itself ("equal jitter": never zero, never
    /// more than the cap). A provider's own `retry_after` wins when it is longer.
    pub fn delay(
        &self,
        retry: u32,
        jitter: &mut Jitter,
        retry_after: Option<Duration>,
    ) -> Duration {
        let exp = self.factor.powi(retry.min(63) as i32);
        let step = self.initial.as_secs_f64() * exp;
        let capped = step.min(self.max.as_secs_f64());
        let jittered = capped * (0.5 + 0.5 * jitter.next_unit());
        let d = Duration::from_secs_f64(jittered.max(0.0));
        match retry_after {
            Some(r) if r > d => r,
            _ => d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_is_capped_and_is_reproducible() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            factor: 2.0,
        };
        let mut j = Jitter::new(7);
        let delays: Vec<Duration> = (0..8).map(|i| b.delay(i, &mut j, None)).collect();
        for (i, d) in delays.iter().enumerate() {
            let step = (0.1 * 2f64.powi(i as i32)).min(1.0);
            assert!(d.as_secs_f64() >= step * 0.5 - 1e-9, "{i}: {d:?}");
            assert!(d.as_secs_f64() <= step + 1e-9, "{i}: {d:?}");
        }
        let mut j2 = Jitter::new(7);
        let again: Vec<Duration> = (0..8).map(|i| b.delay(i, &mut j2, None)).collect();
        assert_eq!(delays, again);
        let mut j3 = Jitter::new(8);
        let other: Vec<Duration> = (0..8).map(|i| b.delay(i, &mut j3, None)).collect();
        assert_ne!(delays, other);
        assert_eq!(
            b.delay(0, &mut j, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
    }
}
