//! Elastic Common Schema 8.x documents (nested objects, one JSON line), as Elastic and
//! OpenSearch ingest them without a custom pipeline.
use serde_json::{Map, Value, json};

use super::{
    format::{
        action_name, alert_record, community_id, denied, message, outcome, rfc3339, rule_category,
    },
    model::{Alert, AlertKind, FloodScope, Observer, OutputItem, Severity},
};
use crate::events::FlowRecord;

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

pub fn render(item: &OutputItem, observer: &Observer) -> String {
    to_value(item, observer).to_string()
}

/// The ECS document of one item.
pub fn to_value(item: &OutputItem, observer: &Observer) -> Value {
    let mut doc = Map::new();
    let (time, rec) = match item {
        OutputItem::Alert(a) => (a.time, alert_record(a)),
        OutputItem::Flow(r) => (super::format::item_time(item), Some(r)),
    };
    doc.insert("@timestamp".into(), json!(rfc3339(time)));
    doc.insert("ecs".into(), json!({ "version": ECS_VERSION }));

    let mut event = Map::new();
    match item {
        OutputItem::Alert(a) => {
            event.insert("kind".into(), json!("alert"));
            event.insert("category".into(), json!(["network", "intrusion_detection"]));
            event.insert("type".into(), json!(event_type(rec)));
            event.insert("severity".into(), json!(severity_number(a.rule.severity)));
            event.insert("id".into(), json!(a.id));
            event.insert("dataset".into(), json!("node_monitor.alert"));
        }
        OutputItem::Flow(_) => {
            event.insert("kind".into(), json!("event"));
            event.insert("category".into(), json!(["network"]));
            event.insert("type".into(), json!(event_type(rec)));
            event.insert("dataset".into(), json!("node_monitor.flow"));
        }
    }
    event.insert("action".into(), json!(action_name(item)));
    event.insert("outcome".into(), json!(outcome(rec)));
    event.insert("module".into(), json!("node_monitor"));
    doc.insert("event".into(), Value::Object(event));

    if let OutputItem::Alert(a) = item {
        doc.insert(
            "rule".into(),
            json!({
                "id": a.rule.id,
                "name": a.rule.name,
                "version": a.rule.version.to_string(),
                "description": a.rule.description,
                "category": rule_category(a),
                "ruleset": "node-monitor",
            }),
        );
    }

    if let Some(r) = rec {
        let sweep = matches!(
            item,
            OutputItem::Alert(Alert {
                kind: AlertKind::Sweep { .. },
                ..
            })
        );
        // A sweep spans many connections: its ports are in node_monitor.sweep, not here.
        if sweep {
            doc.insert("source".into(), json!({ "ip": r.src_ip.to_string() }));
            doc.insert("destination".into(), json!({ "ip": r.dst_ip.to_string() }));
        } else {
            doc.insert(
                "source".into(),
                json!({ "ip": r.src_ip.to_string(), "port": r.src_port }),
            );
            doc.insert(
                "destination".into(),
                json!({ "ip": r.dst_ip.to_string(), "port": r.dst_port }),
            );
        }
        let mut network = Map::new();
        network.insert("transport".into(), json!(r.protocol));
        network.insert("type".into(), json!(r.family));
        network.insert("direction".into(), json!("ingress"));
        if !sweep {
            network.insert("community_id".into(), json!(community_id(r)));
        }
        if let Some(outer) = r.vlan.first() {
            network.insert("vlan".into(), json!({ "id": outer.to_string() }));
        }
        if let Some(inner) = r.vlan.get(1) {
            network.insert(
                "inner".into(),
                json!({ "vlan": { "id": inner.to_string() } }),
            );
        }
        doc.insert("network".into(), Value::Object(network));
    }

    let mut obs = json!({
        "hostname": observer.hostname,
        "product": observer.product,
        "vendor": observer.vendor,
        "version": observer.version,
        "type": "sensor",
    });
    if let Some(r) = rec {
        let mut interface = Map::new();
        if let Some(name) = &r.interface {
            interface.insert("name".into(), json!(name));
        }
        interface.insert("id".into(), json!(r.ifindex.to_string()));
        obs["ingress"] = json!({ "interface": interface });
    }
    doc.insert("observer".into(), obs);
    doc.insert("host".into(), json!({ "name": observer.hostname }));
    doc.insert("orchestrator".into(), json!({ "type": "kubernetes" }));
    doc.insert("message".into(), json!(message(item)));
    doc.insert(
        "node_monitor".into(),
        Value::Object(node_monitor(item, rec)),
    );
    Value::Object(doc)
}

/// `["connection","denied"]` when the policy denies the connection (enforced, `dropped`, or
/// monitored, `would_drop`: `node_monitor.action` tells which), `["connection","start"]`
/// otherwise; `["info"]` for a flood (no connection).
fn event_type(rec: Option<&FlowRecord>) -> Vec<&'static str> {
    match rec {
        Some(r) if denied(r) => vec!["connection", "denied"],
        Some(_) => vec!["connection", "start"],
        None => vec!["info"],
    }
}

fn node_monitor(item: &OutputItem, rec: Option<&FlowRecord>) -> Map<String, Value> {
    let mut nm = Map::new();
    if let Some(r) = rec {
        nm.insert("record_type".into(), json!(r.record_type));
        nm.insert("port_group".into(), json!(r.group));
        nm.insert("verdict".into(), json!(r.verdict));
        nm.insert("action".into(), json!(r.action));
        if let Some(answer) = r.answer {
            nm.insert("answer".into(), json!(answer.as_str()));
        }
        if let Some(flags) = &r.tcp_flags {
            nm.insert("tcp_flags".into(), json!(flags));
        }
        nm.insert("hook".into(), json!(r.hook));
        nm.insert("packet_length".into(), json!(r.packet_length));
    }
    if let OutputItem::Alert(a) = item {
        nm.insert("suppressed_count".into(), json!(a.suppressed));
        if let Some(first) = &a.follow_up_of {
            nm.insert("follow_up_of".into(), json!(first));
        }
        nm.insert(
            "losses_since_previous".into(),
            json!(a.losses_since_previous),
        );
        match &a.kind {
            AlertKind::Connection { .. } => {}
            AlertKind::Sweep {
                group,
                ports,
                window,
                ..
            } => {
                nm.insert("port_group".into(), json!(group));
                nm.insert(
                    "sweep".into(),
                    json!({ "ports": ports, "port_count": ports.len(), "window_s": window.as_secs() }),
                );
            }
            AlertKind::Flood {
                scope,
                rate_limited,
                ringbuf_full,
                window,
            } => {
                let scope = match scope {
                    FloodScope::Node => json!("node"),
                    FloodScope::Source(ip) => json!(ip.to_string()),
                };
                nm.insert(
                    "flood".into(),
                    json!({
                        "scope": scope,
                        "rate_limited": rate_limited,
                        "ringbuf_full": ringbuf_full,
                        "window_s": window.as_secs(),
                    }),
                );
            }
        }
    }
    nm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::format::tests::*;

    fn doc(item: OutputItem) -> Value {
        let line = render(&item, &observer());
        assert!(!line.contains('\n'));
        serde_json::from_str(&line).unwrap()
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
        assert_eq!(v["rule"]["version"], "1");
        assert_eq!(v["rule"]["ruleset"], "node-monitor");
        assert!(v["rule"]["description"].as_str().is_some());
    }

    #[test]
    fn connection_alert_fields() {
        let v = doc(OutputItem::Alert(connection_alert()));
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
    fn follow_up_fields() {
        let v = doc(OutputItem::Alert(follow_up()));
        alert_common(&v);
        assert_eq!(v["event"]["id"], "0b7c9e2d-1111-4222-8333-444455556666");
        assert_eq!(v["rule"]["id"], "NM-1001");
        assert_eq!(v["node_monitor"]["suppressed_count"], 17);
        assert_eq!(
            v["node_monitor"]["follow_up_of"],
            "3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d"
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
        let v = doc(OutputItem::Alert(sweep()));
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
    fn flood_fields() {
        let v = doc(OutputItem::Alert(flood()));
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

    #[test]
    fn flow_fields() {
        let v = doc(OutputItem::Flow(sampled()));
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
