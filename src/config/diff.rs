//! What a reload changes: compares two validated configs and says which sources
//! start, stop or restart, and which changes need a restart of the daemon.
//!
//! The unit of change is what owns a connection: an HJ 212 logger (by MN), a polled
//! device (by enterprise and device id), the MQTT client (by `[mqtt]`). Whatever is
//! equal in both configs is left alone, connection and all (invariant 5).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Config, Device, Enterprise};

/// Added, removed and changed keys of one kind of thing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Changes {
    fn of<K: Ord + Clone + ToString, V: PartialEq>(
        old: &BTreeMap<K, V>,
        new: &BTreeMap<K, V>,
    ) -> Changes {
        let mut c = Changes::default();
        for (k, v) in new {
            match old.get(k) {
                None => c.added.push(k.to_string()),
                Some(o) if o != v => c.changed.push(k.to_string()),
                Some(_) => {}
            }
        }
        c.removed = old
            .keys()
            .filter(|k| !new.contains_key(k))
            .map(|k| k.to_string())
            .collect();
        c
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConfigDiff {
    pub enterprises: Changes,
    /// HJ 212 loggers by MN.
    pub loggers: Changes,
    /// Polled devices as `enterprise/device`.
    pub devices: Changes,
    /// `[mqtt]` differs: the client reconnects with the new settings.
    pub mqtt: bool,
    /// Settings that only take effect after a restart (listen addresses, storage):
    /// reported, and the old values stay in force.
    pub restart_required: Vec<&'static str>,
}

impl ConfigDiff {
    pub fn between(old: &Config, new: &Config) -> ConfigDiff {
        let (o, n) = (&old.daemon, &new.daemon);
        let mut restart_required = Vec::new();
        let mut needs = |changed: bool, what: &'static str| {
            if changed {
                restart_required.push(what);
            }
        };
        needs(old.storage_url != new.storage_url, "storage.url");
        needs(
            o.storage.max_batch != n.storage.max_batch
                || o.storage.linger != n.storage.linger
                || o.storage.queue != n.storage.queue
                || o.storage.sqlite_synchronous != n.storage.sqlite_synchronous
                || o.storage.min_free != n.storage.min_free,
            "storage",
        );
        needs(o.http.listen != n.http.listen, "http.listen");
        needs(o.hj212 != n.hj212, "hj212");
        needs(o.dtu != n.dtu, "dtu");
        needs(o.cluster != n.cluster, "cluster");
        needs(old.timezone != new.timezone, "daemon.timezone");
        ConfigDiff {
            enterprises: Changes::of(&enterprises(old), &enterprises(new)),
            loggers: Changes::of(&loggers(old), &loggers(new)),
            devices: Changes::of(&devices(old), &devices(new)),
            mqtt: o.mqtt != n.mqtt,
            restart_required,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.enterprises.is_empty()
            && self.loggers.is_empty()
            && self.devices.is_empty()
            && !self.mqtt
            && self.restart_required.is_empty()
    }
}

fn enterprises(c: &Config) -> BTreeMap<String, &Enterprise> {
    c.enterprises.iter().map(|e| (e.id.clone(), e)).collect()
}

/// A logger is its MN with everything the server needs to talk to it, and the
/// outlet it reports for.
fn loggers(c: &Config) -> BTreeMap<String, (String, String, &super::Hj212Identity)> {
    let mut out = BTreeMap::new();
    for e in &c.enterprises {
        for o in &e.outlets {
            if let Some(h) = &o.hj212 {
                out.insert(h.mn.clone(), (e.id.clone(), o.id.clone(), h));
            }
        }
    }
    out
}

/// A polled device and where its readings go.
fn devices(c: &Config) -> BTreeMap<String, (String, &Device)> {
    let mut out = BTreeMap::new();
    for e in &c.enterprises {
        for m in &e.meters {
            if let Some(d) = &m.device {
                let id = d.id.clone().unwrap_or_else(|| m.id.clone());
                out.insert(format!("{}/{id}", e.id), (format!("meter:{}", m.id), d));
            }
        }
        for o in &e.outlets {
            for (n, d) in o.devices.iter().enumerate() {
                let id =
                    d.id.clone()
                        .unwrap_or_else(|| format!("{}-{}", o.id, n + 1));
                out.insert(format!("{}/{id}", e.id), (format!("outlet:{}", o.id), d));
            }
        }
    }
    out
}
