//! The one fixture builder of alerts and output items, shared by the unit tests, the
//! integration tests and the bench (feature `test-support`): one of each alert kind and a
//! broad variety of items for the format tests. Records come from
//! [`crate::record::fixture`].
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use node_monitor_common::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG};

use super::{
    model::{
        Alert, AlertKind, AnswerCounts, FloodAnswers, FloodScope, FloodSummary, OutputItem, Rule,
        TopPortCount, TopSourceCount,
    },
    rules,
};
use crate::record::{
    Action, Answer, Family, FlowRecord, Hook, Protocol, RecordType, TcpFlags, Verdict,
    fixture::{TIME_US, flagged, fragmented, handshake_completed, sampled, time_us, unseen},
};

/// An alert at the time of [`flagged`], first of its series, without losses.
pub fn alert(kind: AlertKind, rule: Rule) -> Alert {
    Alert {
        id: "3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d".to_owned(),
        time: time_us(TIME_US),
        rule,
        kind,
        suppressed: 0,
        follow_up_of: None,
        repeats_by_answer: None,
        losses_since_previous: BTreeMap::new(),
    }
}

/// The kubelet rule's alert on [`flagged`], with 4 events lost to a full ring buffer.
pub fn connection_alert() -> Alert {
    let mut a = alert(
        AlertKind::Connection { record: flagged() },
        rules::rule_for_group("kubelet"),
    );
    a.losses_since_previous.insert("ringbuf_full".to_owned(), 4);
    a
}

/// NM-1030 on [`unseen`]: the node accepted a kubelet connection ingress never saw.
pub fn unseen_alert() -> Alert {
    alert(
        AlertKind::Connection { record: unseen() },
        rules::unseen_rule("kubelet"),
    )
}

/// NM-1030 on [`handshake_completed`]: the peer's ACK named a kubelet connection whose
/// attempt and acceptance the budgets withheld.
pub fn handshake_alert() -> Alert {
    alert(
        AlertKind::Connection {
            record: handshake_completed(),
        },
        rules::unseen_rule("kubelet"),
    )
}

/// The kubelet rule's alert on [`fragmented`]: a SYN sent in 8-byte fragments, accepted.
pub fn fragmented_alert() -> Alert {
    alert(
        AlertKind::Connection {
            record: fragmented(),
        },
        rules::rule_for_group("kubelet"),
    )
}

/// A dedup follow-up of [`connection_alert`] with 17 repeats.
pub fn follow_up() -> Alert {
    let mut a = alert(
        AlertKind::Connection { record: flagged() },
        rules::rule_for_group("kubelet"),
    );
    a.id = "0b7c9e2d-1111-4222-8333-444455556666".to_owned();
    a.suppressed = 17;
    a.follow_up_of = Some("3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d".to_owned());
    a.repeats_by_answer = Some(AnswerCounts {
        accepted: 0,
        refused: 12,
        no_answer: 5,
    });
    a
}

/// The id of the alert that [`late_answer_alert`] corrects.
pub const CORRECTED_ALERT: &str = "9b7e3c1a-5d2f-4a8e-b6c4-1f0e2d3c4b5a";

/// A late answer: the node accepted the attempt of [`flagged`] after it was reported as
/// `no_answer` (the record of the answer packet, seen on tc egress).
pub fn late_answer_alert() -> Alert {
    let record = FlowRecord {
        answer: Some(Answer::Accepted),
        answer_corrects: Some(Answer::NoAnswer),
        answer_corrects_alert: Some(CORRECTED_ALERT.to_owned()),
        hook: Hook::Tc,
        tcp_flags: None,
        ..flagged()
    };
    alert(
        AlertKind::Connection { record },
        rules::rule_for_group("kubelet"),
    )
}

/// A NodePort sweep of five ports within 60 s by the source of [`flagged`].
pub fn sweep() -> Alert {
    let last = FlowRecord {
        group: "nodeport".into(),
        dst_port: 30005,
        verdict: Verdict::Allowed,
        action: Action::Pass,
        answer: None,
        vlan: vec![],
        ..flagged()
    };
    alert(
        AlertKind::Sweep {
            source: last.src_ip,
            group: "nodeport".into(),
            ports: vec![30001, 30002, 30003, 30004, 30005],
            window: Duration::from_secs(60),
            last,
        },
        rules::sweep_rule(),
    )
}

/// A control-plane port scan by the source of [`flagged`]: five ports of five groups within
/// 60 s, seven connections of which five alerted on their own.
pub fn scan() -> Alert {
    let last = FlowRecord {
        group: "kubelet-readonly".into(),
        dst_port: 10255,
        vlan: vec![],
        ..flagged()
    };
    alert(
        AlertKind::Scan {
            source: last.src_ip,
            ports: vec![2379, 2380, 6443, 10250, 10255],
            groups: [
                "apiserver",
                "etcd-client",
                "etcd-peer",
                "kubelet",
                "kubelet-readonly",
            ]
            .map(Into::into)
            .to_vec(),
            window: Duration::from_secs(60),
            connections: 7,
            connection_alerts: 5,
            last,
        },
        rules::scan_rule(),
    )
}

/// A node-wide flood: 260 events rate limited and 7 lost to a full ring buffer within 10 s.
pub fn flood() -> Alert {
    alert(
        AlertKind::Flood {
            scope: FloodScope::Node,
            rate_limited: 260,
            ringbuf_full: 7,
            window: Duration::from_secs(10),
            summary: None,
        },
        rules::flood_rule(),
    )
}

/// A group's flood: 4,000 new connections to the kubelet in 10 s, 100 sent, 12 rate
/// limited, 3,880 withheld by the group budget, 8 lost to a full ring buffer; 3,850
/// distinct sources (spoofed likely), two top sources and two top ports, 5 SYN-ACKs and
/// 2 RSTs.
pub fn group_flood() -> Alert {
    let start = time_us(TIME_US - 10_000_000);
    alert(
        AlertKind::Flood {
            scope: FloodScope::Group("kubelet".into()),
            rate_limited: 12,
            ringbuf_full: 8,
            window: Duration::from_secs(10),
            summary: Some(Box::new(FloodSummary {
                new_connections: 4000,
                events: 100,
                group_budget: 3880,
                distinct_sources: 3850,
                top_sources: vec![
                    TopSourceCount {
                        ip: Ipv4Addr::new(203, 0, 113, 7).into(),
                        withheld: 14,
                        rate_limited: 12,
                        error: 0,
                    },
                    TopSourceCount {
                        ip: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9).into(),
                        withheld: 2,
                        rate_limited: 0,
                        error: 1,
                    },
                ],
                top_ports: vec![
                    TopPortCount {
                        port: 10250,
                        withheld: 3890,
                        error: 0,
                    },
                    TopPortCount {
                        port: 10251,
                        withheld: 2,
                        error: 0,
                    },
                ],
                start,
                end: time_us(TIME_US),
                spoofed_likely: true,
                answered: FloodAnswers {
                    accepted: 5,
                    refused: 2,
                },
                folded_alerts: 6,
                folded_by_answer: AnswerCounts {
                    accepted: 1,
                    refused: 2,
                    no_answer: 3,
                },
            })),
        },
        rules::flood_rule(),
    )
}

/// A broad mix of items: every alert kind, follow-ups, sampled flows, IPv4/IPv6, VLAN
/// untagged / single / double tagged, with and without losses, every action and answer,
/// interface known or not, TCP flags or none, strings that need escaping.
pub fn variety() -> Vec<OutputItem> {
    let v4: IpAddr = Ipv4Addr::new(203, 0, 113, 5).into();
    let v6: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xdead, 0xbeef).into();
    let mut records = Vec::new();
    for (src, dst) in [
        (flagged().src_ip, flagged().dst_ip),
        (sampled().src_ip, sampled().dst_ip),
        (v4, Ipv4Addr::new(10, 0, 0, 1).into()),
        (v6, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).into()),
    ] {
        for vlan in [vec![], vec![7], vec![100, 200]] {
            for (verdict, action) in [
                (Verdict::Denied, Action::WouldDrop),
                (Verdict::Denied, Action::Dropped),
                (Verdict::Allowed, Action::Pass),
            ] {
                for answer in [
                    None,
                    Some(Answer::Accepted),
                    Some(Answer::Refused),
                    Some(Answer::NoAnswer),
                ] {
                    let mut r = flagged();
                    r.src_ip = src;
                    r.dst_ip = dst;
                    r.family = if src.is_ipv6() {
                        Family::Ipv6
                    } else {
                        Family::Ipv4
                    };
                    r.vlan = vlan.clone();
                    r.verdict = verdict;
                    r.action = action;
                    r.answer = answer;
                    records.push(r);
                }
            }
        }
    }
    // Odd ones: UDP without flags, no interface, several flags, escaping-hungry group.
    for (i, r) in records.iter_mut().enumerate() {
        match i % 5 {
            1 => {
                r.protocol = Protocol::Udp;
                r.tcp_flags = None;
            }
            2 => {
                r.interface = None;
                r.answer_corrects = Some(Answer::NoAnswer);
            }
            3 => {
                r.tcp_flags = Some(TcpFlags::from_bits(
                    TCP_SYN | TCP_ACK | TCP_FIN | TCP_PSH | TCP_URG | TCP_RST,
                ));
            }
            4 => {
                r.group = "g\"r\\o=u|p\n✓".into();
                r.ifindex = u32::MAX;
                r.src_port = 0;
                r.dst_port = u16::MAX;
            }
            _ => {}
        }
    }
    let mut items = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut a = connection_alert();
        a.kind = AlertKind::Connection { record: r.clone() };
        a.losses_since_previous.clear();
        if i % 2 == 0 {
            a.losses_since_previous.insert("ringbuf_full".to_owned(), 4);
            a.losses_since_previous
                .insert("sink_queue_full".to_owned(), u64::MAX);
        }
        if i % 3 == 0 {
            a.rule = rules::rule_for_group(&r.group);
        }
        if i % 4 == 1 {
            a.suppressed = 1;
            a.follow_up_of = Some("first-\"id".to_owned());
            a.repeats_by_answer = Some(AnswerCounts {
                accepted: u64::MAX,
                refused: 1,
                no_answer: 0,
            });
        }
        items.push(OutputItem::Alert(a));
        let mut f = r.clone();
        f.record_type = RecordType::Sampled;
        f.sampled = true;
        items.push(OutputItem::Flow(f));
    }
    items.push(OutputItem::Alert(connection_alert()));
    items.push(OutputItem::Alert(unseen_alert()));
    items.push(OutputItem::Alert(fragmented_alert()));
    items.push(OutputItem::Alert(handshake_alert()));
    let mut unseen_v6 = unseen_alert();
    if let AlertKind::Connection { record } = &mut unseen_v6.kind {
        record.family = Family::Ipv6;
        record.src_ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x100, 0, 0, 0, 0x77).into();
        record.dst_ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x100, 0, 0, 0, 1).into();
        record.protocol = Protocol::Udp;
        record.tcp_flags = None;
    }
    items.push(OutputItem::Alert(unseen_v6));
    items.push(OutputItem::Alert(follow_up()));
    items.push(OutputItem::Flow(flagged()));
    items.push(OutputItem::Flow(sampled()));
    for last in [flagged(), sampled(), records[37].clone()] {
        let mut s = sweep();
        if let AlertKind::Sweep {
            source,
            last: l,
            ports,
            ..
        } = &mut s.kind
        {
            *source = last.src_ip;
            *l = last;
            ports.push(u16::MAX);
        }
        items.push(OutputItem::Alert(s.clone()));
        s.suppressed = 3;
        s.follow_up_of = Some(s.id.clone());
        s.losses_since_previous.insert("rate_limited".to_owned(), 9);
        items.push(OutputItem::Alert(s));
    }
    for last in [flagged(), records[37].clone()] {
        let mut s = scan();
        if let AlertKind::Scan {
            source, last: l, ..
        } = &mut s.kind
        {
            *source = last.src_ip;
            *l = last;
        }
        items.push(OutputItem::Alert(s.clone()));
        s.suppressed = 1;
        s.follow_up_of = Some(s.id.clone());
        items.push(OutputItem::Alert(s));
    }
    items.push(OutputItem::Alert(group_flood()));
    for scope in [
        FloodScope::Node,
        FloodScope::Source(v4),
        FloodScope::Source(v6),
        FloodScope::Group("esc\\|=ape".into()),
    ] {
        let mut f = flood();
        if let AlertKind::Flood { scope: s, .. } = &mut f.kind {
            *s = scope;
        }
        items.push(OutputItem::Alert(f.clone()));
        f.suppressed = 2;
        f.follow_up_of = Some("x".to_owned());
        f.losses_since_previous.insert("ringbuf_full".to_owned(), 1);
        items.push(OutputItem::Alert(f));
    }
    // Cluster identity (issue 8): every kind of source on alerts, flows and sweeps.
    for (i, id) in crate::record::fixture::identities().into_iter().enumerate() {
        let id = std::sync::Arc::new(id);
        let mut r = records[i * 7].clone();
        r.identity = Some(std::sync::Arc::clone(&id));
        items.push(OutputItem::Alert(alert(
            AlertKind::Connection { record: r.clone() },
            rules::rule_for_group("kubelet"),
        )));
        let mut s = sweep();
        if let AlertKind::Sweep { last, .. } = &mut s.kind {
            last.identity = Some(id);
        }
        items.push(OutputItem::Alert(s));
        r.record_type = RecordType::Sampled;
        r.sampled = true;
        items.push(OutputItem::Flow(r));
    }
    items
}
