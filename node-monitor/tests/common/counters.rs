//! The daemon's final counters line (`{"type":"counters",...}`): its per-(group, protocol,
//! verdict) kernel counters, userspace and sink counters, and the invariants every run keeps.

use std::collections::BTreeMap;

use node_monitor_common::GroupStats;
use serde_json::Value;

/// The final counters line.
#[derive(Debug, Clone)]
pub(crate) struct Counters(pub(crate) Value);

/// One (group, protocol, verdict) entry of the counters line: the kernel's counters.
pub(crate) type GroupCounts = GroupStats;

fn group_counts_from_json(v: &Value) -> GroupCounts {
    serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("counters entry is not a full set of counters ({e}): {v}"))
}

/// Field-wise difference of two readings (panics if any counter went down).
pub(crate) fn counts_minus(after: &GroupCounts, before: &GroupCounts) -> GroupCounts {
    let d = |a: u64, b: u64, k: &str| {
        a.checked_sub(b)
            .unwrap_or_else(|| panic!("counter {k} went down: {b} -> {a}"))
    };
    GroupCounts {
        packets: d(after.packets, before.packets, "packets"),
        bytes: d(after.bytes, before.bytes, "bytes"),
        new_conns: d(after.new_conns, before.new_conns, "new_conns"),
        would_drop: d(after.would_drop, before.would_drop, "would_drop"),
        dropped: d(after.dropped, before.dropped, "dropped"),
        events: d(after.events, before.events, "events"),
        lost_rate_limited: d(
            after.lost_rate_limited,
            before.lost_rate_limited,
            "lost_rate_limited",
        ),
        lost_ringbuf_full: d(
            after.lost_ringbuf_full,
            before.lost_ringbuf_full,
            "lost_ringbuf_full",
        ),
        sampled_out: d(after.sampled_out, before.sampled_out, "sampled_out"),
        lost_group_budget: d(
            after.lost_group_budget,
            before.lost_group_budget,
            "lost_group_budget",
        ),
    }
}

impl Counters {
    /// Every entry, keyed by (group, protocol, verdict).
    pub(crate) fn groups(&self) -> BTreeMap<(String, String, String), GroupCounts> {
        let mut m = BTreeMap::new();
        for g in self.0["groups"]
            .as_array()
            .unwrap_or_else(|| panic!("counters line without groups: {}", self.0))
        {
            let key = (
                g["group"].as_str().unwrap().to_owned(),
                g["protocol"].as_str().unwrap().to_owned(),
                g["verdict"].as_str().unwrap().to_owned(),
            );
            assert!(
                m.insert(key.clone(), group_counts_from_json(g)).is_none(),
                "duplicate counters entry {key:?}"
            );
        }
        m
    }

    /// One entry; all zeros when absent (the daemon leaves out all-zero entries).
    pub(crate) fn get(&self, group: &str, protocol: &str, verdict: &str) -> GroupCounts {
        self.groups()
            .get(&(group.to_owned(), protocol.to_owned(), verdict.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    pub(crate) fn userspace(&self, k: &str) -> u64 {
        self.0["userspace"][k]
            .as_u64()
            .unwrap_or_else(|| panic!("no userspace.{k} in {}", self.0))
    }

    /// One sink's entry `{sink, kind, sent, dropped}`.
    pub(crate) fn sink(&self, name: &str) -> Value {
        self.0["sinks"]
            .as_array()
            .unwrap_or_else(|| panic!("counters line without sinks: {}", self.0))
            .iter()
            .find(|s| s["sink"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no sink {name} in {}", self.0))
    }

    /// Records a sink delivered.
    pub(crate) fn sink_sent(&self, name: &str) -> u64 {
        self.sink(name)["sent"]
            .as_u64()
            .unwrap_or_else(|| panic!("sink {name} without sent: {}", self.0))
    }

    /// Records a sink dropped, all reasons together (`dropped` is `{reason: n}`).
    pub(crate) fn sink_dropped(&self, name: &str) -> u64 {
        let d = &self.sink(name)["dropped"];
        match d {
            Value::Object(m) => m.values().map(|v| v.as_u64().unwrap_or(u64::MAX)).sum(),
            Value::Number(n) => n.as_u64().unwrap_or(u64::MAX),
            other => panic!("sink {name}: dropped is {other}"),
        }
    }

    /// Events withheld by the rate limit, all entries together.
    pub(crate) fn total_rate_limited(&self) -> u64 {
        self.groups().values().map(|c| c.lost_rate_limited).sum()
    }

    /// Events withheld by the node-wide group budget, all entries together.
    pub(crate) fn total_group_budget(&self) -> u64 {
        self.groups().values().map(|c| c.lost_group_budget).sum()
    }

    /// The invariants that hold for every entry of any run: flagged = emitted + counted
    /// losses; in monitor mode every denied packet is a would-drop, in enforce mode a drop.
    pub(crate) fn check_invariants(&self) {
        for ((g, p, v), c) in self.groups() {
            let what = format!("{g}/{p}/{v}: {c:?}");
            assert!(c.packets >= c.new_conns, "{what}");
            if v == "denied" {
                assert_eq!(
                    c.new_conns,
                    c.events + c.lost_rate_limited + c.lost_group_budget + c.lost_ringbuf_full,
                    "denied: new_conns == events + losses; {what}"
                );
                assert_eq!(c.would_drop + c.dropped, c.packets, "{what}");
                assert_eq!(c.sampled_out, 0, "{what}");
            } else {
                // Allowed connections of a sweep-watched group (nodeport) are all reported,
                // under the source's token bucket, so they can be rate-limited too.
                assert_eq!(
                    c.new_conns,
                    c.events
                        + c.sampled_out
                        + c.lost_rate_limited
                        + c.lost_group_budget
                        + c.lost_ringbuf_full,
                    "allowed: new_conns == events + sampled_out + losses; {what}"
                );
                assert_eq!(c.would_drop + c.dropped, 0, "{what}");
                if g != "nodeport" {
                    assert_eq!(c.lost_rate_limited, 0, "{what}");
                    assert_eq!(c.lost_group_budget, 0, "{what}");
                }
            }
        }
        assert_eq!(self.userspace("events_malformed"), 0, "{}", self.0);
        for s in self.0["sinks"]
            .as_array()
            .unwrap_or_else(|| panic!("counters line without sinks: {}", self.0))
        {
            let name = s["sink"].as_str().expect("sink name");
            assert_eq!(
                self.sink_dropped(name),
                0,
                "sink {name} dropped: {}",
                self.0
            );
        }
    }
}
