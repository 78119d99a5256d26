//! What the daemon's records must say: the rule and ECS severity of each group, ECS records
//! reduced to what a test predicts ([`Rec`]), the facts every record must get right, and the
//! exact comparison of what was printed with what was predicted.

use std::net::{IpAddr, SocketAddr};

use node_monitor::render::community_id::community_id_v1;
use serde_json::Value;

/// The rule ALERTS.md gives a flagged connection to `group`.
pub(crate) fn rule_of(group: &str) -> &'static str {
    match group {
        "kubelet" => "NM-1001",
        "kubelet-readonly" => "NM-1002",
        "etcd-client" | "etcd-peer" => "NM-1003",
        "scheduler" | "controller-manager" | "kubelet-healthz" | "etcd-metrics"
        | "kube-proxy-metrics" => "NM-1004",
        "apiserver" => "NM-1005",
        "kube-proxy-healthz" => "NM-1006",
        _ => "NM-1900",
    }
}

/// ECS `event.severity` of a rule (ALERTS.md: low 21, medium 47, high 73, critical 99).
pub(crate) fn ecs_severity(rule: &str) -> u64 {
    match rule {
        "NM-1001" | "NM-1002" | "NM-1004" => 73,
        "NM-1003" => 99,
        _ => 47,
    }
}

/// A string at a JSON pointer, or a panic naming it.
pub(crate) fn js<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {ptr}: {v}"))
}

/// A number at a JSON pointer, or a panic naming it.
pub(crate) fn ju(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {ptr}: {v}"))
}

pub(crate) fn is_alert(v: &Value) -> bool {
    v.pointer("/event/kind") == Some(&Value::from("alert"))
}

pub(crate) fn alerts_of<'a>(records: &'a [Value], rule: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| is_alert(r) && r.pointer("/rule/id") == Some(&Value::from(rule)))
        .collect()
}

/// An ECS alert or sampled flow, reduced to what the test predicts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rec {
    /// `event.kind`: `alert` or `event` (a sampled flow).
    pub(crate) kind: String,
    pub(crate) rule: Option<String>,
    pub(crate) group: String,
    pub(crate) verdict: String,
    pub(crate) action: String,
    pub(crate) answer: Option<String>,
    pub(crate) protocol: String,
    pub(crate) family: String,
    pub(crate) src: SocketAddr,
    pub(crate) dst: SocketAddr,
    pub(crate) interface: String,
    pub(crate) hook: String,
    /// `node_monitor.suppressed_count` (alerts only).
    pub(crate) suppressed: Option<u64>,
}

impl Rec {
    fn from_json(v: &Value) -> Rec {
        let s = |p: &str| js(v, p).to_owned();
        let ip = |p: &str| -> IpAddr {
            js(v, p)
                .parse()
                .unwrap_or_else(|e| panic!("bad {p} in {v}: {e}"))
        };
        let port = |p: &str| -> u16 {
            u16::try_from(ju(v, p)).unwrap_or_else(|_| panic!("bad {p} in {v}"))
        };
        let alert = is_alert(v);
        Rec {
            kind: s("/event/kind"),
            rule: alert.then(|| s("/rule/id")),
            group: s("/node_monitor/port_group"),
            verdict: s("/node_monitor/verdict"),
            action: s("/node_monitor/action"),
            answer: v.pointer("/node_monitor/answer").map(|a| {
                a.as_str()
                    .unwrap_or_else(|| panic!("answer not a string: {v}"))
                    .to_owned()
            }),
            protocol: s("/network/transport"),
            family: s("/network/type"),
            src: SocketAddr::new(ip("/source/ip"), port("/source/port")),
            dst: SocketAddr::new(ip("/destination/ip"), port("/destination/port")),
            interface: v
                .pointer("/observer/ingress/interface/name")
                .and_then(Value::as_str)
                .unwrap_or("<none>")
                .to_owned(),
            hook: s("/node_monitor/hook"),
            suppressed: alert.then(|| ju(v, "/node_monitor/suppressed_count")),
        }
    }

    pub(crate) fn flagged(
        group: &str,
        src: SocketAddr,
        dst: SocketAddr,
        proto: &str,
        answer: &str,
        action: &str,
        hook: &str,
    ) -> Rec {
        Rec {
            kind: "alert".into(),
            rule: Some(rule_of(group).into()),
            group: group.into(),
            verdict: "denied".into(),
            action: action.into(),
            answer: Some(answer.into()),
            protocol: proto.into(),
            family: if src.is_ipv4() { "ipv4" } else { "ipv6" }.into(),
            src,
            dst,
            interface: "eth0".into(),
            hook: hook.into(),
            suppressed: Some(0),
        }
    }

    /// A dedup follow-up: the last repeat's connection with the number of repeats.
    pub(crate) fn folded(mut self, repeats: u64) -> Rec {
        self.suppressed = Some(repeats);
        self
    }

    pub(crate) fn flow(
        group: &str,
        src: SocketAddr,
        dst: SocketAddr,
        proto: &str,
        hook: &str,
    ) -> Rec {
        Rec {
            kind: "event".into(),
            rule: None,
            group: group.into(),
            verdict: "allowed".into(),
            action: "pass".into(),
            answer: None,
            protocol: proto.into(),
            family: if src.is_ipv4() { "ipv4" } else { "ipv6" }.into(),
            src,
            dst,
            interface: "eth0".into(),
            hook: hook.into(),
            suppressed: None,
        }
    }
}

pub(crate) fn recs(records: &[Value]) -> Vec<Rec> {
    let mut v: Vec<Rec> = records.iter().map(Rec::from_json).collect();
    v.sort();
    v
}

pub(crate) fn dump(records: &[Value]) -> String {
    records
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ECS facts every connection record must get right, whatever the scenario: the
/// Community ID of its 5-tuple, the rule's severity and version, outcome vs answer, event
/// type vs action, the ifindex, the follow-up link.
pub(crate) fn check_ecs(v: &Value) {
    assert_eq!(js(v, "/ecs/version"), "8.11.0", "{v}");
    let src: IpAddr = js(v, "/source/ip").parse().unwrap();
    let dst: IpAddr = js(v, "/destination/ip").parse().unwrap();
    let proto = match js(v, "/network/transport") {
        "tcp" => 6,
        "udp" => 17,
        p => panic!("transport {p}: {v}"),
    };
    let (sport, dport) = (ju(v, "/source/port"), ju(v, "/destination/port"));
    let want = community_id_v1(
        0,
        src,
        dst,
        proto,
        u16::try_from(sport).unwrap(),
        u16::try_from(dport).unwrap(),
    );
    assert_eq!(js(v, "/network/community_id"), want, "community id of {v}");
    assert_eq!(js(v, "/network/direction"), "ingress", "{v}");
    let ifindex: u64 = js(v, "/observer/ingress/interface/id").parse().unwrap();
    assert!(ifindex > 0, "{v}");
    let outcome = match v.pointer("/node_monitor/answer").and_then(Value::as_str) {
        Some("accepted") => "success",
        Some("refused" | "no_answer") => "failure",
        _ => "unknown",
    };
    assert_eq!(js(v, "/event/outcome"), outcome, "{v}");
    let denied = matches!(js(v, "/node_monitor/action"), "would_drop" | "dropped");
    let ty: Vec<&str> = v["event"]["type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        ty,
        ["connection", if denied { "denied" } else { "start" }],
        "{v}"
    );
    if is_alert(v) && js(v, "/rule/id") == "NM-1030" {
        // The node's acceptance nobody saw arrive (ALERTS.md): version 1, critical for the
        // kubelet and etcd groups, high for the others.
        let group = js(v, "/node_monitor/port_group");
        let critical = group.starts_with("kubelet") || group.starts_with("etcd");
        assert_eq!(
            ju(v, "/event/severity"),
            if critical { 99 } else { 73 },
            "{v}"
        );
        assert_eq!(js(v, "/rule/version"), "1", "{v}");
        assert_eq!(js(v, "/event/action"), "unseen-accepted-connection", "{v}");
        assert_eq!(js(v, "/node_monitor/record_type"), "unseen_accepted", "{v}");
        assert_eq!(js(v, "/node_monitor/answer"), "accepted", "{v}");
    } else if is_alert(v) {
        let rule = js(v, "/rule/id");
        assert_eq!(
            js(v, "/rule/id"),
            rule_of(js(v, "/node_monitor/port_group")),
            "{v}"
        );
        assert_eq!(ju(v, "/event/severity"), ecs_severity(rule), "{v}");
        assert_eq!(js(v, "/rule/version"), "2", "{v}");
        assert_eq!(js(v, "/rule/ruleset"), "node-monitor", "{v}");
        assert_eq!(js(v, "/event/action"), "flagged-connection", "{v}");
        assert!(!js(v, "/event/id").is_empty(), "{v}");
        let suppressed = ju(v, "/node_monitor/suppressed_count");
        assert_eq!(
            v.pointer("/node_monitor/follow_up_of").is_some(),
            suppressed > 0,
            "a follow-up (and only a follow-up) names the first alert: {v}"
        );
    } else {
        assert_eq!(js(v, "/event/action"), "flow-sampled", "{v}");
        assert!(v.pointer("/event/severity").is_none(), "{v}");
    }
}

/// Every follow-up names an earlier first alert of the same rule and source.
pub(crate) fn check_follow_ups(records: &[Value]) {
    for f in records
        .iter()
        .filter(|r| r.pointer("/node_monitor/follow_up_of").is_some())
    {
        let first = js(f, "/node_monitor/follow_up_of");
        let orig = records
            .iter()
            .find(|r| r.pointer("/event/id").and_then(Value::as_str) == Some(first))
            .unwrap_or_else(|| panic!("follow-up of an unknown alert: {f}"));
        assert_eq!(orig["rule"]["id"], f["rule"]["id"]);
        assert_eq!(orig["source"]["ip"], f["source"]["ip"]);
        assert_eq!(ju(orig, "/node_monitor/suppressed_count"), 0, "{orig}");
    }
}

pub(crate) fn assert_same_records(got: &[Value], mut want: Vec<Rec>) {
    for r in got {
        check_ecs(r);
    }
    check_follow_ups(got);
    want.sort();
    let have = recs(got);
    let extra: Vec<&Rec> = have.iter().filter(|r| !want.contains(r)).collect();
    let missing: Vec<&Rec> = want.iter().filter(|r| !have.contains(r)).collect();
    assert!(
        extra.is_empty() && missing.is_empty() && have.len() == want.len(),
        "records differ.\nmissing: {missing:#?}\nunexpected: {extra:#?}\nall output:\n{}",
        dump(got)
    );
}
