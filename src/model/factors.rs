//! The factor catalogue: the codes we meet, their names and default units.
//!
//! HJ 212-2017 codes are the vocabulary of the whole pipeline. 2005-era loggers still
//! in the field send the old codes (`011` for COD, `02` for SO2 …); sources map them
//! here so that a rule written for `w01018` judges an old logger's COD too. Electrical
//! quantities have no HJ 212 code, so we use our own with an underscore (`e_p`), which
//! can never clash with HJ 212's `-Rtd`-style suffixes.
//!
//! A code missing here is not an error in a frame — unknown codes are stored as
//! received — but config may only set limits on codes it knows, so a typo in a
//! permit cannot silently disable a limit. Sites add local codes with `[[factors]]`
//! in pollwatch.toml.

/// What a factor measures; rules use it to decide, e.g., which factors are
/// oxygen-corrected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorClass {
    /// A flue-gas pollutant concentration (oxygen correction applies).
    GasPollutant,
    /// A flue-gas parameter (O2, flow, temperature, …).
    GasParameter,
    /// A wastewater pollutant concentration.
    WaterPollutant,
    /// A wastewater parameter (flow, temperature, …).
    WaterParameter,
    /// pH: judged per value against a range, never averaged.
    Ph,
    /// Electrical quantities from power-usage meters.
    Electrical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Factor {
    pub code: &'static str,
    pub name_zh: &'static str,
    pub name_en: &'static str,
    /// Default unit of the real-time/average value.
    pub unit: &'static str,
    pub class: FactorClass,
    /// Codes 2005-era loggers (HJ/T 212-2005) send for the same quantity.
    pub aliases_2005: &'static [&'static str],
}

use FactorClass::*;

const fn f(
    code: &'static str,
    name_zh: &'static str,
    name_en: &'static str,
    unit: &'static str,
    class: FactorClass,
    aliases_2005: &'static [&'static str],
) -> Factor {
    Factor {
        code,
        name_zh,
        name_en,
        unit,
        class,
        aliases_2005,
    }
}

/// Every factor pollwatch knows by name. Only aliases we are sure of are listed: a
/// wrong alias would silently file one pollutant's values under another.
pub static FACTORS: &[Factor] = &[
    // Flue gas (HJ 212-2017 appendix, ST 31).
    f("a21026", "二氧化硫", "SO2", "mg/m³", GasPollutant, &["02"]),
    f("a21002", "氮氧化物", "NOx", "mg/m³", GasPollutant, &["03"]),
    f("a21003", "一氧化氮", "NO", "mg/m³", GasPollutant, &[]),
    f("a21004", "二氧化氮", "NO2", "mg/m³", GasPollutant, &[]),
    f(
        "a34013",
        "烟尘",
        "particulate matter",
        "mg/m³",
        GasPollutant,
        &["01"],
    ),
    f("a21005", "一氧化碳", "CO", "mg/m³", GasPollutant, &[]),
    f("a21024", "氯化氢", "HCl", "mg/m³", GasPollutant, &[]),
    f("a21001", "氨", "NH3", "mg/m³", GasPollutant, &[]),
    f("a24088", "非甲烷总烃", "NMHC", "mg/m³", GasPollutant, &[]),
    f(
        "a24087",
        "总烃",
        "total hydrocarbons",
        "mg/m³",
        GasPollutant,
        &[],
    ),
    f("a05002", "甲烷", "CH4", "mg/m³", GasPollutant, &[]),
    f("a19001", "氧气含量", "O2", "%", GasParameter, &["S01"]),
    f(
        "a00000",
        "废气流量",
        "flue-gas flow",
        "m³/s",
        GasParameter,
        &["B02"],
    ),
    f(
        "a01011",
        "烟气流速",
        "flue-gas velocity",
        "m/s",
        GasParameter,
        &["S02"],
    ),
    f(
        "a01012",
        "烟气温度",
        "flue-gas temperature",
        "℃",
        GasParameter,
        &["S03"],
    ),
    f(
        "a01013",
        "烟气压力",
        "flue-gas pressure",
        "kPa",
        GasParameter,
        &[],
    ),
    f(
        "a01014",
        "烟气湿度",
        "flue-gas humidity",
        "%",
        GasParameter,
        &[],
    ),
    // Wastewater and surface water (ST 32, 21).
    f(
        "w01018",
        "化学需氧量",
        "COD",
        "mg/L",
        WaterPollutant,
        &["011"],
    ),
    f("w21003", "氨氮", "NH3-N", "mg/L", WaterPollutant, &["060"]),
    f(
        "w21011",
        "总磷",
        "total phosphorus",
        "mg/L",
        WaterPollutant,
        &["101"],
    ),
    f(
        "w21001",
        "总氮",
        "total nitrogen",
        "mg/L",
        WaterPollutant,
        &["065"],
    ),
    f(
        "w01012",
        "悬浮物",
        "suspended solids",
        "mg/L",
        WaterPollutant,
        &[],
    ),
    f(
        "w01017",
        "五日生化需氧量",
        "BOD5",
        "mg/L",
        WaterPollutant,
        &[],
    ),
    f(
        "w01019",
        "高锰酸盐指数",
        "permanganate index",
        "mg/L",
        WaterPollutant,
        &[],
    ),
    f("w01020", "总有机碳", "TOC", "mg/L", WaterPollutant, &[]),
    f("w01001", "pH值", "pH", "", Ph, &["001"]),
    f(
        "w00000",
        "废水流量",
        "wastewater flow",
        "L/s",
        WaterParameter,
        &["B01"],
    ),
    f(
        "w01010",
        "水温",
        "water temperature",
        "℃",
        WaterParameter,
        &[],
    ),
    f(
        "w01009",
        "溶解氧",
        "dissolved oxygen",
        "mg/L",
        WaterParameter,
        &[],
    ),
    f(
        "w01014",
        "电导率",
        "conductivity",
        "μS/cm",
        WaterParameter,
        &[],
    ),
    f("w01003", "浑浊度", "turbidity", "NTU", WaterParameter, &[]),
    // Power-usage meters (our codes).
    f(
        "e_p",
        "总有功功率",
        "total active power",
        "kW",
        Electrical,
        &[],
    ),
    f("e_ep", "有功电能", "active energy", "kWh", Electrical, &[]),
    f("e_ia", "A相电流", "phase A current", "A", Electrical, &[]),
    f("e_ib", "B相电流", "phase B current", "A", Electrical, &[]),
    f("e_ic", "C相电流", "phase C current", "A", Electrical, &[]),
    f("e_ua", "A相电压", "phase A voltage", "V", Electrical, &[]),
    f("e_ub", "B相电压", "phase B voltage", "V", Electrical, &[]),
    f("e_uc", "C相电压", "phase C voltage", "V", Electrical, &[]),
    f("e_pf", "功率因数", "power factor", "", Electrical, &[]),
    f("e_f", "频率", "frequency", "Hz", Electrical, &[]),
];

/// Looks a code up by its 2017 form.
pub fn factor(code: &str) -> Option<&'static Factor> {
    FACTORS.iter().find(|f| f.code == code)
}

/// Maps a 2005-era code to its 2017 factor.
pub fn factor_by_alias(code_2005: &str) -> Option<&'static Factor> {
    FACTORS.iter().find(|f| f.aliases_2005.contains(&code_2005))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_and_aliases_are_unique() {
        let mut seen = HashSet::new();
        for f in FACTORS {
            assert!(seen.insert(f.code), "duplicate code {}", f.code);
            for a in f.aliases_2005 {
                assert!(seen.insert(*a), "alias {a} clashes");
            }
        }
    }

    #[test]
    fn electrical_codes_cannot_clash_with_hj212_suffixes() {
        for f in FACTORS.iter().filter(|f| f.class == Electrical) {
            assert!(f.code.starts_with("e_") && !f.code.contains('-'));
        }
    }

    #[test]
    fn old_codes_map_to_2017() {
        assert_eq!(factor_by_alias("011").unwrap().code, "w01018");
        assert_eq!(factor_by_alias("060").unwrap().code, "w21003");
        assert_eq!(factor_by_alias("B01").unwrap().code, "w00000");
        assert_eq!(factor_by_alias("02").unwrap().code, "a21026");
        assert_eq!(factor_by_alias("S01").unwrap().code, "a19001");
        assert!(factor_by_alias("a21026").is_none());
        assert_eq!(factor("a21026").unwrap().name_zh, "二氧化硫");
    }
}
