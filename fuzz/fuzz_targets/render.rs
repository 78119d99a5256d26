//! The three renderers on arbitrary records, with or without a cluster identity (every kind
//! of source, names from raw strings, a NodePort Service with any `loadBalancerSourceRanges`),
//! with or without a completed handshake and a correcting answer (`answer_corrects_alert`,
//! any text): ECS and OCSF written by hand must be valid JSON equal
//! to their serde documents; a CEF line is one line, with its header's seven unescaped
//! separators.
#![no_main]

use std::{sync::Arc, time::Duration};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use node_monitor::{
    config::Format,
    detect::{AlertKind, OutputItem},
    record::{
        self, Action, Answer, CacheState, DestinationIdentity, Family, FlowIdentity, Hook,
        NodeIdentity, PodIdentity, ServiceIdentity, SourceIdentity, TcpFlags, Verdict, Workload,
    },
    render::{self, Observer},
};
use node_monitor_fuzz::{ip, net};

#[derive(Debug, Arbitrary)]
struct Input {
    alert: bool,
    group: String,
    interface: Option<String>,
    hostname: String,
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    src_port: u16,
    dst_port: u16,
    verdict: u8,
    action: u8,
    answer: u8,
    corrects: u8,
    hook: u8,
    flags: u8,
    vlan: Vec<u16>,
    len: u32,
    time_us: u64,
    identity: Option<Identity>,
    /// Bit 0: `fragmented`; bit 1: `handshake_completed`.
    marks: u8,
    /// `answer_corrects_alert`: any text, escaped like the other strings.
    corrects_alert: Option<String>,
}

/// A flow identity from raw parts: `kind` picks the source (pod, node, host network,
/// external, unresolved).
#[derive(Debug, Arbitrary)]
struct Identity {
    kind: u8,
    names: [String; 4],
    roles: Vec<String>,
    node: Option<String>,
    service: Option<Service>,
    synced: bool,
    stale: bool,
    age_s: u32,
}

/// A NodePort's Service: namespace, name, `externalTrafficPolicy`, and its
/// `loadBalancerSourceRanges` from raw address bytes, family and prefix length (clamped to
/// the family's).
#[derive(Debug, Arbitrary)]
struct Service {
    namespace: String,
    name: String,
    policy: Option<String>,
    ranges: Vec<(bool, [u8; 16], u8)>,
}

fn identity(i: Identity) -> FlowIdentity {
    let [a, b, c, d] = i.names.map(|n| Arc::<str>::from(n.as_str()));
    let node = || {
        Arc::new(NodeIdentity {
            name: a.clone(),
            roles: i.roles.iter().map(|r| Arc::from(r.as_str())).collect(),
        })
    };
    let source = match i.kind % 5 {
        0 => SourceIdentity::Pod(Arc::new(PodIdentity {
            namespace: a.clone(),
            name: b.clone(),
            uid: c.clone(),
            node: i.node.as_deref().map(Arc::from),
            workload: Workload {
                kind: d.clone(),
                name: b.clone(),
            },
        })),
        1 => SourceIdentity::Node(node()),
        2 => SourceIdentity::HostNetwork(node()),
        3 => SourceIdentity::External,
        _ => SourceIdentity::Unresolved,
    };
    FlowIdentity {
        source,
        destination: DestinationIdentity {
            node: i.node.as_deref().map(Arc::from),
            service: i.service.map(|s| {
                Arc::new(ServiceIdentity {
                    namespace: s.namespace.as_str().into(),
                    name: s.name.as_str().into(),
                    external_traffic_policy: s.policy.as_deref().map(Arc::from),
                    load_balancer_source_ranges: s
                        .ranges
                        .into_iter()
                        .take(16)
                        .map(|(v6, b, len)| net(v6, b, len))
                        .collect(),
                })
            }),
        },
        cache: CacheState {
            synced: i.synced,
            stale: i.stale,
            age: Duration::from_secs(u64::from(i.age_s)),
        },
    }
}

fuzz_target!(|i: Input| {
    let mut r = record::fixture::flagged();
    r.group = Arc::from(i.group.as_str());
    r.interface = i.interface.as_deref().map(Arc::from);
    r.family = if i.v6 { Family::Ipv6 } else { Family::Ipv4 };
    r.src_ip = ip(i.v6, i.src);
    r.dst_ip = ip(i.v6, i.dst);
    r.src_port = i.src_port;
    r.dst_port = i.dst_port;
    r.verdict = Verdict::from_raw(i.verdict);
    r.action = Action::from_raw(i.action);
    r.answer = Answer::from_raw(i.answer);
    r.answer_corrects = Answer::from_raw(i.corrects);
    r.hook = Hook::from_raw(i.hook);
    r.tcp_flags = Some(TcpFlags::from_bits(i.flags));
    r.vlan = i
        .vlan
        .into_iter()
        .take(2)
        .map(|v| v & 0x0fff)
        .filter(|v| *v != 0)
        .collect();
    r.packet_length = i.len;
    r.time = record::fixture::time_us(i.time_us % 4_102_444_800_000_000);
    r.identity = i.identity.map(|id| Arc::new(identity(id)));
    r.fragmented = i.marks & 1 != 0;
    r.handshake_completed = i.marks & 2 != 0;
    r.answer_corrects_alert = i.corrects_alert;
    let item = if i.alert {
        let mut a = node_monitor::detect::fixture::connection_alert();
        if let AlertKind::Connection { record } = &mut a.kind {
            *record = r;
        }
        OutputItem::Alert(a)
    } else {
        OutputItem::Flow(r)
    };
    let observer = Observer {
        hostname: i.hostname,
        ..Observer::local()
    };
    let ecs = render::render(&item, Format::Ecs, &observer);
    let have: serde_json::Value = serde_json::from_str(&ecs).expect("ECS is JSON");
    assert_eq!(have, render::ecs::to_value(&item, &observer), "ECS");
    let ocsf = render::render(&item, Format::Ocsf, &observer);
    let have: serde_json::Value = serde_json::from_str(&ocsf).expect("OCSF is JSON");
    assert_eq!(have, render::ocsf::to_value(&item, &observer), "OCSF");
    let cef = render::render(&item, Format::Cef, &observer);
    assert!(
        !cef.contains('\n') && !cef.contains('\r'),
        "one line: {cef:?}"
    );
    // Seven unescaped `|` end the header.
    let mut pipes = 0;
    let mut escaped = false;
    for c in cef.chars() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '|') => pipes += 1,
            _ => {}
        }
        if pipes == 7 {
            break;
        }
    }
    assert_eq!(pipes, 7, "CEF header: {cef:?}");
});
