//! A posture finding ([`FindingEvent`]) as an ECS document (`event.kind: state`) and as an
//! OCSF Compliance Finding (class 2003): the one code path for both the daemon's sinks and
//! `node-monitor audit --format ecs|ocsf`. Findings come a few per audit run, so they are
//! built as `serde_json` values rather than written field by field like alerts. CEF is in
//! `cef.rs` beside the alerts' extensions.
use serde_json::{Value, json};

use super::{ecs::ECS_VERSION, facts::epoch_ms, observer::Observer, ocsf::OCSF_VERSION};
use crate::posture::{FindingEvent, Severity};

/// ECS `event.severity` and OCSF `severity_id` (1 informational … 5 critical).
#[must_use]
pub const fn severity_number(s: Severity) -> u8 {
    match s {
        Severity::Info => 1,
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
    }
}

/// OCSF's name of a `severity_id`.
const fn ocsf_severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "Informational",
        Severity::Low => "Low",
        Severity::Medium => "Medium",
        Severity::High => "High",
        Severity::Critical => "Critical",
    }
}

/// `ID: title. evidence`: ECS `message`, OCSF `message`, CEF `msg`.
#[must_use]
pub fn message(e: &FindingEvent) -> String {
    format!(
        "{}: {}. {}",
        e.finding.id, e.finding.title, e.finding.evidence
    )
}

/// The ECS document of one finding.
#[must_use]
pub fn ecs_value(e: &FindingEvent, o: &Observer) -> Value {
    let f = &e.finding;
    json!({
        "@timestamp": crate::record::rfc3339(e.time),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "state",
            "category": ["configuration"],
            "type": ["info"],
            "id": e.id,
            "module": "node_monitor",
            "dataset": "node_monitor.audit",
            "action": "posture-finding",
            "outcome": "failure",
            "severity": severity_number(f.severity),
        },
        "rule": {
            "id": f.id,
            "name": f.title,
            "category": "posture",
            "reference": f.cis.map(|c| format!("CIS Kubernetes Benchmark {c}")),
        },
        "message": message(e),
        "host": {"name": o.hostname},
        "observer": {"product": o.product, "vendor": o.vendor, "version": o.version, "type": "sensor", "hostname": o.hostname},
        "node_monitor": {"finding": f},
    })
}

/// The OCSF Compliance Finding (2003) of one finding.
#[must_use]
pub fn ocsf_value(e: &FindingEvent, o: &Observer) -> Value {
    let f = &e.finding;
    json!({
        "class_uid": 2003,
        "class_name": "Compliance Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200_301,
        "type_name": "Compliance Finding: Create",
        "time": epoch_ms(e.time),
        "severity_id": severity_number(f.severity),
        "severity": ocsf_severity_name(f.severity),
        "status_id": 1,
        "status": "New",
        "message": message(e),
        "finding_info": {"uid": f.id, "title": f.title, "desc": f.evidence, "types": ["posture"]},
        "compliance": {
            "control": f.id,
            "standards": f.cis.map_or_else(Vec::new, |_| vec!["CIS Kubernetes Benchmark"]),
            "requirements": f.cis.map_or_else(Vec::new, |c| vec![c]),
            "status_id": 3,
            "status": "Fail",
        },
        "remediation": {"desc": f.fix},
        "device": {"hostname": o.hostname, "type_id": 0},
        "metadata": {
            "uid": e.id,
            "product": {"name": o.product, "vendor_name": o.vendor, "version": o.version},
            "version": OCSF_VERSION,
        },
    })
}

/// Appends `v` as one JSON line (no newline): a `Value` always serializes.
pub(crate) fn write_value(v: &Value, out: &mut Vec<u8>) {
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"{}");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{
        config::Format,
        detect::OutputItem,
        posture::Finding,
        render::{check::observer, render},
    };

    pub(crate) fn event() -> FindingEvent {
        FindingEvent {
            id: "5f0c6c4e-0000-4000-8000-000000000001".into(),
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            finding: Finding::new(
                "NM-2001",
                Severity::High,
                "kubelet read-only port open",
                "listening: 0.0.0.0:10255/tcp (kubelet, pid 42); a=b | c\\d\nnext".into(),
                "set readOnlyPort: 0 in the kubelet config (or --read-only-port=0)",
                Some("4.2.4"),
            ),
        }
    }

    #[test]
    fn ecs_line_of_a_finding() {
        let line = render(&OutputItem::Finding(event()), Format::Ecs, &observer());
        assert!(!line.contains('\n'), "{line}");
        let v: Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["event"]["kind"], "state");
        assert_eq!(v["event"]["category"][0], "configuration");
        assert_eq!(v["event"]["id"], event().id);
        assert_eq!(v["event"]["severity"], 4);
        assert_eq!(v["rule"]["id"], "NM-2001");
        assert_eq!(v["rule"]["reference"], "CIS Kubernetes Benchmark 4.2.4");
        assert_eq!(v["node_monitor"]["finding"]["severity"], "high");
        assert_eq!(
            v["node_monitor"]["finding"]["fix"],
            "set readOnlyPort: 0 in the kubelet config (or --read-only-port=0)"
        );
        assert_eq!(v["@timestamp"], "2023-11-14T22:13:20.000000Z");
        assert_eq!(v["host"]["name"], observer().hostname);
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("NM-2001: kubelet read-only port open. listening")),
            "{v}"
        );
    }

    #[test]
    fn ocsf_line_of_a_finding() {
        let line = render(&OutputItem::Finding(event()), Format::Ocsf, &observer());
        let v: Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["class_uid"], 2003);
        assert_eq!(v["type_uid"], 200_301);
        assert_eq!(v["severity_id"], 4);
        assert_eq!(v["severity"], "High");
        assert_eq!(v["compliance"]["requirements"][0], "4.2.4");
        assert_eq!(v["compliance"]["status"], "Fail");
        assert_eq!(v["finding_info"]["uid"], "NM-2001");
        assert_eq!(v["metadata"]["uid"], event().id);
        assert_eq!(v["time"], 1_700_000_000_000_u64);
        // The same document `ocsf::to_value` gives (the tests' view of every item).
        assert_eq!(
            crate::render::ocsf::to_value(&OutputItem::Finding(event()), &observer()),
            v
        );
        assert_eq!(
            crate::render::ecs::to_value(&OutputItem::Finding(event()), &observer()),
            serde_json::from_str::<Value>(&render(
                &OutputItem::Finding(event()),
                Format::Ecs,
                &observer()
            ))
            .expect("json")
        );
    }
}
