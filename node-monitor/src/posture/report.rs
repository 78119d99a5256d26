//! An audit report as a table for people, or as JSON: the whole report, or one ECS or OCSF
//! (Compliance Finding, class 2003) document per finding for a SIEM.
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Finding, Report, Severity};
use crate::render::{Observer, ecs::ECS_VERSION, ocsf::OCSF_VERSION};

/// The output formats of `node-monitor audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Ecs,
    Ocsf,
}

/// The report in `format`, ending with a newline.
#[must_use]
pub fn render(r: &Report, format: Format, observer: &Observer) -> String {
    match format {
        Format::Table => table(r),
        Format::Json => {
            json!({
                "time": crate::record::rfc3339(r.time),
                "host": observer.hostname,
                "checks": r.checks,
                "findings": r.findings,
            })
            .to_string()
                + "\n"
        }
        Format::Ecs => lines(r.findings.iter().map(|f| ecs(f, r, observer))),
        Format::Ocsf => lines(r.findings.iter().map(|f| ocsf(f, r, observer))),
    }
}

fn lines(docs: impl Iterator<Item = Value>) -> String {
    docs.map(|d| d.to_string() + "\n").collect()
}

fn table(r: &Report) -> String {
    let mut s = String::new();
    for c in &r.checks {
        let _ = writeln!(s, "check {:<20} {:<9} {}", c.name, c.status, c.detail);
    }
    if r.findings.is_empty() {
        s.push_str("no findings\n");
    }
    for f in &r.findings {
        let _ = writeln!(
            s,
            "\n{} {:<8} {}{}\n  evidence: {}\n  fix:      {}",
            f.id,
            f.severity.as_str(),
            f.title,
            f.cis.map_or_else(String::new, |c| format!(" (CIS {c})")),
            f.evidence,
            f.fix
        );
    }
    s
}

/// ECS `event.severity` and OCSF `severity_id` (1 informational … 5 critical).
const fn severity_num(s: Severity) -> u8 {
    match s {
        Severity::Info => 1,
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
    }
}

fn ecs(f: &Finding, r: &Report, o: &Observer) -> Value {
    json!({
        "@timestamp": crate::record::rfc3339(r.time),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "state",
            "category": ["configuration"],
            "type": ["info"],
            "module": "node_monitor",
            "dataset": "node_monitor.audit",
            "outcome": "failure",
            "severity": severity_num(f.severity),
        },
        "rule": {
            "id": f.id,
            "name": f.title,
            "category": "posture",
            "reference": f.cis.map(|c| format!("CIS Kubernetes Benchmark {c}")),
        },
        "message": format!("{}: {}. {}", f.id, f.title, f.evidence),
        "host": {"name": o.hostname},
        "observer": {"product": o.product, "vendor": o.vendor, "version": o.version, "type": "sensor", "hostname": o.hostname},
        "node_monitor": {"finding": f},
    })
}

fn ocsf(f: &Finding, r: &Report, o: &Observer) -> Value {
    let ms = r
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    json!({
        "class_uid": 2003,
        "class_name": "Compliance Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200_301,
        "time": ms,
        "severity_id": severity_num(f.severity),
        "severity": f.severity.as_str(),
        "status_id": 1,
        "status": "New",
        "message": format!("{}: {}. {}", f.id, f.title, f.evidence),
        "finding_info": {"uid": f.id, "title": f.title, "desc": f.evidence},
        "compliance": {
            "control": f.id,
            "standards": f.cis.map_or_else(Vec::new, |_| vec!["CIS Kubernetes Benchmark"]),
            "requirements": f.cis.map_or_else(Vec::new, |c| vec![c]),
            "status_id": 3,
            "status": "Fail",
        },
        "remediation": {"desc": f.fix},
        "device": {"hostname": o.hostname, "type_id": 0},
        "metadata": {"product": {"name": o.product, "vendor_name": o.vendor, "version": o.version}, "version": OCSF_VERSION},
    })
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::posture::Check;

    fn report() -> Report {
        Report {
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            checks: vec![Check {
                name: "listeners",
                status: "findings",
                detail: "1 listening socket".into(),
            }],
            findings: vec![Finding::new(
                "NM-2001",
                Severity::High,
                "kubelet read-only port open",
                "listening: 0.0.0.0:10255/tcp".into(),
                "set readOnlyPort: 0",
                Some("4.2.4"),
            )],
        }
    }

    fn observer() -> Observer {
        Observer {
            hostname: "node-1".into(),
            product: "node-monitor",
            vendor: "node-monitor",
            version: "0.1.0",
        }
    }

    #[test]
    fn ecs_and_ocsf_documents() {
        let r = report();
        let e: Value = serde_json::from_str(render(&r, Format::Ecs, &observer()).trim()).unwrap();
        assert_eq!(e["event"]["kind"], "state");
        assert_eq!(e["event"]["severity"], 4);
        assert_eq!(e["rule"]["id"], "NM-2001");
        assert_eq!(e["rule"]["reference"], "CIS Kubernetes Benchmark 4.2.4");
        assert_eq!(e["node_monitor"]["finding"]["severity"], "high");
        assert_eq!(e["@timestamp"], "2023-11-14T22:13:20.000000Z");
        let o: Value = serde_json::from_str(render(&r, Format::Ocsf, &observer()).trim()).unwrap();
        assert_eq!(o["class_uid"], 2003);
        assert_eq!(o["type_uid"], 200_301);
        assert_eq!(o["severity_id"], 4);
        assert_eq!(o["compliance"]["requirements"][0], "4.2.4");
        assert_eq!(o["time"], 1_700_000_000_000_u64);
    }

    #[test]
    fn json_and_table() {
        let r = report();
        let j: Value = serde_json::from_str(&render(&r, Format::Json, &observer())).unwrap();
        assert_eq!(j["findings"][0]["id"], "NM-2001");
        assert_eq!(j["checks"][0]["name"], "listeners");
        let t = render(&r, Format::Table, &observer());
        assert!(
            t.contains("NM-2001 high     kubelet read-only port open (CIS 4.2.4)"),
            "{t}"
        );
        let empty = Report {
            findings: vec![],
            ..report()
        };
        assert!(render(&empty, Format::Table, &observer()).contains("no findings"));
        assert_eq!(render(&empty, Format::Ecs, &observer()), "");
    }
}
