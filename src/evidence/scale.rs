//! Axis arithmetic: linear mapping, round ticks and number labels.
//!
//! Ticks are "round" (1, 2, 2.5 or 5 × 10ⁿ apart) so an officer can read a value
//! off the chart, and computed from integers so labels never show `0.30000000004`.

/// A linear map from data `[d0, d1]` to pixels `[p0, p1]`.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    d0: f64,
    d1: f64,
    p0: f64,
    p1: f64,
}

impl Axis {
    pub fn new(d0: f64, d1: f64, p0: f64, p1: f64) -> Axis {
        // A flat series still gets an axis one unit high.
        let d1 = if d1 > d0 { d1 } else { d0 + 1.0 };
        Axis { d0, d1, p0, p1 }
    }

    pub fn at(&self, v: f64) -> f64 {
        self.p0 + (v - self.d0) / (self.d1 - self.d0) * (self.p1 - self.p0)
    }
}

/// Round ticks covering `[lo, hi]`, about `target` of them; the first is at or
/// below `lo`, the last at or above `hi`.
pub fn nice_ticks(lo: f64, hi: f64, target: u32) -> Vec<f64> {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };
    let raw = (hi - lo) / f64::from(target.max(1));
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    // The tolerance keeps 6 / 0.2 = 30.000000000000004 from adding a tick.
    let first = (lo / step + 1e-9).floor() as i64;
    let last = (hi / step - 1e-9).ceil() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A number as an officer writes it: at most three decimals, no trailing zeros.
pub fn fmt_num(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 41.2, 6),
            vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
        );
        assert_eq!(
            nice_ticks(0.0, 1.3, 6),
            vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
        );
        let t = nice_ticks(-3.0, 97.0, 6);
        assert!(t[0] <= -3.0 && *t.last().unwrap() >= 97.0, "{t:?}");
        assert_eq!(nice_ticks(5.0, 5.0, 6).len(), 6);
        assert_eq!(fmt_num(0.1 + 0.2), "0.3");
        assert_eq!(fmt_num(35.0), "35");
        assert_eq!(fmt_num(-0.0001), "0");
        assert_eq!(fmt_num(41.25), "41.25");
    }

    #[test]
    fn axis_maps_linearly_and_inverts_pixels() {
        let a = Axis::new(0.0, 50.0, 400.0, 100.0);
        assert_eq!(a.at(0.0), 400.0);
        assert_eq!(a.at(50.0), 100.0);
        assert_eq!(a.at(35.0), 400.0 - 35.0 / 50.0 * 300.0);
    }
}
