//! The lab and the config every end-to-end test starts from: root and tools checked, the
//! namespaces, the test catalog, and the addresses of the lab's hosts.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use node_monitor_lab::{Lab, addr};

use crate::common::{
    config::catalog_with,
    daemon::{self, context},
    peers::sa,
};

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const UDP_WAIT: Duration = Duration::from_millis(700);
/// The answer timeout of the test configs: short, so that no-answer cases are quick.
pub(crate) const ANSWER_TIMEOUT_MS: u64 = 400;

/// UDP group denied to outside, next to the catalog: 9000 closed, 9001 echo, 9002 silent.
pub(crate) const UDP_GROUP: &str = r#"  udp-probe:
    protocols: [udp]
    ports: ["9000-9002"]
    allow: ["198.51.100.0/24", "2001:db8:1::/64"]
    action: monitor

"#;

pub(crate) fn setup() -> Lab {
    daemon::require_root_and_tools(&["ip", "nsenter", "ping", "sysctl", "curl"]);
    context(Lab::new())
}

/// The catalog with every allowed flow sampled, a short answer timeout, the UDP group, and
/// optional extra replacements.
pub(crate) fn test_config(extra: &[(&str, &str)]) -> String {
    let timeout = format!("answer_timeout_ms: {ANSWER_TIMEOUT_MS} ");
    let mut reps: Vec<(&str, &str)> = vec![
        ("allowed_flows_one_in: 100", "allowed_flows_one_in: 1"),
        ("answer_timeout_ms: 1000 ", &timeout),
    ];
    reps.extend_from_slice(extra);
    catalog_with(&reps, UDP_GROUP)
}

pub(crate) const KUBELET_MONITOR: &str =
    "ports: [\"10250\"]\n    allow: [node-subnets]\n    action: monitor";
pub(crate) const KUBELET_DROP: &str =
    "ports: [\"10250\"]\n    allow: [node-subnets]\n    action: drop";

/// Extra addresses on the outside host (`203.0.113.N/24`, `2001:db8:2::N/64`), so that
/// attempts to one group come from distinct sources (dedup keys on the source address).
pub(crate) fn add_outside_addrs(lab: &Lab, hosts: &[u8]) {
    for n in hosts {
        context(
            lab.outside
                .ip(&["addr", "add", &format!("203.0.113.{n}/24"), "dev", "eth0"]),
        );
        context(lab.outside.ip(&[
            "addr",
            "add",
            &format!("2001:db8:2::{n}/64"),
            "dev",
            "eth0",
            "nodad",
        ]));
    }
}

/// `outside`'s extra address `n` (see [`add_outside_addrs`]).
pub(crate) fn outside_n(n: u8, port: u16, v6: bool) -> SocketAddr {
    if v6 {
        sa(
            Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, u16::from(n)),
            port,
        )
    } else {
        sa(Ipv4Addr::new(203, 0, 113, n), port)
    }
}

pub(crate) fn node(port: u16, v6: bool) -> SocketAddr {
    if v6 {
        sa(addr::NODE_V6, port)
    } else {
        sa(addr::NODE_V4, port)
    }
}
pub(crate) fn outside(port: u16, v6: bool) -> SocketAddr {
    if v6 {
        sa(addr::OUTSIDE_V6, port)
    } else {
        sa(addr::OUTSIDE_V4, port)
    }
}
pub(crate) fn cp(port: u16, v6: bool) -> SocketAddr {
    if v6 {
        sa(addr::CP_V6, port)
    } else {
        sa(addr::CP_V4, port)
    }
}
