//! OCSF 1.3 events: alerts as Detection Finding (2004), sampled flows as Network Activity
//! (4001), as AWS Security Lake and Splunk ingest them.
//!
//! A dedup follow-up is activity 2 (Update) of the same finding: its `finding_info.uid` is the
//! first alert's id (the finding), `metadata.uid` its own alert id (the event).
use std::{cell::RefCell, net::IpAddr};

use serde::Serialize;
use serde_json::Value;

use super::{
    facts::{
        AlertFacts, ConnectionFacts, FloodDoc, action_name, alert_record, community_id,
        community_id_text, epoch_ms, item_time, parts, rule_category, spans_connections,
        sweep_flood, write_alert_facts, write_connection_facts,
    },
    fragments::{FragmentCache, RuleFragments, with_fragments},
    identity::{IdentityFacts, write_identity_facts},
    json::{JsonOut, Members, Text},
    message::Message,
    observer::Observer,
};
use crate::{
    detect::{Alert, OutputItem, Severity},
    record::{Family, FlowRecord, Protocol, TcpFlags},
};

pub const OCSF_VERSION: &str = "1.3.0";

/// OCSF `severity_id` and its caption.
pub fn severity(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// Appends the OCSF line of one item to `out`: the very bytes `serde_json` writes for the
/// typed [`Doc`] (the shape's one source of truth; a test compares the two byte for byte over
/// every kind of item), written field by field without building the document.
pub fn render_into(item: &OutputItem, observer: &Observer, out: &mut Vec<u8>) {
    with_fragments(&FRAGMENTS, observer, Fragments::new, |frags| {
        let mut j = JsonOut(out);
        match item {
            OutputItem::Flow(r) => write_flow(&mut j, item, r, frags),
            OutputItem::Alert(a) => write_finding(&mut j, item, a, frags),
            OutputItem::Finding(f) => {
                super::finding::write_value(&super::finding::ocsf_value(f, observer), j.0);
            }
        }
    });
}

/// The parts of a line that are the same for every item of the observer, or of a rule,
/// already in JSON form: written once per thread, then copied.
struct Fragments {
    /// `,"metadata":{"product":{…},"version":…,"profiles":["host"]` (the uid may follow).
    metadata_head: Vec<u8>,
    /// `,"device":{…}`
    device: Vec<u8>,
    /// The members of `finding_info` after its uid, of the rules seen so far.
    rules: RuleFragments,
}

thread_local! {
    static FRAGMENTS: FragmentCache<Fragments> = const { RefCell::new(None) };
}

impl Fragments {
    fn new(observer: &Observer) -> Fragments {
        let mut metadata_head = Vec::new();
        JsonOut(&mut metadata_head)
            .raw(",\"metadata\":{\"product\":{\"name\":")
            .str(observer.product)
            .raw(",\"vendor_name\":")
            .str(observer.vendor)
            .raw(",\"version\":")
            .str(observer.version)
            .raw("},\"version\":")
            .str(OCSF_VERSION)
            .raw(",\"profiles\":[\"host\"]");
        let mut device = Vec::new();
        JsonOut(&mut device)
            .raw(",\"device\":{\"hostname\":")
            .str(&observer.hostname)
            .raw(",\"name\":")
            .str(&observer.hostname)
            .raw(",\"type_id\":1,\"type\":\"Server\"}");
        Fragments {
            metadata_head,
            device,
            rules: RuleFragments::default(),
        }
    }

    /// `,"title":…,"desc":…,"types":[…],"analytic":{…}}` of the alert's rule.
    fn finding_rest(&mut self, a: &Alert) -> &[u8] {
        self.rules.get(a.rule, |j| {
            j.raw(",\"title\":")
                .str(a.rule.name)
                .raw(",\"desc\":")
                .str(a.rule.description)
                .raw(",\"types\":[")
                .str(rule_category(a))
                .raw("],\"analytic\":{\"uid\":")
                .str(a.rule.id)
                .raw(",\"name\":")
                .str(a.rule.name)
                .raw(",\"type_id\":1,\"type\":\"Rule\",\"version\":")
                .num_str(a.rule.version)
                .raw(",\"category\":")
                .str(rule_category(a))
                .raw("}}");
        })
    }
}

fn write_flow(j: &mut JsonOut<'_>, item: &OutputItem, r: &FlowRecord, frags: &Fragments) {
    j.raw(
        "{\"activity_id\":1,\"activity_name\":\"Open\",\"category_uid\":4,\
         \"category_name\":\"Network Activity\",\"class_uid\":4001,\
         \"class_name\":\"Network Activity\",\"type_uid\":400101,\
         \"type_name\":\"Network Activity: Open\",\"severity_id\":1,\
         \"severity\":\"Informational\",\"time\":",
    )
    .num(epoch_ms(item_time(item)))
    .raw(",\"message\":")
    .text(|o| Message(item).write_to(o))
    .frag(&frags.metadata_head)
    .raw("},");
    write_connection(j, r, true);
    j.frag(&frags.device)
        .raw(",\"observables\":[{\"name\":\"src_endpoint.ip\",")
        .raw("\"type_id\":2,\"type\":\"IP Address\",\"value\":")
        .ip(r.src_ip)
        .raw("}],\"unmapped\":{\"node_monitor\":{");
    node_monitor_into(j, item, Some(r));
    j.raw("}}}");
}

fn write_finding(j: &mut JsonOut<'_>, item: &OutputItem, a: &Alert, frags: &mut Fragments) {
    let (severity_id, severity_name) = severity(a.rule.severity);
    j.raw(if a.follow_up_of.is_some() {
        "{\"activity_id\":2,\"activity_name\":\"Update\""
    } else {
        "{\"activity_id\":1,\"activity_name\":\"Create\""
    })
    .raw(
        ",\"category_uid\":2,\"category_name\":\"Findings\",\"class_uid\":2004,\
         \"class_name\":\"Detection Finding\",\"type_uid\":",
    )
    .raw(if a.follow_up_of.is_some() {
        "200402,\"type_name\":\"Detection Finding: Update\""
    } else {
        "200401,\"type_name\":\"Detection Finding: Create\""
    })
    .raw(",\"severity_id\":")
    .num(severity_id)
    .raw(",\"severity\":")
    .str(severity_name)
    .raw(",\"time\":")
    .num(epoch_ms(a.time))
    .raw(",\"message\":")
    .text(|o| Message(item).write_to(o))
    .frag(&frags.metadata_head)
    .raw(",\"uid\":")
    .str(&a.id)
    .raw("},\"finding_info\":{\"uid\":")
    .str(a.follow_up_of.as_deref().unwrap_or(&a.id))
    .frag(frags.finding_rest(a))
    .raw(",\"count\":")
    .num(a.suppressed + 1)
    .frag(&frags.device)
    .raw(",\"unmapped\":{\"node_monitor\":{");
    let rec = alert_record(a);
    node_monitor_into(j, item, rec);
    j.raw("}},\"evidences\":[{");
    match rec {
        // A sweep or scan spans many connections: no ports, no single flow id.
        Some(r) => write_connection(j, r, !spans_connections(Some(a))),
        // Rare (floods): serde writes the counts.
        None => {
            j.raw("\"data\":").serde(&sweep_flood(a).1);
        }
    }
    j.raw("}]");
    if let Some(r) = rec {
        j.raw(",\"observables\":[{\"name\":\"evidences[0].src_endpoint.ip\",")
            .raw("\"type_id\":2,\"type\":\"IP Address\",\"value\":")
            .ip(r.src_ip)
            .raw("}]");
    }
    j.raw("}");
}

/// `"src_endpoint":{…},"dst_endpoint":{…},"connection_info":{…}`.
fn write_connection(j: &mut JsonOut<'_>, r: &FlowRecord, ports: bool) {
    j.raw("\"src_endpoint\":{\"ip\":").ip(r.src_ip);
    if ports {
        j.raw(",\"port\":").num(r.src_port);
    }
    j.raw("},\"dst_endpoint\":{\"ip\":").ip(r.dst_ip);
    if ports {
        j.raw(",\"port\":").num(r.dst_port);
    }
    if let Some(name) = &r.interface {
        j.raw(",\"interface_name\":").str(name);
    }
    j.raw(",\"interface_uid\":").num_str(r.ifindex);
    if let Some(&id) = r.vlan.first() {
        j.raw(",\"vlan_uid\":").num_str(id);
    }
    let (ver_id, ver) = ip_version(r.family);
    j.raw("},\"connection_info\":{\"protocol_name\":")
        .str(r.protocol.name())
        .raw(",\"protocol_num\":")
        .num(r.protocol.number())
        .raw(",\"protocol_ver_id\":")
        .num(ver_id)
        .raw(",\"protocol_ver\":")
        .str(ver)
        .raw(",\"direction\":\"Inbound\",\"direction_id\":1");
    if ports {
        j.raw(",\"community_uid\":")
            .str(community_id_text(r).as_str());
    }
    // Flags cut off by fragmentation are no integer: `unmapped.node_monitor` says so.
    if let Some(b) = r.tcp_flags.and_then(TcpFlags::bits) {
        j.raw(",\"tcp_flags\":").num(b);
    }
    j.raw("}");
}

/// The members of `unmapped.node_monitor`, in [`NodeMonitor`]'s order.
fn node_monitor_into(j: &mut JsonOut<'_>, item: &OutputItem, rec: Option<&FlowRecord>) {
    let (alert, _) = parts(item);
    let mut m = Members::new();
    write_connection_facts(&mut m, j, alert, rec);
    if let Some(r) = rec.filter(|r| r.vlan.len() > 1) {
        m.key(j, "vlan");
        j.raw("[");
        for (i, id) in r.vlan.iter().enumerate() {
            if i > 0 {
                j.raw(",");
            }
            j.num(*id);
        }
        j.raw("]");
    }
    m.key(j, "event_action");
    j.str(action_name(item));
    if let Some(a) = alert {
        write_alert_facts(&mut m, j, a);
    }
    write_identity_facts(&mut m, j, rec);
}

/// The OCSF event of one item, as a `Value` (the same event [`render_into`] writes).
pub fn to_value(item: &OutputItem, observer: &Observer) -> Value {
    serde_json::to_value(doc(item, observer)).unwrap_or(Value::Null)
}

/// The OCSF event of one item: the one source of truth for its shape.
#[derive(Serialize)]
#[serde(untagged)]
enum Doc<'a> {
    Finding(Box<Finding<'a>>),
    Flow(Box<Flow<'a>>),
    /// A posture finding (Compliance Finding 2003, `finding.rs`).
    Compliance(Value),
}

/// The members every event starts with: its class, activity, severity, time, message and
/// metadata.
#[derive(Serialize)]
struct Head<'a> {
    activity_id: u32,
    activity_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    class_uid: u32,
    class_name: &'static str,
    type_uid: u32,
    type_name: &'static str,
    severity_id: u8,
    severity: &'static str,
    time: u64,
    message: Text<Message<'a>>,
    metadata: Metadata<'a>,
}

/// Detection Finding (2004): an alert.
#[derive(Serialize)]
struct Finding<'a> {
    #[serde(flatten)]
    head: Head<'a>,
    finding_info: FindingInfo<'a>,
    count: u64,
    device: Device<'a>,
    unmapped: Unmapped<'a>,
    evidences: [Evidence<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    observables: Option<[Observable; 1]>,
}

/// Network Activity (4001): a sampled flow.
#[derive(Serialize)]
struct Flow<'a> {
    #[serde(flatten)]
    head: Head<'a>,
    src_endpoint: Endpoint<'a>,
    dst_endpoint: Endpoint<'a>,
    connection_info: ConnectionInfo,
    device: Device<'a>,
    observables: [Observable; 1],
    unmapped: Unmapped<'a>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    product: Product<'a>,
    version: &'static str,
    profiles: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
}

#[derive(Serialize)]
struct Product<'a> {
    name: &'a str,
    vendor_name: &'a str,
    version: &'a str,
}

#[derive(Serialize)]
struct FindingInfo<'a> {
    uid: &'a str,
    title: &'a str,
    desc: &'a str,
    types: [&'static str; 1],
    analytic: Analytic<'a>,
}

#[derive(Serialize)]
struct Analytic<'a> {
    uid: &'a str,
    name: &'a str,
    type_id: u8,
    #[serde(rename = "type")]
    kind: &'static str,
    version: Text<u32>,
    category: &'static str,
}

#[derive(Serialize)]
struct Device<'a> {
    hostname: &'a str,
    name: &'a str,
    type_id: u8,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Endpoint<'a> {
    ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface_uid: Option<Text<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan_uid: Option<Text<u16>>,
}

#[derive(Serialize)]
struct ConnectionInfo {
    protocol_name: Protocol,
    protocol_num: u8,
    protocol_ver_id: u8,
    protocol_ver: &'static str,
    direction: &'static str,
    direction_id: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_flags: Option<u32>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Evidence<'a> {
    Connection {
        src_endpoint: Endpoint<'a>,
        dst_endpoint: Endpoint<'a>,
        connection_info: ConnectionInfo,
    },
    /// A flood: no connection, its counts.
    Data { data: Option<FloodDoc<'a>> },
}

#[derive(Serialize)]
struct Observable {
    name: &'static str,
    type_id: u8,
    #[serde(rename = "type")]
    kind: &'static str,
    value: IpAddr,
}

#[derive(Serialize)]
struct Unmapped<'a> {
    node_monitor: NodeMonitor<'a>,
}

/// `unmapped.node_monitor`: the facts of [`super::facts`], with the VLAN ids and the action
/// verb between the connection's facts and the alert's.
#[derive(Serialize)]
struct NodeMonitor<'a> {
    #[serde(flatten)]
    connection: ConnectionFacts<'a>,
    /// Only when double tagged (the outer id is the endpoint's `vlan_uid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<&'a [u16]>,
    event_action: &'static str,
    #[serde(flatten)]
    alert: AlertFacts<'a>,
    #[serde(flatten)]
    identity: IdentityFacts<'a>,
}

fn metadata<'a>(observer: &'a Observer, uid: Option<&'a str>) -> Metadata<'a> {
    Metadata {
        product: Product {
            name: observer.product,
            vendor_name: observer.vendor,
            version: observer.version,
        },
        version: OCSF_VERSION,
        profiles: ["host"],
        uid,
    }
}

fn device(observer: &Observer) -> Device<'_> {
    Device {
        hostname: &observer.hostname,
        name: &observer.hostname,
        type_id: 1,
        kind: "Server",
    }
}

fn endpoint(ip: IpAddr, port: Option<u16>, rec: &FlowRecord, with_interface: bool) -> Endpoint<'_> {
    Endpoint {
        ip,
        port,
        interface_name: rec.interface.as_deref().filter(|_| with_interface),
        interface_uid: with_interface.then_some(Text(rec.ifindex)),
        vlan_uid: rec
            .vlan
            .first()
            .filter(|_| with_interface)
            .map(|&id| Text(id)),
    }
}

/// `protocol_ver_id` and `protocol_ver` of an address family.
fn ip_version(family: Family) -> (u8, &'static str) {
    match family {
        Family::Ipv4 => (4, "Internet Protocol version 4 (IPv4)"),
        Family::Ipv6 => (6, "Internet Protocol version 6 (IPv6)"),
    }
}

fn connection_info(rec: &FlowRecord, with_community_id: bool) -> ConnectionInfo {
    let (protocol_ver_id, protocol_ver) = ip_version(rec.family);
    ConnectionInfo {
        protocol_name: rec.protocol,
        protocol_num: rec.protocol.number(),
        protocol_ver_id,
        protocol_ver,
        direction: "Inbound",
        direction_id: 1,
        community_uid: with_community_id.then(|| community_id(rec)),
        tcp_flags: rec.tcp_flags.and_then(TcpFlags::bits).map(u32::from),
    }
}

/// The `node_monitor` extras of an item (its record's, then the alert's).
fn node_monitor<'a>(item: &'a OutputItem, rec: Option<&'a FlowRecord>) -> NodeMonitor<'a> {
    let (alert, _) = parts(item);
    NodeMonitor {
        connection: ConnectionFacts::of(alert, rec),
        vlan: rec.map(|r| r.vlan.as_slice()).filter(|v| v.len() > 1),
        event_action: action_name(item),
        alert: AlertFacts::of(alert),
        identity: IdentityFacts::of(rec),
    }
}

fn doc<'a>(item: &'a OutputItem, observer: &'a Observer) -> Doc<'a> {
    match item {
        OutputItem::Finding(f) => Doc::Compliance(super::finding::ocsf_value(f, observer)),
        OutputItem::Flow(r) => Doc::Flow(Box::new(Flow {
            head: Head {
                activity_id: 1,
                activity_name: "Open",
                category_uid: 4,
                category_name: "Network Activity",
                class_uid: 4001,
                class_name: "Network Activity",
                type_uid: 400101,
                type_name: "Network Activity: Open",
                severity_id: 1,
                severity: "Informational",
                time: epoch_ms(item_time(item)),
                message: Text(Message(item)),
                metadata: metadata(observer, None),
            },
            src_endpoint: endpoint(r.src_ip, Some(r.src_port), r, false),
            dst_endpoint: endpoint(r.dst_ip, Some(r.dst_port), r, true),
            connection_info: connection_info(r, true),
            device: device(observer),
            observables: [Observable {
                name: "src_endpoint.ip",
                type_id: 2,
                kind: "IP Address",
                value: r.src_ip,
            }],
            unmapped: Unmapped {
                node_monitor: node_monitor(item, Some(r)),
            },
        })),
        OutputItem::Alert(a) => {
            let (activity_id, activity_name, type_name) = if a.follow_up_of.is_some() {
                (2, "Update", "Detection Finding: Update")
            } else {
                (1, "Create", "Detection Finding: Create")
            };
            let (severity_id, severity_name) = severity(a.rule.severity);
            let rec = alert_record(a);
            // A sweep or scan spans many connections: no ports, no single flow id.
            let sweep = spans_connections(Some(a));
            let port = |p| if sweep { None } else { Some(p) };
            let nm = node_monitor(item, rec);
            let evidence = match rec {
                Some(r) => Evidence::Connection {
                    src_endpoint: endpoint(r.src_ip, port(r.src_port), r, false),
                    dst_endpoint: endpoint(r.dst_ip, port(r.dst_port), r, true),
                    connection_info: connection_info(r, !sweep),
                },
                None => Evidence::Data {
                    data: sweep_flood(a).1,
                },
            };
            Doc::Finding(Box::new(Finding {
                head: Head {
                    activity_id,
                    activity_name,
                    category_uid: 2,
                    category_name: "Findings",
                    class_uid: 2004,
                    class_name: "Detection Finding",
                    type_uid: 2004 * 100 + activity_id,
                    type_name,
                    severity_id,
                    severity: severity_name,
                    time: epoch_ms(a.time),
                    message: Text(Message(item)),
                    metadata: metadata(observer, Some(&a.id)),
                },
                finding_info: FindingInfo {
                    uid: a.follow_up_of.as_deref().unwrap_or(&a.id),
                    title: a.rule.name,
                    desc: a.rule.description,
                    types: [rule_category(a)],
                    analytic: Analytic {
                        uid: a.rule.id,
                        name: a.rule.name,
                        type_id: 1,
                        kind: "Rule",
                        version: Text(a.rule.version),
                        category: rule_category(a),
                    },
                },
                count: a.suppressed + 1,
                device: device(observer),
                unmapped: Unmapped { node_monitor: nm },
                evidences: [evidence],
                observables: rec.map(|r| {
                    [Observable {
                        name: "evidences[0].src_endpoint.ip",
                        type_id: 2,
                        kind: "IP Address",
                        value: r.src_ip,
                    }]
                }),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use node_monitor_common::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN, TCP_URG};
    use serde_json::json;

    use super::*;
    use crate::{
        detect::fixture::{
            connection_alert, flood, follow_up, fragmented_alert, group_flood, handshake_alert,
            late_answer_alert, scan, sweep, unseen_alert,
        },
        record::{
            TcpFlags,
            fixture::{CID, TIME_MS as T_MS, sampled},
        },
        render::check,
    };

    fn doc(item: &OutputItem) -> Value {
        check::doc(render_into, item)
    }

    /// Required attributes of every event.
    fn required(v: &Value, class_uid: u64, category_uid: u64, activity_id: u64) {
        assert_eq!(v["class_uid"], class_uid);
        assert_eq!(v["category_uid"], category_uid);
        assert_eq!(v["activity_id"], activity_id);
        assert_eq!(v["type_uid"], class_uid * 100 + activity_id);
        assert_eq!(v["time"], T_MS);
        assert_eq!(v["metadata"]["version"], "1.3.0");
        assert_eq!(
            v["metadata"]["product"],
            json!({ "name": "node-monitor", "vendor_name": "node-monitor", "version": "0.1.0" })
        );
        assert_eq!(v["device"]["hostname"], "node-a");
        assert!(v["message"].as_str().unwrap().len() > 10);
    }

    fn finding(v: &Value, activity_id: u64, severity_id: u64, rule_id: &str) {
        required(v, 2004, 2, activity_id);
        assert_eq!(v["class_name"], "Detection Finding");
        assert_eq!(v["category_name"], "Findings");
        assert_eq!(v["severity_id"], severity_id);
        assert_eq!(v["finding_info"]["analytic"]["uid"], rule_id);
        assert_eq!(v["finding_info"]["analytic"]["type_id"], 1);
        assert_eq!(v["finding_info"]["analytic"]["type"], "Rule");
        let version = if ["NM-1010", "NM-1011", "NM-1030"].contains(&rule_id) {
            "1"
        } else if rule_id == "NM-1020" {
            "3"
        } else {
            "2"
        };
        assert_eq!(v["finding_info"]["analytic"]["version"], version);
        assert_eq!(
            v["finding_info"]["title"],
            v["finding_info"]["analytic"]["name"]
        );
        assert!(v["finding_info"]["desc"].as_str().is_some());
        assert!(v["evidences"].as_array().is_some_and(|e| e.len() == 1));
    }

    #[test]
    fn unseen_and_fragmented_findings() {
        let v = doc(&OutputItem::Alert(unseen_alert()));
        finding(&v, 1, 5, "NM-1030");
        assert_eq!(v["severity"], "Critical");
        let nm = &v["unmapped"]["node_monitor"];
        assert_eq!(nm["event_action"], "unseen-accepted-connection");
        assert_eq!(nm["answer"], "accepted");
        let c = &v["evidences"][0]["connection_info"];
        assert_eq!(c["tcp_flags"], 0x12);
        // Flags cut off by fragmentation: no integer, the text says so.
        let v = doc(&OutputItem::Alert(fragmented_alert()));
        finding(&v, 1, 4, "NM-1001");
        assert!(
            v["evidences"][0]["connection_info"]
                .get("tcp_flags")
                .is_none()
        );
        let nm = &v["unmapped"]["node_monitor"];
        assert_eq!(nm["tcp_flags"], "fragmented");
        assert_eq!(nm["fragmented"], true);
        // Named by the ACK that completed the handshake.
        let v = doc(&OutputItem::Alert(handshake_alert()));
        finding(&v, 1, 5, "NM-1030");
        assert_eq!(v["unmapped"]["node_monitor"]["handshake_completed"], true);
        assert_eq!(v["evidences"][0]["connection_info"]["tcp_flags"], 0x10);
    }

    #[test]
    fn connection_alert_fields() {
        let v = doc(&OutputItem::Alert(connection_alert()));
        finding(&v, 1, 4, "NM-1001");
        assert_eq!(v["activity_name"], "Create");
        assert_eq!(v["type_name"], "Detection Finding: Create");
        assert_eq!(v["severity"], "High");
        assert_eq!(v["metadata"]["uid"], "3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d");
        assert_eq!(
            v["finding_info"]["uid"],
            "3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d"
        );
        assert_eq!(
            v["finding_info"]["title"],
            "kubelet API access from a source not allowed"
        );
        assert_eq!(v["count"], 1);
        let ev = &v["evidences"][0];
        assert_eq!(
            ev["src_endpoint"],
            json!({ "ip": "128.232.110.120", "port": 34855 })
        );
        assert_eq!(
            ev["dst_endpoint"],
            json!({ "ip": "66.35.250.204", "port": 80, "interface_name": "eth0", "interface_uid": "2", "vlan_uid": "100" })
        );
        let c = &ev["connection_info"];
        assert_eq!(c["protocol_name"], "tcp");
        assert_eq!(c["protocol_num"], 6);
        assert_eq!(c["protocol_ver_id"], 4);
        assert_eq!(c["direction"], "Inbound");
        assert_eq!(c["direction_id"], 1);
        assert_eq!(c["community_uid"], CID);
        assert_eq!(c["tcp_flags"], 2);
        assert_eq!(v["observables"][0]["value"], "128.232.110.120");
        let nm = &v["unmapped"]["node_monitor"];
        assert_eq!(nm["port_group"], "kubelet");
        assert_eq!(nm["verdict"], "denied");
        assert_eq!(nm["action"], "would_drop");
        assert_eq!(nm["answer"], "refused");
        assert_eq!(nm["hook"], "xdp");
        assert_eq!(nm["vlan"], json!([100, 200]));
        assert_eq!(nm["suppressed_count"], 0);
        assert_eq!(nm["losses_since_previous"], json!({ "ringbuf_full": 4 }));
    }

    #[test]
    fn follow_up_fields() {
        let v = doc(&OutputItem::Alert(follow_up()));
        finding(&v, 2, 4, "NM-1001");
        assert_eq!(v["activity_name"], "Update");
        assert_eq!(v["type_uid"], 200402);
        assert_eq!(v["metadata"]["uid"], "0b7c9e2d-1111-4222-8333-444455556666");
        assert_eq!(
            v["finding_info"]["uid"], "3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d",
            "the finding updated"
        );
        assert_eq!(v["count"], 18);
        assert_eq!(v["unmapped"]["node_monitor"]["suppressed_count"], 17);
        assert_eq!(
            v["unmapped"]["node_monitor"]["follow_up_of"],
            "3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d"
        );
        assert_eq!(
            v["unmapped"]["node_monitor"]["repeats_by_answer"],
            serde_json::json!({"accepted": 0, "refused": 12, "no_answer": 5})
        );
        let v = doc(&OutputItem::Alert(late_answer_alert()));
        assert_eq!(v["unmapped"]["node_monitor"]["answer"], "accepted");
        assert_eq!(
            v["unmapped"]["node_monitor"]["answer_corrects"],
            "no_answer"
        );
        assert_eq!(
            v["unmapped"]["node_monitor"]["answer_corrects_alert"],
            crate::detect::fixture::CORRECTED_ALERT
        );
    }

    #[test]
    fn sweep_fields() {
        let v = doc(&OutputItem::Alert(sweep()));
        finding(&v, 1, 3, "NM-1010");
        assert_eq!(v["finding_info"]["types"], json!(["network-scan"]));
        let ev = &v["evidences"][0];
        assert_eq!(ev["src_endpoint"], json!({ "ip": "128.232.110.120" }));
        assert_eq!(ev["dst_endpoint"]["ip"], "66.35.250.204");
        assert!(ev["dst_endpoint"].get("port").is_none());
        assert!(ev["connection_info"].get("community_uid").is_none());
        assert_eq!(
            v["unmapped"]["node_monitor"]["sweep"],
            json!({ "ports": [30001, 30002, 30003, 30004, 30005], "port_count": 5, "window_s": 60 })
        );
        assert_eq!(v["unmapped"]["node_monitor"]["port_group"], "nodeport");
    }

    #[test]
    fn scan_fields() {
        let v = doc(&OutputItem::Alert(scan()));
        finding(&v, 1, 4, "NM-1011");
        assert_eq!(v["finding_info"]["types"], json!(["network-scan"]));
        let ev = &v["evidences"][0];
        assert_eq!(ev["src_endpoint"], json!({ "ip": "128.232.110.120" }));
        assert!(ev["dst_endpoint"].get("port").is_none());
        let nm = &v["unmapped"]["node_monitor"];
        assert_eq!(nm["scan"]["ports"], json!([2379, 2380, 6443, 10250, 10255]));
        assert_eq!(nm["scan"]["groups"][4], "kubelet-readonly");
        assert_eq!(
            (&nm["scan"]["connections"], &nm["scan"]["connection_alerts"]),
            (&json!(7), &json!(5))
        );
        assert!(nm.get("port_group").is_none());
    }

    #[test]
    fn flood_fields() {
        let v = doc(&OutputItem::Alert(flood()));
        finding(&v, 1, 3, "NM-1020");
        assert_eq!(v["severity"], "Medium");
        assert_eq!(v["count"], 1);
        assert!(v.get("observables").is_none());
        assert_eq!(
            v["unmapped"]["node_monitor"]["flood"],
            json!({ "scope": "node", "rate_limited": 260, "ringbuf_full": 7, "window_s": 10 })
        );
        assert_eq!(v["evidences"][0]["data"]["rate_limited"], 260);
    }

    /// Issue 9: a group's NM-1020: the summary in `unmapped.node_monitor.flood` and in the
    /// evidence's `data`, the group in `unmapped.node_monitor.port_group`.
    #[test]
    fn group_flood_fields() {
        let v = doc(&OutputItem::Alert(group_flood()));
        finding(&v, 1, 3, "NM-1020");
        let want = check::group_flood_facts();
        assert_eq!(v["unmapped"]["node_monitor"]["flood"], want);
        assert_eq!(v["unmapped"]["node_monitor"]["port_group"], "kubelet");
        assert_eq!(v["evidences"][0]["data"], want);
    }

    #[test]
    fn flow_fields() {
        let v = doc(&OutputItem::Flow(sampled()));
        required(&v, 4001, 4, 1);
        assert_eq!(v["type_uid"], 400101);
        assert_eq!(v["activity_name"], "Open");
        assert_eq!(v["severity_id"], 1);
        assert_eq!(v["severity"], "Informational");
        assert!(v.get("finding_info").is_none());
        assert_eq!(
            v["src_endpoint"],
            json!({ "ip": "2001:470:e5bf:dead:4957:2174:e82c:4887", "port": 63943 })
        );
        assert_eq!(v["dst_endpoint"]["ip"], "2607:f8b0:400c:c03::1a");
        assert_eq!(v["dst_endpoint"]["port"], 30053);
        assert_eq!(v["dst_endpoint"]["interface_name"], "eth0");
        let c = &v["connection_info"];
        assert_eq!(c["protocol_name"], "udp");
        assert_eq!(c["protocol_num"], 17);
        assert_eq!(c["protocol_ver_id"], 6);
        assert_eq!(c["direction_id"], 1);
        assert!(c["community_uid"].as_str().unwrap().starts_with("1:"));
        assert!(c.get("tcp_flags").is_none());
        assert_eq!(v["unmapped"]["node_monitor"]["verdict"], "allowed");
        assert_eq!(
            v["unmapped"]["node_monitor"]["event_action"],
            "flow-sampled"
        );
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
            &[
                "class_uid",
                "category_uid",
                "activity_id",
                "type_uid",
                "severity_id",
                "time",
                "metadata",
            ],
        );
    }

    #[test]
    fn tcp_flags() {
        let bits = |b| TcpFlags::from_bits(b).bits().map(u32::from);
        assert_eq!(bits(TCP_SYN | TCP_ACK), Some(0x12));
        assert_eq!(bits(TCP_FIN | TCP_PSH | TCP_URG), Some(0x29));
        assert_eq!(bits(0), Some(0));
        assert_eq!(TcpFlags::FRAGMENTED.bits(), None);
    }
}
