//! Tests: The model that valid configs parse to, the embedded default and the derived tables.

use super::*;

#[test]
fn example_parses_to_the_expected_struct() {
    let expected = Config {
        groups: vec![
            Group {
                name: "kubelet".into(),
                id: 1,
                protocols: vec![Protocol::Tcp],
                ports: vec![PortRange::single(10250)],
                allow: vec![
                    AllowEntry::Cidr(net("203.0.113.0/28")),
                    AllowEntry::Cidr(net("2001:db8:1::/64")),
                ],
                action: Action::Monitor,
                detect_sweeps: false,
            },
            Group {
                name: "nodeport".into(),
                id: 2,
                protocols: vec![Protocol::Tcp, Protocol::Udp],
                ports: vec![PortRange {
                    start: 30000,
                    end: 32767,
                }],
                allow: vec![
                    AllowEntry::Cidr(net("0.0.0.0/0")),
                    AllowEntry::Cidr(net("::/0")),
                ],
                action: Action::Monitor,
                // Not set in the file: on, as for every group of more than one port.
                detect_sweeps: true,
            },
        ],
        sampling: Sampling {
            allowed_flows_one_in: 100,
        },
        limits: Limits::DEFAULT,
        interfaces: vec![],
        pod_interfaces: crate::config::DEFAULT_POD_INTERFACES
            .map(str::to_owned)
            .to_vec(),
        attach: None,
        alerts: AlertSettings::DEFAULT,
        sinks: vec![SinkSpec::default_stdout()],
        metrics: MetricsSettings::DEFAULT,
        cluster: ClusterSettings::DEFAULT,
        audit: AuditSettings::DEFAULT,
    };
    assert_eq!(parse(EXAMPLE), expected);
}

#[test]
fn default_config_parses_to_the_catalog() {
    let config = Config::default_config();
    let tcp = |p| (vec![Protocol::Tcp], vec![PortRange::single(p)]);
    let catalog = [
        (
            "kubelet",
            tcp(10250),
            vec![AllowEntry::Set(SymbolicSet::NodeSubnets)],
        ),
        ("kubelet-readonly", tcp(10255), vec![]),
        (
            "kubelet-healthz",
            tcp(10248),
            vec![AllowEntry::Set(SymbolicSet::Localhost)],
        ),
        (
            "apiserver",
            tcp(6443),
            vec![AllowEntry::Set(SymbolicSet::NodeSubnets)],
        ),
        (
            "etcd-client",
            tcp(2379),
            vec![AllowEntry::Set(SymbolicSet::NodeSubnets)],
        ),
        (
            "etcd-peer",
            tcp(2380),
            vec![AllowEntry::Set(SymbolicSet::NodeSubnets)],
        ),
        (
            "etcd-metrics",
            tcp(2381),
            vec![AllowEntry::Set(SymbolicSet::Localhost)],
        ),
        (
            "scheduler",
            tcp(10259),
            vec![AllowEntry::Set(SymbolicSet::Localhost)],
        ),
        (
            "controller-manager",
            tcp(10257),
            vec![AllowEntry::Set(SymbolicSet::Localhost)],
        ),
        (
            "kube-proxy-healthz",
            tcp(10256),
            vec![AllowEntry::Set(SymbolicSet::NodeSubnets)],
        ),
        (
            "kube-proxy-metrics",
            tcp(10249),
            vec![AllowEntry::Set(SymbolicSet::Localhost)],
        ),
        (
            "nodeport",
            (
                vec![Protocol::Tcp, Protocol::Udp],
                vec![PortRange {
                    start: 30000,
                    end: 32767,
                }],
            ),
            vec![
                AllowEntry::Cidr(net("0.0.0.0/0")),
                AllowEntry::Cidr(net("::/0")),
            ],
        ),
    ];
    assert_eq!(config.groups.len(), catalog.len());
    for (i, (group, (name, (protocols, ports), allow))) in
        config.groups.iter().zip(catalog).enumerate()
    {
        assert_eq!(group.name, name);
        assert_eq!(usize::from(group.id), i + 1);
        assert_eq!(group.protocols, protocols, "{name}");
        assert_eq!(group.ports, ports, "{name}");
        assert_eq!(group.allow, allow, "{name}");
        assert_eq!(group.action, Action::Monitor, "{name}");
        assert_eq!(group.detect_sweeps, name == "nodeport", "{name}");
    }
    assert!(config.interfaces.is_empty());
    assert_eq!(config.attach, None);
    assert_eq!(config.alerts, AlertSettings::DEFAULT);
    assert_eq!(config.sinks, vec![SinkSpec::default_stdout()]);
    assert_eq!(config.metrics, MetricsSettings::DEFAULT);
    assert_eq!(config.sampling, Sampling::DEFAULT);
    assert_eq!(config.sampling.allowed_flows_one_in, 100);
    assert_eq!(config.limits, Limits::DEFAULT);
    assert_eq!(config.limits.ring_buffer_bytes, 1 << 20);
}

#[test]
fn every_section_is_optional() {
    for yaml in [
        "",
        "# nothing\n",
        "groups:\n",
        "groups: {}\nsampling: {}\nlimits: {}\n",
        "interfaces:\nattach:\nalerts:\nsinks:\nmetrics:\n",
        "interfaces: []\nalerts: {sweep: {}}\nmetrics: {}\n",
    ] {
        let config = parse(yaml);
        assert!(config.groups.is_empty(), "{yaml:?}");
        assert_eq!(config.sampling, Sampling::DEFAULT);
        assert_eq!(config.limits, Limits::DEFAULT);
        assert!(config.interfaces.is_empty());
        assert_eq!(config.attach, None);
        assert_eq!(config.alerts, AlertSettings::DEFAULT);
        assert_eq!(config.sinks, vec![SinkSpec::default_stdout()]);
        assert_eq!(config.metrics, MetricsSettings::DEFAULT);
    }
    let config = parse(
        "limits: { flows: 2048, ring_buffer_bytes: 4096 }\nsampling: { allowed_flows_one_in: 0 }\n",
    );
    assert_eq!(
        config.limits,
        Limits {
            flows: 2048,
            ring_buffer_bytes: 4096,
            ..Limits::DEFAULT
        }
    );
    assert_eq!(config.sampling.allowed_flows_one_in, 0);
}

#[test]
fn block_style_ports_bare_ips_and_actions() {
    let config = parse(
        "groups:\n  web:\n    protocols:\n      - udp\n    ports:\n      - 53\n      - \"8000-8080\"\n      - \"9000\"\n    allow:\n      - 198.51.100.7\n      - 2001:db8::1\n      - localhost\n    action: drop\n",
    );
    let web = &config.groups[0];
    assert_eq!(web.protocols, [Protocol::Udp]);
    assert_eq!(
        web.ports,
        [
            PortRange::single(53),
            PortRange {
                start: 8000,
                end: 8080
            },
            PortRange::single(9000)
        ]
    );
    assert_eq!(
        web.allow,
        [
            AllowEntry::Cidr(net("198.51.100.7/32")),
            AllowEntry::Cidr(net("2001:db8::1/128")),
            AllowEntry::Set(SymbolicSet::Localhost)
        ]
    );
    assert_eq!(web.action, Action::Drop);
    // The default action is monitor.
    assert_eq!(parse(EXAMPLE).groups[1].action, Action::Monitor);
}

#[test]
fn group_by_id_follows_file_order() {
    let config = parse(EXAMPLE);
    assert_eq!(
        config.group_by_id(1).map(|g| g.name.as_str()),
        Some("kubelet")
    );
    assert_eq!(
        config.group_by_id(2).map(|g| g.name.as_str()),
        Some("nodeport")
    );
    assert!(config.group_by_id(0).is_none());
    assert!(config.group_by_id(3).is_none());
    assert!(config.group_by_id(255).is_none());
}

#[test]
fn port_tables_map_each_port_to_its_group() {
    let config = parse(EXAMPLE);
    let (tcp, udp) = config.port_tables(|g| Some(g.id));
    assert_eq!((tcp.len(), udp.len()), (65536, 65536));
    assert_eq!((tcp[10250], udp[10250]), (1, 0));
    for port in [30000, 31000, 32767] {
        assert_eq!((tcp[port], udp[port]), (2, 2), "port {port}");
    }
    for port in [0, 29999, 32768, 10249, 10251, 65535] {
        assert_eq!((tcp[port], udp[port]), (0, 0), "port {port}");
    }
    let watched = tcp.iter().chain(&udp).filter(|&&g| g != 0).count();
    assert_eq!(watched, 1 + 2 * 2768);

    let (tcp, udp) = Config::default_config().port_tables(|g| Some(g.id));
    let config = Config::default_config();
    for group in &config.groups {
        for range in &group.ports {
            assert_eq!(tcp[usize::from(range.start)], group.id, "{}", group.name);
        }
    }
    assert_eq!(udp[10250], 0);
    assert_eq!(udp[30000], config.groups[11].id);
}

#[test]
fn resolve_allowlists_expands_truncates_and_dedups() {
    let config = parse(
        "groups:\n  a: { protocols: [tcp], ports: [1], allow: [localhost, node-subnets, \"10.1.2.3/8\", \"10.0.0.0/8\", localhost] }\n  b: { protocols: [tcp], ports: [2], allow: [\"203.0.113.9\", node-subnets] }\n  c: { protocols: [tcp], ports: [3], allow: [] }\n",
    );
    let subnets = [
        net("198.51.100.17/24"),
        net("2001:db8:5::42/64"),
        net("198.51.100.0/24"),
    ];
    let resolved = config.resolve_allowlists(&subnets);
    assert_eq!(
        resolved,
        vec![
            (1, net("127.0.0.0/8")),
            (1, net("::1/128")),
            (1, net("198.51.100.0/24")),
            (1, net("2001:db8:5::/64")),
            (1, net("10.0.0.0/8")),
            (2, net("203.0.113.9/32")),
            (2, net("198.51.100.0/24")),
            (2, net("2001:db8:5::/64")),
        ]
    );
    // Without attached interfaces, node-subnets resolves to nothing.
    assert_eq!(config.resolve_allowlists(&[]).len(), 4);
}

#[test]
fn symbolic_set_names_round_trip() {
    for set in SymbolicSet::ALL {
        assert_eq!(SymbolicSet::from_name(set.name()), Some(set));
        assert_eq!(parse_allow_entry(set.name()), Ok(AllowEntry::Set(set)));
    }
    assert_eq!(SymbolicSet::from_name("node"), None);
}
