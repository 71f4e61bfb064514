//! The limits of the listeners that face other networks and the identity of
//! dial-in DTUs are checked when the config loads (what `check-config` and
//! `reload` report), each error naming its key: a zero limit would refuse every
//! logger, a mistyped network would let a DTU in from anywhere or from nowhere.

use pollwatch::config::{Config, LoadOptions};

const METER: &str = "[[meters]]\nid = \"M{n}\"\nname = \"电表{n}\"\nrole = \"production\"\n\
    [meters.device]\nprotocol = \"modbus\"\ntransport = \"{transport}\"\n{extra}\nunit = {n}\n\
    interval = \"10s\"\n[[meters.device.points]]\nfactor = \"e_p\"\nregister = \"input\"\naddress = 52\ntype = \"f32\"\n";

fn meter(n: u32, transport: &str, extra: &str) -> String {
    METER
        .replace("{n}", &n.to_string())
        .replace("{transport}", transport)
        .replace("{extra}", extra)
}

fn load(daemon: &str, meters: &[String]) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("enterprises")).unwrap();
    std::fs::write(
        dir.path().join("pollwatch.toml"),
        format!("[daemon]\ntimezone = \"Asia/Shanghai\"\n{daemon}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("enterprises/e.toml"),
        format!(
            "id = \"E1\"\nname = \"印染厂\"\ndistrict = \"吴中区\"\nindustry = \"印染\"\n{}",
            meters.concat()
        ),
    )
    .unwrap();
    Config::load(dir.path(), &LoadOptions::default()).map_err(|e| e.to_string())
}

#[test]
fn good_limits_and_dtu_identities_load() {
    let cfg = load(
        "[hj212]\nmax_connections_per_address = 4\n[dtu]\nmax_connections = 100\n",
        &[
            meter(
                1,
                "dtu",
                "dtu_id = \"860000000000001\"\ndtu_allow = [\"10.8.0.0/16\", \"192.0.2.7\"]\ndtu_secret = \"k3Vq-9xZ\"",
            ),
            // The second meter behind the same DTU says the same of it.
            meter(
                2,
                "dtu",
                "dtu_id = \"860000000000001\"\ndtu_allow = [\"10.8.0.0/16\", \"192.0.2.7\"]\ndtu_secret = \"k3Vq-9xZ\"",
            ),
            meter(3, "tcp", "address = \"10.8.0.21:502\""),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.enterprises[0].meters.len(), 3);
}

#[test]
fn each_wrong_limit_or_identity_is_named() {
    let dtu = |extra: &str| meter(1, "dtu", &format!("dtu_id = \"DTU-A\"\n{extra}"));
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "[hj212]\nmax_connections_per_address = 0\n",
            vec![],
            "hj212.max_connections_per_address",
        ),
        (
            "[hj212]\nmax_auth_failures = 0\n",
            vec![],
            "hj212.max_auth_failures",
        ),
        (
            "[dtu]\nmax_connections = 0\n",
            vec![],
            "dtu.max_connections",
        ),
        (
            "[dtu]\nregistration_timeout = \"0s\"\n",
            vec![],
            "dtu.registration_timeout",
        ),
        (
            "[http]\nmax_connections = 0\n",
            vec![],
            "http.max_connections",
        ),
        (
            "",
            vec![dtu("dtu_allow = [\"10.8.0.0/33\"]")],
            "meters[0].device.dtu_allow[0]",
        ),
        (
            "",
            vec![dtu("dtu_secret = \"short\"")],
            "meters[0].device.dtu_secret",
        ),
        (
            "",
            vec![dtu("dtu_secret = \"has a space\"")],
            "meters[0].device.dtu_secret",
        ),
        (
            "",
            vec![meter(1, "dtu", "dtu_id = \"DTU:A\"")],
            "meters[0].device.dtu_id",
        ),
        (
            "",
            vec![meter(
                1,
                "tcp",
                "address = \"10.8.0.21:502\"\ndtu_allow = [\"10.8.0.0/16\"]",
            )],
            "dtu_allow and dtu_secret apply to transport = \"dtu\" only",
        ),
        (
            "",
            vec![
                dtu("dtu_secret = \"secret-one\""),
                meter(2, "dtu", "dtu_id = \"DTU-A\"\ndtu_secret = \"secret-two\""),
            ],
            "must be the same as at meters[0].device",
        ),
    ];
    for (daemon, meters, want) in cases {
        match load(daemon, &meters) {
            Ok(_) => panic!("accepted: {daemon} {meters:?}"),
            Err(e) => assert!(e.contains(want), "{want:?} not in:\n{e}"),
        }
    }
}
