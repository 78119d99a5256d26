//! kubelet-readonly, the probe most tests make: refused attempts from outside, their alert,
//! and the group's counters.

use std::net::SocketAddr;

use node_monitor_lab::Lab;

use crate::{
    common::{
        counters::{Counters, GroupCounts},
        peers::{TcpOutcome, tcp_connect},
    },
    expect::Rec,
    setup::{CONNECT_TIMEOUT, node, outside},
};

/// Refused TCP attempts from outside (IPv4) to kubelet-readonly, one per source port.
pub(crate) fn readonly_attempts(lab: &Lab, ports: &[u16]) -> Vec<SocketAddr> {
    ports
        .iter()
        .map(|p| {
            let o = outside(*p, false);
            assert_eq!(
                tcp_connect(&lab.outside, o, node(10255, false), CONNECT_TIMEOUT),
                TcpOutcome::Refused
            );
            o
        })
        .collect()
}

/// The alert of a refused kubelet-readonly attempt from outside (IPv4).
pub(crate) fn readonly_alert(o: SocketAddr, hook: &str) -> Rec {
    Rec::flagged(
        "kubelet-readonly",
        o,
        node(10255, false),
        "tcp",
        "refused",
        "would_drop",
        hook,
    )
}

/// The kubelet-readonly denied TCP entry of a counters line.
pub(crate) fn readonly(c: &Counters) -> GroupCounts {
    c.get("kubelet-readonly", "tcp", "denied")
}
