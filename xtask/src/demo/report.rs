//! What the demo prints of the daemon's output: one compact line per event as it arrives,
//! and at the end the summary (counts by rule, group, verdict and answer; the kernel
//! counters table; a few sample events).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Flattens nested objects into dotted keys, so that `{"a":{"b":1}}` and `{"a.b":1}`
/// read the same.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

/// The first of `keys` present, as text; `-` when none is.
fn field(flat: &BTreeMap<String, Value>, keys: &[&str]) -> String {
    keys.iter().find_map(|k| flat.get(*k)).map_or_else(
        || "-".to_owned(),
        |v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    )
}

const GROUP: &[&str] = &[
    "node_monitor.group",
    "node_monitor.port_group",
    "group",
    "port_group",
];
const VERDICT: &[&str] = &["node_monitor.verdict", "verdict"];
const ANSWER: &[&str] = &["node_monitor.answer", "answer"];
const SRC: &[&str] = &["source.ip", "src_ip", "src"];
const DST: &[&str] = &["destination.ip", "dst_ip", "dst"];
const DPORT: &[&str] = &["destination.port", "dst_port", "dport"];

/// The daemon's closing counters line (`{"type":"counters",...}`) as a table.
fn counters_table(v: &Value) -> String {
    let mut out = String::from("kernel counters (per group, protocol, verdict):\n");
    out.push_str(&format!(
        "  {:<18} {:<5} {:<8} {:>8} {:>9} {:>7} {:>11} {:>12}\n",
        "group", "proto", "verdict", "packets", "new conns", "events", "would drop", "losses"
    ));
    for g in v["groups"].as_array().into_iter().flatten() {
        let n = |k: &str| g[k].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "  {:<18} {:<5} {:<8} {:>8} {:>9} {:>7} {:>11} {:>12}\n",
            g["group"].as_str().unwrap_or("-"),
            g["protocol"].as_str().unwrap_or("-"),
            g["verdict"].as_str().unwrap_or("-"),
            n("packets"),
            n("new_conns"),
            n("events"),
            n("would_drop"),
            n("lost_rate_limited") + n("lost_group_budget") + n("lost_ringbuf_full"),
        ));
    }
    if let Some(r) = v["reasons"].as_object().filter(|r| !r.is_empty()) {
        let parts: Vec<String> = r.iter().map(|(k, n)| format!("{k}={n}")).collect();
        out.push_str(&format!(
            "  packets passed unclassified, by reason: {}\n",
            parts.join(", ")
        ));
    }
    out
}

fn is_counters(v: &Value) -> bool {
    v["type"] == "counters"
}

/// One line per reported event, as it arrives.
pub(crate) fn compact(line: &str) -> String {
    match serde_json::from_str::<Value>(line) {
        Ok(v) if is_counters(&v) => "counters summary (shown below)".to_owned(),
        Ok(v) => {
            let mut flat = BTreeMap::new();
            flatten("", &v, &mut flat);
            format!(
                "group={} verdict={} answer={} {} -> {}:{}",
                field(&flat, GROUP),
                field(&flat, VERDICT),
                field(&flat, ANSWER),
                field(&flat, SRC),
                field(&flat, DST),
                field(&flat, DPORT)
            )
        }
        Err(_) => format!("(not JSON) {line}"),
    }
}

/// The readable summary of the daemon's stdout.
pub(crate) fn summarize(lines: &[String]) -> String {
    let mut out = String::new();
    let mut counts: BTreeMap<(String, String, String, String), usize> = BTreeMap::new();
    let mut families: BTreeMap<String, usize> = BTreeMap::new();
    let mut sources: BTreeMap<String, usize> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut sample_groups = BTreeSet::new();
    let mut not_json = 0usize;
    let mut json = 0usize;
    let mut counters = None;
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            not_json += 1;
            continue;
        };
        if is_counters(&v) {
            counters = Some(v);
            continue;
        }
        json += 1;
        let mut flat = BTreeMap::new();
        flatten("", &v, &mut flat);
        let group = field(&flat, GROUP);
        *counts
            .entry((
                field(&flat, &["rule.id"]),
                group.clone(),
                field(&flat, VERDICT),
                field(&flat, ANSWER),
            ))
            .or_default() += 1;
        *families
            .entry(field(&flat, &["network.type", "family"]))
            .or_default() += 1;
        *sources.entry(field(&flat, SRC)).or_default() += 1;
        if samples.len() < 3 && sample_groups.insert(group) {
            samples.push(v);
        }
    }
    out.push_str(&format!("{json} records ({not_json} other lines)\n"));
    if json == 0 {
        out.push_str("the daemon reported nothing\n");
        return out;
    }
    let w = counts
        .keys()
        .map(|(_, g, _, _)| g.len())
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!(
        "  {:<8}  {:<w$}  {:<10}  {:<10}  count\n",
        "rule", "group", "verdict", "answer"
    ));
    for ((r, g, v, a), n) in &counts {
        out.push_str(&format!("  {r:<8}  {g:<w$}  {v:<10}  {a:<10}  {n}\n"));
    }
    let join = |m: &BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.push_str(&format!("  by network.type: {}\n", join(&families)));
    out.push_str(&format!("  by source.ip:    {}\n", join(&sources)));
    if let Some(c) = &counters {
        out.push_str(&counters_table(c));
    }
    out.push_str("sample events:\n");
    for s in samples {
        out.push_str(&serde_json::to_string_pretty(&s).unwrap_or_default());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_nested_and_dotted_fields() {
        let lines = vec![
            r#"{"node_monitor":{"group":"kubelet","verdict":"denied","answer":"accepted"},"source":{"ip":"203.0.113.2"},"network":{"type":"ipv4"}}"#.to_owned(),
            r#"{"node_monitor.group":"kubelet","node_monitor.verdict":"denied","node_monitor.answer":"accepted","source.ip":"203.0.113.2","network.type":"ipv6"}"#.to_owned(),
            "starting".to_owned(),
            r#"{"node_monitor":{"group":"etcd-client","verdict":"denied","answer":"refused"}}"#.to_owned(),
            r#"{"type":"counters","groups":[{"group":"kubelet","protocol":"tcp","verdict":"denied","packets":7,"new_conns":2,"events":2,"would_drop":7,"lost_rate_limited":0,"lost_ringbuf_full":0}],"reasons":{"not_ip":3}}"#.to_owned(),
        ];
        let s = summarize(&lines);
        assert!(s.contains("3 records (1 other lines)"), "{s}");
        assert!(s.contains("kubelet            tcp   denied          7         2       2           7            0"), "{s}");
        assert!(s.contains("by reason: not_ip=3"), "{s}");
        assert!(
            s.contains("-         kubelet      denied      accepted    2"),
            "{s}"
        );
        assert!(
            s.contains("-         etcd-client  denied      refused     1"),
            "{s}"
        );
        assert!(s.contains("ipv4: 1") && s.contains("ipv6: 1"), "{s}");
        assert!(
            compact(&lines[0])
                .starts_with("group=kubelet verdict=denied answer=accepted 203.0.113.2")
        );
    }

    #[test]
    fn empty_summary() {
        assert!(summarize(&[]).contains("reported nothing"));
    }
}
