//! A config for tests that raise alerts: enterprise E1 with a
//! flue-gas outlet (SO2 ≤ 35 mg/m³ hourly at 6 % O2), one officer, one route.

use pollwatch::config::Config;

pub const FLUE_GAS_ENTERPRISE: &str = r#"
id = "E1"
name = "东山热电"
district = "吴中区"
industry = "火电"

[[outlets]]
id = "DA001"
name = "1#锅炉烟囱"
kind = "flue_gas"
o2_reference = 6.0

[[outlets.limits]]
factor = "a21026"
max = 35.0
basis = "hour"
"#;

pub const DUTY: &str = r#"
[[officers]]
id = "zhangwei"
name = "张伟"
mobile = "13800000001"

[[teams]]
id = "wuzhong"
name = "吴中区执法大队"
members = ["zhangwei"]

[[routes]]
team = "wuzhong"
channels = ["alerts"]
"#;

/// A channel nobody listens on, for tests that run no dispatcher.
pub const UNUSED_CHANNEL: &str = "kind = \"wecom\"\nurl = \"http://127.0.0.1:9/never-sent\"\n";

/// Storage at `storage`; alerts go to the channel `alerts`, whose keys (`kind`,
/// `url`…) are `channel` ([`UNUSED_CHANNEL`] when the test runs no dispatcher);
/// `extra` is appended to pollwatch.toml.
pub fn config(dir: &std::path::Path, storage: &str, channel: &str, extra: &str) -> Config {
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\ntimezone = \"Asia/Shanghai\"\nstate_dir = {:?}\n\n[storage]\nurl = {storage:?}\n\n\
             [[channels]]\nid = \"alerts\"\n{channel}\n{extra}",
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(cfg.join("duty.toml"), DUTY).unwrap();
    std::fs::write(cfg.join("enterprises/e1.toml"), FLUE_GAS_ENTERPRISE).unwrap();
    Config::load(&cfg, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}
