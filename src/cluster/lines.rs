//! Polled lines (Modbus TCP, RTU over TCP, serial; DL/T 645 on any of them)
//! are polled by one node each: a lease `line:<endpoint>` per line, taken and
//! renewed beside the leader lease.
//!
//! Spreading: a node takes free lines only up to its fair share,
//! ceil(lines / live nodes), and hands back one line per round while it holds
//! more than that (a node that just joined gets work without a restart). A
//! node that dies stops renewing; its lines expire and the others take them.
//!
//! DTU lines are not leased: a DTU dials in to one node (wherever the load
//! balancer sent it), and only that node holds its connection, so only that
//! node can poll it; the others' pollers for it wait for a connection that
//! never comes to them. A serial port exists on one machine: lease it only if
//! every node reaches the device (a serial server on the network); otherwise
//! configure it on that one node.

use crate::sources::field::line::Endpoint;
use crate::sources::field::FieldDevice;

/// The lease of a line.
pub fn lease_name(endpoint: &Endpoint) -> String {
    format!("line:{endpoint}")
}

/// Whether a line is leased (every kind but DTU dial-in).
pub fn leased(endpoint: &Endpoint) -> bool {
    !matches!(endpoint, Endpoint::Dtu(_))
}

/// The lease names of every leased line of `devices`, sorted, once each.
pub fn names(devices: &[FieldDevice]) -> Vec<String> {
    let mut out: Vec<String> = devices
        .iter()
        .filter(|d| leased(&d.endpoint))
        .map(|d| lease_name(&d.endpoint))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The devices this node polls: those on lines it holds, and DTU lines.
pub fn owned(
    devices: &[FieldDevice],
    held: &std::collections::BTreeSet<String>,
) -> Vec<FieldDevice> {
    devices
        .iter()
        .filter(|d| !leased(&d.endpoint) || held.contains(&lease_name(&d.endpoint)))
        .cloned()
        .collect()
}

/// A node's fair share of `lines` among `nodes` live nodes.
pub fn fair_share(lines: usize, nodes: i64) -> usize {
    let nodes = nodes.max(1) as usize;
    lines.div_ceil(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_up_so_every_line_has_a_taker() {
        assert_eq!(fair_share(0, 3), 0);
        assert_eq!(fair_share(5, 2), 3);
        assert_eq!(fair_share(4, 2), 2);
        assert_eq!(fair_share(3, 0), 3);
        assert_eq!(fair_share(1, 5), 1);
    }
}
