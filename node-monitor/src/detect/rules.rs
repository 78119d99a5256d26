//! The rule catalog: stable, versioned ids keyed by the port-catalog group name.
//!
//! Ids never change meaning; a rule's `version` is bumped whenever its logic changes. The
//! table in `ALERTS.md` documents every rule (keep the two in step: a test checks the ids).
use super::model::{Rule, Severity};

pub const KUBELET: &str = "NM-1001";
pub const KUBELET_READONLY: &str = "NM-1002";
pub const ETCD: &str = "NM-1003";
pub const NODE_LOCAL: &str = "NM-1004";
pub const APISERVER: &str = "NM-1005";
pub const KUBE_PROXY_HEALTHZ: &str = "NM-1006";
pub const NODEPORT_SWEEP: &str = "NM-1010";
pub const PORT_SCAN: &str = "NM-1011";
pub const FLOOD: &str = "NM-1020";
pub const UNSEEN_ACCEPTED: &str = "NM-1030";
pub const GENERIC: &str = "NM-1900";

pub use crate::config::NODE_LOCAL_GROUPS;

/// The version of the connection rules (NM-1001..NM-1006, NM-1900). 2: a new connection is
/// a pure SYN (a probe never holds a later SYN back; another initial sequence number or an
/// answered attempt starts a new one), a late answer is an alert of its own
/// (`answer_corrects`), and dedup keeps accepted connections in a series of their own.
pub const CONNECTION_RULES_VERSION: u32 = 2;

const fn rule(
    id: &'static str,
    name: &'static str,
    severity: Severity,
    description: &'static str,
) -> Rule {
    Rule {
        id,
        name,
        version: 1,
        severity,
        description,
    }
}

/// A connection rule: [`rule`] at [`CONNECTION_RULES_VERSION`].
const fn connection_rule(
    id: &'static str,
    name: &'static str,
    severity: Severity,
    description: &'static str,
) -> Rule {
    Rule {
        version: CONNECTION_RULES_VERSION,
        ..rule(id, name, severity, description)
    }
}

fn generic() -> Rule {
    connection_rule(
        GENERIC,
        "watched port reached from a source not allowed",
        Severity::Medium,
        "A new connection reached a watched port group from a source outside the group's \
         allowlist.",
    )
}

/// The rule for a flagged connection to a port of `group` (any group name: unknown,
/// user-defined groups get the generic NM-1900).
pub fn rule_for_group(group: &str) -> Rule {
    match group {
        "kubelet" => connection_rule(
            KUBELET,
            "kubelet API access from a source not allowed",
            Severity::High,
            "A new connection reached the kubelet API (10250) from a source outside its \
             allowlist (normally the API server and the metrics pipeline only).",
        ),
        "kubelet-readonly" => connection_rule(
            KUBELET_READONLY,
            "kubelet read-only port reached",
            Severity::High,
            "A new connection reached the kubelet read-only port (10255), which should be \
             closed: its allowlist is empty, so every source is flagged.",
        ),
        "etcd-client" | "etcd-peer" => connection_rule(
            ETCD,
            "etcd accessed from a source not allowed",
            Severity::Critical,
            "A new connection reached etcd (client 2379 or peer 2380) from a source outside \
             the control-plane allowlist.",
        ),
        g if NODE_LOCAL_GROUPS.contains(&g) => connection_rule(
            NODE_LOCAL,
            "node-local control-plane endpoint reached from off the node",
            Severity::High,
            "A new connection reached an endpoint meant for the node itself (scheduler, \
             controller-manager, kubelet healthz, etcd metrics, kube-proxy metrics) from \
             a source outside its allowlist.",
        ),
        "apiserver" => connection_rule(
            APISERVER,
            "API server access from a source not allowed",
            Severity::Medium,
            "A new connection reached the API server (6443) from a source outside its \
             allowlist.",
        ),
        // The generic rule's severity, with its own id and name.
        "kube-proxy-healthz" => connection_rule(
            KUBE_PROXY_HEALTHZ,
            "kube-proxy health check reached from a source not allowed",
            generic().severity,
            "A new connection reached the kube-proxy health check (10256) from a source \
             outside its allowlist (load balancers and nodes).",
        ),
        _ => generic(),
    }
}

/// NodePort sweep: one source touched many distinct ports of a sweep-watched group.
pub fn sweep_rule() -> Rule {
    rule(
        NODEPORT_SWEEP,
        "NodePort sweep",
        Severity::Medium,
        "One source opened connections to at least `sweep_min_ports` distinct ports of a \
         sweep-watched group (the NodePort range) within `sweep_window`: a port scan.",
    )
}

/// Port scan across groups: one source's flagged connections reached many distinct watched
/// ports of several groups (a vertical scan of the node's control-plane ports).
pub fn scan_rule() -> Rule {
    rule(
        PORT_SCAN,
        "control-plane port scan",
        Severity::High,
        "One source's connections from outside the allowlists reached at least \
         `scan_min_ports` distinct watched ports, of at least two port groups, within \
         `scan_window`: a port scan of the node's control-plane ports.",
    )
}

/// Flood: the event limits withheld events (the per-source or the group budget, or a full
/// ring buffer). Version 2: one alert per port group and window, with the group's flood
/// summary (distinct sources, top sources and ports, the node's answers). Version 3: also
/// raised for the group's connection alerts the daemon folds past its cap per group and
/// window (`folded_alerts`).
pub fn flood_rule() -> Rule {
    Rule {
        version: 3,
        ..rule(
            FLOOD,
            "event limits reached (flood)",
            Severity::Medium,
            "Events of a port group were withheld by the per-source rate limit or the \
             group's node-wide budget, or lost to a full ring buffer, or its connection \
             alerts passed `connection_alerts_per_group` and were folded, within \
             `flood_window`: a flood (spoofed when nearly every source is new), or more \
             traffic than the sensor reports.",
        )
    }
}

/// The catalog groups whose unseen acceptance is critical rather than high: the kubelet's
/// and etcd's, whose API hands over the node or the cluster.
pub const UNSEEN_CRITICAL_GROUPS: &[&str] = &[
    "kubelet",
    "kubelet-readonly",
    "kubelet-healthz",
    "etcd-client",
    "etcd-peer",
    "etcd-metrics",
];

/// NM-1030: the node accepted (SYN-ACK, UDP reply) a connection from a source outside the
/// group's allowlist whose attempt ingress never saw: fragments it could not read, a device
/// that is not watched, or any other way around the ingress hook. High; critical for the
/// kubelet and etcd groups ([`UNSEEN_CRITICAL_GROUPS`]), picked by group like
/// [`rule_for_group`].
pub fn unseen_rule(group: &str) -> Rule {
    rule(
        UNSEEN_ACCEPTED,
        "the node accepted a connection nobody saw arrive",
        if UNSEEN_CRITICAL_GROUPS.contains(&group) {
            Severity::Critical
        } else {
            Severity::High
        },
        "The node answered a connection from a source outside the port group's allowlist \
         (a SYN-ACK, or the first UDP reply of a 5-tuple, seen on egress) although ingress \
         recorded no attempt from it: the request reached a listener unseen (IPv4 fragments, \
         an interface that is not watched, a header chain past the parser's bounds).",
    )
}

/// The rule for an alerting record: [`unseen_rule`] for an acceptance nobody saw asked for,
/// else the group's connection rule.
pub fn rule_for_record(record_type: crate::record::RecordType, group: &str) -> Rule {
    if record_type == crate::record::RecordType::Unseen {
        unseen_rule(group)
    } else {
        rule_for_group(group)
    }
}

/// Every rule of the catalog, by id.
pub fn all() -> Vec<Rule> {
    vec![
        rule_for_group("kubelet"),
        rule_for_group("kubelet-readonly"),
        rule_for_group("etcd-client"),
        rule_for_group("scheduler"),
        rule_for_group("apiserver"),
        rule_for_group("kube-proxy-healthz"),
        sweep_rule(),
        scan_rule(),
        flood_rule(),
        unseen_rule("kubelet"),
        generic(),
    ]
}

/// A coarse category for `rule.category` (ECS) and CEF `cat`.
pub fn category(rule_id: &str) -> &'static str {
    match rule_id {
        NODEPORT_SWEEP | PORT_SCAN => "network-scan",
        FLOOD => "sensor-event-loss",
        _ => "unauthorized-port-access",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_groups() {
        let cases = [
            ("kubelet", KUBELET, Severity::High),
            ("kubelet-readonly", KUBELET_READONLY, Severity::High),
            ("etcd-client", ETCD, Severity::Critical),
            ("etcd-peer", ETCD, Severity::Critical),
            ("scheduler", NODE_LOCAL, Severity::High),
            ("controller-manager", NODE_LOCAL, Severity::High),
            ("kubelet-healthz", NODE_LOCAL, Severity::High),
            ("etcd-metrics", NODE_LOCAL, Severity::High),
            ("kube-proxy-metrics", NODE_LOCAL, Severity::High),
            ("apiserver", APISERVER, Severity::Medium),
            ("kube-proxy-healthz", KUBE_PROXY_HEALTHZ, Severity::Medium),
            ("nodeport", GENERIC, Severity::Medium),
            ("my-custom-group", GENERIC, Severity::Medium),
        ];
        for (group, id, sev) in cases {
            let r = rule_for_group(group);
            assert_eq!(r.id, id, "{group}");
            assert_eq!(r.severity, sev, "{group}");
            assert_eq!(r.version, CONNECTION_RULES_VERSION);
            assert!(
                !r.name.contains(group) || group == "kubelet",
                "{group}: name is fixed"
            );
        }
        assert_eq!(sweep_rule().id, NODEPORT_SWEEP);
        assert_eq!(scan_rule().id, PORT_SCAN);
        assert_eq!(category(PORT_SCAN), "network-scan");
        assert_eq!(flood_rule().id, FLOOD);
        assert_eq!((sweep_rule().version, flood_rule().version), (1, 3));
    }

    #[test]
    fn unseen_acceptance_rule() {
        use crate::record::RecordType;
        for (group, sev) in [
            ("kubelet", Severity::Critical),
            ("kubelet-readonly", Severity::Critical),
            ("etcd-client", Severity::Critical),
            ("etcd-peer", Severity::Critical),
            ("apiserver", Severity::High),
            ("scheduler", Severity::High),
            ("nodeport", Severity::High),
            ("my-custom-group", Severity::High),
        ] {
            let r = unseen_rule(group);
            assert_eq!(
                (r.id, r.severity, r.version),
                (UNSEEN_ACCEPTED, sev, 1),
                "{group}"
            );
            assert_eq!(r.name, "the node accepted a connection nobody saw arrive");
        }
        assert_eq!(
            rule_for_record(RecordType::Unseen, "etcd-peer").id,
            "NM-1030"
        );
        assert_eq!(rule_for_record(RecordType::Flagged, "etcd-peer").id, ETCD);
        assert_eq!(category(UNSEEN_ACCEPTED), "unauthorized-port-access");
    }

    #[test]
    fn all_ids_unique_and_documented() {
        let rules = all();
        let mut ids: Vec<&str> = rules.iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), rules.len());
        let doc = include_str!("../../ALERTS.md");
        for r in &rules {
            assert!(doc.contains(r.id), "{} missing from ALERTS.md", r.id);
            assert!(doc.contains(r.name), "{} name missing from ALERTS.md", r.id);
        }
    }
}
