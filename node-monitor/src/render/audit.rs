//! `node-monitor audit`'s output: a report as a table for people, or as JSON: the whole
//! report, or one ECS or OCSF (Compliance Finding, class 2003) document per finding for a
//! SIEM, the very documents the daemon's sinks get (`finding.rs`).
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Observer, finding};
use crate::posture::{FindingEvent, Report};

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
        Format::Ecs => lines(
            FindingEvent::of_report(r)
                .iter()
                .map(|e| finding::ecs_value(e, observer)),
        ),
        Format::Ocsf => lines(
            FindingEvent::of_report(r)
                .iter()
                .map(|e| finding::ocsf_value(e, observer)),
        ),
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

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::posture::{Check, Finding, Severity};

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
