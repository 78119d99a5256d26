//! Tests: YAML syntax errors and unknown fields.

use super::*;

#[test]
fn error_yaml_syntax() {
    assert_error(
        "groups:\n  a: {protocols: [tcp}\n",
        2,
        18,
        "groups.a.protocols",
        "YAML syntax error",
    );
    assert_error("groups: [\n", 1, 9, "groups", "expected a mapping");
    assert_error("- a\n", 1, 1, "", "expected a mapping");
    assert_error(
        "groups:\n  a: { protocols: [tcp], ports: [1], allow: [~] }\n",
        2,
        46,
        "groups.a.allow[0]",
        "expected a value, found null",
    );
    assert_error(
        "groups: {}\n---\ngroups: {}\n",
        3,
        1,
        "",
        "more than one YAML document",
    );
    assert_error(
        "groups:\n  a: {protocols: [tcp], ports: [1]}\n  a: {protocols: [tcp], ports: [2]}\n",
        3,
        3,
        "groups",
        "duplicate key `a`",
    );
}

#[test]
fn error_unknown_fields() {
    assert_error("bogus: 1\n", 1, 1, "bogus", "unknown field `bogus`");
    assert_error(
        "groups:\n  kubelet: { protocols: [tcp], portz: [\"10250\"] }\n",
        2,
        32,
        "groups.kubelet.portz",
        "unknown field `portz`",
    );
    assert_error(
        "limits:\n  flows: 2048\n  value: 1\n",
        3,
        3,
        "limits.value",
        "unknown field `value`",
    );
    assert_error(
        "sampling:\n  one_in: 5\n",
        2,
        3,
        "sampling.one_in",
        "unknown field `one_in`, expected one of allowed_flows_one_in",
    );
}
