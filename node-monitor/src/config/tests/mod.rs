//! Tests of the config pipeline, by topic; the shared snippets and helpers live here.

mod canonical;
mod cluster;
mod errors;
mod groups;
mod limits;
mod model;
mod reload;
mod settings;
mod sinks;
mod tls;
mod yaml;

use ipnet::IpNet;

use super::{validate::parse_allow_entry, *};

const EXAMPLE: &str = r#"groups:
  kubelet: { protocols: [tcp], ports: ["10250"], allow: ["203.0.113.0/28", "2001:db8:1::/64"], action: monitor }
  nodeport: { protocols: [tcp, udp], ports: ["30000-32767"], allow: ["0.0.0.0/0", "::/0"] }
sampling: { allowed_flows_one_in: 100 }
limits: { flows: 65536, events_per_source_per_second: 20, answer_timeout_ms: 1000 }
"#;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn parse(yaml: &str) -> Config {
    Config::from_yaml(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// Asserts that `yaml` fails with one error, at `line:column` on `field`, with a message
/// containing `msg`, displayed as it always was.
#[track_caller]
fn assert_error(yaml: &str, line: usize, column: usize, field: &str, msg: &str) {
    let errors = Config::from_yaml(yaml, "test.yaml").expect_err("config should be rejected");
    assert_eq!(errors.errors().len(), 1, "want one error, got:\n{errors}");
    let e = errors.first();
    assert_eq!(
        (e.line, e.column, e.field.as_str()),
        (Some(line), Some(column), field),
        "wrong location or field for: {e}"
    );
    assert!(
        e.message.contains(msg),
        "message {:?} lacks {msg:?}",
        e.message
    );
    assert_eq!(e.origin, "test.yaml");
    let field = if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    };
    assert_eq!(
        e.to_string(),
        format!("test.yaml:{line}:{column}: {field}{}", e.message)
    );
    assert_eq!(errors.to_string(), e.to_string());
}

/// A group snippet with the given ports and protocols.
fn group_yaml(name: &str, protocols: &str, ports: &str) -> String {
    format!("  {name}: {{ protocols: [{protocols}], ports: [{ports}] }}\n")
}

/// Every section and every kind of sink, as a daemon config would have them.
const FULL: &str = r#"interfaces: ["eth*", "ens5", "en[op]?s*"]
attach: tc
groups:
  nodeport: { protocols: [tcp, udp], ports: ["30000-32767"], allow: ["0.0.0.0/0", "::/0"], detect_sweeps: true }
  kubelet: { protocols: [tcp], ports: [10250], detect_sweeps: false }
alerts:
  dedup_window_s: 120
  sweep: { min_ports: 20, window_s: 30 }
  scan: { min_ports: 6, window_s: 45 }
  flood_window_s: 5
  connection_alerts_per_group: 7
sinks:
  - {type: stdout, format: ecs}
  - {type: file, path: /var/log/node-monitor/alerts.json, format: ocsf, max_size_mb: 100, keep: 5}
  - {type: syslog, address: "udp://127.0.0.1:514", format: cef}
  - {type: http, url: "https://siem.example/ingest", format: ecs, batch_max: 500, batch_interval_ms: 1000, timeout_ms: 5000, max_retries: 5, headers: {Authorization: "Bearer x", X-Tenant: node-1}}
  - {type: syslog, address: "tcp://[2001:db8::1]:6514", name: remote, queue: 50, flows: true}
  - {type: syslog, address: "unix:///dev/log"}
  - {type: file, path: /var/log/nm/flows.json, flows: true, keep: 0, max_size_mb: 1}
metrics: { listen: "[::]:9100" }
"#;
