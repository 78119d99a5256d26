//! The metrics under test: a populated snapshot with ordinary group names, as the daemon
//! would build one.

use node_monitor::metrics::{
    DetectorSnapshot, GroupSnapshot, Metrics, ProgramSnapshot, SinkSnapshot, Snapshot,
    SourceWorkloadCount,
};
use node_monitor_common::GroupStats;

pub(crate) const OPENMETRICS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

pub(crate) fn stats(packets: u64) -> GroupStats {
    GroupStats {
        packets,
        bytes: packets * 60,
        new_conns: packets / 2 + 1,
        would_drop: 0,
        dropped: 0,
        events: 1,
        lost_rate_limited: 0,
        lost_ringbuf_full: 0,
        sampled_out: 0,
        lost_group_budget: 0,
    }
}

/// A populated snapshot with ordinary group names, as the daemon would build one.
pub(crate) fn snapshot() -> Snapshot {
    let mut groups = Vec::new();
    for group in ["kubelet", "etcd", "nodeports"] {
        for proto in ["tcp", "udp"] {
            for verdict in ["allowed", "denied"] {
                groups.push(GroupSnapshot {
                    group: group.to_owned(),
                    proto,
                    verdict,
                    stats: GroupStats::default(),
                });
            }
        }
    }
    let set = |groups: &mut Vec<GroupSnapshot>, g: &str, p: &str, v: &str, s: GroupStats| {
        let e = groups
            .iter_mut()
            .find(|x| x.group == g && x.proto == p && x.verdict == v)
            .expect("slot exists");
        e.stats = s;
    };
    set(
        &mut groups,
        "kubelet",
        "tcp",
        "denied",
        GroupStats {
            packets: 5,
            bytes: 370,
            new_conns: 3,
            would_drop: 5,
            dropped: 0,
            events: 2,
            lost_rate_limited: 1,
            lost_ringbuf_full: 0,
            sampled_out: 0,
            lost_group_budget: 0,
        },
    );
    set(
        &mut groups,
        "kubelet",
        "tcp",
        "allowed",
        GroupStats {
            packets: 1200,
            bytes: 98_000,
            new_conns: 43,
            would_drop: 0,
            dropped: 0,
            events: 4,
            lost_rate_limited: 0,
            lost_ringbuf_full: 2,
            sampled_out: 34,
            lost_group_budget: 3,
        },
    );
    set(
        &mut groups,
        "etcd",
        "tcp",
        "denied",
        GroupStats {
            dropped: 7,
            ..stats(7)
        },
    );
    set(&mut groups, "nodeports", "udp", "allowed", stats(11));
    Snapshot {
        groups,
        reasons: node_monitor::metrics::reasons_snapshot(&{
            let mut r = [0u64; node_monitor_common::reason::COUNT as usize];
            r[node_monitor_common::reason::NOT_IP as usize] = 42;
            r[node_monitor_common::reason::TRUNC_L4 as usize] = 3;
            r
        }),
        answers: vec![
            ("kubelet".into(), "tcp", "accepted", 2),
            ("kubelet".into(), "tcp", "refused", 1),
            ("kubelet".into(), "tcp", "none", 0),
        ],
        flagged_by_source: vec![SourceWorkloadCount {
            group: "kubelet".into(),
            source_kind: "pod",
            namespace: "shop".into(),
            workload_kind: "Deployment".into(),
            workload: "evil".into(),
            count: 2,
        }],
        alerts: vec![
            ("kubelet-unauthorized-source".into(), "high", 3),
            ("etcd-unauthorized-source".into(), "critical", 1),
        ],
        alerts_suppressed: vec![("kubelet-unauthorized-source".into(), 9)],
        lost_events: vec![
            ("sink_queue_full".into(), 4),
            ("malformed".into(), 0),
            // Kernel reasons come from `groups`; a caller that lists them too is ignored.
            ("rate_limited".into(), 1),
            ("ringbuf_full".into(), 2),
        ],
        sinks: vec![
            SinkSnapshot {
                name: "siem".into(),
                kind: "http",
                sent: 17,
                dropped: vec![("queue_full".into(), 2), ("send_error".into(), 1)],
                queue_len: 3,
            },
            SinkSnapshot {
                name: "stdout".into(),
                kind: "stdout",
                sent: 20,
                dropped: vec![],
                queue_len: 0,
            },
        ],
        flow_table_entries: 123,
        flow_table_capacity: 65_536,
        programs: vec![
            ProgramSnapshot {
                program: "xdp",
                run_count: 1000,
                run_time_ns: 1_500_000_000,
            },
            ProgramSnapshot {
                program: "tc_egress",
                run_count: 10,
                run_time_ns: 250_000,
            },
        ],
        config_reloads: vec![("success", 2), ("failure", 1)],
        attached_interfaces: 2,
        pending_answers: 6,
        detectors: vec![
            DetectorSnapshot {
                detector: "scan",
                entries: 12,
                capacity: 16_384,
                evictions: 3,
            },
            DetectorSnapshot {
                detector: "dedup",
                entries: 40,
                capacity: 32_768,
                evictions: 0,
            },
        ],
        cluster: None,
    }
}

pub(crate) fn populated() -> Metrics {
    let m = Metrics::new();
    m.update(&snapshot());
    m
}
