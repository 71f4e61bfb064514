//! Oxygen correction (HJ 75 / GB 13223): flue-gas limits are stated at a reference
//! O2, so each measured value is brought to it before averaging:
//! `C_corrected = C_measured × (21 − O2_ref) / (21 − O2_measured)`.
//!
//! As measured O2 approaches 21 % (shut-down, air ingress) the factor explodes; at
//! O2 ≥ 19 % the value is not judgeable. It is never divided through.

/// Measured O2 at or above this (%) makes a value not judgeable.
pub const NOT_JUDGEABLE_O2: f64 = 19.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NotJudgeable {
    /// O2 ≥ 19 %.
    HighO2(f64),
    /// No O2 value for the same time (or close enough) to correct with.
    NoO2,
}

impl NotJudgeable {
    pub fn reason(self) -> &'static str {
        match self {
            NotJudgeable::HighO2(_) => "O2 at or above 19 %",
            NotJudgeable::NoO2 => "no O2 value to correct with",
        }
    }
}

/// The corrected value, or why there is none.
pub fn correct(measured: f64, o2_reference: f64, o2: Option<f64>) -> Result<f64, NotJudgeable> {
    let o2 = o2.ok_or(NotJudgeable::NoO2)?;
    if o2 >= NOT_JUDGEABLE_O2 || o2.is_nan() {
        return Err(NotJudgeable::HighO2(o2));
    }
    Ok(measured * (21.0 - o2_reference) / (21.0 - o2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correction_follows_the_formula_and_stops_at_19_percent() {
        // 30 mg/m³ at 10 % O2, reference 6 %: 30 × 15 / 11.
        let c = correct(30.0, 6.0, Some(10.0)).unwrap();
        assert!((c - 30.0 * 15.0 / 11.0).abs() < 1e-12);
        assert!(correct(5.0, 6.0, Some(18.9)).is_ok());
        assert_eq!(
            correct(5.0, 6.0, Some(19.0)),
            Err(NotJudgeable::HighO2(19.0))
        );
        assert_eq!(
            correct(5.0, 6.0, Some(20.99)),
            Err(NotJudgeable::HighO2(20.99))
        );
        assert_eq!(correct(5.0, 6.0, None), Err(NotJudgeable::NoO2));
        // At the reference O2 the value is unchanged.
        assert_eq!(correct(12.5, 6.0, Some(6.0)).unwrap(), 12.5);
    }
}
