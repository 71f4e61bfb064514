//! Cluster mode (issue 22): several pollwatch nodes on one PostgreSQL database,
//! failing over without losing or doubling anything.
//!
//! Why it is built on PostgreSQL and the MQTT broker and nothing of our own:
//! both are engines units already run and know how to keep alive; a home-made
//! consensus would be the least tested part of the system at the moment it
//! matters most. The shape:
//!
//! - **Every node ingests.** HJ 212, DTU, MQTT (with `shared_group`, i.e.
//!   `$share/<group>/<topic>`, so the broker gives each message to one node)
//!   and the HTTP API run on every node; each stores what it receives and
//!   acknowledges only after its own commit (invariant 1 holds per node).
//!   Loggers reach a node through a TCP load balancer or a floating address
//!   (`deploy/cluster.md`).
//! - **One judge.** The node holding the lease `leader` in `cluster_leases`
//!   runs the rules engine, the alerts engine and the dispatcher. A lease is a
//!   row with a holder, an expiry on the database's clock and an *epoch* that
//!   grows at every change of holder ([`crate::store::cluster`]). The leader
//!   renews every third of the lease; another node takes an expired lease with
//!   the next epoch. Takeover time is at most lease + a third + the rebuild.
//! - **Fencing.** A paused or cut-off old leader must not write after it lost
//!   the lease. Its engines write through a *fenced* pool whose connections
//!   carry its node id and epoch; a trigger on every table the leader writes
//!   (findings, emission hours, alerts, their timeline, the outbox and its
//!   attempts, the feed cursor) checks the lease in the same transaction and
//!   share-locks its row, so a takeover waits for the old term's last
//!   transaction and nothing of it commits afterwards (migration 0015). Sends
//!   to providers are not database writes: before each one the dispatcher asks
//!   the node's own monotonic deadline ([`lease::Belief`]), which a resumed
//!   process sees lapsed at once.
//! - **Fed from the store.** The leader reads committed readings back from the
//!   database in commit order ([`feed`] explains why that is transaction order
//!   below the snapshot horizon, not a sequence) and hands them to the same
//!   rules task a single node feeds from its in-process tap. A new leader
//!   rebuilds its windows from the store (invariant 4), records findings other
//!   nodes stored, requeues the outbox and sends what is pending.
//! - **Polled lines** ([`lines`]) are leased the same way, one node each,
//!   spread evenly over the live nodes, and move when their node dies.
//!
//! Nothing twice, and the window where it can happen: a notification is
//! marked sent in the same transaction as its attempts, after the provider
//! accepted it. If the leader dies (or loses its lease) between the provider's
//! acceptance and that commit, the row is still pending and the next leader
//! sends it again: that window — one provider round trip plus one commit — is
//! the at-least-once window. Webhook deliveries carry the outbox row id
//! (`X-Pollwatch-Notification`), which a receiver can use as an idempotency
//! key; the Chinese robot APIs have none.
//!
//! Without `[cluster]` none of this runs: the daemon is one node with the
//! in-process tap, exactly as before.

pub mod feed;
pub mod lease;
pub mod lines;
mod node;

pub use node::{Cluster, ClusterOptions, ClusterStats, Role};

/// The name of the leader's lease.
pub const LEADER: &str = "leader";
