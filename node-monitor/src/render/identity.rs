//! Cluster identity in the formats: `source_identity`, `destination_identity` and
//! `identity_cache` in ECS `node_monitor` and OCSF `unmapped.node_monitor` (hand-written,
//! checked against the serde documents here), ECS `orchestrator.*` for the source, and the
//! CEF keys (`suser`, `suid`, `shost`, `dhost`, `destinationServiceName`, `flexString2`).
use serde::Serialize;

use super::json::{JsonOut, Members};
use crate::record::{
    CacheState, DestinationIdentity, FlowIdentity, FlowRecord, NodeIdentity, PodIdentity,
    SourceIdentity, Verdict,
};

/// `source_identity`.
#[derive(Serialize)]
pub(crate) struct SourceDoc<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workload: Option<WorkloadDoc<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<&'a str>>,
}

#[derive(Serialize)]
struct WorkloadDoc<'a> {
    kind: &'a str,
    name: &'a str,
}

/// `destination_identity`.
#[derive(Serialize)]
pub(crate) struct DestinationDoc<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<ServiceDoc<'a>>,
}

#[derive(Serialize)]
struct ServiceDoc<'a> {
    namespace: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_traffic_policy: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    load_balancer_source_ranges: Vec<String>,
}

/// `identity_cache`.
#[derive(Serialize)]
pub(crate) struct CacheDoc {
    synced: bool,
    stale: bool,
    age_s: u64,
}

/// The identity members of `node_monitor` (ECS) and `unmapped.node_monitor` (OCSF): the
/// serde document that [`write_identity_facts`] writes by hand.
#[derive(Serialize)]
pub(crate) struct IdentityFacts<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    source_identity: Option<SourceDoc<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination_identity: Option<DestinationDoc<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_cache: Option<CacheDoc>,
}

fn node_doc<'a>(kind: &'static str, n: &'a NodeIdentity) -> SourceDoc<'a> {
    SourceDoc {
        kind,
        namespace: None,
        name: None,
        uid: None,
        workload: None,
        node: Some(&n.name),
        roles: Some(n.roles.iter().map(|r| &**r).collect()),
    }
}

fn pod_doc(p: &PodIdentity) -> SourceDoc<'_> {
    SourceDoc {
        kind: "pod",
        namespace: Some(&p.namespace),
        name: Some(&p.name),
        uid: Some(&p.uid),
        workload: Some(WorkloadDoc {
            kind: &p.workload.kind,
            name: &p.workload.name,
        }),
        node: p.node.as_deref(),
        roles: None,
    }
}

impl IdentityFacts<'_> {
    pub(crate) fn of(rec: Option<&FlowRecord>) -> IdentityFacts<'_> {
        let Some(id) = rec.and_then(|r| r.identity.as_deref()) else {
            return IdentityFacts {
                source_identity: None,
                destination_identity: None,
                identity_cache: None,
            };
        };
        let bare = |kind| SourceDoc {
            kind,
            namespace: None,
            name: None,
            uid: None,
            workload: None,
            node: None,
            roles: None,
        };
        let source = match &id.source {
            SourceIdentity::Pod(p) => pod_doc(p),
            SourceIdentity::Node(n) => node_doc("node", n),
            SourceIdentity::HostNetwork(n) => node_doc("host_network", n),
            s @ (SourceIdentity::External | SourceIdentity::Unresolved) => bare(s.kind()),
        };
        let d: &DestinationIdentity = &id.destination;
        IdentityFacts {
            source_identity: Some(source),
            destination_identity: Some(DestinationDoc {
                node: d.node.as_deref(),
                service: d.service.as_deref().map(|s| ServiceDoc {
                    namespace: &s.namespace,
                    name: &s.name,
                    external_traffic_policy: s.external_traffic_policy.as_deref(),
                    load_balancer_source_ranges: s
                        .load_balancer_source_ranges
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                }),
            }),
            identity_cache: Some(cache_doc(id.cache)),
        }
    }
}

fn cache_doc(c: CacheState) -> CacheDoc {
    CacheDoc {
        synced: c.synced,
        stale: c.stale,
        age_s: c.age.as_secs(),
    }
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

fn write_node(j: &mut JsonOut<'_>, n: &NodeIdentity) {
    j.raw(",\"node\":").str(&n.name).raw(",\"roles\":[");
    for (i, r) in n.roles.iter().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        j.str(r);
    }
    j.raw("]");
}

/// Writes [`IdentityFacts`] of a record (nothing when it carries no identity).
pub(crate) fn write_identity_facts(m: &mut Members, j: &mut JsonOut<'_>, rec: Option<&FlowRecord>) {
    let Some(id) = rec.and_then(|r| r.identity.as_deref()) else {
        return;
    };
    m.key(j, "source_identity");
    j.raw("{\"kind\":").str(id.source.kind());
    match &id.source {
        SourceIdentity::Pod(p) => {
            j.raw(",\"namespace\":")
                .str(&p.namespace)
                .raw(",\"name\":")
                .str(&p.name)
                .raw(",\"uid\":")
                .str(&p.uid)
                .raw(",\"workload\":{\"kind\":")
                .str(&p.workload.kind)
                .raw(",\"name\":")
                .str(&p.workload.name)
                .raw("}");
            if let Some(n) = &p.node {
                j.raw(",\"node\":").str(n);
            }
        }
        SourceIdentity::Node(n) | SourceIdentity::HostNetwork(n) => write_node(j, n),
        SourceIdentity::External | SourceIdentity::Unresolved => {}
    }
    j.raw("}");
    m.key(j, "destination_identity");
    let mut d = Members::new();
    j.raw("{");
    if let Some(n) = &id.destination.node {
        d.key(j, "node");
        j.str(n);
    }
    if let Some(s) = &id.destination.service {
        d.key(j, "service");
        j.raw("{\"namespace\":")
            .str(&s.namespace)
            .raw(",\"name\":")
            .str(&s.name);
        if let Some(p) = &s.external_traffic_policy {
            j.raw(",\"external_traffic_policy\":").str(p);
        }
        if !s.load_balancer_source_ranges.is_empty() {
            j.raw(",\"load_balancer_source_ranges\":[");
            for (i, n) in s.load_balancer_source_ranges.iter().enumerate() {
                if i > 0 {
                    j.raw(",");
                }
                j.str(&n.to_string());
            }
            j.raw("]");
        }
        j.raw("}");
    }
    j.raw("}");
    m.key(j, "identity_cache");
    j.raw("{\"synced\":")
        .raw(bool_text(id.cache.synced))
        .raw(",\"stale\":")
        .raw(bool_text(id.cache.stale))
        .raw(",\"age_s\":")
        .num(id.cache.age.as_secs())
        .raw("}");
}

/// ECS `orchestrator.namespace` and `orchestrator.resource.*`: the source, when it is a pod
/// or a node (the document's `orchestrator` object, after its `type`).
#[derive(Serialize)]
pub(crate) struct OrchestratorSource<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    resource: ResourceDoc<'a>,
}

#[derive(Serialize)]
struct ResourceDoc<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<ParentDoc<'a>>,
}

#[derive(Serialize)]
struct ParentDoc<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
}

impl OrchestratorSource<'_> {
    pub(crate) fn of(rec: Option<&FlowRecord>) -> Option<OrchestratorSource<'_>> {
        let id: &FlowIdentity = rec?.identity.as_deref()?;
        match &id.source {
            SourceIdentity::Pod(p) => Some(OrchestratorSource {
                namespace: Some(&p.namespace),
                resource: ResourceDoc {
                    kind: "pod",
                    name: &p.name,
                    id: Some(&p.uid),
                    parent: Some(ParentDoc {
                        kind: &p.workload.kind,
                    }),
                },
            }),
            SourceIdentity::Node(n) | SourceIdentity::HostNetwork(n) => Some(OrchestratorSource {
                namespace: None,
                resource: ResourceDoc {
                    kind: "node",
                    name: &n.name,
                    id: None,
                    parent: None,
                },
            }),
            SourceIdentity::External | SourceIdentity::Unresolved => None,
        }
    }
}

/// Writes [`OrchestratorSource`] members (each with its leading comma).
pub(crate) fn write_orchestrator_source(j: &mut JsonOut<'_>, rec: Option<&FlowRecord>) {
    let Some(id) = rec.and_then(|r| r.identity.as_deref()) else {
        return;
    };
    match &id.source {
        SourceIdentity::Pod(p) => {
            j.raw(",\"namespace\":")
                .str(&p.namespace)
                .raw(",\"resource\":{\"type\":\"pod\",\"name\":")
                .str(&p.name)
                .raw(",\"id\":")
                .str(&p.uid)
                .raw(",\"parent\":{\"type\":")
                .str(&p.workload.kind)
                .raw("}}");
        }
        SourceIdentity::Node(n) | SourceIdentity::HostNetwork(n) => {
            j.raw(",\"resource\":{\"type\":\"node\",\"name\":")
                .str(&n.name)
                .raw("}");
        }
        SourceIdentity::External | SourceIdentity::Unresolved => {}
    }
}

/// Ranges as the message and CEF write them: `198.51.100.0/24,2001:db8::/32`.
fn ranges_text(nets: &[ipnet::IpNet]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Appends the identity to an alert's or flow's message: ` Source: pod shop/web-1
/// (Deployment web, node worker-2); to node worker-1, Service shop/web.` (nothing without
/// identity).
pub(crate) fn write_sentence(out: &mut Vec<u8>, rec: &FlowRecord) {
    let Some(id) = rec.identity.as_deref() else {
        return;
    };
    let mut t = |s: &str| out.extend_from_slice(s.as_bytes());
    t(" Source: ");
    match &id.source {
        SourceIdentity::Pod(p) => {
            t("pod ");
            t(&p.namespace);
            t("/");
            t(&p.name);
            t(" (");
            t(&p.workload.kind);
            t(" ");
            t(&p.workload.name);
            if let Some(n) = &p.node {
                t(", node ");
                t(n);
            }
            t(")");
        }
        SourceIdentity::Node(n) => {
            t("node ");
            t(&n.name);
        }
        SourceIdentity::HostNetwork(n) => {
            t("node ");
            t(&n.name);
            t(" (host network)");
        }
        SourceIdentity::External => t("outside the cluster"),
        SourceIdentity::Unresolved => t("unresolved"),
    }
    if !id.cache.synced {
        t(", identity cache not synced");
    } else if id.cache.stale {
        t(", identity stale");
    }
    if let Some(n) = &id.destination.node {
        t("; to node ");
        t(n);
    }
    if let Some(s) = &id.destination.service {
        t(", Service ");
        t(&s.namespace);
        t("/");
        t(&s.name);
        if rec.verdict == Verdict::Denied && s.outside_source_ranges(rec.src_ip) {
            t(", source outside its loadBalancerSourceRanges ");
            t(&ranges_text(&s.load_balancer_source_ranges));
        }
    }
    t(".");
}

/// The CEF keys of a record's identity, as `(key, value)` pairs in writing order: `suser`
/// (`namespace/pod`), `suid` (pod uid), `shost` (the source's node), `flexString2`
/// (`pod Deployment/web`, `node`, `host_network`, `external`, `unresolved`, then
/// ` stale` or ` unsynced` when so), `dhost` (this node), `destinationServiceName`
/// (`namespace/service`), `flexNumber1` (cache age in seconds).
pub(crate) fn cef_pairs(rec: &FlowRecord, mut put: impl FnMut(&'static str, &str)) {
    let Some(id) = rec.identity.as_deref() else {
        return;
    };
    let mut what = String::from(id.source.kind());
    match &id.source {
        SourceIdentity::Pod(p) => {
            put("suser", &format!("{}/{}", p.namespace, p.name));
            put("suid", &p.uid);
            if let Some(n) = &p.node {
                put("shost", n);
            }
            what.push(' ');
            what.push_str(&p.workload.kind);
            what.push('/');
            what.push_str(&p.workload.name);
        }
        SourceIdentity::Node(n) | SourceIdentity::HostNetwork(n) => put("shost", &n.name),
        SourceIdentity::External | SourceIdentity::Unresolved => {}
    }
    if !id.cache.synced {
        what.push_str(" unsynced");
    } else if id.cache.stale {
        what.push_str(" stale");
    }
    put("flexString2", &what);
    put("flexString2Label", "sourceIdentity");
    if let Some(n) = &id.destination.node {
        put("dhost", n);
    }
    if let Some(s) = &id.destination.service {
        put(
            "destinationServiceName",
            &format!("{}/{}", s.namespace, s.name),
        );
        if rec.verdict == Verdict::Denied && s.outside_source_ranges(rec.src_ip) {
            put(
                "reason",
                &format!(
                    "source outside loadBalancerSourceRanges {}",
                    ranges_text(&s.load_balancer_source_ranges)
                ),
            );
        }
    }
    put(
        "flexNumber1",
        itoa::Buffer::new().format(id.cache.age.as_secs()),
    );
    put("flexNumber1Label", "identityCacheAgeSeconds");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use crate::{
        config::Format,
        detect::{AlertKind, OutputItem, fixture::alert, rules},
        record::fixture::{flagged, identities},
        render::{check::observer, ecs, ocsf, render},
    };

    fn alert_with(n: usize) -> OutputItem {
        let mut r = flagged();
        r.identity = Some(Arc::new(identities().swap_remove(n)));
        OutputItem::Alert(alert(
            AlertKind::Connection { record: r },
            rules::rule_for_group("kubelet"),
        ))
    }

    #[test]
    fn ecs_names_the_pod_its_workload_node_and_the_nodeport_service() {
        let v = ecs::to_value(&alert_with(0), &observer());
        assert_eq!(
            v["orchestrator"],
            json!({"type": "kubernetes", "namespace": "shop", "resource": {
                "type": "pod", "name": "evil-6b7d9c-x2x9z",
                "id": "0d3c7a52-7a39-4f1b-9d2e-5b3f0c1a2b3c", "parent": {"type": "Deployment"}}})
        );
        let nm = &v["node_monitor"];
        assert_eq!(
            nm["source_identity"],
            json!({"kind": "pod", "namespace": "shop", "name": "evil-6b7d9c-x2x9z",
                "uid": "0d3c7a52-7a39-4f1b-9d2e-5b3f0c1a2b3c",
                "workload": {"kind": "Deployment", "name": "evil"}, "node": "worker-1"})
        );
        assert_eq!(
            nm["destination_identity"],
            json!({"node": "worker-1", "service": {"namespace": "shop", "name": "web", "external_traffic_policy": "Local", "load_balancer_source_ranges": ["198.51.100.0/24"]}})
        );
        assert_eq!(
            nm["identity_cache"],
            json!({"synced": true, "stale": false, "age_s": 0})
        );
        assert!(
            v["message"].as_str().unwrap().ends_with(
                "). Source: pod shop/evil-6b7d9c-x2x9z (Deployment evil, node worker-1); to node worker-1, Service shop/web, source outside its loadBalancerSourceRanges 198.51.100.0/24."
            ),
            "{}",
            v["message"]
        );
        let v = ecs::to_value(&alert_with(2), &observer());
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .ends_with("). Source: node cp-1 (host network).")
        );
        let v = ecs::to_value(&alert_with(4), &observer());
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .ends_with("). Source: unresolved, identity cache not synced; to node worker-1.")
        );
    }

    #[test]
    fn ecs_nodes_host_network_external_and_unresolved() {
        let v = ecs::to_value(&alert_with(1), &observer());
        assert_eq!(
            v["node_monitor"]["source_identity"],
            json!({"kind": "node", "node": "cp-1", "roles": ["control-plane", "etcd"]})
        );
        assert_eq!(
            v["orchestrator"]["resource"],
            json!({"type": "node", "name": "cp-1"})
        );
        let v = ecs::to_value(&alert_with(2), &observer());
        assert_eq!(
            v["node_monitor"]["source_identity"],
            json!({"kind": "host_network", "node": "cp-1", "roles": []})
        );
        assert_eq!(v["node_monitor"]["destination_identity"], json!({}));
        let v = ecs::to_value(&alert_with(3), &observer());
        assert_eq!(
            v["node_monitor"]["source_identity"],
            json!({"kind": "external"})
        );
        assert_eq!(v["orchestrator"], json!({"type": "kubernetes"}));
        let v = ecs::to_value(&alert_with(4), &observer());
        assert_eq!(
            v["node_monitor"]["source_identity"],
            json!({"kind": "unresolved"})
        );
        assert_eq!(v["node_monitor"]["identity_cache"]["synced"], false);
        let v = ecs::to_value(&alert_with(5), &observer());
        assert_eq!(
            v["node_monitor"]["identity_cache"],
            json!({"synced": true, "stale": true, "age_s": 75})
        );
        // Without a cluster, none of it.
        let v = ecs::to_value(
            &OutputItem::Alert(crate::detect::fixture::connection_alert()),
            &observer(),
        );
        assert_eq!(v["orchestrator"], json!({"type": "kubernetes"}));
        assert!(v["node_monitor"].get("source_identity").is_none());
        assert!(v["node_monitor"].get("identity_cache").is_none());
    }

    #[test]
    fn ocsf_carries_identity_in_unmapped() {
        let v = ocsf::to_value(&alert_with(0), &observer());
        let nm = &v["unmapped"]["node_monitor"];
        assert_eq!(nm["source_identity"]["workload"]["name"], "evil");
        assert_eq!(nm["destination_identity"]["service"]["name"], "web");
        assert_eq!(nm["identity_cache"]["synced"], true);
    }

    #[test]
    fn a_source_is_outside_the_ranges_only_when_the_service_has_some() {
        let mut s = crate::record::ServiceIdentity {
            namespace: "shop".into(),
            name: "web".into(),
            external_traffic_policy: None,
            load_balancer_source_ranges: vec![
                "198.51.100.0/24".parse().unwrap(),
                "2001:db8:1::/48".parse().unwrap(),
            ],
        };
        let ip = |t: &str| t.parse::<std::net::IpAddr>().unwrap();
        assert!(!s.outside_source_ranges(ip("198.51.100.7")));
        assert!(!s.outside_source_ranges(ip("2001:db8:1::9")));
        assert!(s.outside_source_ranges(ip("203.0.113.7")));
        assert!(s.outside_source_ranges(ip("2001:db8:2::9")));
        s.load_balancer_source_ranges.clear();
        assert!(
            !s.outside_source_ranges(ip("203.0.113.7")),
            "no ranges: no limit"
        );
    }

    #[test]
    fn cef_keys() {
        let line = render(&alert_with(0), Format::Cef, &observer());
        for kv in [
            "suser=shop/evil-6b7d9c-x2x9z ",
            "suid=0d3c7a52-7a39-4f1b-9d2e-5b3f0c1a2b3c ",
            "shost=worker-1 ",
            "flexString2=pod Deployment/evil flexString2Label=sourceIdentity ",
            "dhost=worker-1 ",
            "destinationServiceName=shop/web ",
            "reason=source outside loadBalancerSourceRanges 198.51.100.0/24 ",
            "flexNumber1=0 flexNumber1Label=identityCacheAgeSeconds ",
        ] {
            assert!(line.contains(kv), "{kv} missing: {line}");
        }
        let line = render(&alert_with(4), Format::Cef, &observer());
        assert!(line.contains("flexString2=unresolved unsynced "), "{line}");
        assert!(!line.contains("suser="), "{line}");
        // Escaped as every CEF value is.
        let line = render(&alert_with(5), Format::Cef, &observer());
        assert!(line.contains("suser=n\"s\\\\\\=|/p\\=o|d\\n"), "{line}");
        assert!(line.contains("flexString2=pod Job/j\"ob stale "), "{line}");
        let plain = render(
            &OutputItem::Alert(crate::detect::fixture::connection_alert()),
            Format::Cef,
            &observer(),
        );
        assert!(!plain.contains("flexString2") && !plain.contains("dhost"));
    }
}
