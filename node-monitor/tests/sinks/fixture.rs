//! What the sink tests feed and check: alerts and flow records, a trivial renderer (the
//! alert id, the format), sink specs, and the accounting every sink keeps.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use node_monitor::{
    config::{ClientTls, Format, SinkKind, SinkSpec},
    detect::{Alert, OutputItem, Rule, Severity, fixture},
    record::fixture::sampled_from_port,
    sinks::{Renderer, SinkStats, Sinks},
};

use crate::common::wait::wait_for_async;

pub(crate) const SEVERITIES: [Severity; 4] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
];

pub(crate) fn alert(id: &str, rule: &'static str, severity: Severity) -> Arc<OutputItem> {
    Arc::new(OutputItem::Alert(Alert {
        id: id.to_owned(),
        time: SystemTime::now(),
        rule: Rule {
            id: rule,
            name: "test rule",
            version: 1,
            severity,
            description: "",
        },
        ..fixture::flood()
    }))
}

pub(crate) fn a(id: impl Into<String>) -> Arc<OutputItem> {
    alert(&id.into(), "NM-1001", Severity::High)
}

pub(crate) fn flow(port: u16) -> Arc<OutputItem> {
    Arc::new(OutputItem::Flow(sampled_from_port(port)))
}

/// `{"id":"<alert id>","format":"<Format>"}`, or `{"flow":<src port>,...}`.
pub(crate) fn render() -> Renderer {
    Arc::new(|item, format, out| {
        let line = match item {
            OutputItem::Alert(a) => format!("{{\"id\":\"{}\",\"format\":\"{format:?}\"}}", a.id),
            OutputItem::Flow(f) => format!("{{\"flow\":{},\"format\":\"{format:?}\"}}", f.src_port),
            OutputItem::Finding(f) => format!("{{\"id\":\"{}\",\"format\":\"{format:?}\"}}", f.id),
        };
        out.extend_from_slice(line.as_bytes());
    })
}

pub(crate) fn id_of(line: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    match (&v["id"], &v["flow"]) {
        (serde_json::Value::String(s), _) => s.clone(),
        (_, serde_json::Value::Number(n)) => format!("flow-{n}"),
        _ => panic!("no id in {line}"),
    }
}

pub(crate) fn file_spec(
    name: &str,
    path: &Path,
    max_size_bytes: u64,
    keep: u32,
    queue: usize,
) -> SinkSpec {
    SinkSpec {
        name: name.into(),
        kind: SinkKind::File {
            path: path.to_owned(),
            max_size_bytes,
            keep,
        },
        format: Format::Ecs,
        queue,
        flows: false,
    }
}

pub(crate) fn http_spec(
    name: &str,
    url: &str,
    batch_max: usize,
    max_retries: u32,
    queue: usize,
) -> SinkSpec {
    SinkSpec {
        name: name.into(),
        kind: SinkKind::Http {
            url: url.into(),
            batch_max,
            batch_interval: Duration::from_millis(100),
            timeout: Duration::from_secs(30),
            max_retries,
            headers: vec![("X-Token".into(), "t0k3n".into())],
            tls: ClientTls::default(),
            bearer_token_file: None,
        },
        format: Format::Ocsf,
        queue,
        flows: false,
    }
}

pub(crate) fn stat<'a>(stats: &'a [SinkStats], name: &str) -> &'a SinkStats {
    stats
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no sink {name} in {stats:?}"))
}

pub(crate) fn dropped(s: &SinkStats, reason: &str) -> u64 {
    s.dropped.get(reason).copied().unwrap_or(0)
}

/// Every record offered to the sink is accounted for exactly once.
pub(crate) fn assert_accounted(s: &SinkStats, offered: u64) {
    assert_eq!(s.sent + s.dropped_total(), offered, "accounting of {s:?}");
    assert_eq!(s.queue_len, 0, "{s:?}");
}

pub(crate) async fn wait_sent(sinks: &Sinks, name: &str, n: u64) {
    wait_for_async(
        Duration::from_secs(10),
        &format!("{name} to deliver {n}"),
        || (stat(&sinks.stats(), name).sent >= n).then_some(()),
    )
    .await;
}
