//! `[cluster]`: this node's place in a cluster of pollwatch daemons sharing one
//! PostgreSQL database (issue 22; the machinery is `crate::cluster`).
//!
//! ```toml
//! [cluster]
//! node_id = "a"       # unique per node: letters, digits, '-', '_' (at most 64)
//! lease = "10s"       # how long a leader (or a polled line's owner) holds on
//!                     # without renewing; a dead node is replaced after this
//! ```
//!
//! Without the section the daemon is a single node, exactly as before. The
//! section requires a PostgreSQL store: the lease, the fencing epoch and the
//! commit-ordered feed of readings all live in the database the nodes share, and
//! an SQLite file cannot be shared between machines, so `check-config` refuses
//! the combination instead of letting two nodes each believe they are alone.

use serde::Deserialize;

use super::daemon::DaemonFile;
use super::units::HumanDuration;
use super::validate::Checker;

/// The shortest lease accepted: renewals go out every third of it, and a
/// database round trip must fit in that comfortably.
pub const MIN_LEASE: std::time::Duration = std::time::Duration::from_millis(600);
/// The longest: a takeover takes at least this long, and the target is 30 s.
pub const MAX_LEASE: std::time::Duration = std::time::Duration::from_secs(25);

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub node_id: String,
    #[serde(default = "default_lease")]
    pub lease: HumanDuration,
}

fn default_lease() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}

/// `node_id` is usable as a name in the database and in logs; the lease is in
/// range; the store is PostgreSQL.
pub fn cluster(c: &mut Checker<'_>, d: &DaemonFile) {
    let Some(cl) = &d.cluster else { return };
    let id = &cl.node_id;
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        c.error(
            "cluster.node_id",
            "must be 1 to 64 letters, digits, '-' or '_'",
        );
    }
    if cl.lease.0 < MIN_LEASE || cl.lease.0 > MAX_LEASE {
        c.error(
            "cluster.lease",
            format!(
                "must be between {} and {}",
                HumanDuration(MIN_LEASE),
                HumanDuration(MAX_LEASE)
            ),
        );
    }
    let postgres = d
        .storage
        .url
        .as_deref()
        .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
    if !postgres {
        c.error(
            "cluster",
            "cluster mode needs a PostgreSQL store shared by every node ([storage] url = \"postgres://…\"); an SQLite file cannot be shared",
        );
    }
}
