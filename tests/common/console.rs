//! The web console under test: a daemon config with console tokens, a browser-
//! like HTTP client (no redirects followed, cookies by hand), and alerts seeded
//! through the store as the alerts engine would record them.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use pollwatch::sim::hj212_logger::cp_values;
use pollwatch::sim::LoggerSim;
use pollwatch::sources::hj212::codec::time::LocalDateTime;
use pollwatch::store::{NewAlert, Store};

pub const VIEWER: &str = "viewer-token-0123456789";
pub const OPERATOR: &str = "operator-token-0123456789";

/// The daemon listens on ports the system picks (port 0): a port found free
/// beforehand can be taken by a parallel test before the daemon binds it. The
/// ports are learnt from the daemon's ready line ([`ConsoleConfig::bound`]).
pub struct ConsoleConfig {
    pub dir: PathBuf,
    hj212_port: std::cell::Cell<u16>,
    http_port: std::cell::Cell<u16>,
    pub db: PathBuf,
}

impl ConsoleConfig {
    /// Learns the listeners' ports from the started daemon.
    pub fn bound(&self, daemon: &super::daemon::Daemon) {
        let port = |key: &str| {
            daemon
                .field(key)
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .port()
        };
        self.hj212_port.set(port("hj212"));
        self.http_port.set(port("http"));
    }

    pub fn hj212_port(&self) -> u16 {
        let p = self.hj212_port.get();
        assert_ne!(p, 0, "call bound() after starting the daemon");
        p
    }

    pub fn base(&self) -> String {
        let p = self.http_port.get();
        assert_ne!(p, 0, "call bound() after starting the daemon");
        format!("http://127.0.0.1:{p}")
    }

    pub fn toml(&self) -> PathBuf {
        self.dir.join("pollwatch.toml")
    }
}

/// A power plant with one flue-gas outlet, SO2 limited to 35 mg/m³ hourly,
/// whose logger is `MN-DS-01` / `123456`.
pub const E1_TOML: &str =
    "id = \"E1\"\nname = \"东山热电\"\ndistrict = \"吴中区\"\nindustry = \"火电\"\n\
     [[outlets]]\nid = \"DA001\"\nname = \"1#锅炉烟囱\"\nkind = \"flue_gas\"\no2_reference = 6.0\n\
     offline_after = \"3650d\"\n\
     hj212 = { mn = \"MN-DS-01\", password = \"123456\" }\n\
     [[outlets.limits]]\nfactor = \"a21026\"\nmax = 35.0\nbasis = \"hour\"\n";

/// One officer, 张伟, whose team gets every alert on the `wecom` channel.
pub const DUTY_TOML: &str =
    "[[officers]]\nid = \"zhangwei\"\nname = \"张伟\"\nmobile = \"13800000001\"\n\
     [[teams]]\nid = \"wuzhong\"\nname = \"吴中区执法大队\"\nmembers = [\"zhangwei\"]\n\
     [[routes]]\nteam = \"wuzhong\"\nchannels = [\"wecom\"]\n";

/// E1 with `n` flue-gas outlets `DA000…`, logger `MN-000…` (password 123456),
/// SO2 ≤ 35 by the hour, never offline: an enterprise file for tests that count
/// alerts per outlet.
pub fn e1_outlets(n: usize) -> String {
    let mut e1 = String::from(
        "id = \"E1\"\nname = \"东山热电\"\ndistrict = \"吴中区\"\nindustry = \"火电\"\n",
    );
    for i in 0..n {
        e1.push_str(&format!(
            "[[outlets]]\nid = \"DA{i:03}\"\nname = \"{i}#烟囱\"\nkind = \"flue_gas\"\no2_reference = 6.0\n\
             offline_after = \"3650d\"\nhj212 = {{ mn = \"MN-{i:03}\", password = \"123456\" }}\n\
             [[outlets.limits]]\nfactor = \"a21026\"\nmax = 35.0\nbasis = \"hour\"\n"
        ));
    }
    e1
}

/// E1's logger uploads an SO2 hourly mean of 41.2 mg/m³ (limit 35) for
/// 2026-11-27 09:00 over the real HJ 212 listener on `port`.
pub async fn upload_exceedance(port: u16) {
    upload_exceedance_as(port, "MN-DS-01").await
}

/// The same hour's SO2 exceedance from the logger `mn` (password 123456).
pub async fn upload_exceedance_as(port: u16, mn: &str) {
    let mut logger = LoggerSim::new(format!("127.0.0.1:{port}").parse().unwrap(), mn, "123456");
    logger.st = "31".into();
    let hour = LocalDateTime {
        year: 2026,
        month: 11,
        day: 27,
        hour: 9,
        minute: 0,
        second: 0,
    };
    // 2061: the logger's hourly means. At 6 % O2 the corrected value is the measured one.
    let cp = cp_values("Avg", &[("a21026", 41.2, 'N'), ("a19001", 6.0, 'N')]);
    logger.upload("2061", hour, &cp).await.unwrap();
}

/// Opens E1's SO2 exceedance alert (41.2 against 35) at `at`, as the engine would.
pub async fn seed_e1_exceedance(store: &Store, at: DateTime<Utc>) -> i64 {
    seed_alert(
        store,
        "E1",
        "outlet:DA001",
        "a21026",
        "exceedance",
        "major",
        41.2,
        at,
    )
    .await
}

/// Two enterprises in two districts; E2's name tries to inject a script.
/// `http_extra` goes into `[http]`.
pub fn write_config(dir: &Path, http_extra: &str) -> ConsoleConfig {
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("enterprises")).unwrap();
    std::fs::write(
        cfg.join("pollwatch.toml"),
        format!(
            "[daemon]\nstate_dir = {state:?}\nmax_data_age = \"36500d\"\n[hj212]\nlisten = \"127.0.0.1:0\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n{http_extra}\n\
             [[http.tokens]]\nname = \"board\"\nrole = \"viewer\"\ntoken = \"{VIEWER}\"\n\
             [[http.tokens]]\nname = \"desk\"\nrole = \"operator\"\ntoken = \"{OPERATOR}\"\n",
            state = dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(cfg.join("enterprises/e1.toml"), E1_TOML).unwrap();
    std::fs::write(
        cfg.join("enterprises/e2.toml"),
        "id = \"E2\"\nname = \"<script>alert(1)</script>化工\"\ndistrict = \"相城区\"\nindustry = \"化工\"\n\
         [[outlets]]\nid = \"DW001\"\nname = \"总排口\"\nkind = \"wastewater\"\n\
         offline_after = \"3650d\"\n",
    )
    .unwrap();
    ConsoleConfig {
        dir: cfg,
        hj212_port: Default::default(),
        http_port: Default::default(),
        db: dir.join("state/pollwatch.db"),
    }
}

impl ConsoleConfig {
    /// Notifications to a WeCom-shaped receiver at `url`, for 张伟.
    pub fn with_wecom(&self, url: &str) {
        let mut text = std::fs::read_to_string(self.toml()).unwrap();
        text.push_str(&format!(
            "\n[alerts]\nconsole_url = \"http://console.example\"\n\n\
             [[channels]]\nid = \"wecom\"\nkind = \"wecom\"\nurl = \"{url}\"\nformat = \"text\"\nmention = true\n"
        ));
        std::fs::write(self.toml(), text).unwrap();
        std::fs::write(self.dir.join("duty.toml"), DUTY_TOML).unwrap();
    }
}

/// A client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in with `token`; returns the status and the `Set-Cookie` header.
pub async fn login(c: &reqwest::Client, base: &str, token: &str) -> (u16, Option<String>) {
    let r = c
        .post(format!("{base}/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), cookie)
}

/// The daemon of a fresh [`write_config`], logging to `dir/daemon.log`.
pub fn start(dir: &Path) -> (ConsoleConfig, super::daemon::Daemon) {
    let cfg = write_config(dir, "");
    let daemon = super::daemon::Daemon::start(&cfg.dir, Some(&dir.join("daemon.log")));
    cfg.bound(&daemon);
    (cfg, daemon)
}

/// The daemon of a fresh [`write_config`] with [`write_power_plant`] around `now`.
pub fn start_power_plant(dir: &Path, now: DateTime<Utc>) -> (ConsoleConfig, super::daemon::Daemon) {
    let cfg = write_config(dir, "");
    write_power_plant(&cfg, now);
    let daemon = super::daemon::Daemon::start(&cfg.dir, Some(&dir.join("daemon.log")));
    cfg.bound(&daemon);
    (cfg, daemon)
}

/// Logs in with `token` and returns the cookie to send back.
pub async fn session(c: &reqwest::Client, base: &str, token: &str) -> String {
    let (status, set) = login(c, base, token).await;
    assert_eq!(status, 303, "login");
    cookie_pair(&set.expect("a session cookie"))
}

/// `name=value` of a `Set-Cookie` header, to send back.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_string()
}

/// A page fetched with a session cookie: status and body.
pub async fn get(c: &reqwest::Client, url: &str, cookie: &str) -> (u16, String) {
    let r = c.get(url).header("cookie", cookie).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The CSRF token a page carries for its script.
pub fn csrf_of(page: &str) -> String {
    let at = page
        .find(r#"<meta name="csrf-token" content=""#)
        .unwrap_or_else(|| panic!("no csrf meta in {page}"));
    let rest = &page[at + r#"<meta name="csrf-token" content=""#.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The store of a daemon's state directory (a second connection beside it).
pub async fn open_store(db: &Path) -> Store {
    Store::open(&format!("sqlite://{}", db.display()), &Default::default())
        .await
        .unwrap()
}

/// Opens (or updates) an alert as the engine would, without notifications.
#[allow(clippy::too_many_arguments)]
pub async fn seed_alert(
    store: &Store,
    enterprise: &str,
    location: &str,
    factor: &str,
    rule: &str,
    severity: &str,
    value: f64,
    at: DateTime<Utc>,
) -> i64 {
    seed_alert_on(
        store,
        [enterprise, location, factor, rule, severity],
        value,
        at,
        None,
    )
    .await
}

/// [`seed_alert`], recording the stored finding `finding` on it.
pub async fn seed_alert_on(
    store: &Store,
    [enterprise, location, factor, rule, severity]: [&str; 5],
    value: f64,
    at: DateTime<Utc>,
    finding: Option<i64>,
) -> i64 {
    let a = NewAlert {
        key: format!("{enterprise}|{location}|{factor}|{rule}"),
        enterprise: enterprise.into(),
        location: location.into(),
        factor: factor.into(),
        rule: rule.into(),
        severity: severity.into(),
        rank: pollwatch::alerts::rank(severity),
        value: Some(value),
        threshold: Some(35.0),
        message: format!("{enterprise} {factor} {value}"),
        facts: "{}".into(),
    };
    store
        .record_finding(
            &a,
            finding,
            "{}",
            at,
            chrono::Duration::minutes(60),
            1000,
            &[],
            pollwatch::alerts::rank,
        )
        .await
        .unwrap()
        .alert_id
}

/// A plant with production and treatment meters, a linkage between them and a
/// stop order in force from an hour ago to an hour from `now`.
pub fn write_power_plant(cfg: &ConsoleConfig, now: DateTime<Utc>) {
    let t = |h: i64| (now + chrono::Duration::hours(h)).to_rfc3339();
    std::fs::write(
        cfg.dir.join("enterprises/e3.toml"),
        format!(
            "id = \"E3\"\nname = \"西山印染\"\ndistrict = \"吴中区\"\nindustry = \"印染\"\n\
             [[outlets]]\nid = \"DA001\"\nname = \"定型机废气\"\nkind = \"flue_gas\"\no2_reference = 6.0\n\
             offline_after = \"3650d\"\n\
             [[outlets.limits]]\nfactor = \"a21026\"\nmax = 35.0\nbasis = \"hour\"\n\
             [[meters]]\nid = \"M-PROD\"\nname = \"定型机电表\"\nrole = \"production\"\nbaseline_kw = 300.0\n\
             [[meters]]\nid = \"M-TREAT\"\nname = \"喷淋塔电表\"\nrole = \"treatment\"\n\
             [[linkages]]\nid = \"dryer-scrubber\"\nproduction = [\"M-PROD\"]\nproduction_on_kw = 50.0\n\
             treatment = [\"M-TREAT\"]\ntreatment_normal_kw = 40.0\n\
             [[orders]]\nid = \"ORD-1\"\nkind = \"stop\"\nstart = \"{}\"\nend = \"{}\"\nmeters = [\"M-PROD\"]\n",
            t(-1),
            t(1)
        ),
    )
    .unwrap();
}

/// A JSON API answer, asked with a viewer's bearer token as another program would.
pub async fn api_json(url: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
