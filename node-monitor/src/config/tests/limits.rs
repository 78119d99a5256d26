//! Tests: `limits` and `sampling` bounds.

use super::*;

#[test]
fn error_limits_out_of_range() {
    let cases = [
        (
            "flows: 1023",
            10,
            "limits.flows",
            "1023 is out of range: must be between 1024 and 16777216",
        ),
        ("flows: 16777217", 10, "limits.flows", "out of range"),
        (
            "answer_timeout_ms: 0",
            22,
            "limits.answer_timeout_ms",
            "between 1 and 60000",
        ),
        (
            "answer_timeout_ms: 60001",
            22,
            "limits.answer_timeout_ms",
            "out of range",
        ),
        (
            "flow_idle_timeout_ms: 0",
            25,
            "limits.flow_idle_timeout_ms",
            "between 1 and 3600000",
        ),
        (
            "flow_idle_timeout_ms: 3600001",
            25,
            "limits.flow_idle_timeout_ms",
            "out of range",
        ),
        ("sources: 255", 12, "limits.sources", "between 256 and"),
        (
            "events_per_source_per_second: 4294967296",
            33,
            "limits.events_per_source_per_second",
            "out of range",
        ),
        (
            "events_per_group_per_second: 4294967296",
            32,
            "limits.events_per_group_per_second",
            "out of range",
        ),
        (
            "events_per_group_per_second: -1",
            32,
            "limits.events_per_group_per_second",
            "expected a whole number",
        ),
        (
            "allow_entries: 0",
            18,
            "limits.allow_entries",
            "out of range",
        ),
        (
            "ring_buffer_bytes: 2048",
            22,
            "limits.ring_buffer_bytes",
            "between 4096 and",
        ),
        (
            "ring_buffer_bytes: 2147483648",
            22,
            "limits.ring_buffer_bytes",
            "out of range",
        ),
        (
            "ring_buffer_bytes: 5000",
            22,
            "limits.ring_buffer_bytes",
            "5000 is not a power of two",
        ),
        (
            "ring_buffer_bytes: 12288",
            22,
            "limits.ring_buffer_bytes",
            "not a power of two",
        ),
        ("flows: -3", 10, "limits.flows", "expected a whole number"),
        ("flows: lots", 10, "limits.flows", "expected a whole number"),
    ];
    for (line, column, field, msg) in cases {
        assert_error(&format!("limits:\n  {line}\n"), 2, column, field, msg);
    }
    assert_error(
        "sampling: { allowed_flows_one_in: 4294967296 }\n",
        1,
        35,
        "sampling.allowed_flows_one_in",
        "out of range",
    );
    // The bounds themselves are accepted.
    let config = parse(
        "limits: { flows: 1024, sources: 256, answer_timeout_ms: 60000, flow_idle_timeout_ms: 1, ring_buffer_bytes: 1073741824, events_per_source_per_second: 0, events_per_group_per_second: 0 }\n",
    );
    assert_eq!(config.limits.ring_buffer_bytes, 1 << 30);
    assert_eq!(
        config.limits.events_per_group_per_second, 0,
        "0 = unlimited"
    );
    let config = parse("limits: { events_per_group_per_second: 4294967295 }\n");
    assert_eq!(config.limits.events_per_group_per_second, u32::MAX);
    // Left out: the default, 1000 per group and second.
    assert_eq!(
        parse("limits: { flows: 4096 }\n")
            .limits
            .events_per_group_per_second,
        1000
    );
}
