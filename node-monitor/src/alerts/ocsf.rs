//! OCSF 1.3 events: alerts as Detection Finding (2004), sampled flows as Network Activity
//! (4001), as AWS Security Lake and Splunk ingest them.
//!
//! A dedup follow-up is activity 2 (Update) of the same finding: its `finding_info.uid` is the
//! first alert's id (the finding), `metadata.uid` its own alert id (the event).
use serde_json::{Map, Value, json};

use super::{
    format::{
        action_name, alert_record, community_id, epoch_ms, item_time, message, rule_category,
    },
    model::{AlertKind, FloodScope, Observer, OutputItem, Severity},
};
use crate::events::FlowRecord;

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

pub fn render(item: &OutputItem, observer: &Observer) -> String {
    to_value(item, observer).to_string()
}

fn metadata(observer: &Observer, uid: Option<&str>) -> Value {
    let mut m = json!({
        "product": {
            "name": observer.product,
            "vendor_name": observer.vendor,
            "version": observer.version,
        },
        "version": OCSF_VERSION,
        "profiles": ["host"],
    });
    if let Some(uid) = uid {
        m["uid"] = json!(uid);
    }
    m
}

fn device(observer: &Observer) -> Value {
    json!({ "hostname": observer.hostname, "name": observer.hostname, "type_id": 1, "type": "Server" })
}

fn endpoint(
    ip: std::net::IpAddr,
    port: Option<u16>,
    rec: &FlowRecord,
    with_interface: bool,
) -> Value {
    let mut e = Map::new();
    e.insert("ip".into(), json!(ip.to_string()));
    if let Some(port) = port {
        e.insert("port".into(), json!(port));
    }
    if with_interface {
        if let Some(name) = &rec.interface {
            e.insert("interface_name".into(), json!(name));
        }
        e.insert("interface_uid".into(), json!(rec.ifindex.to_string()));
        if let Some(outer) = rec.vlan.first() {
            e.insert("vlan_uid".into(), json!(outer.to_string()));
        }
    }
    Value::Object(e)
}

fn connection_info(rec: &FlowRecord, with_community_id: bool) -> Value {
    let mut c = json!({
        "protocol_name": rec.protocol,
        "protocol_num": super::community_id::proto_number(rec.protocol),
        "protocol_ver_id": if rec.family == "ipv6" { 6 } else { 4 },
        "protocol_ver": if rec.family == "ipv6" { "Internet Protocol version 6 (IPv6)" } else { "Internet Protocol version 4 (IPv4)" },
        "direction": "Inbound",
        "direction_id": 1,
    });
    if with_community_id {
        c["community_uid"] = json!(community_id(rec));
    }
    if let Some(flags) = &rec.tcp_flags {
        c["tcp_flags"] = json!(tcp_flags_bits(flags));
    }
    c
}

/// "SYN|ACK" → the TCP header flag bits (OCSF `tcp_flags` is an integer).
fn tcp_flags_bits(flags: &str) -> u32 {
    flags
        .split('|')
        .map(|f| match f {
            "FIN" => 0x01,
            "SYN" => 0x02,
            "RST" => 0x04,
            "PSH" => 0x08,
            "ACK" => 0x10,
            "URG" => 0x20,
            _ => 0,
        })
        .fold(0, |a, b| a | b)
}

fn record_extras(rec: &FlowRecord, nm: &mut Map<String, Value>) {
    nm.insert("port_group".into(), json!(rec.group));
    nm.insert("verdict".into(), json!(rec.verdict));
    nm.insert("action".into(), json!(rec.action));
    if let Some(answer) = rec.answer {
        nm.insert("answer".into(), json!(answer.as_str()));
    }
    if let Some(flags) = &rec.tcp_flags {
        nm.insert("tcp_flags".into(), json!(flags));
    }
    nm.insert("hook".into(), json!(rec.hook));
    if rec.vlan.len() > 1 {
        nm.insert("vlan".into(), json!(rec.vlan));
    }
}

/// The OCSF event of one item.
pub fn to_value(item: &OutputItem, observer: &Observer) -> Value {
    match item {
        OutputItem::Flow(r) => flow(r, item, observer),
        OutputItem::Alert(a) => {
            let (activity_id, activity_name) = if a.follow_up_of.is_some() {
                (2, "Update")
            } else {
                (1, "Create")
            };
            let (severity_id, severity_name) = severity(a.rule.severity);
            let finding_uid = a.follow_up_of.as_deref().unwrap_or(&a.id);
            let rec = alert_record(a);
            let sweep = matches!(a.kind, AlertKind::Sweep { .. });

            let mut nm = Map::new();
            if let Some(r) = rec {
                record_extras(r, &mut nm);
            }
            nm.insert("event_action".into(), json!(action_name(item)));
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
                        json!({ "scope": scope, "rate_limited": rate_limited, "ringbuf_full": ringbuf_full, "window_s": window.as_secs() }),
                    );
                }
            }

            let flood_data = nm.get("flood").cloned();
            let mut v = json!({
                "activity_id": activity_id,
                "activity_name": activity_name,
                "category_uid": 2,
                "category_name": "Findings",
                "class_uid": 2004,
                "class_name": "Detection Finding",
                "type_uid": 2004 * 100 + activity_id,
                "type_name": format!("Detection Finding: {activity_name}"),
                "severity_id": severity_id,
                "severity": severity_name,
                "time": epoch_ms(a.time),
                "message": message(item),
                "metadata": metadata(observer, Some(&a.id)),
                "finding_info": {
                    "uid": finding_uid,
                    "title": a.rule.name,
                    "desc": a.rule.description,
                    "types": [rule_category(a)],
                    "analytic": {
                        "uid": a.rule.id,
                        "name": a.rule.name,
                        "type_id": 1,
                        "type": "Rule",
                        "version": a.rule.version.to_string(),
                        "category": rule_category(a),
                    },
                },
                "count": a.suppressed + 1,
                "device": device(observer),
                "unmapped": { "node_monitor": nm },
            });
            if let Some(r) = rec {
                // A sweep spans many connections: no ports, no single flow id.
                let port = |p| if sweep { None } else { Some(p) };
                v["evidences"] = json!([{
                    "src_endpoint": endpoint(r.src_ip, port(r.src_port), r, false),
                    "dst_endpoint": endpoint(r.dst_ip, port(r.dst_port), r, true),
                    "connection_info": connection_info(r, !sweep),
                }]);
                v["observables"] = json!([{ "name": "evidences[0].src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": r.src_ip.to_string() }]);
            } else {
                v["evidences"] = json!([{ "data": flood_data }]);
            }
            v
        }
    }
}

fn flow(r: &FlowRecord, item: &OutputItem, observer: &Observer) -> Value {
    let mut nm = Map::new();
    record_extras(r, &mut nm);
    nm.insert("event_action".into(), json!(action_name(item)));
    json!({
        "activity_id": 1,
        "activity_name": "Open",
        "category_uid": 4,
        "category_name": "Network Activity",
        "class_uid": 4001,
        "class_name": "Network Activity",
        "type_uid": 400101,
        "type_name": "Network Activity: Open",
        "severity_id": 1,
        "severity": "Informational",
        "time": epoch_ms(item_time(item)),
        "message": message(item),
        "metadata": metadata(observer, None),
        "src_endpoint": endpoint(r.src_ip, Some(r.src_port), r, false),
        "dst_endpoint": endpoint(r.dst_ip, Some(r.dst_port), r, true),
        "connection_info": connection_info(r, true),
        "device": device(observer),
        "observables": [{ "name": "src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": r.src_ip.to_string() }],
        "unmapped": { "node_monitor": nm },
    })
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
        assert_eq!(v["finding_info"]["analytic"]["version"], "1");
        assert_eq!(
            v["finding_info"]["title"],
            v["finding_info"]["analytic"]["name"]
        );
        assert!(v["finding_info"]["desc"].as_str().is_some());
        assert!(v["evidences"].as_array().is_some_and(|e| e.len() == 1));
    }

    #[test]
    fn connection_alert_fields() {
        let v = doc(OutputItem::Alert(connection_alert()));
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
        let v = doc(OutputItem::Alert(follow_up()));
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
    }

    #[test]
    fn sweep_fields() {
        let v = doc(OutputItem::Alert(sweep()));
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
    fn flood_fields() {
        let v = doc(OutputItem::Alert(flood()));
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

    #[test]
    fn flow_fields() {
        let v = doc(OutputItem::Flow(sampled()));
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

    #[test]
    fn tcp_flags() {
        assert_eq!(tcp_flags_bits("SYN|ACK"), 0x12);
        assert_eq!(tcp_flags_bits("FIN|PSH|URG"), 0x29);
        assert_eq!(tcp_flags_bits("NONE"), 0);
    }
}
