//! The one fixture builder of flow records, shared by the unit tests, the integration tests
//! and the bench (feature `test-support`): every test record starts from [`flagged`].
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, SystemTime},
};

use node_monitor_common::TCP_SYN;

use super::{Action, Answer, Family, FlowRecord, Hook, Protocol, RecordType, TcpFlags, Verdict};

/// 2024-05-01T12:00:00.123456Z, the time of [`flagged`].
pub const TIME_US: u64 = 1_714_564_800_123_456;

/// A wall-clock time `us` microseconds after the epoch.
pub fn time_us(us: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(us)
}

/// A flagged IPv4 TCP SYN to the kubelet group, double VLAN tagged, refused, in monitor mode:
/// the first flow of the Community ID spec vectors (128.232.110.120:34855 → 66.35.250.204:80).
pub fn flagged() -> FlowRecord {
    FlowRecord {
        time: time_us(TIME_US),
        record_type: RecordType::Flagged,
        group: "kubelet".into(),
        verdict: Verdict::Denied,
        action: Action::WouldDrop,
        answer: Some(Answer::Refused),
        answer_corrects: None,
        answer_corrects_alert: None,
        protocol: Protocol::Tcp,
        family: Family::Ipv4,
        src_ip: Ipv4Addr::new(128, 232, 110, 120).into(),
        src_port: 34855,
        dst_ip: Ipv4Addr::new(66, 35, 250, 204).into(),
        dst_port: 80,
        interface: Some("eth0".into()),
        ifindex: 2,
        hook: Hook::Xdp,
        vlan: vec![100, 200],
        tcp_flags: Some(TcpFlags::from_bits(TCP_SYN)),
        fragmented: false,
        handshake_completed: false,
        completes_reported: false,
        packet_length: 60,
        ktime_ns: 42,
        sampled: false,
        identity: None,
    }
}

/// [`flagged`] seen as the first fragment of a datagram that ended before the TCP flags
/// (`hping3 --mtu 8`), accepted.
pub fn fragmented() -> FlowRecord {
    FlowRecord {
        tcp_flags: Some(TcpFlags::FRAGMENTED),
        fragmented: true,
        answer: Some(Answer::Accepted),
        packet_length: 42,
        ..flagged()
    }
}

/// The node's SYN-ACK for the 5-tuple of [`flagged`], whose attempt ingress never saw
/// (NM-1030): seen on tc egress, accepted.
pub fn unseen() -> FlowRecord {
    FlowRecord {
        record_type: RecordType::Unseen,
        answer: Some(Answer::Accepted),
        hook: Hook::Tc,
        tcp_flags: Some(TcpFlags::from_bits(TCP_SYN | node_monitor_common::TCP_ACK)),
        vlan: vec![],
        packet_length: 74,
        ..flagged()
    }
}

/// NM-1030 on the 5-tuple of [`flagged`] from ingress: the peer's ACK completed a handshake
/// whose attempt and acceptance the budgets withheld.
pub fn handshake_completed() -> FlowRecord {
    FlowRecord {
        hook: Hook::Xdp,
        tcp_flags: Some(TcpFlags::from_bits(node_monitor_common::TCP_ACK)),
        handshake_completed: true,
        packet_length: 66,
        ..unseen()
    }
}

/// A sampled IPv6 UDP flow of an allowed source to the nodeport group, untagged.
pub fn sampled() -> FlowRecord {
    FlowRecord {
        record_type: RecordType::Sampled,
        group: "nodeport".into(),
        verdict: Verdict::Allowed,
        action: Action::Pass,
        answer: None,
        protocol: Protocol::Udp,
        family: Family::Ipv6,
        src_ip: Ipv6Addr::new(
            0x2001, 0x470, 0xe5bf, 0xdead, 0x4957, 0x2174, 0xe82c, 0x4887,
        )
        .into(),
        src_port: 63943,
        dst_ip: Ipv6Addr::new(0x2607, 0xf8b0, 0x400c, 0xc03, 0, 0, 0, 0x1a).into(),
        dst_port: 30053,
        vlan: vec![],
        tcp_flags: None,
        sampled: true,
        identity: None,
        ..flagged()
    }
}

/// A flagged connection from `src` to `dst_port` of `group` (untagged, source port 40000, to
/// 198.51.100.1 or 2001:db8::1 by the source's family).
pub fn flagged_from(group: &str, src: IpAddr, dst_port: u16) -> FlowRecord {
    let (family, dst_ip): (Family, IpAddr) = match src {
        IpAddr::V4(_) => (Family::Ipv4, Ipv4Addr::new(198, 51, 100, 1).into()),
        IpAddr::V6(_) => (
            Family::Ipv6,
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
        ),
    };
    FlowRecord {
        group: group.into(),
        family,
        src_ip: src,
        src_port: 40000,
        dst_ip,
        dst_port,
        vlan: vec![],
        ktime_ns: 1,
        ..flagged()
    }
}

/// A new connection of an allowed source, as [`flagged_from`] but sampled out (the alert
/// engine sees it, no sink does).
pub fn allowed_from(group: &str, src: IpAddr, dst_port: u16) -> FlowRecord {
    FlowRecord {
        record_type: RecordType::Sampled,
        verdict: Verdict::Allowed,
        action: Action::Pass,
        answer: None,
        ..flagged_from(group, src, dst_port)
    }
}

/// A sampled IPv4 TCP flow to the kubelet from 10.0.0.1:`src_port`, seen at
/// 2024-01-02T03:04:05.000006Z on an interface that is gone (the sinks' tests).
pub fn sampled_from_port(src_port: u16) -> FlowRecord {
    FlowRecord {
        time: time_us(1_704_164_645_000_006),
        record_type: RecordType::Sampled,
        group: "kubelet".into(),
        verdict: Verdict::Allowed,
        action: Action::Pass,
        answer: None,
        src_ip: Ipv4Addr::new(10, 0, 0, 1).into(),
        src_port,
        dst_ip: Ipv4Addr::new(10, 0, 0, 2).into(),
        dst_port: 10250,
        interface: None,
        ifindex: 1,
        vlan: vec![],
        tcp_flags: None,
        ktime_ns: 0,
        sampled: true,
        identity: None,
        ..flagged()
    }
}

/// [`TIME_US`] in milliseconds (OCSF `time`, CEF `rt`).
pub const TIME_MS: u64 = TIME_US / 1000;

/// The Community ID of [`flagged`] (the spec's vector).
pub const CID: &str = "1:LQU9qZlK+B5F3KDmev6m5PMibrg=";

// ---- cluster identity (issue 8) ----

/// A flow identity of every kind of source: a pod of a Deployment behind a NodePort
/// Service, a node, a host-network node, external, unresolved (cache not synced), and a pod
/// whose names need escaping, in a stale cache.
pub fn identities() -> Vec<super::FlowIdentity> {
    use std::sync::Arc;

    use super::{
        CacheState, DestinationIdentity, FlowIdentity, NodeIdentity, PodIdentity, ServiceIdentity,
        SourceIdentity, Workload,
    };
    let fresh = CacheState {
        synced: true,
        age: Duration::ZERO,
        stale: false,
    };
    let dest = |service: bool| DestinationIdentity {
        node: Some("worker-1".into()),
        service: service.then(|| {
            Arc::new(ServiceIdentity {
                namespace: "shop".into(),
                name: "web".into(),
                external_traffic_policy: Some("Local".into()),
                load_balancer_source_ranges: vec![ipnet::IpNet::V4(ipnet::Ipv4Net::new_assert(
                    std::net::Ipv4Addr::new(198, 51, 100, 0),
                    24,
                ))],
            })
        }),
    };
    let pod = |ns: &str, name: &str, kind: &str, wl: &str| {
        SourceIdentity::Pod(Arc::new(PodIdentity {
            namespace: ns.into(),
            name: name.into(),
            uid: "0d3c7a52-7a39-4f1b-9d2e-5b3f0c1a2b3c".into(),
            node: Some("worker-1".into()),
            workload: Workload {
                kind: kind.into(),
                name: wl.into(),
            },
        }))
    };
    let node = NodeIdentity {
        name: "cp-1".into(),
        roles: vec!["control-plane".into(), "etcd".into()],
    };
    vec![
        FlowIdentity {
            source: pod("shop", "evil-6b7d9c-x2x9z", "Deployment", "evil"),
            destination: dest(true),
            cache: fresh,
        },
        FlowIdentity {
            source: SourceIdentity::Node(Arc::new(node.clone())),
            destination: dest(false),
            cache: fresh,
        },
        FlowIdentity {
            source: SourceIdentity::HostNetwork(Arc::new(NodeIdentity {
                roles: vec![],
                ..node
            })),
            destination: DestinationIdentity::default(),
            cache: fresh,
        },
        FlowIdentity {
            source: SourceIdentity::External,
            destination: dest(true),
            cache: fresh,
        },
        FlowIdentity {
            source: SourceIdentity::Unresolved,
            destination: dest(false),
            cache: CacheState {
                synced: false,
                ..fresh
            },
        },
        FlowIdentity {
            source: pod("n\"s\\=|", "p=o|d\n\u{1}é", "Job", "j\"ob"),
            destination: dest(true),
            cache: CacheState {
                synced: true,
                age: Duration::from_secs(75),
                stale: true,
            },
        },
    ]
}
