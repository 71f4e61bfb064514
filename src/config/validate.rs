//! Semantic checks on parsed config. Each check pushes a diagnostic and carries on,
//! so one run lists every mistake in every file.

use std::collections::{HashMap, HashSet};

use super::daemon::DaemonFile;
use super::device::{Device, DeviceProtocol, Point, Transport};
use super::diag::{Diagnostic, SourceMap};
use super::enterprise::{Basis, Enterprise, Limit, Outlet, OutletKind};
pub use super::validate_rules::runtime_order;
use super::validate_rules::{fraction, non_zero, positive, rules};
use crate::model::{self, FactorClass};
use crate::sources::dlt645::types::MeterAddress;
use crate::sources::dlt645::value as dlt645_value;
use crate::sources::modbus::decode::DataType;
use crate::sources::modbus::scale::Scaling;

/// Collects diagnostics for one file.
pub struct Checker<'a> {
    pub file: &'a str,
    pub map: &'a SourceMap,
    pub out: &'a mut Vec<Diagnostic>,
}

impl Checker<'_> {
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        self.out.push(self.map.diagnostic(self.file, path, message));
    }

    pub(super) fn id(&mut self, path: &str, id: &str) {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            self.error(
                path,
                format!("must be 1–64 characters of A–Z, a–z, 0–9, '_', '-', '.', got {id:?}"),
            );
        }
    }

    pub(super) fn non_empty(&mut self, path: &str, s: &str) {
        if s.trim().is_empty() {
            self.error(path, "must not be empty");
        }
    }

    pub(super) fn mobile(&mut self, path: &str, m: &str) {
        let digits = m.strip_prefix("+86").unwrap_or(m);
        if digits.len() != 11 || !digits.chars().all(|c| c.is_ascii_digit()) {
            self.error(
                path,
                format!("must be an 11-digit mobile number, got {m:?}"),
            );
        }
    }
}

/// Factor codes config may refer to: the built-in catalogue plus `[[factors]]`.
pub struct Catalogue<'a> {
    extra: HashMap<&'a str, FactorClass>,
}

impl<'a> Catalogue<'a> {
    pub fn new(daemon: &'a DaemonFile) -> Self {
        Catalogue {
            extra: daemon
                .factors
                .iter()
                .map(|f| (f.code.as_str(), f.class.into()))
                .collect(),
        }
    }

    pub fn class(&self, code: &str) -> Option<FactorClass> {
        model::factor(code)
            .map(|f| f.class)
            .or_else(|| self.extra.get(code).copied())
    }
}

/// `clock_tolerance` (at most a day: more is not a clock's drift) and
/// `max_data_age` (at least an hour, so a logger's backlog can still arrive).
fn clock_keys(
    c: &mut Checker<'_>,
    p: &str,
    tolerance: Option<super::HumanDuration>,
    max_age: Option<super::HumanDuration>,
) {
    if let Some(t) = tolerance {
        if t.0.is_zero() || t.0 > std::time::Duration::from_secs(86_400) {
            c.error(
                &format!("{p}.clock_tolerance"),
                format!("must be longer than 0s and at most 1d, got {t}"),
            );
        }
    }
    if let Some(a) = max_age {
        if a.0 < std::time::Duration::from_secs(3600) {
            c.error(
                &format!("{p}.max_data_age"),
                format!("must be at least 1h (a logger's backlog must still be accepted), got {a}"),
            );
        }
    }
}

pub fn daemon(c: &mut Checker<'_>, d: &DaemonFile) {
    if let Some(tz) = &d.daemon.timezone {
        if tz.parse::<chrono_tz::Tz>().is_err() {
            c.error(
                "daemon.timezone",
                format!("unknown time zone {tz:?}; use an IANA name such as \"Asia/Shanghai\""),
            );
        }
    }
    clock_keys(c, "daemon", d.daemon.clock_tolerance, d.daemon.max_data_age);
    if let Some(url) = &d.storage.url {
        if let Err(e) = crate::store::StoreUrl::parse(url) {
            c.error("storage.url", e.to_string());
        }
    }
    if d.storage.max_batch == 0 {
        c.error("storage.max_batch", "must be at least 1");
    }
    if d.evidence.anchor_at().is_none() {
        c.error(
            "evidence.anchor_time",
            "expected a local time as HH:MM, such as \"00:10\"",
        );
    }
    if d.storage.queue == 0 {
        c.error("storage.queue", "must be at least 1");
    }
    if d.dtu.heartbeat_bytes().is_none() {
        c.error(
            "dtu.heartbeat_hex",
            "must be pairs of hex digits, e.g. \"FE\" or \"48 42\"",
        );
    }
    if d.dtu.heartbeat_hex.is_some() && !d.dtu.heartbeat.is_empty() {
        c.error("dtu", "set heartbeat or heartbeat_hex, not both");
    }
    let h = &d.hj212;
    if h.max_connections == 0 {
        c.error("hj212.max_connections", "must be at least 1");
    }
    if !(64..=9999).contains(&h.max_frame_len) {
        c.error(
            "hj212.max_frame_len",
            format!(
                "must be in 64..=9999 (the length field has 4 digits), got {}",
                h.max_frame_len
            ),
        );
    }
    if !(1..=1000).contains(&h.backfill_rate) {
        c.error(
            "hj212.backfill_rate",
            format!(
                "must be in 1..=1000 requests per second, got {}",
                h.backfill_rate
            ),
        );
    }
    let age = h.backfill_max_age.0.as_secs();
    if !(3600..=31 * 86400).contains(&age) {
        c.error(
            "hj212.backfill_max_age",
            "must be between 1h and 31d (the repair window is 10 days)",
        );
    }
    if !(1..=3600).contains(&h.backfill_timeout.0.as_secs()) {
        c.error("hj212.backfill_timeout", "must be between 1s and 1h");
    }
    if h.idle_timeout.0.is_zero() || h.handshake_timeout.0.is_zero() {
        c.error(
            "hj212",
            "idle_timeout and handshake_timeout must be longer than 0s",
        );
    }
    for rule in d.alerts.severity.keys() {
        if rule.parse::<crate::rules::RuleName>().is_err() {
            c.error(
                &format!("alerts.severity.{rule}"),
                format!("no rule named {rule:?}"),
            );
        }
    }
    if d.alerts.hold.0.is_zero() || d.alerts.flap_window.0.is_zero() {
        c.error("alerts", "hold and flap_window must be longer than 0s");
    }
    if let Some(m) = &d.mqtt {
        match crate::sources::mqtt::conn::BrokerUrl::parse(&m.url) {
            Err(e) => c.error("mqtt.url", e.to_string()),
            Ok(url) if !url.tls => {
                if m.ca_file.is_some()
                    || m.client_cert_file.is_some()
                    || m.client_key_file.is_some()
                {
                    c.error(
                        "mqtt.url",
                        "ca_file and client certificates need an mqtts:// url",
                    );
                }
            }
            Ok(_) => {}
        }
        if m.client_cert_file.is_some() != m.client_key_file.is_some() {
            c.error("mqtt", "set client_cert_file and client_key_file together");
        }
        if m.password_file.is_some() && m.password_env.is_some() {
            c.error("mqtt", "set password_file or password_env, not both");
        }
        for (i, sub) in m.subscriptions.iter().enumerate() {
            if let Err(e) = crate::sources::mqtt::topic::TopicPattern::parse(&sub.topic) {
                c.error(&format!("mqtt.subscriptions[{i}].topic"), e.to_string());
            }
        }
    }
    let mut seen = HashSet::new();
    for (i, f) in d.factors.iter().enumerate() {
        let p = format!("factors[{i}]");
        c.id(&format!("{p}.code"), &f.code);
        if model::factor(&f.code).is_some() || model::factor_by_alias(&f.code).is_some() {
            c.error(
                &format!("{p}.code"),
                format!("{:?} is already in the built-in catalogue", f.code),
            );
        }
        if !seen.insert(f.code.as_str()) {
            c.error(
                &format!("{p}.code"),
                format!("{:?} is declared twice", f.code),
            );
        }
        c.non_empty(&format!("{p}.name"), &f.name);
    }
}

pub fn enterprise(c: &mut Checker<'_>, e: &Enterprise, cat: &Catalogue<'_>) {
    c.id("id", &e.id);
    c.non_empty("name", &e.name);
    c.non_empty("district", &e.district);
    c.non_empty("industry", &e.industry);
    for (i, contact) in e.contacts.iter().enumerate() {
        c.non_empty(&format!("contacts[{i}].name"), &contact.name);
        if let Some(m) = &contact.mobile {
            c.mobile(&format!("contacts[{i}].mobile"), m);
        }
    }
    let mut outlet_ids = HashSet::new();
    for (i, o) in e.outlets.iter().enumerate() {
        let p = format!("outlets[{i}]");
        if !outlet_ids.insert(o.id.as_str()) {
            c.error(
                &format!("{p}.id"),
                format!("outlet id {:?} is used twice in this enterprise", o.id),
            );
        }
        outlet(c, &p, o, cat);
    }
    let mut meter_ids = HashSet::new();
    for (i, m) in e.meters.iter().enumerate() {
        let p = format!("meters[{i}]");
        c.id(&format!("{p}.id"), &m.id);
        c.non_empty(&format!("{p}.name"), &m.name);
        if !meter_ids.insert(m.id.as_str()) {
            c.error(
                &format!("{p}.id"),
                format!("meter id {:?} is used twice in this enterprise", m.id),
            );
        }
        if let Some(d) = &m.device {
            device(c, &format!("{p}.device"), d, cat, true);
        }
    }
    for (i, o) in e.outlets.iter().enumerate() {
        for (j, d) in o.devices.iter().enumerate() {
            device(c, &format!("outlets[{i}].devices[{j}]"), d, cat, false);
        }
    }
    for (i, m) in e.meters.iter().enumerate() {
        if let Some(b) = m.baseline_kw {
            positive(c, &format!("meters[{i}].baseline_kw"), b);
        }
        if let Some(d) = m.offline_after {
            non_zero(c, &format!("meters[{i}].offline_after"), d);
        }
    }
    super::validate_2025::meter_power(c, e, cat);
    rules(c, e, cat);
}

fn device(c: &mut Checker<'_>, p: &str, d: &Device, cat: &Catalogue<'_>, meter: bool) {
    if let Some(id) = &d.id {
        c.id(&format!("{p}.id"), id);
    }
    let transport = d.transport.as_str();
    let mut need = |key: &str, present: bool| {
        if !present {
            c.error(p, format!("transport {transport:?} needs {key}"));
        }
    };
    match d.transport {
        Transport::Tcp | Transport::RtuOverTcp => {
            need("address = \"host:port\"", d.address.is_some())
        }
        Transport::Rtu => need("port = \"/dev/ttyUSB0\"", d.port.is_some()),
        Transport::Dtu => need("dtu_id", d.dtu_id.as_deref().is_some_and(|s| !s.is_empty())),
    }

    if let Some(a) = &d.address {
        let ok = a
            .rsplit_once(':')
            .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            c.error(
                &format!("{p}.address"),
                format!("expected host:port, got {a:?}"),
            );
        }
    }
    if d.transport == Transport::Tcp && d.protocol == DeviceProtocol::Dlt645 {
        c.error(
            &format!("{p}.transport"),
            "DL/T 645 is a serial protocol: use rtu, rtu-over-tcp or dtu",
        );
    }
    let ranges: [(&str, Option<u32>, u32, u32); 3] = [
        ("baud", d.baud, 300, 921_600),
        ("data_bits", d.data_bits.map(u32::from), 5, 8),
        ("stop_bits", d.stop_bits.map(u32::from), 1, 2),
    ];
    for (key, v, lo, hi) in ranges {
        if let Some(v) = v.filter(|v| !(lo..=hi).contains(v)) {
            c.error(
                &format!("{p}.{key}"),
                format!("must be {lo} to {hi}, got {v}"),
            );
        }
    }
    if d.interval.0 < std::time::Duration::from_millis(100) {
        c.error(
            &format!("{p}.interval"),
            format!("must be at least 100ms, got {}", d.interval),
        );
    }
    if d.timeout.0.is_zero() || d.timeout.0 > d.interval.0 {
        c.error(
            &format!("{p}.timeout"),
            format!(
                "must be above 0 and at most the interval ({}), got {}",
                d.interval, d.timeout
            ),
        );
    }
    if let Some(m) = d.max_registers.filter(|m| !(1..=125).contains(m)) {
        c.error(
            &format!("{p}.max_registers"),
            format!("must be 1 to 125, got {m}"),
        );
    }
    match d.protocol {
        DeviceProtocol::Modbus => {
            match d.unit {
                Some(u) if (1..=247).contains(&u) => {}
                Some(u) => c.error(&format!("{p}.unit"), format!("must be 1 to 247, got {u}")),
                None => c.error(p, "a Modbus device needs unit (its unit id)"),
            }
            if d.meter_address.is_some() {
                c.error(
                    &format!("{p}.meter_address"),
                    "is for DL/T 645 devices; Modbus uses unit",
                );
            }
        }
        DeviceProtocol::Dlt645 => {
            match &d.meter_address {
                Some(a) if a.parse::<MeterAddress>().is_ok() => {}
                Some(a) => c.error(
                    &format!("{p}.meter_address"),
                    format!("must be 12 digits, got {a:?}"),
                ),
                None => c.error(p, "a DL/T 645 device needs meter_address (12 digits)"),
            }
            if d.status.is_some() {
                c.error(
                    &format!("{p}.status"),
                    "status registers are a Modbus feature",
                );
            }
        }
    }
    if d.points.is_empty() {
        c.error(&format!("{p}.points"), "a device needs at least one point");
    }
    let mut factors = HashSet::new();
    for (i, pt) in d.points.iter().enumerate() {
        point(c, &format!("{p}.points[{i}]"), d.protocol, pt, cat, meter);
        if !factors.insert(pt.factor.as_str()) {
            c.error(
                &format!("{p}.points[{i}].factor"),
                format!("{} is read twice by this device", pt.factor),
            );
        }
    }
}

fn point(
    c: &mut Checker<'_>,
    pp: &str,
    protocol: DeviceProtocol,
    pt: &Point,
    cat: &Catalogue<'_>,
    meter: bool,
) {
    match cat.class(&pt.factor) {
        None => c.error(
            &format!("{pp}.factor"),
            format!("unknown factor code {:?}", pt.factor),
        ),
        Some(FactorClass::Electrical) if !meter => c.error(
            &format!("{pp}.factor"),
            format!(
                "{} is an electrical quantity; it belongs on a meter",
                pt.factor
            ),
        ),
        _ => {}
    }
    let scaling = Scaling {
        scale: pt.scale.unwrap_or(1.0),
        offset: pt.offset.unwrap_or(0.0),
        raw_range: pt.raw_range,
    };
    if let Err(e) = scaling.validate() {
        c.error(pp, e.to_string());
    }
    match protocol {
        DeviceProtocol::Modbus => {
            let (Some(register), Some(_), Some(ty)) = (pt.register, pt.address, pt.data_type)
            else {
                c.error(pp, "a Modbus point needs register, address and type");
                return;
            };
            if pt.di.is_some() {
                c.error(&format!("{pp}.di"), "is for DL/T 645 points");
            }
            if register.is_bit() != (ty == DataType::Bool) {
                c.error(
                    &format!("{pp}.type"),
                    "coils and discrete inputs are read as type \"bool\", registers as numbers",
                );
            }
        }
        DeviceProtocol::Dlt645 => match pt.di.as_deref().map(parse_di) {
            Some(Some(di)) if dlt645_value::di_format(di).is_some() => {}
            Some(Some(di)) => c.error(
                &format!("{pp}.di"),
                format!("DI {di:08X} is not one pollwatch can decode"),
            ),
            Some(None) => c.error(
                &format!("{pp}.di"),
                "must be 8 hex digits, e.g. \"02030000\"",
            ),
            None => c.error(pp, "a DL/T 645 point needs di"),
        },
    }
}

/// A DL/T 645 data identifier written as 8 hex digits.
pub fn parse_di(text: &str) -> Option<u32> {
    (text.len() == 8)
        .then(|| u32::from_str_radix(text, 16).ok())
        .flatten()
}

fn outlet(c: &mut Checker<'_>, p: &str, o: &Outlet, cat: &Catalogue<'_>) {
    c.id(&format!("{p}.id"), &o.id);
    c.non_empty(&format!("{p}.name"), &o.name);
    match (o.kind, o.o2_reference) {
        (OutletKind::FlueGas, Some(o2)) if !(0.0..21.0).contains(&o2) => c.error(
            &format!("{p}.o2_reference"),
            format!("must be in [0, 21) %, got {o2}"),
        ),
        (OutletKind::Wastewater, Some(_)) => c.error(
            &format!("{p}.o2_reference"),
            "only flue-gas outlets have a reference O2",
        ),
        _ => {}
    }
    if let Some(id) = &o.hj212 {
        let mn_ok = !id.mn.is_empty()
            && id.mn.len() <= 24
            && id
                .mn
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b";,=&".contains(&b));
        if !mn_ok {
            c.error(
                &format!("{p}.hj212.mn"),
                format!(
                    "must be 1–24 printable ASCII characters without ; , = &, got {:?}",
                    id.mn
                ),
            );
        }
        let pw_ok = !id.password.is_empty()
            && id
                .password
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b";,=&".contains(&b));
        if !pw_ok {
            c.error(
                &format!("{p}.hj212.password"),
                "must be non-empty printable ASCII without ; , = &",
            );
        }
        if let Some(i) = id.rtd_interval {
            let secs = i.0.as_secs();
            if i.0.subsec_millis() != 0 || !(1..=3600).contains(&secs) {
                c.error(
                    &format!("{p}.hj212.rtd_interval"),
                    format!("must be whole seconds from 1s to 1h, got {i}"),
                );
            }
        }
    }
    if let Some(n) = o.min_valid_minutes.filter(|n| !(1..=60).contains(n)) {
        c.error(
            &format!("{p}.min_valid_minutes"),
            format!("must be 1 to 60, got {n}"),
        );
    }
    if let Some(n) = o.min_valid_hours.filter(|n| !(1..=24).contains(n)) {
        c.error(
            &format!("{p}.min_valid_hours"),
            format!("must be 1 to 24, got {n}"),
        );
    }
    if let Some(v) = o.mismatch_tolerance {
        positive(c, &format!("{p}.mismatch_tolerance"), v);
    }
    if let Some(v) = o.maintenance_max_share {
        fraction(c, &format!("{p}.maintenance_max_share"), v);
    }
    if let Some(v) = o.min_effective_rate {
        fraction(c, &format!("{p}.min_effective_rate"), v);
    }
    if let Some(v) = o.constant_epsilon.filter(|v| !(v.is_finite() && *v >= 0.0)) {
        c.error(
            &format!("{p}.constant_epsilon"),
            format!("must be a finite number ≥ 0, got {v}"),
        );
    }
    clock_keys(c, p, o.clock_tolerance, o.max_data_age);
    for (key, d) in [
        ("offline_after", o.offline_after),
        ("constant_for", o.constant_for),
    ] {
        if let Some(d) = d {
            non_zero(c, &format!("{p}.{key}"), d);
        }
    }
    let mut analyzers = HashSet::new();
    for (j, a) in o.analyzers.iter().enumerate() {
        let ap = format!("{p}.analyzers[{j}]");
        if cat.class(&a.factor).is_none() {
            c.error(
                &format!("{ap}.factor"),
                format!("unknown factor code {:?}", a.factor),
            );
        }
        if !analyzers.insert(a.factor.as_str()) {
            c.error(
                &format!("{ap}.factor"),
                format!("{} has two ranges", a.factor),
            );
        }
        positive(c, &format!("{ap}.range"), a.range);
    }
    if let Some(f) = &o.furnace {
        super::validate_2025::furnace(c, &format!("{p}.furnace"), o.kind, f, cat);
    }
    let mut seen = HashSet::new();
    for (j, l) in o.limits.iter().enumerate() {
        let lp = format!("{p}.limits[{j}]");
        if !seen.insert((l.factor.as_str(), l.basis)) {
            c.error(
                &format!("{lp}.factor"),
                format!(
                    "a {} limit for {} is already set on this outlet",
                    l.basis.as_str(),
                    l.factor
                ),
            );
        }
        limit(c, &lp, o.kind, l, cat);
    }
}

fn limit(c: &mut Checker<'_>, p: &str, kind: OutletKind, l: &Limit, cat: &Catalogue<'_>) {
    let class = cat.class(&l.factor);
    match class {
        None => c.error(
            &format!("{p}.factor"),
            format!(
                "unknown factor code {:?} (not in the HJ 212-2017 catalogue; declare local codes with [[factors]] in pollwatch.toml)",
                l.factor
            ),
        ),
        Some(FactorClass::Electrical) => c.error(
            &format!("{p}.factor"),
            format!("{} is an electrical quantity; outlets limit pollutants", l.factor),
        ),
        Some(class) => {
            let gas = matches!(class, FactorClass::GasPollutant | FactorClass::GasParameter);
            if gas != (kind == OutletKind::FlueGas) {
                c.error(
                    &format!("{p}.factor"),
                    format!("{} does not belong on a {} outlet", l.factor, kind.as_str()),
                );
            }
            if class == FactorClass::Ph && l.basis != super::enterprise::Basis::Instant {
                c.error(
                    &format!("{p}.basis"),
                    "pH is judged per value, never averaged: basis must be \"instant\"",
                );
            }
        }
    }
    for (key, v) in [("max", l.max), ("min", l.min)] {
        if let Some(v) = v {
            if !v.is_finite() || v < 0.0 {
                c.error(
                    &format!("{p}.{key}"),
                    format!("must be a finite number ≥ 0, got {v}"),
                );
            }
        }
    }
    match (l.min, l.max) {
        (None, None) => c.error(p, "a limit needs max, min or both"),
        (Some(min), Some(max)) if min >= max => c.error(
            &format!("{p}.min"),
            format!("must be below max, got min {min} ≥ max {max}"),
        ),
        _ => {}
    }
    if (l.for_.is_some() || l.repeat.is_some()) && l.basis != Basis::Instant {
        c.error(
            p,
            "for and repeat suppress single spikes on instant limits; averages need neither",
        );
    }
    if l.for_.is_some() && l.repeat.is_some() {
        c.error(p, "set for or repeat, not both");
    }
    if l.repeat == Some(0) {
        c.error(&format!("{p}.repeat"), "must be at least 1");
    }
    if let Some(w) = l.warn_at {
        if !(w > 0.0 && w <= 1.0) {
            c.error(
                &format!("{p}.warn_at"),
                format!("must be in (0, 1], got {w}"),
            );
        } else if l.max.is_none() {
            c.error(
                &format!("{p}.warn_at"),
                "is a fraction of max, but this limit has no max",
            );
        }
    }
}
