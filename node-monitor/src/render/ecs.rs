//! Elastic Common Schema 8.x documents (nested objects, one JSON line), as Elastic and
//! OpenSearch ingest them without a custom pipeline.
use std::{cell::RefCell, net::IpAddr};

use serde::Serialize;
use serde_json::Value;

use super::{
    facts::{
        AlertFacts, ConnectionFacts, action_name, community_id, community_id_text, item_time,
        outcome, parts, rule_category, spans_connections, write_alert_facts,
        write_connection_facts,
    },
    fragments::{FragmentCache, RuleFragments, with_fragments},
    identity::{
        IdentityFacts, OrchestratorSource, write_identity_facts, write_orchestrator_source,
    },
    json::{JsonOut, Members, Text, rfc3339_text},
    message::Message,
    observer::Observer,
};
use crate::{
    detect::{Alert, OutputItem, Severity},
    record::{Family, FlowRecord, Protocol, RecordType},
};

pub const ECS_VERSION: &str = "8.11.0";

/// `event.severity`: the numeric scale of Elastic detection rules.
pub fn severity_number(s: Severity) -> u8 {
    match s {
        Severity::Low => 21,
        Severity::Medium => 47,
        Severity::High => 73,
        Severity::Critical => 99,
    }
}

/// Appends the ECS line of one item to `out`: the very bytes `serde_json` writes for the
/// typed [`Doc`] (the shape's one source of truth; a test compares the two byte for byte over
/// every kind of item), written field by field without building the document.
pub fn render_into(item: &OutputItem, observer: &Observer, out: &mut Vec<u8>) {
    if let OutputItem::Finding(f) = item {
        super::finding::write_value(&super::finding::ecs_value(f, observer), out);
        return;
    }
    with_fragments(&FRAGMENTS, observer, Fragments::new, |frags| {
        write_item(item, frags, out);
    });
}

/// The parts of a line that are the same for every item of the observer, or of a rule,
/// already in JSON form: written once per thread, then copied.
struct Fragments {
    /// `,"observer":{"hostname":…,"type":"sensor"` (the ingress interface follows).
    observer_head: Vec<u8>,
    /// `},"host":{…},"orchestrator":{"type":"kubernetes"` (the source's resource, if any,
    /// then `},"message":` follow).
    host: Vec<u8>,
    /// `,"rule":{…}` of the rules seen so far (a catalog of a few).
    rules: RuleFragments,
}

thread_local! {
    static FRAGMENTS: FragmentCache<Fragments> = const { RefCell::new(None) };
}

impl Fragments {
    fn new(observer: &Observer) -> Fragments {
        let mut observer_head = Vec::new();
        JsonOut(&mut observer_head)
            .raw(",\"observer\":{\"hostname\":")
            .str(&observer.hostname)
            .raw(",\"product\":")
            .str(observer.product)
            .raw(",\"vendor\":")
            .str(observer.vendor)
            .raw(",\"version\":")
            .str(observer.version)
            .raw(",\"type\":\"sensor\"");
        let mut host = Vec::new();
        JsonOut(&mut host)
            .raw("},\"host\":{\"name\":")
            .str(&observer.hostname)
            .raw("},\"orchestrator\":{\"type\":\"kubernetes\"");
        Fragments {
            observer_head,
            host,
            rules: RuleFragments::default(),
        }
    }

    fn rule(&mut self, a: &Alert) -> &[u8] {
        self.rules.get(a.rule, |j| {
            j.raw(",\"rule\":{\"id\":")
                .str(a.rule.id)
                .raw(",\"name\":")
                .str(a.rule.name)
                .raw(",\"version\":")
                .num_str(a.rule.version)
                .raw(",\"description\":")
                .str(a.rule.description)
                .raw(",\"category\":")
                .str(rule_category(a))
                .raw(",\"ruleset\":\"node-monitor\"}");
        })
    }
}

fn write_item(item: &OutputItem, frags: &mut Fragments, out: &mut Vec<u8>) {
    let (alert, rec) = parts(item);
    let sweep = spans_connections(alert);
    let mut j = JsonOut(out);
    j.raw("{\"@timestamp\":")
        .display(humantime::format_rfc3339_micros(item_time(item)))
        .raw(",\"ecs\":{\"version\":")
        .str(ECS_VERSION)
        .raw("},\"event\":{\"kind\":");
    match alert {
        Some(_) => j.raw("\"alert\",\"category\":[\"network\",\"intrusion_detection\"]"),
        None => j.raw("\"event\",\"category\":[\"network\"]"),
    };
    j.raw(",\"type\":[");
    for (i, t) in event_type(rec).iter().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        j.str(t);
    }
    j.raw("]");
    if let Some(a) = alert {
        j.raw(",\"severity\":")
            .num(severity_number(a.rule.severity))
            .raw(",\"id\":")
            .str(&a.id);
    }
    j.raw(",\"dataset\":")
        .str(match alert {
            Some(_) => "node_monitor.alert",
            None => "node_monitor.flow",
        })
        .raw(",\"action\":")
        .str(action_name(item))
        .raw(",\"outcome\":")
        .str(outcome(rec))
        .raw(",\"module\":\"node_monitor\"}");
    if let Some(a) = alert {
        j.frag(frags.rule(a));
    }
    if let Some(r) = rec {
        for (key, ip, port) in [
            (",\"source\":{\"ip\":", r.src_ip, r.src_port),
            (",\"destination\":{\"ip\":", r.dst_ip, r.dst_port),
        ] {
            j.raw(key).ip(ip);
            // A sweep or scan spans many connections: its ports are in node_monitor.sweep/.scan.
            if !sweep {
                j.raw(",\"port\":").num(port);
            }
            j.raw("}");
        }
        j.raw(",\"network\":{\"transport\":")
            .str(r.protocol.name())
            .raw(",\"type\":")
            .str(r.family.as_str())
            .raw(",\"direction\":\"ingress\"");
        if !sweep {
            j.raw(",\"community_id\":")
                .str(community_id_text(r).as_str());
        }
        if let Some(&id) = r.vlan.first() {
            j.raw(",\"vlan\":{\"id\":").num_str(id).raw("}");
        }
        if let Some(&id) = r.vlan.get(1) {
            j.raw(",\"inner\":{\"vlan\":{\"id\":").num_str(id).raw("}}");
        }
        j.raw("}");
    }
    j.frag(&frags.observer_head);
    if let Some(r) = rec {
        j.raw(",\"ingress\":{\"interface\":{");
        if let Some(name) = &r.interface {
            j.raw("\"name\":").str(name).raw(",");
        }
        j.raw("\"id\":").num_str(r.ifindex).raw("}}");
    }
    j.frag(&frags.host);
    write_orchestrator_source(&mut j, rec);
    j.raw("},\"message\":")
        .text(|o| Message(item).write_to(o))
        .raw(",\"node_monitor\":{");
    node_monitor_into(&mut j, alert, rec);
    j.raw("}}");
}

/// The members of `node_monitor`, in [`NodeMonitor`]'s order.
fn node_monitor_into(j: &mut JsonOut<'_>, alert: Option<&Alert>, rec: Option<&FlowRecord>) {
    let mut m = Members::new();
    if let Some(r) = rec {
        m.key(j, "record_type");
        j.str(r.record_type.as_str());
    }
    write_connection_facts(&mut m, j, alert, rec);
    if let Some(r) = rec {
        m.key(j, "packet_length");
        j.num(r.packet_length);
    }
    if let Some(a) = alert {
        write_alert_facts(&mut m, j, a);
    }
    write_identity_facts(&mut m, j, rec);
}

/// The ECS document of one item, as a `Value` (the same document [`render_into`] writes).
pub fn to_value(item: &OutputItem, observer: &Observer) -> Value {
    if let OutputItem::Finding(f) = item {
        return super::finding::ecs_value(f, observer);
    }
    serde_json::to_value(doc(item, observer)).unwrap_or(Value::Null)
}

/// The ECS document of one item: the one source of truth for its shape.
#[derive(Serialize)]
struct Doc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Text<humantime::Rfc3339Timestamp>,
    ecs: Version,
    event: Event<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<RuleDoc<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<Network>,
    observer: ObserverDoc<'a>,
    host: Host<'a>,
    orchestrator: Orchestrator<'a>,
    message: Text<Message<'a>>,
    node_monitor: NodeMonitor<'a>,
}

#[derive(Serialize)]
struct Version {
    version: &'static str,
}

#[derive(Serialize)]
struct Event<'a> {
    kind: &'static str,
    category: &'static [&'static str],
    #[serde(rename = "type")]
    kind_type: &'static [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    dataset: &'static str,
    action: &'static str,
    outcome: &'static str,
    module: &'static str,
}

#[derive(Serialize)]
struct RuleDoc<'a> {
    id: &'a str,
    name: &'a str,
    version: Text<u32>,
    description: &'a str,
    category: &'static str,
    ruleset: &'static str,
}

#[derive(Serialize)]
struct Endpoint {
    ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
}

#[derive(Serialize)]
struct Network {
    transport: Protocol,
    #[serde(rename = "type")]
    family: Family,
    direction: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<Vlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inner: Option<Inner>,
}

#[derive(Serialize)]
struct Vlan {
    id: Text<u16>,
}

#[derive(Serialize)]
struct Inner {
    vlan: Vlan,
}

#[derive(Serialize)]
struct ObserverDoc<'a> {
    hostname: &'a str,
    product: &'a str,
    vendor: &'a str,
    version: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ingress: Option<Ingress<'a>>,
}

#[derive(Serialize)]
struct Ingress<'a> {
    interface: Interface<'a>,
}

#[derive(Serialize)]
struct Interface<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    id: Text<u32>,
}

#[derive(Serialize)]
struct Host<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Orchestrator<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// The source pod or node, when the cluster cache knows it.
    #[serde(flatten)]
    source: Option<OrchestratorSource<'a>>,
}

/// `node_monitor`: the facts of [`super::facts`], with the record type first and the
/// packet length between the connection's facts and the alert's.
#[derive(Serialize)]
struct NodeMonitor<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    record_type: Option<RecordType>,
    #[serde(flatten)]
    connection: ConnectionFacts<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    packet_length: Option<u32>,
    #[serde(flatten)]
    alert: AlertFacts<'a>,
    #[serde(flatten)]
    identity: IdentityFacts<'a>,
}

fn doc<'a>(item: &'a OutputItem, observer: &'a Observer) -> Doc<'a> {
    let (alert, rec) = parts(item);
    let event = match alert {
        Some(a) => Event {
            kind: "alert",
            category: &["network", "intrusion_detection"],
            kind_type: event_type(rec),
            severity: Some(severity_number(a.rule.severity)),
            id: Some(&a.id),
            dataset: "node_monitor.alert",
            action: action_name(item),
            outcome: outcome(rec),
            module: "node_monitor",
        },
        None => Event {
            kind: "event",
            category: &["network"],
            kind_type: event_type(rec),
            severity: None,
            id: None,
            dataset: "node_monitor.flow",
            action: action_name(item),
            outcome: outcome(rec),
            module: "node_monitor",
        },
    };
    // A sweep or scan spans many connections: its ports are in node_monitor.sweep/.scan. not here.
    let sweep = spans_connections(alert);
    let port = |p| if sweep { None } else { Some(p) };
    Doc {
        timestamp: rfc3339_text(item_time(item)),
        ecs: Version {
            version: ECS_VERSION,
        },
        event,
        rule: alert.map(|a| RuleDoc {
            id: a.rule.id,
            name: a.rule.name,
            version: Text(a.rule.version),
            description: a.rule.description,
            category: rule_category(a),
            ruleset: "node-monitor",
        }),
        source: rec.map(|r| Endpoint {
            ip: r.src_ip,
            port: port(r.src_port),
        }),
        destination: rec.map(|r| Endpoint {
            ip: r.dst_ip,
            port: port(r.dst_port),
        }),
        network: rec.map(|r| Network {
            transport: r.protocol,
            family: r.family,
            direction: "ingress",
            community_id: (!sweep).then(|| community_id(r)),
            vlan: r.vlan.first().map(|&id| Vlan { id: Text(id) }),
            inner: r.vlan.get(1).map(|&id| Inner {
                vlan: Vlan { id: Text(id) },
            }),
        }),
        observer: ObserverDoc {
            hostname: &observer.hostname,
            product: observer.product,
            vendor: observer.vendor,
            version: observer.version,
            kind: "sensor",
            ingress: rec.map(|r| Ingress {
                interface: Interface {
                    name: r.interface.as_deref(),
                    id: Text(r.ifindex),
                },
            }),
        },
        host: Host {
            name: &observer.hostname,
        },
        orchestrator: Orchestrator {
            kind: "kubernetes",
            source: OrchestratorSource::of(rec),
        },
        message: Text(Message(item)),
        node_monitor: NodeMonitor {
            record_type: rec.map(|r| r.record_type),
            connection: ConnectionFacts::of(alert, rec),
            packet_length: rec.map(|r| r.packet_length),
            alert: AlertFacts::of(alert),
            identity: IdentityFacts::of(rec),
        },
    }
}

/// `["connection","denied"]` when the policy denies the connection (enforced, `dropped`, or
/// monitored, `would_drop`: `node_monitor.action` tells which), `["connection","start"]`
/// otherwise; `["info"]` for a flood (no connection).
fn event_type(rec: Option<&FlowRecord>) -> &'static [&'static str] {
    match rec {
        Some(r) if r.action.denies() => &["connection", "denied"],
        Some(_) => &["connection", "start"],
        None => &["info"],
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        detect::fixture::{
            connection_alert, flood, follow_up, fragmented_alert, group_flood, handshake_alert,
            late_answer_alert, scan, sweep, unseen_alert,
        },
        record::fixture::{CID, sampled},
        render::check,
    };

    fn doc(item: &OutputItem) -> Value {
        check::doc(render_into, item)
    }

    fn common(v: &Value) {
        assert_eq!(v["@timestamp"], "2024-05-01T12:00:00.123456Z");
        assert_eq!(v["ecs"]["version"], "8.11.0");
        assert_eq!(v["observer"]["hostname"], "node-a");
        assert_eq!(v["observer"]["product"], "node-monitor");
        assert_eq!(v["observer"]["vendor"], "node-monitor");
        assert_eq!(v["observer"]["version"], "0.1.0");
        assert_eq!(v["observer"]["type"], "sensor");
        assert_eq!(v["host"]["name"], "node-a");
        assert_eq!(v["orchestrator"]["type"], "kubernetes");
        assert!(v["message"].as_str().unwrap().len() > 10);
        assert_eq!(v["event"]["module"], "node_monitor");
    }

    fn alert_common(v: &Value) {
        common(v);
        assert_eq!(v["event"]["kind"], "alert");
        assert_eq!(
            v["event"]["category"],
            json!(["network", "intrusion_detection"])
        );
        // Connection rules are at version 2, sweeps, scans and NM-1030 at 1, floods at 3.
        let version = if ["NM-1010", "NM-1011", "NM-1030"]
            .map(Value::from)
            .contains(&v["rule"]["id"])
        {
            "1"
        } else if v["rule"]["id"] == "NM-1020" {
            "3"
        } else {
            "2"
        };
        assert_eq!(v["rule"]["version"], version);
        assert_eq!(v["rule"]["ruleset"], "node-monitor");
        assert!(v["rule"]["description"].as_str().is_some());
    }

    #[test]
    fn connection_alert_fields() {
        let v = doc(&OutputItem::Alert(connection_alert()));
        alert_common(&v);
        assert_eq!(v["event"]["type"], json!(["connection", "denied"]));
        assert_eq!(v["event"]["action"], "flagged-connection");
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["event"]["severity"], 73);
        assert_eq!(v["event"]["id"], "3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d");
        assert_eq!(v["rule"]["id"], "NM-1001");
        assert_eq!(
            v["rule"]["name"],
            "kubelet API access from a source not allowed"
        );
        assert_eq!(v["rule"]["category"], "unauthorized-port-access");
        assert_eq!(
            v["source"],
            json!({ "ip": "128.232.110.120", "port": 34855 })
        );
        assert_eq!(
            v["destination"],
            json!({ "ip": "66.35.250.204", "port": 80 })
        );
        assert_eq!(v["network"]["transport"], "tcp");
        assert_eq!(v["network"]["type"], "ipv4");
        assert_eq!(v["network"]["direction"], "ingress");
        assert_eq!(v["network"]["community_id"], CID);
        assert_eq!(v["network"]["vlan"]["id"], "100");
        assert_eq!(v["network"]["inner"]["vlan"]["id"], "200");
        assert_eq!(
            v["observer"]["ingress"]["interface"],
            json!({ "name": "eth0", "id": "2" })
        );
        let nm = &v["node_monitor"];
        assert_eq!(nm["port_group"], "kubelet");
        assert_eq!(nm["verdict"], "denied");
        assert_eq!(nm["action"], "would_drop");
        assert_eq!(nm["answer"], "refused");
        assert_eq!(nm["tcp_flags"], "SYN");
        assert_eq!(nm["hook"], "xdp");
        assert_eq!(nm["record_type"], "flagged");
        assert_eq!(nm["suppressed_count"], 0);
        assert!(nm.get("follow_up_of").is_none());
        assert_eq!(nm["losses_since_previous"], json!({ "ringbuf_full": 4 }));
        assert!(nm.get("sweep").is_none() && nm.get("flood").is_none());
    }

    #[test]
    fn unseen_acceptance_fields() {
        let v = doc(&OutputItem::Alert(unseen_alert()));
        alert_common(&v);
        assert_eq!(v["rule"]["id"], "NM-1030");
        assert_eq!(
            v["rule"]["name"],
            "the node accepted a connection nobody saw arrive"
        );
        assert_eq!(v["rule"]["category"], "unauthorized-port-access");
        assert_eq!(v["event"]["severity"], 99, "critical for the kubelet");
        assert_eq!(v["event"]["action"], "unseen-accepted-connection");
        assert_eq!(v["event"]["outcome"], "success");
        assert_eq!(v["event"]["type"], json!(["connection", "denied"]));
        assert_eq!(v["source"]["ip"], "128.232.110.120");
        let nm = &v["node_monitor"];
        assert_eq!(nm["record_type"], "unseen_accepted");
        assert_eq!(nm["answer"], "accepted");
        assert_eq!(nm["hook"], "tc");
        assert_eq!(nm["tcp_flags"], "SYN|ACK");
        assert!(nm.get("fragmented").is_none());
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.starts_with(
                "the node accepted a connection nobody saw arrive: 128.232.110.120:34855"
            ) && msg.contains("answer accepted")
                && msg.contains("no attempt seen on ingress"),
            "{msg}"
        );
    }

    #[test]
    fn handshake_completed_fields() {
        let v = doc(&OutputItem::Alert(handshake_alert()));
        alert_common(&v);
        assert_eq!(v["rule"]["id"], "NM-1030");
        assert_eq!(v["event"]["action"], "unseen-accepted-connection");
        let nm = &v["node_monitor"];
        assert_eq!(nm["handshake_completed"], true);
        assert_eq!(nm["tcp_flags"], "ACK");
        assert_eq!(nm["hook"], "xdp");
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains("handshake completed after event budgets withheld"),
            "{msg}"
        );
        assert!(!msg.contains("no attempt seen on ingress"), "{msg}");
        // The handshake of an acceptance whose alert the cap folded says so.
        let mut capped = handshake_alert();
        if let crate::detect::AlertKind::Connection { record } = &mut capped.kind {
            record.completes_reported = true;
        }
        let v = doc(&OutputItem::Alert(capped));
        assert_eq!(v["node_monitor"]["handshake_completed"], true);
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains("after the cap on connection alerts folded its alert"),
            "{msg}"
        );
        assert!(!msg.contains("budgets withheld"), "{msg}");
        // Any other NM-1030 says nothing of a handshake.
        let v = doc(&OutputItem::Alert(unseen_alert()));
        assert!(v["node_monitor"].get("handshake_completed").is_none());
    }

    #[test]
    fn fragmented_attempt_fields() {
        let v = doc(&OutputItem::Alert(fragmented_alert()));
        alert_common(&v);
        assert_eq!(v["rule"]["id"], "NM-1001");
        assert_eq!(v["event"]["action"], "flagged-connection");
        assert_eq!(v["event"]["outcome"], "success");
        let nm = &v["node_monitor"];
        assert_eq!(nm["tcp_flags"], "fragmented");
        assert_eq!(nm["fragmented"], true);
        assert_eq!(nm["answer"], "accepted");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("answer accepted, sent in IPv4 fragments")
        );
    }

    #[test]
    fn late_answer_fields() {
        let v = doc(&OutputItem::Alert(late_answer_alert()));
        alert_common(&v);
        assert_eq!(v["event"]["outcome"], "success");
        assert_eq!(v["source"]["ip"], "128.232.110.120");
        assert_eq!(v["node_monitor"]["answer"], "accepted");
        assert_eq!(v["node_monitor"]["answer_corrects"], "no_answer");
        assert_eq!(
            v["node_monitor"]["answer_corrects_alert"],
            crate::detect::fixture::CORRECTED_ALERT
        );
        assert!(v["node_monitor"].get("repeats_by_answer").is_none());
        assert!(v["node_monitor"].get("tcp_flags").is_none());
        // A first alert and an ordinary record carry no correction.
        let v = doc(&OutputItem::Alert(connection_alert()));
        assert!(v["node_monitor"].get("answer_corrects").is_none());
    }

    #[test]
    fn follow_up_fields() {
        let v = doc(&OutputItem::Alert(follow_up()));
        alert_common(&v);
        assert_eq!(v["event"]["id"], "0b7c9e2d-1111-4222-8333-444455556666");
        assert_eq!(v["rule"]["id"], "NM-1001");
        assert_eq!(v["node_monitor"]["suppressed_count"], 17);
        assert_eq!(
            v["node_monitor"]["follow_up_of"],
            "3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d"
        );
        assert_eq!(
            v["node_monitor"]["repeats_by_answer"],
            json!({"accepted": 0, "refused": 12, "no_answer": 5})
        );
        assert_eq!(v["node_monitor"]["losses_since_previous"], json!({}));
        assert_eq!(v["network"]["community_id"], CID);
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("17 more occurrences")
        );
    }

    #[test]
    fn sweep_fields() {
        let v = doc(&OutputItem::Alert(sweep()));
        alert_common(&v);
        assert_eq!(v["event"]["type"], json!(["connection", "start"]));
        assert_eq!(v["event"]["action"], "nodeport-sweep");
        assert_eq!(v["event"]["outcome"], "unknown");
        assert_eq!(v["event"]["severity"], 47);
        assert_eq!(v["rule"]["id"], "NM-1010");
        assert_eq!(v["rule"]["name"], "NodePort sweep");
        assert_eq!(v["rule"]["category"], "network-scan");
        assert_eq!(v["source"], json!({ "ip": "128.232.110.120" }));
        assert_eq!(v["destination"], json!({ "ip": "66.35.250.204" }));
        assert_eq!(v["network"]["transport"], "tcp");
        assert!(v["network"].get("community_id").is_none());
        assert!(v["network"].get("vlan").is_none());
        assert_eq!(v["node_monitor"]["port_group"], "nodeport");
        assert_eq!(
            v["node_monitor"]["sweep"],
            json!({ "ports": [30001, 30002, 30003, 30004, 30005], "port_count": 5, "window_s": 60 })
        );
    }

    #[test]
    fn scan_fields() {
        let v = doc(&OutputItem::Alert(scan()));
        alert_common(&v);
        assert_eq!(v["event"]["action"], "port-scan");
        assert_eq!(v["event"]["severity"], 73);
        assert_eq!(v["rule"]["id"], "NM-1011");
        assert_eq!(v["rule"]["name"], "control-plane port scan");
        assert_eq!(v["rule"]["category"], "network-scan");
        assert_eq!(v["source"], json!({ "ip": "128.232.110.120" }));
        assert_eq!(v["destination"], json!({ "ip": "66.35.250.204" }));
        assert!(v["network"].get("community_id").is_none());
        assert!(v["node_monitor"].get("port_group").is_none());
        assert_eq!(
            v["node_monitor"]["scan"],
            json!({
                "ports": [2379, 2380, 6443, 10250, 10255],
                "port_count": 5,
                "groups": ["apiserver", "etcd-client", "etcd-peer", "kubelet", "kubelet-readonly"],
                "window_s": 60,
                "connections": 7,
                "connection_alerts": 5
            })
        );
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains("2379, 2380, 6443, 10250, 10255") && message.contains("5 groups"),
            "{message}"
        );
    }

    #[test]
    fn flood_fields() {
        let v = doc(&OutputItem::Alert(flood()));
        alert_common(&v);
        assert_eq!(v["event"]["type"], json!(["info"]));
        assert_eq!(v["event"]["action"], "event-flood");
        assert_eq!(v["event"]["outcome"], "unknown");
        assert_eq!(v["event"]["severity"], 47);
        assert_eq!(v["rule"]["id"], "NM-1020");
        assert_eq!(v["rule"]["category"], "sensor-event-loss");
        assert!(v.get("source").is_none() && v.get("network").is_none());
        assert!(v["observer"].get("ingress").is_none());
        assert_eq!(
            v["node_monitor"]["flood"],
            json!({ "scope": "node", "rate_limited": 260, "ringbuf_full": 7, "window_s": 10 })
        );
        assert_eq!(v["node_monitor"]["suppressed_count"], 0);
    }

    /// Issue 9: a group's NM-1020 carries its flood summary under `node_monitor.flood`, and
    /// its group in `node_monitor.port_group`.
    #[test]
    fn group_flood_fields() {
        let v = doc(&OutputItem::Alert(group_flood()));
        alert_common(&v);
        assert_eq!(v["event"]["action"], "event-flood");
        assert_eq!(v["rule"]["id"], "NM-1020");
        assert!(v.get("source").is_none() && v.get("network").is_none());
        assert_eq!(v["node_monitor"]["port_group"], "kubelet");
        assert_eq!(v["node_monitor"]["flood"], check::group_flood_facts());
        assert_eq!(
            v["message"],
            "event limits reached (flood): group kubelet: 4000 new connections within 10s, 100 reported, 12 withheld by the \
             per-source limit, 3880 by the group budget, 8 lost to a full ring buffer; 6 connection \
             alerts folded in here (1 accepted, 2 refused, 3 unanswered); about 3850 distinct \
             sources (spoofed likely); the node accepted 5 and refused 2."
        );
    }

    #[test]
    fn flow_fields() {
        let v = doc(&OutputItem::Flow(sampled()));
        common(&v);
        assert_eq!(v["event"]["kind"], "event");
        assert_eq!(v["event"]["category"], json!(["network"]));
        assert_eq!(v["event"]["type"], json!(["connection", "start"]));
        assert_eq!(v["event"]["action"], "flow-sampled");
        assert_eq!(v["event"]["outcome"], "unknown");
        assert!(v["event"].get("severity").is_none());
        assert!(v.get("rule").is_none());
        assert_eq!(
            v["source"],
            json!({ "ip": "2001:470:e5bf:dead:4957:2174:e82c:4887", "port": 63943 })
        );
        assert_eq!(
            v["destination"],
            json!({ "ip": "2607:f8b0:400c:c03::1a", "port": 30053 })
        );
        assert_eq!(v["network"]["transport"], "udp");
        assert_eq!(v["network"]["type"], "ipv6");
        assert_eq!(v["network"]["direction"], "ingress");
        assert!(
            v["network"]["community_id"]
                .as_str()
                .unwrap()
                .starts_with("1:")
        );
        assert_eq!(v["node_monitor"]["port_group"], "nodeport");
        assert_eq!(v["node_monitor"]["verdict"], "allowed");
        assert_eq!(v["node_monitor"]["record_type"], "flow");
        assert!(v["node_monitor"].get("suppressed_count").is_none());
    }

    /// Every kind of item (hostile strings included) renders to one line of valid JSON that
    /// is byte for byte what serde writes for the typed `Doc` (and so exactly `to_value`),
    /// with the fields every document must have. (Commit 773fabe also
    /// checked these documents against the previous Value-built renderer.)
    #[test]
    fn every_variety_renders_valid_complete_json() {
        check::every_variety(
            render_into,
            |item, obs| serde_json::to_string(&super::doc(item, obs)).unwrap(),
            to_value,
            &["@timestamp", "ecs", "event"],
        );
    }

    #[test]
    fn severities() {
        assert_eq!(
            [
                Severity::Low,
                Severity::Medium,
                Severity::High,
                Severity::Critical
            ]
            .map(severity_number),
            [21, 47, 73, 99]
        );
    }
}
