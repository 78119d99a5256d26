//! Tests: Groups: overlaps, allow entries, protocols, ports, names, actions, the group count.

use super::*;

#[test]
fn overlaps_across_groups_are_errors_but_not_within_a_group() {
    // A group may overlap itself, and tcp/udp are separate.
    let config = parse(&format!(
        "groups:\n{}{}",
        group_yaml("a", "tcp", "\"10000-11000\", 10250, \"10500-10600\""),
        group_yaml("b", "udp", "10250")
    ));
    let (tcp, udp) = config.port_tables(|g| Some(g.id));
    assert_eq!((tcp[10250], udp[10250]), (1, 2));

    let yaml = format!(
        "groups:\n{}{}",
        group_yaml("etcd-client", "tcp", "2379"),
        group_yaml("etcd-x", "udp, tcp", "\"2000-2378\", \"2300-3000\"")
    );
    assert_error(
        &yaml,
        3,
        57,
        "groups.etcd-x.ports[1]",
        "port 2379/tcp is already in group etcd-client",
    );
}

#[test]
fn error_allow_entries() {
    let group = "groups:\n  a:\n    protocols: [tcp]\n    ports: [\"1\"]\n    allow: ";
    assert_error(
        &format!("{group}[\"1.2.3.4/33\"]\n"),
        5,
        13,
        "groups.a.allow[0]",
        "`1.2.3.4/33` is not a valid IP address or CIDR",
    );
    assert_error(
        &format!("{group}[localhost, 300.1.1.1]\n"),
        5,
        24,
        "groups.a.allow[1]",
        "`300.1.1.1` is not a valid IP address or CIDR",
    );
    assert_error(
        &format!("{group}[\"2001:db8::/129\"]\n"),
        5,
        13,
        "groups.a.allow[0]",
        "not a valid IP address or CIDR",
    );
    assert_error(
        &format!("{group}[\"1.2.3.4\", control-plane]\n"),
        5,
        24,
        "groups.a.allow[1]",
        "unknown symbolic set `control-plane`: known sets are localhost, node-subnets",
    );
}

#[test]
fn error_protocols() {
    let ports = "\n    ports: [1]\n";
    let yaml = |p: &str| format!("groups:\n  a:\n    protocols: {p}{ports}");
    assert_error(
        &yaml("[tcp, sctp]"),
        3,
        22,
        "groups.a.protocols[1]",
        "unknown protocol `sctp`: expected one of tcp, udp",
    );
    assert_error(
        &yaml("[TCP]"),
        3,
        17,
        "groups.a.protocols[0]",
        "unknown protocol `TCP`",
    );
    assert_error(
        &yaml("[udp, tcp, udp]"),
        3,
        27,
        "groups.a.protocols[2]",
        "duplicate protocol udp",
    );
    assert_error(
        &yaml("[]"),
        3,
        16,
        "groups.a.protocols",
        "at least one protocol",
    );
    assert_error(
        "groups:\n  a:\n    ports: [1]\n",
        2,
        3,
        "groups.a.protocols",
        "missing field `protocols`",
    );
    assert_error(&yaml("tcp"), 3, 16, "groups.a.protocols", "expected a list");
}

#[test]
fn error_ports() {
    let yaml = |p: &str| format!("groups:\n  a:\n    protocols: [tcp]\n    ports: {p}\n");
    assert_error(
        &yaml("[0]"),
        4,
        13,
        "groups.a.ports[0]",
        "port 0 is not a valid port",
    );
    assert_error(
        &yaml("[1, \"0\"]"),
        4,
        16,
        "groups.a.ports[1]",
        "port 0 is not a valid port",
    );
    assert_error(
        &yaml("[65536]"),
        4,
        13,
        "groups.a.ports[0]",
        "port 65536 is out of range",
    );
    assert_error(
        &yaml("[\"70000\"]"),
        4,
        13,
        "groups.a.ports[0]",
        "port 70000 is out of range",
    );
    assert_error(
        &yaml("[-1]"),
        4,
        13,
        "groups.a.ports[0]",
        "port -1 is out of range",
    );
    assert_error(
        &yaml("[\"1-99999999999999999999999\"]"),
        4,
        13,
        "groups.a.ports[0]",
        "out of range",
    );
    assert_error(
        &yaml("[\"32767-30000\"]"),
        4,
        13,
        "groups.a.ports[0]",
        "range 32767-30000 is reversed",
    );
    for garbage in [
        "\"abc\"",
        "\"10250/tcp\"",
        "\"1-2-3\"",
        "\"-5\"",
        "\"\"",
        "\"30000-\"",
    ] {
        assert_error(
            &yaml(&format!("[{garbage}]")),
            4,
            13,
            "groups.a.ports[0]",
            "is not a port or a port range",
        );
    }
    assert_error(&yaml("[[1]]"), 4, 13, "groups.a.ports[0]", "invalid type");
    assert_error(&yaml("[]"), 4, 12, "groups.a.ports", "at least one port");
    assert_error(
        "groups:\n  a:\n    protocols: [tcp]\n",
        2,
        3,
        "groups.a.ports",
        "missing field `ports`",
    );
}

#[test]
fn error_group_names_and_actions() {
    for bad in ["A", "-a", "_a", "a.b", "kube let", &"a".repeat(64)] {
        assert_error(
            &format!("groups:\n  \"{bad}\": {{ protocols: [tcp], ports: [1] }}\n"),
            2,
            3,
            &format!("groups.{bad}"),
            "invalid group name",
        );
    }
    // The longest and shortest valid names.
    let long = "a".repeat(63);
    parse(&format!(
        "groups:\n  {long}: {{ protocols: [tcp], ports: [1] }}\n  0: {{ protocols: [tcp], ports: [2] }}\n"
    ));
    assert_error(
        "groups:\n  a: { protocols: [tcp], ports: [1], action: block }\n",
        2,
        46,
        "groups.a.action",
        "unknown action `block`: expected one of monitor, drop",
    );
}

#[test]
fn error_too_many_groups() {
    let groups = |n: u16| {
        let mut yaml = String::from("groups:\n");
        for i in 1..=n {
            yaml.push_str(&group_yaml(&format!("g{i}"), "tcp", &i.to_string()));
        }
        yaml
    };
    let config = parse(&groups(63));
    assert_eq!(config.groups.len(), MAX_USER_GROUPS);
    assert_eq!(config.groups[62].id, 63);
    assert_error(
        &groups(64),
        65,
        3,
        "groups.g64",
        "too many groups: at most 63",
    );
}
