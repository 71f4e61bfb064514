//! Typed config, loaded and validated as a whole (invariant 5).
//!
//! A config directory holds `pollwatch.toml` (the daemon), `enterprises/*.toml`
//! (one file per enterprise) and `duty.toml` (officers, rotations, routes,
//! escalation). [`Config::load`] reads all
//! of it, parses strictly (unknown keys are errors: a misspelt `wran_at` must not
//! silently leave a default in force) and validates across files. It returns either a
//! complete, consistent [`Config`] or every problem found, each placed by file, line
//! and key path. Nothing is half-loaded, which is what lets a reload keep running on
//! the old config when the new one is wrong.

mod alerts;
mod channels;
mod cluster;
mod daemon;
mod device;
mod diag;
pub mod diff;
mod duty;
mod enterprise;
mod keys;
pub mod secrets;
mod units;
pub mod validate;
mod validate_2025;
mod validate_http;
mod validate_listen;
mod validate_notify;
mod validate_rules;

pub use crate::model::check::ClockBounds;
pub use alerts::AlertsSection;
pub use channels::{ChannelConfig, ChannelKind, HttpMethod, MessageFormat, SmtpTls};
pub use cluster::{ClusterSection, MAX_LEASE, MIN_LEASE};
pub use daemon::{
    DaemonFile, DaemonSection, DtuSection, ExtraFactor, ExtraFactorClass, Hj212Section, HttpRole,
    HttpSection, HttpToken, MqttFormat, MqttSection, MqttSubscription, SqliteSync, StorageSection,
};
pub use device::{parse_net, Device, DeviceProtocol, Parity, Point, StatusPoint, Transport};
pub use diag::{ConfigErrors, Diagnostic, SourceMap};
pub use duty::{
    Duty, EscalationLevel, EscalationPolicy, Officer, Override, Rotation, Route, Severity,
    ShiftKind, Team,
};
pub use enterprise::{
    Aggregates, Analyzer, Basis, Contact, EmissionCap, Enterprise, Furnace, Hj212Crc,
    Hj212Identity, Limit, Linkage, Meter, MeterHj212, MeterRole, Order, OrderKind, Outlet,
    OutletKind,
};
pub use units::{HumanDuration, ListenAddr, MinFree};
pub use validate::parse_di;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;

use validate::{Catalogue, Checker};

pub const DAEMON_FILE: &str = "pollwatch.toml";
pub const DUTY_FILE: &str = "duty.toml";
pub const ENTERPRISE_DIR: &str = "enterprises";
pub const DEFAULT_TIMEZONE: Tz = chrono_tz::Asia::Shanghai;

/// What the environment contributes to config; passed in so loading stays pure.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `state_dir` when pollwatch.toml does not set one (the CLI passes systemd's
    /// `$STATE_DIRECTORY`, else `./state`).
    pub default_state_dir: PathBuf,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            default_state_dir: PathBuf::from("state"),
        }
    }
}

/// A loaded, validated config directory.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub daemon: DaemonFile,
    pub timezone: Tz,
    pub state_dir: PathBuf,
    pub storage_url: String,
    /// Sorted by file name; `enterprise_files[i]` is where `enterprises[i]` came from.
    pub enterprises: Vec<Enterprise>,
    pub enterprise_files: Vec<String>,
    pub duty: Duty,
    /// SHA-256 over every file read (name and bytes), hex: tells at a glance, and
    /// in `pollwatch_config_info`, which config a running daemon is on.
    pub hash: String,
}

/// A file read from the config directory, with its source map for diagnostics.
struct Loaded {
    rel: String,
    text: String,
    map: SourceMap,
}

fn read(dir: &Path, rel: &str, required: bool, errors: &mut Vec<Diagnostic>) -> Option<Loaded> {
    let path = dir.join(rel);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let map = SourceMap::new(&text);
            Some(Loaded {
                rel: rel.to_string(),
                text,
                map,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
        Err(e) => {
            errors.push(Diagnostic {
                file: rel.to_string(),
                line: None,
                path: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            });
            None
        }
    }
}

impl Config {
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut hasher = ConfigHasher::default();

        let daemon_file = read(dir, DAEMON_FILE, true, &mut errors);
        hasher.add(daemon_file.as_ref());
        let daemon = match daemon_file {
            Some(f) => match diag::parse_file::<DaemonFile>(&f.rel, &f.text, &f.map) {
                Ok(d) => {
                    validate::daemon(&mut checker(&f, &mut errors), &d);
                    validate_http::http(&mut checker(&f, &mut errors), &d.http);
                    validate_listen::listeners(&mut checker(&f, &mut errors), &d);
                    cluster::cluster(&mut checker(&f, &mut errors), &d);
                    validate_notify::channels(&mut checker(&f, &mut errors), &d.channels);
                    Some(d)
                }
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            None => None,
        };
        let fallback = DaemonFile::default();
        let catalogue = Catalogue::new(daemon.as_ref().unwrap_or(&fallback));

        let mut enterprises: Vec<(Loaded, Enterprise)> = Vec::new();
        for rel in enterprise_files(dir, &mut errors) {
            let Some(f) = read(dir, &rel, true, &mut errors) else {
                continue;
            };
            hasher.add(Some(&f));
            match diag::parse_file::<Enterprise>(&f.rel, &f.text, &f.map) {
                Ok(mut e) => {
                    validate::enterprise(&mut checker(&f, &mut errors), &e, &catalogue);
                    validate_listen::dtu_devices(&mut checker(&f, &mut errors), &e);
                    keys::load_sm4_keys(&mut checker(&f, &mut errors), &mut e, dir);
                    enterprises.push((f, e));
                }
                Err(e) => errors.push(e),
            }
        }
        cross_file(&enterprises, &mut errors);

        let duty_file = read(dir, DUTY_FILE, false, &mut errors);
        hasher.add(duty_file.as_ref());
        let duty = match duty_file {
            Some(f) => match diag::parse_file::<Duty>(&f.rel, &f.text, &f.map) {
                Ok(d) => {
                    validate_notify::officers_and_teams(&mut checker(&f, &mut errors), &d);
                    validate_notify::duty(
                        &mut checker(&f, &mut errors),
                        &d,
                        daemon.as_ref().map(|d| d.channels.as_slice()),
                    );
                    d
                }
                Err(e) => {
                    errors.push(e);
                    Duty::default()
                }
            },
            None => Duty::default(),
        };

        let daemon = match daemon {
            Some(d) if errors.is_empty() => d,
            _ => return Err(ConfigErrors(errors)),
        };
        let timezone = match &daemon.daemon.timezone {
            Some(tz) => tz.parse().unwrap_or(DEFAULT_TIMEZONE),
            None => DEFAULT_TIMEZONE,
        };
        let state_dir = daemon
            .daemon
            .state_dir
            .clone()
            .unwrap_or_else(|| opts.default_state_dir.clone());
        let storage_url =
            daemon.storage.url.clone().unwrap_or_else(|| {
                format!("sqlite://{}", state_dir.join("pollwatch.db").display())
            });
        let (enterprise_files, enterprises) =
            enterprises.into_iter().map(|(f, e)| (f.rel, e)).unzip();
        Ok(Config {
            dir: dir.to_path_buf(),
            daemon,
            timezone,
            state_dir,
            storage_url,
            enterprises,
            enterprise_files,
            duty,
            hash: hasher.finish(),
        })
    }

    pub fn enterprise(&self, id: &str) -> Option<&Enterprise> {
        self.enterprises.iter().find(|e| e.id == id)
    }

    /// How far a logger's DataTime may be from now (see [`crate::model::check`]):
    /// the outlet's override, else `[daemon]`, else 10 minutes ahead, 35 days old.
    pub fn clock_bounds(&self, enterprise: &str, outlet: Option<&str>) -> ClockBounds {
        let o = outlet.and_then(|id| {
            self.enterprise(enterprise)
                .and_then(|e| e.outlets.iter().find(|o| o.id == id))
        });
        let d = &self.daemon.daemon;
        let pick = |own: Option<HumanDuration>, daemon: Option<HumanDuration>, default| {
            own.or(daemon)
                .and_then(|h| chrono::Duration::from_std(h.0).ok())
                .unwrap_or(default)
        };
        let def = ClockBounds::default();
        ClockBounds {
            tolerance: pick(
                o.and_then(|o| o.clock_tolerance),
                d.clock_tolerance,
                def.tolerance,
            ),
            max_age: pick(o.and_then(|o| o.max_data_age), d.max_data_age, def.max_age),
        }
    }

    /// The enterprise and outlet a logger's MN belongs to.
    pub fn outlet_by_mn(&self, mn: &str) -> Option<(&Enterprise, &Outlet)> {
        self.enterprises.iter().find_map(|e| {
            e.outlets
                .iter()
                .find(|o| o.hj212.as_ref().is_some_and(|h| h.mn == mn))
                .map(|o| (e, o))
        })
    }

    /// What `check-config` prints: enough for a sysadmin to see the new file counted.
    pub fn summary(&self) -> String {
        let outlets: Vec<&Outlet> = self.enterprises.iter().flat_map(|e| &e.outlets).collect();
        let flue = outlets
            .iter()
            .filter(|o| o.kind == OutletKind::FlueGas)
            .count();
        let meters: usize = self.enterprises.iter().map(|e| e.meters.len()).sum();
        let limits: usize = outlets.iter().map(|o| o.limits.len()).sum();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "config OK: {} enterprises, {} outlets ({} flue gas, {} wastewater), {} meters, {} limits; {} officers in {} teams",
            self.enterprises.len(),
            outlets.len(),
            flue,
            outlets.len() - flue,
            meters,
            limits,
            self.duty.officers.len(),
            self.duty.teams.len(),
        );
        let _ = writeln!(
            s,
            "storage: {}",
            crate::store::StoreUrl::redacted(&self.storage_url)
        );
        let _ = writeln!(s, "timezone: {}", self.timezone);
        let _ = writeln!(
            s,
            "alerting: {} channels ({}), {} rotations, {} routes, {} escalation policies",
            self.daemon.channels.len(),
            self.daemon
                .channels
                .iter()
                .map(|c| format!("{} {}", c.id, c.kind.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
            self.duty.rotations.len(),
            self.duty.routes.len(),
            self.duty.escalation.len(),
        );
        for (e, file) in self.enterprises.iter().zip(&self.enterprise_files) {
            let _ = writeln!(
                s,
                "  {file}: {} {}{} — {} outlets, {} meters",
                e.id,
                e.name,
                if e.positive_list {
                    " [正面清单]"
                } else {
                    ""
                },
                e.outlets.len(),
                e.meters.len()
            );
            for o in &e.outlets {
                let limits: Vec<String> = o
                    .limits
                    .iter()
                    .map(|l| {
                        let range = match (l.min, l.max) {
                            (Some(a), Some(b)) => format!("{a}–{b}"),
                            (None, Some(b)) => format!("≤{b}"),
                            (Some(a), None) => format!("≥{a}"),
                            (None, None) => String::new(),
                        };
                        format!("{} {} {}", l.factor, range, l.basis.as_str())
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "    outlet {} ({}): {}",
                    o.id,
                    o.kind.as_str(),
                    if limits.is_empty() {
                        "no limits".to_string()
                    } else {
                        limits.join(", ")
                    }
                );
            }
        }
        s
    }
}

#[derive(Default)]
struct ConfigHasher(sha2::Sha256);

impl ConfigHasher {
    fn add(&mut self, f: Option<&Loaded>) {
        use sha2::Digest;
        if let Some(f) = f {
            // Lengths first, so that moving bytes between name and text changes the hash.
            self.0.update((f.rel.len() as u64).to_le_bytes());
            self.0.update(f.rel.as_bytes());
            self.0.update((f.text.len() as u64).to_le_bytes());
            self.0.update(f.text.as_bytes());
        }
    }

    fn finish(self) -> String {
        use sha2::Digest;
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn checker<'a>(f: &'a Loaded, out: &'a mut Vec<Diagnostic>) -> Checker<'a> {
    Checker {
        file: &f.rel,
        map: &f.map,
        out,
    }
}

/// `enterprises/*.toml`, sorted so that errors and summaries come in a stable order.
/// Editor backups (`x.toml~`, `x.toml.bak`) are not `.toml` and are skipped.
fn enterprise_files(dir: &Path, errors: &mut Vec<Diagnostic>) -> Vec<String> {
    let edir = dir.join(ENTERPRISE_DIR);
    let entries = match std::fs::read_dir(&edir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            errors.push(Diagnostic {
                file: ENTERPRISE_DIR.to_string(),
                line: None,
                path: String::new(),
                message: format!("cannot list {}: {e}", edir.display()),
            });
            return Vec::new();
        }
    };
    let mut files: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            (name.ends_with(".toml") && !name.starts_with('.'))
                .then(|| format!("{ENTERPRISE_DIR}/{name}"))
        })
        .collect();
    files.sort();
    files
}

/// Ids and MNs must be unique across the whole city, not just within a file.
fn cross_file(enterprises: &[(Loaded, Enterprise)], errors: &mut Vec<Diagnostic>) {
    let mut ids: HashMap<&str, &str> = HashMap::new();
    let mut mns: HashMap<&str, (&str, &str)> = HashMap::new();
    for (f, e) in enterprises {
        if let Some(first) = ids.insert(&e.id, &f.rel) {
            errors.push(f.map.diagnostic(
                &f.rel,
                "id",
                format!("enterprise id {:?} is already used by {first}", e.id),
            ));
        }
        for (i, o) in e.outlets.iter().enumerate() {
            let Some(h) = &o.hj212 else { continue };
            if let Some((file, outlet)) = mns.insert(&h.mn, (&f.rel, &o.id)) {
                errors.push(f.map.diagnostic(
                    &f.rel,
                    &format!("outlets[{i}].hj212.mn"),
                    format!("MN {:?} is already used by outlet {outlet} in {file}", h.mn),
                ));
            }
        }
    }
}
