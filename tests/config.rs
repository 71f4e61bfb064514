//! Config loading: the shipped config is valid, and every kind of mistake is
//! reported with file, line and key path — all of them at once.

use std::path::{Path, PathBuf};

use pollwatch::config::{Config, ConfigErrors, LoadOptions};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// A copy of the shipped config that a test may break.
fn copy_config() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped(), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn edit(dir: &Path, rel: &str, f: impl FnOnce(String) -> String) {
    let p = dir.join(rel);
    let text = std::fs::read_to_string(&p).unwrap();
    let new = f(text.clone());
    assert_ne!(new, text, "edit of {rel} changed nothing");
    std::fs::write(p, new).unwrap();
}

/// 1-based line of the first occurrence of `needle` in a config file.
fn line_of(dir: &Path, rel: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(dir.join(rel)).unwrap();
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {rel}"));
    text[..at].matches('\n').count() + 1
}

fn load(dir: &Path) -> Result<Config, ConfigErrors> {
    Config::load(dir, &LoadOptions::default())
}

fn errors(dir: &Path) -> Vec<String> {
    load(dir)
        .unwrap_err()
        .0
        .iter()
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn shipped_config_is_valid_and_realistic() {
    let cfg = load(&shipped()).unwrap();
    assert_eq!(cfg.timezone, chrono_tz::Asia::Shanghai);
    assert!(cfg.enterprises.len() >= 3);
    let (e, o) = cfg.outlet_by_mn("32050600000001").unwrap();
    assert_eq!(e.industry, "火力发电");
    assert_eq!(o.o2_reference, Some(6.0));
    let so2 = o.limits.iter().find(|l| l.factor == "a21026").unwrap();
    assert_eq!(so2.max, Some(35.0));
    let has_ph_range = cfg.enterprises.iter().flat_map(|e| &e.outlets).any(|o| {
        o.limits
            .iter()
            .any(|l| l.factor == "w01001" && l.min == Some(6.0) && l.max == Some(9.0))
    });
    assert!(has_ph_range);
    let meters: Vec<_> = cfg.enterprises.iter().flat_map(|e| &e.meters).collect();
    assert!(meters.iter().any(|m| m.role.as_str() == "production"));
    assert!(meters.iter().any(|m| m.role.as_str() == "treatment"));
    assert!(cfg.summary().starts_with("config OK: "));
}

#[test]
fn every_semantic_mistake_is_placed_by_file_line_and_path() {
    let dir = copy_config();
    let d = dir.path();
    let power = "enterprises/dongshan-power.toml";
    edit(d, power, |t| {
        t.replacen("warn_at = 0.8", "warn_at = 1.5", 1)
    });
    edit(d, power, |t| {
        t.replacen("o2_reference = 6.0", "o2_reference = 21.0", 1)
    });
    let wwtp = "enterprises/chengnan-wwtp.toml";
    edit(d, wwtp, |t| {
        t.replacen("max = 5.0", "max = 5.0\nmin = 7.0", 1)
    });
    edit(d, wwtp, |t| {
        t.replacen("factor = \"w21011\"", "factor = \"w99999\"", 1)
    });
    let errs = errors(d);
    let want = [
        format!(
            "{power}:{}: outlets[0].limits[1].warn_at: must be in (0, 1], got 1.5",
            line_of(d, power, "warn_at = 1.5")
        ),
        format!(
            "{power}:{}: outlets[0].o2_reference: must be in [0, 21) %, got 21",
            line_of(d, power, "o2_reference = 21.0")
        ),
        format!(
            "{wwtp}:{}: outlets[0].limits[1].min: must be below max, got min 7 ≥ max 5",
            line_of(d, wwtp, "min = 7.0")
        ),
        format!(
            "{wwtp}:{}: outlets[0].limits[2].factor: unknown factor code \"w99999\"",
            line_of(d, wwtp, "w99999")
        ),
    ];
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
    for w in want {
        assert!(
            errs.iter().any(|e| e.starts_with(&w)),
            "missing {w:?} in {errs:#?}"
        );
    }
}

#[test]
fn structural_mistakes_name_the_key_and_line() {
    let dir = copy_config();
    let d = dir.path();
    let dye = "enterprises/xinghe-dyeing.toml";
    edit(d, dye, |t| {
        t.replacen(
            "industry = \"纺织印染\"",
            "industry = \"纺织印染\"\nwebsite = \"x\"",
            1,
        )
    });
    let power = "enterprises/dongshan-power.toml";
    edit(d, power, |t| {
        t.replacen("basis = \"hour\"", "basis = \"hourly\"", 1)
    });
    edit(d, "pollwatch.toml", |t| {
        t.replacen("listen = \"127.0.0.1:9180\"", "listen = \"localhost\"", 1)
    });
    let errs = errors(d);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    let line = line_of(d, dye, "website");
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("{dye}:{line}: website: unknown field `website`"))),
        "{errs:#?}"
    );
    let line = line_of(d, power, "\"hourly\"");
    assert!(
        errs.iter().any(|e| e.starts_with(&format!(
            "{power}:{line}: outlets[0].limits[0].basis: unknown variant `hourly`"
        ))),
        "{errs:#?}"
    );
    let line = line_of(d, "pollwatch.toml", "\"localhost\"");
    assert!(errs.iter().any(|e| e == &format!("pollwatch.toml:{line}: http.listen: expected IP:port such as \"127.0.0.1:9180\", got \"localhost\"")), "{errs:#?}");
}

#[test]
fn ids_and_mns_must_be_unique_across_files() {
    let dir = copy_config();
    let d = dir.path();
    let dye = "enterprises/xinghe-dyeing.toml";
    edit(d, dye, |t| {
        t.replacen("32050700000201", "32050600000101", 1)
    });
    edit(d, dye, |t| {
        t.replacen("91320507MA1PW0003C", "91320506MA1PW0001A", 1)
    });
    let errs = errors(d);
    assert!(errs.iter().any(|e| e.contains(&format!("{dye}:{}: outlets[0].hj212.mn: MN \"32050600000101\" is already used by outlet DW001 in enterprises/chengnan-wwtp.toml", line_of(d, dye, "32050600000101")))), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains(&format!("{dye}:{}: id: enterprise id \"91320506MA1PW0001A\" is already used by enterprises/dongshan-power.toml", line_of(d, dye, "id = ")))), "{errs:#?}");
}

#[test]
fn domain_rules_are_enforced() {
    let dir = copy_config();
    let d = dir.path();
    let wwtp = "enterprises/chengnan-wwtp.toml";
    // pH is judged per value, never averaged; SO2 does not belong in wastewater.
    edit(d, wwtp, |t| {
        t.replacen(
            "max = 9.0\nbasis = \"instant\"",
            "max = 9.0\nbasis = \"day\"",
            1,
        )
    });
    edit(d, wwtp, |t| {
        t.replacen("factor = \"w21001\"", "factor = \"a21026\"", 1)
    });
    edit(d, "duty.toml", |t| {
        t.replacen(
            "members = [\"zhaomin\", \"sunli\"]",
            "members = [\"zhaomin\", \"nobody\"]",
            1,
        )
    });
    let errs = errors(d);
    assert!(
        errs.iter()
            .any(|e| e.contains("outlets[0].limits[4].basis: pH is judged per value")),
        "{errs:#?}"
    );
    assert!(
        errs.iter().any(|e| e.contains(
            "outlets[0].limits[3].factor: a21026 does not belong on a wastewater outlet"
        )),
        "{errs:#?}"
    );
    assert!(
        errs.iter().any(|e| e.starts_with("duty.toml:")
            && e.contains("teams[1].members[1]: no officer with id \"nobody\"")),
        "{errs:#?}"
    );
}

#[test]
fn broken_syntax_and_missing_files_are_named() {
    let dir = copy_config();
    let d = dir.path();
    edit(d, "enterprises/xinghe-dyeing.toml", |t| {
        t.replacen(
            "name = \"星河印染有限公司\"",
            "name = \"星河印染有限公司",
            1,
        )
    });
    std::fs::remove_file(d.join("pollwatch.toml")).unwrap();
    let errs = errors(d);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("pollwatch.toml: cannot read")),
        "{errs:#?}"
    );
    let line = line_of(d, "enterprises/xinghe-dyeing.toml", "name = \"星河");
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("enterprises/xinghe-dyeing.toml:{line}:"))),
        "{errs:#?}"
    );
}

#[test]
fn local_factor_codes_can_be_declared() {
    let dir = copy_config();
    let d = dir.path();
    edit(d, "enterprises/chengnan-wwtp.toml", |t| {
        t.replacen("factor = \"w21001\"", "factor = \"w20117\"", 1)
    });
    assert!(errors(d)
        .iter()
        .any(|e| e.contains("unknown factor code \"w20117\"")));
    edit(d, "pollwatch.toml", |t| {
        t + "\n[[factors]]\ncode = \"w20117\"\nname = \"六价铬\"\nunit = \"mg/L\"\nclass = \"water_pollutant\"\n"
    });
    load(d).unwrap();
}

#[test]
fn polled_devices_are_validated() {
    let dir = copy_config();
    let d = dir.path();
    let dye = "enterprises/xinghe-dyeing.toml";
    edit(d, dye, |t| {
        t.replacen(
            "role = \"production\"\n",
            "role = \"production\"\n\n[meters.device]\nprotocol = \"modbus\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:1502\"\ninterval = \"10s\"\n\n[[meters.device.points]]\nfactor = \"e_p\"\nregister = \"coil\"\naddress = 52\ntype = \"f32\"\n",
            1,
        )
    });
    edit(d, dye, |t| {
        t.replacen(
            "role = \"total\"\n",
            "role = \"total\"\n\n[meters.device]\nprotocol = \"dlt645\"\ntransport = \"rtu\"\nport = \"/dev/ttyUSB0\"\nmeter_address = \"00000000016\"\n\n[[meters.device.points]]\nfactor = \"e_p\"\ndi = \"0203000G\"\n",
            1,
        )
    });
    let errs = errors(d);
    for want in [
        "meters[0].device: a Modbus device needs unit (its unit id)",
        "meters[0].device.points[0].type: coils and discrete inputs are read as type \"bool\", registers as numbers",
        "meters[3].device.meter_address: must be 12 digits, got \"00000000016\"",
        "meters[3].device.points[0].di: must be 8 hex digits, e.g. \"02030000\"",
    ] {
        assert!(errs.iter().any(|e| e.contains(want)), "missing {want:?} in {errs:#?}");
    }
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(errs.iter().all(|e| e.starts_with(dye)));
}

#[test]
fn dtu_settings_are_validated() {
    let dir = copy_config();
    let d = dir.path();
    edit(d, "pollwatch.toml", |t| {
        t + "\n[dtu]\nlisten = \"127.0.0.1:9300\"\nheartbeat_hex = \"FEF\"\n"
    });
    let errs = errors(d);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains("dtu.heartbeat_hex: must be pairs of hex digits"),
        "{errs:#?}"
    );
}

#[test]
fn mqtt_urls_and_tls_files_are_checked() {
    let dir = copy_config();
    let d = dir.path();
    edit(d, "pollwatch.toml", |t| {
        format!(
            "{t}\n[mqtt]\nurl = \"tcp://broker:1883\"\nclient_cert_file = \"/etc/pollwatch/c.pem\"\n"
        )
    });
    let errs = errors(d);
    assert!(
        errs.iter().any(|e| e.starts_with("pollwatch.toml:")
            && e.contains("mqtt.url")
            && e.contains("must start with mqtt:// or mqtts://")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("set client_cert_file and client_key_file together")),
        "{errs:#?}"
    );

    let dir = copy_config();
    let d = dir.path();
    edit(d, "pollwatch.toml", |t| {
        format!("{t}\n[mqtt]\nurl = \"mqtt://broker\"\nca_file = \"/etc/pollwatch/ca.pem\"\n")
    });
    let errs = errors(d);
    assert!(
        errs.iter()
            .any(|e| e.contains("ca_file and client certificates need an mqtts:// url")),
        "{errs:#?}"
    );

    let dir = copy_config();
    let d = dir.path();
    edit(d, "pollwatch.toml", |t| {
        format!(
            "{t}\n[mqtt]\nurl = \"mqtts://broker.example\"\nca_file = \"/etc/pollwatch/ca.pem\"\n"
        )
    });
    let cfg = load(d).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.daemon.mqtt.unwrap().ca_file.unwrap(),
        std::path::Path::new("/etc/pollwatch/ca.pem")
    );
}

#[test]
fn rules_config_mistakes_are_placed_by_file_line_and_path() {
    let dir = copy_config();
    let d = dir.path();
    let power = "enterprises/dongshan-power.toml";
    edit(d, power, |t| {
        t.replacen("treatment = [\"M-FGD\"]", "treatment = [\"M-FDG\"]", 1)
    });
    edit(d, power, |t| {
        t.replacen(
            "production = [\"M-BOILER1\"]\nproduction_on_kw = 80.0\ntreatment = [\"M-SCR\"]",
            "production = [\"M-FGD\"]\nproduction_on_kw = 80.0\ntreatment = [\"M-SCR\"]",
            1,
        )
    });
    edit(d, power, |t| {
        t.replacen("allowed_share = 0.6", "allowed_share = 1.5", 1)
    });
    edit(d, power, |t| {
        t.replacen(
            "end = 2026-12-12T00:00:00+08:00",
            "end = 2026-12-09T00:00:00+08:00",
            1,
        )
    });
    edit(d, power, |t| {
        t.replacen("tonnes_per_year = 310.0", "tonnes_per_year = 0.0", 1)
    });
    edit(d, power, |t| {
        t.replacen(
            "{ factor = \"a21026\", range = 200.0 }",
            "{ factor = \"a21026\", range = -1.0 }",
            1,
        )
    });
    let dye = "enterprises/xinghe-dyeing.toml";
    edit(d, dye, |t| {
        t.replacen("for = \"10m\"", "for = \"10m\"\nrepeat = 3", 1)
    });
    edit(d, dye, |t| {
        t.replacen(
            "basis = \"day\"\nwarn_at = 0.9",
            "basis = \"day\"\nwarn_at = 0.9\nrepeat = 2",
            1,
        )
    });
    let errs = errors(d);
    let want = [
        format!("{power}:{}: linkages[0].treatment[0]: no meter with id \"M-FDG\"", line_of(d, power, "M-FDG")),
        format!(
            "{power}:{}: linkages[1].production[0]: meter \"M-FGD\" has role \"treatment\", expected \"production\"",
            line_of(d, power, "production = [\"M-FGD\"]")
        ),
        format!("{power}:{}: orders[0].allowed_share: must be in [0, 1), got 1.5", line_of(d, power, "allowed_share = 1.5")),
        format!("{power}:{}: orders[0].end: must be after start", line_of(d, power, "end = 2026-12-09")),
        format!("{power}:{}: emission_caps[0].tonnes_per_year: must be a finite number > 0, got 0", line_of(d, power, "tonnes_per_year = 0.0")),
        format!("{power}:{}: outlets[0].analyzers[0].range: must be a finite number > 0, got -1", line_of(d, power, "range = -1.0")),
        format!("{dye}:{}: outlets[0].limits[2]: set for or repeat, not both", line_of(d, dye, "factor = \"w01001\"") - 1),
        format!("{dye}:{}: outlets[0].limits[0]: for and repeat suppress single spikes", line_of(d, dye, "factor = \"w01018\"") - 1),
    ];
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
    for w in want {
        assert!(
            errs.iter().any(|e| e.starts_with(&w)),
            "missing {w:?} in {errs:#?}"
        );
    }
}

#[test]
fn an_order_time_needs_its_offset() {
    let dir = copy_config();
    let d = dir.path();
    let power = "enterprises/dongshan-power.toml";
    edit(d, power, |t| {
        t.replacen(
            "start = 2026-12-10T00:00:00+08:00",
            "start = 2026-12-10T00:00:00",
            1,
        )
    });
    let errs = errors(d);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with(&format!(
            "{power}:{}",
            line_of(d, power, "start = 2026-12-10T00:00:00")
        )),
        "{errs:#?}"
    );
    assert!(errs[0].contains("offset"), "{errs:#?}");
}

#[test]
fn console_session_lifetime_must_be_between_five_minutes_and_seven_days() {
    for (value, ok) in [
        ("\"4m\"", false),
        ("\"5m\"", true),
        ("\"7d\"", true),
        ("\"8d\"", false),
    ] {
        let dir = copy_config();
        let d = dir.path();
        edit(d, "pollwatch.toml", |t| {
            t.replace(
                "session_lifetime = \"12h\"",
                &format!("session_lifetime = {value}"),
            )
        });
        match load(d) {
            Ok(_) => assert!(ok, "{value} accepted"),
            Err(e) => {
                assert!(!ok, "{value} refused: {e:?}");
                let line = line_of(d, "pollwatch.toml", "session_lifetime");
                let errs = errors(d);
                assert_eq!(
                    errs,
                    vec![format!("pollwatch.toml:{line}: http.session_lifetime: must be between 5m and 7d (a console login lasts this long)")],
                );
            }
        }
    }
}
