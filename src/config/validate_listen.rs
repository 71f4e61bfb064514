//! Limits of the listeners that face other networks (`[hj212]`, `[dtu]`, `[http]`)
//! and the identity of dial-in DTUs (`dtu_allow`, `dtu_secret` on devices).

use std::collections::HashMap;

use super::daemon::DaemonFile;
use super::device::{parse_net, Device, Transport};
use super::enterprise::Enterprise;
use super::validate::Checker;

pub fn listeners(c: &mut Checker<'_>, d: &DaemonFile) {
    let at_least_one: [(&str, u64); 8] = [
        (
            "hj212.max_connections_per_address",
            d.hj212.max_connections_per_address as u64,
        ),
        (
            "hj212.dead_letters_per_connection",
            u64::from(d.hj212.dead_letters_per_connection),
        ),
        (
            "hj212.max_auth_failures",
            u64::from(d.hj212.max_auth_failures),
        ),
        ("dtu.max_connections", d.dtu.max_connections as u64),
        (
            "dtu.max_connections_per_address",
            d.dtu.max_connections_per_address as u64,
        ),
        ("http.max_connections", d.http.max_connections as u64),
        (
            "http.header_read_timeout",
            d.http.header_read_timeout.0.as_millis() as u64,
        ),
        (
            "dtu.registration_timeout",
            d.dtu.registration_timeout.0.as_millis() as u64,
        ),
    ];
    for (key, v) in at_least_one {
        if v == 0 {
            c.error(key, "must be more than 0");
        }
    }
}

/// `dtu_allow` entries parse, `dtu_secret` is usable, and the devices behind one
/// DTU agree on both.
pub fn dtu_devices(c: &mut Checker<'_>, e: &Enterprise) {
    let mut seen: HashMap<&str, (&str, &Device)> = HashMap::new();
    let mut devices: Vec<(String, &Device)> = Vec::new();
    for (i, m) in e.meters.iter().enumerate() {
        if let Some(d) = &m.device {
            devices.push((format!("meters[{i}].device"), d));
        }
    }
    for (i, o) in e.outlets.iter().enumerate() {
        for (j, d) in o.devices.iter().enumerate() {
            devices.push((format!("outlets[{i}].devices[{j}]"), d));
        }
    }
    for (p, d) in &devices {
        if d.transport != Transport::Dtu {
            if !d.dtu_allow.is_empty() || d.dtu_secret.is_some() {
                c.error(
                    p,
                    "dtu_allow and dtu_secret apply to transport = \"dtu\" only",
                );
            }
            continue;
        }
        for (k, a) in d.dtu_allow.iter().enumerate() {
            if parse_net(a).is_none() {
                c.error(
                    &format!("{p}.dtu_allow[{k}]"),
                    format!("expected an address or network like \"10.8.0.0/16\", got {a:?}"),
                );
            }
        }
        if let Some(s) = &d.dtu_secret {
            if s.len() < 8 || !s.chars().all(|ch| ch.is_ascii_graphic()) {
                c.error(
                    &format!("{p}.dtu_secret"),
                    "must be at least 8 printable ASCII characters (no spaces)",
                );
            }
        }
        let Some(id) = d.dtu_id.as_deref() else {
            continue;
        };
        if id.contains(':') {
            c.error(
                &format!("{p}.dtu_id"),
                "must not contain ':' (it separates the id from dtu_secret)",
            );
        }
        match seen.get(id) {
            Some((first, other))
                if other.dtu_allow != d.dtu_allow || other.dtu_secret != d.dtu_secret =>
            {
                c.error(
                    p,
                    format!("DTU {id:?}: dtu_allow and dtu_secret must be the same as at {first} (one DTU, one identity)"),
                );
            }
            Some(_) => {}
            None => {
                seen.insert(id, (p.as_str(), d));
            }
        }
    }
}
