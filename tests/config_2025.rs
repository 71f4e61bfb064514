//! What HJ 212-2025 adds to an enterprise file — the furnace temperature rule
//! and meters fed by a logger — is checked like every other key: a wrong factor
//! code or MN would switch a rule off silently.

use pollwatch::config::{Config, LoadOptions};

const DAEMON: &str = r#"
[daemon]
timezone = "Asia/Shanghai"

[[factors]]
code = "f01001"
name = "炉膛温度"
class = "gas_parameter"

[[factors]]
code = "e40002"
name = "脱酸系统功率"
class = "electrical"
"#;

fn load(outlet_extra: &str, meter_extra: &str, kind: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("enterprises")).unwrap();
    std::fs::write(dir.path().join("pollwatch.toml"), DAEMON).unwrap();
    let e = format!(
        r#"
id = "E25"
name = "焚烧厂"
district = "吴中区"
industry = "垃圾焚烧"

[[outlets]]
id = "DA001"
name = "1#焚烧线"
kind = "{kind}"
hj212 = {{ mn = "010000A8900016F000PW0001", password = "pw" }}
{outlet_extra}

[[meters]]
id = "M-ACID"
name = "脱酸"
role = "treatment"
{meter_extra}
"#
    );
    std::fs::write(dir.path().join("enterprises/e.toml"), e).unwrap();
    Config::load(dir.path(), &LoadOptions::default()).map_err(|e| e.to_string())
}

#[test]
fn a_furnace_rule_and_a_logger_fed_meter_load() {
    let cfg = load(
        r#"furnace = { factor = "f01001", min_c = 850.0, max_per_day = 5 }"#,
        r#"hj212 = { mn = "010000A8900016F000PW0001", factor = "e40002", scale = 0.001 }"#,
        "flue_gas",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let e = &cfg.enterprises[0];
    assert_eq!(e.outlets[0].furnace.as_ref().unwrap().factor, "f01001");
    assert_eq!(e.meters[0].hj212.as_ref().unwrap().scale, Some(0.001));
}

#[test]
fn wrong_furnace_and_meter_feeds_are_named() {
    let cases = [
        (
            r#"furnace = { factor = "f09999" }"#,
            "",
            "flue_gas",
            &[
                "outlets[0].furnace.factor",
                "unknown factor code \"f09999\"",
            ][..],
        ),
        (
            r#"furnace = { factor = "e40002" }"#,
            "",
            "flue_gas",
            &["not a flue-gas parameter"],
        ),
        (
            r#"furnace = { factor = "f01001", min_c = -5.0, max_per_day = 300 }"#,
            "",
            "flue_gas",
            &["outlets[0].furnace.min_c", "outlets[0].furnace.max_per_day"],
        ),
        (
            r#"furnace = { factor = "f01001" }"#,
            "",
            "wastewater",
            &["belongs on a flue-gas outlet"],
        ),
        (
            "",
            r#"hj212 = { mn = "NOT-A-LOGGER", factor = "e40002" }"#,
            "flue_gas",
            &[
                "meters[0].hj212.mn",
                "not the MN of any of this enterprise's outlets",
            ],
        ),
        (
            "",
            r#"hj212 = { mn = "010000A8900016F000PW0001", factor = "f01001", scale = 0 }"#,
            "flue_gas",
            &["not an electrical quantity", "meters[0].hj212.scale"],
        ),
    ];
    for (outlet, meter, kind, want) in cases {
        let err = load(outlet, meter, kind).expect_err(outlet);
        for w in want {
            assert!(err.contains(w), "{outlet} {meter}: want {w:?} in\n{err}");
        }
    }
}
