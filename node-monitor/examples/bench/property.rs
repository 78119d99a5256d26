//! The property section (issue 13): 10 million generated frames (by default) through each
//! program, XDP, tc ingress and tc egress, with every property of `tests/common/property.rs`
//! checked (it panics on the first violation, naming the seed and the frame). Reports the
//! frames, drops, events, frames the kernel's test_run refused, and the wall time.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use node_monitor_common::{IPPROTO_TCP, IPPROTO_UDP};

use crate::{
    framegen::Space,
    progrun::{Harness, Prog},
    property_run::run_property,
};

/// A monitor group, a drop group (TCP and UDP) and a UDP group, as in the datapath tests.
const YAML: &str = r#"
groups:
  kubelet: { protocols: [tcp], ports: ["10250"], allow: ["203.0.113.0/24", "2001:db8:0:113::/64"] }
  enforced:
    protocols: [tcp, udp]
    ports: ["2379"]
    allow: ["203.0.113.0/24", "2001:db8:0:113::/64"]
    action: drop
  udp-svc: { protocols: [udp], ports: ["4789"], allow: ["203.0.113.0/24"] }
limits: { flows: 65536, events_per_group_per_second: 0 }
"#;

fn space(prog: Prog) -> Space {
    Space {
        watched: vec![
            (IPPROTO_TCP, 10250),
            (IPPROTO_TCP, 2379),
            (IPPROTO_UDP, 2379),
            (IPPROTO_UDP, 4789),
        ],
        sources_v4: vec![
            Ipv4Addr::new(203, 0, 113, 7),
            Ipv4Addr::new(198, 51, 100, 77),
        ],
        sources_v6: vec![
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0x113, 0, 0, 0, 7),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0x100, 0, 0, 0, 0x77),
        ],
        node_v4: crate::testrun::NODE,
        node_v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0x100, 0, 0, 0, 1),
        egress: prog == Prog::TcEgress,
    }
}

pub(crate) fn property(frames: u64, report: &mut String) -> anyhow::Result<()> {
    writeln!(
        report,
        "## Property run: generated frames through every program\n\n\
         {frames} frames per program, 70% structure-aware (random fields, VLAN tags and IPv6 \
         extension chains of random length, IPv4 options and fragments, cut anywhere or with \
         a byte flipped), 30% random bytes behind an Ethernet header. Every property held: \
         pass unless a drop group's source is flagged, every drop counted, every ingress frame \
         counted exactly once, no event for an unwatched port, the counter identities.\n\n\
         | program | frames run | passed | dropped | events | refused by test_run | seconds |\n\
         |---|---:|---:|---:|---:|---:|---:|"
    )?;
    for (prog, seed) in [
        (Prog::Xdp, 0xbe9c_0001),
        (Prog::TcIngress, 0xbe9c_0002),
        (Prog::TcEgress, 0xbe9c_0003),
    ] {
        let mut h = Harness::yaml(YAML);
        let start = Instant::now();
        let o = run_property(&mut h, prog, seed, frames, space(prog));
        writeln!(
            report,
            "| {prog:?} | {} | {} | {} | {} | {} | {:.1} |",
            o.frames,
            o.passed,
            o.dropped,
            o.events,
            o.refused,
            start.elapsed().as_secs_f64()
        )?;
    }
    writeln!(
        report,
        "\nRefused: skb programs' test_run wants a whole fixed IP header behind an IP \
         EtherType; XDP runs those frames.\n"
    )?;
    Ok(())
}
