//! The demo's config directory, written as TOML into its state directory and then
//! loaded with the normal loader, so it is parsed and validated like any
//! sysadmin's config (a mistake here fails the demo at start, with file:line).
//!
//! It differs from the shipped `config/` only where the demo needs it: listeners
//! on loopback port 0, SQLite in the temporary directory, one `webhook` channel
//! to the built-in receiver, inline API tokens, and devices on the simulators'
//! local ports polled every 30 simulated seconds — poll intervals are real time,
//! so they shrink with `--speed` to keep HJ 75's ≥ 45 valid minutes an hour.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::scenarios::{CEMENT, CHEMICAL, DYEING, POWER, WWTP};

/// Where the simulators listen and what the config must know about them.
#[derive(Debug, Clone)]
pub struct Setup {
    pub state_dir: std::path::PathBuf,
    pub receiver_url: String,
    pub viewer_token: String,
    pub operator_token: String,
    /// The wastewater plant's Modbus TCP analyzer gateway.
    pub modbus: SocketAddr,
    /// The dyeing factory's RS-485 meter bus behind a serial-to-Ethernet converter.
    pub dlt645: SocketAddr,
    /// Real time between polls (30 simulated seconds).
    pub poll: Duration,
    /// The cement works' logger speaks HJ 212-2025 and encrypts its data areas
    /// with this SM4 key (32 hex digits, new each run), kept in `keys/cement.key`.
    pub cement_sm4_key: String,
}

/// The data loggers: (enterprise, MN, password).
pub const LOGGER_POWER: (&str, &str, &str) = (POWER, "32050600000001", "123456");
pub const LOGGER_CHEMICAL: (&str, &str, &str) = (CHEMICAL, "32050800000301", "bh2026");
pub const LOGGER_CEMENT: (&str, &str, &str) = (CEMENT, "32050900000401", "xs2026");

/// DL/T 645 addresses of the dyeing factory's meters (production, treatment).
pub const METER_DYE1: &str = "000000000161";
pub const METER_WWT: &str = "000000000162";

/// The dyeing factory's meters sit behind 100/10 current transformers: they
/// report secondary-side power (DL/T 645's XX.XXXX kW format tops out below 80
/// kW), and the config scales it back, as a real installation's would.
pub const DYEING_CT_RATIO: f64 = 10.0;

/// Modbus holding registers (f32, ABCD) of the wastewater plant's analyzers.
pub const REG_PH: u16 = 0;
pub const REG_COD: u16 = 2;
pub const REG_NH3N: u16 = 4;

pub fn write(dir: &Path, s: &Setup) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("enterprises"))?;
    std::fs::write(dir.join("pollwatch.toml"), daemon_toml(s))?;
    std::fs::write(dir.join("duty.toml"), DUTY_TOML)?;
    std::fs::create_dir_all(dir.join("keys"))?;
    std::fs::write(dir.join(CEMENT_KEY_FILE), format!("{}\n", s.cement_sm4_key))?;
    for (name, text) in enterprises(s) {
        std::fs::write(dir.join("enterprises").join(name), text)?;
    }
    Ok(())
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

fn daemon_toml(s: &Setup) -> String {
    format!(
        r#"# Written by `pollwatch demo`: the shipped config/ with loopback listeners,
# a temporary SQLite store and a webhook to the demo's duty-officer receiver.
[daemon]
timezone = "Asia/Shanghai"
state_dir = {state_dir:?}

[http]
listen = "127.0.0.1:0"

[[http.tokens]]
name = "demo-viewer"
role = "viewer"
token = "{viewer}"

[[http.tokens]]
name = "demo-operator"
role = "operator"
token = "{operator}"

[hj212]
listen = "127.0.0.1:0"

[[channels]]
id = "duty-phone"
kind = "webhook"
url = "{url}"
body = '{body}'
"#,
        state_dir = s.state_dir.display().to_string(),
        viewer = s.viewer_token,
        operator = s.operator_token,
        url = s.receiver_url,
        // A TOML literal string: the template holds no single quote (tested).
        body = super::receiver::BODY_TEMPLATE,
    )
}

const DUTY_TOML: &str = r#"# Written by `pollwatch demo`: one officer on duty, every alert to the phone.
[[officers]]
id = "zhangwei"
name = "张伟"
mobile = "13800000001"

[[teams]]
id = "duty"
name = "执法值班室"
members = ["zhangwei"]

[[rotations]]
team = "duty"
shift = "daily"
handover = "08:30"
start = "2020-01-01"

[[routes]]
team = "duty"
channels = ["duty-phone"]
escalation = "tell-on-duty"

[[escalation]]
id = "tell-on-duty"

[[escalation.levels]]
after = "0m"
on_duty = true
"#;

/// An enterprise file's head.
fn head(id: &str, name: &str, district: &str, industry: &str) -> String {
    format!(
        "id = \"{id}\"\nname = \"{name}\"\ndistrict = \"{district}\"\nindustry = \"{industry}\"\n"
    )
}

/// An outlet; `extra` holds its other keys (hj212, o2_reference, …) as TOML lines.
fn outlet(id: &str, name: &str, kind: &str, extra: &str) -> String {
    format!("\n[[outlets]]\nid = \"{id}\"\nname = \"{name}\"\nkind = \"{kind}\"\n{extra}")
}

const CEMENT_KEY_FILE: &str = "keys/cement.key";

fn hj212(logger: (&str, &str, &str)) -> String {
    format!(
        "hj212 = {{ mn = \"{}\", password = \"{}\" }}\n",
        logger.1, logger.2
    )
}

/// `[[outlets.limits]]`: `max` (and `min`) on `basis`, with any `extra` lines.
fn limit(factor: &str, min: Option<f64>, max: f64, basis: &str, extra: &str) -> String {
    let min = min.map(|m| format!("min = {m:?}\n")).unwrap_or_default();
    format!(
        "\n[[outlets.limits]]\nfactor = \"{factor}\"\n{min}max = {max:?}\nbasis = \"{basis}\"\n{extra}"
    )
}

/// A power meter read over DL/T 645 on the converter at `addr`.
fn dlt645_meter(
    id: &str,
    name: &str,
    role: &str,
    meter: &str,
    addr: SocketAddr,
    poll: &str,
) -> String {
    format!(
        r#"
[[meters]]
id = "{id}"
name = "{name}"
role = "{role}"

[meters.device]
protocol = "dlt645"
transport = "rtu-over-tcp"
address = "{addr}"
meter_address = "{meter}"
interval = "{poll}"
timeout = "{poll}"

[[meters.device.points]]
factor = "e_p"
di = "02030000"
scale = {DYEING_CT_RATIO:?}                      # current transformer ratio
"#
    )
}

/// A Modbus TCP holding-register f32 point of an outlet's analyzer gateway.
fn modbus_point(factor: &str, address: u16) -> String {
    format!(
        "\n[[outlets.devices.points]]\nfactor = \"{factor}\"\nregister = \"holding\"\naddress = {address}\ntype = \"f32\"\n"
    )
}

/// Hourly ultra-low emission limits of a flue-gas outlet (PM, SO2, NOx).
fn flue_gas_limits(so2_extra: &str, nox_max: f64) -> String {
    [
        limit("a34013", None, 10.0, "hour", ""),
        limit("a21026", None, 35.0, "hour", so2_extra),
        limit("a21002", None, nox_max, "hour", ""),
    ]
    .concat()
}

fn enterprises(s: &Setup) -> Vec<(&'static str, String)> {
    let poll = millis(s.poll);
    let ph = limit("w01001", Some(6.0), 9.0, "instant", "");
    let power = [
        head(POWER, "东山热电有限公司", "吴中区", "火力发电"),
        outlet(
            "DA001",
            "1#机组烟囱",
            "flue_gas",
            &format!("o2_reference = 6.0\n{}", hj212(LOGGER_POWER)),
        ),
        flue_gas_limits("warn_at = 0.8\n", 50.0),
    ];
    let wwtp = [
        head(WWTP, "城南污水处理厂", "吴中区", "污水处理及其再生利用"),
        outlet("DW001", "总排口", "wastewater", ""),
        limit("w01018", None, 50.0, "day", ""),
        limit("w21003", None, 5.0, "day", ""),
        ph.clone(),
        format!(
            "\n[[outlets.devices]]\nid = \"analyzers\"\nprotocol = \"modbus\"\ntransport = \"tcp\"\naddress = \"{}\"\nunit = 1\ninterval = \"{poll}\"\ntimeout = \"{poll}\"\n",
            s.modbus
        ),
        modbus_point("w01001", REG_PH),
        modbus_point("w01018", REG_COD),
        modbus_point("w21003", REG_NH3N),
    ];
    let dyeing = [
        head(DYEING, "星河印染有限公司", "相城区", "纺织印染"),
        dlt645_meter(
            "M-DYE1",
            "1#染色生产线",
            "production",
            METER_DYE1,
            s.dlt645,
            &poll,
        ),
        dlt645_meter(
            "M-WWT",
            "废水处理站",
            "treatment",
            METER_WWT,
            s.dlt645,
            &poll,
        ),
        r#"
[[linkages]]
id = "dyeing-wwt"
production = ["M-DYE1"]
production_on_kw = 40.0
treatment = ["M-WWT"]
treatment_normal_kw = 120.0
grace = "15m"
"#
        .to_string(),
    ];
    let chemical = [
        head(
            CHEMICAL,
            "北湖精细化工有限公司",
            "相城区",
            "化学原料和化学制品制造",
        ),
        outlet(
            "DW001",
            "废水总排口",
            "wastewater",
            &format!("{}offline_after = \"30m\"\n", hj212(LOGGER_CHEMICAL)),
        ),
        limit("w01018", None, 100.0, "day", ""),
        ph,
    ];
    let cement = [
        head(CEMENT, "西山水泥有限公司", "吴中区", "水泥制造"),
        outlet(
            "DA001",
            "窑尾烟囱",
            "flue_gas",
            &format!(
                "o2_reference = 10.0\nhj212 = {{ mn = \"{}\", password = \"{}\", sm4_key_file = \"{CEMENT_KEY_FILE}\", require_encryption = true }}\n",
                LOGGER_CEMENT.1, LOGGER_CEMENT.2
            ),
        ),
        flue_gas_limits("", 100.0),
    ];
    vec![
        ("dongshan-power.toml", power.concat()),
        ("chengnan-wwtp.toml", wwtp.concat()),
        ("xinghe-dyeing.toml", dyeing.concat()),
        ("beihu-chemical.toml", chemical.concat()),
        ("xishan-cement.toml", cement.concat()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, LoadOptions};

    #[test]
    fn the_generated_config_passes_the_normal_loader() {
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup {
            state_dir: dir.path().join("state"),
            receiver_url: "http://127.0.0.1:9/duty".into(),
            viewer_token: "demo-viewer-0123456789abcdef".into(),
            operator_token: "demo-operator-0123456789abcdef".into(),
            modbus: "127.0.0.1:15020".parse().unwrap(),
            dlt645: "127.0.0.1:15021".parse().unwrap(),
            poll: Duration::from_millis(500),
            cement_sm4_key: "00112233445566778899AABBCCDDEEFF".into(),
        };
        write(&dir.path().join("config"), &setup).unwrap();
        let load = LoadOptions {
            default_state_dir: setup.state_dir.clone(),
        };
        let cfg = match Config::load(&dir.path().join("config"), &load) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let mut ids: Vec<&str> = cfg.enterprises.iter().map(|e| &*e.id).collect();
        ids.sort_unstable();
        let mut want = vec![POWER, WWTP, DYEING, CHEMICAL, CEMENT];
        want.sort_unstable();
        assert_eq!(ids, want);
        assert_eq!(
            cfg.storage_url,
            format!("sqlite://{}/pollwatch.db", setup.state_dir.display())
        );
    }

    #[test]
    fn the_body_template_fits_in_a_toml_literal_string() {
        assert!(!super::super::receiver::BODY_TEMPLATE.contains('\''));
    }
}
