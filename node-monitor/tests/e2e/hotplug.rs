//! Interface hotplug: an interface that appears after start is attached and watched; one that
//! goes away is let go without an error.

use std::{
    net::Ipv6Addr,
    time::{Duration, Instant},
};

use node_monitor_lab::BpfPinDir;

use crate::{
    common::{
        daemon::{Daemon, context, scrape},
        peers::{TcpOutcome, sa, tcp_connect},
        temp::TempFile,
    },
    expect::{Rec, assert_same_records},
    poll::{metric, wait_metrics},
    readonly::readonly_alert,
    setup::{CONNECT_TIMEOUT, node, outside, setup, test_config},
};

/// Test 10: interface hotplug. With `--iface 'eth*'`, a veth `eth9` that appears after start
/// (IPv6 only, 2001:db8:9::/64, to cp) is attached within 2 s and its traffic is flagged with
/// its name; deleting it is logged without an error, and eth0 is still watched.
#[test]
fn interface_hotplug() {
    let lab = setup();
    let pin = context(BpfPinDir::new("hotplug"));
    let cfg = TempFile::new("hotplug.yaml", &test_config(&[]));
    let mut d = context(Daemon::start_on(
        &lab.node,
        &pin.path,
        &["eth*"],
        &["--config", cfg.as_str()],
    ));
    let body = scrape(&lab.node, &d);
    assert_eq!(
        metric(&body, "node_monitor_attached_interfaces", &[]),
        1.0,
        "{body}"
    );

    let t = Instant::now();
    context(lab.cp.ip(&[
        "link",
        "add",
        "hp9",
        "type",
        "veth",
        "peer",
        "name",
        "eth9",
        "netns",
        &lab.node.name,
    ]));
    context(
        lab.node
            .ip(&["addr", "add", "2001:db8:9::1/64", "dev", "eth9", "nodad"]),
    );
    context(
        lab.cp
            .ip(&["addr", "add", "2001:db8:9::2/64", "dev", "hp9", "nodad"]),
    );
    context(lab.node.ip(&["link", "set", "eth9", "up"]));
    context(lab.cp.ip(&["link", "set", "hp9", "up"]));
    let deadline = t + Duration::from_secs(3);
    let mut link = String::new();
    while Instant::now() < deadline {
        link = context(lab.node.ip(&["link", "show", "eth9"]));
        if link.contains("xdp") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t.elapsed();
    assert!(
        link.contains("xdp"),
        "eth9 not attached within 3 s:\n{link}\n{}",
        d.stderr()
    );
    assert!(
        took <= Duration::from_secs(2),
        "attached after {took:?} (CONFIG.md: within 2 s)"
    );
    eprintln!("eth9 attached after {took:?}");

    let c = sa("2001:db8:9::2".parse::<Ipv6Addr>().unwrap(), 44901);
    let n9 = sa("2001:db8:9::1".parse::<Ipv6Addr>().unwrap(), 10255);
    assert_eq!(
        tcp_connect(&lab.cp, c, n9, CONNECT_TIMEOUT),
        TcpOutcome::Refused
    );
    assert!(
        d.wait_records(Duration::from_secs(3), |r| !r.is_empty()),
        "no alert for eth9 traffic:\n{}",
        d.stderr()
    );
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(2), |b| {
        metric(b, "node_monitor_attached_interfaces", &[]) == 2.0
    });
    assert!(ok, "{body}");

    // Delete it.
    let before = d.stderr_lines().len();
    context(lab.node.ip(&["link", "del", "eth9"]));
    assert!(
        d.wait_log(Duration::from_secs(3), |l| l.contains("interface gone")
            && l.contains("eth9")),
        "{}",
        d.stderr()
    );
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(2), |b| {
        metric(b, "node_monitor_attached_interfaces", &[]) == 1.0
    });
    assert!(ok, "{body}");
    assert!(d.is_running(), "{}", d.stderr());
    let o = outside(42901, false);
    assert_eq!(
        tcp_connect(&lab.outside, o, node(10255, false), CONNECT_TIMEOUT),
        TcpOutcome::Refused
    );
    assert!(d.wait_records(Duration::from_secs(3), |r| r.len() >= 2));
    let after: Vec<String> = d.stderr_lines()[before..].to_vec();
    let bad: Vec<&String> = after
        .iter()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    let fin = context(d.stop());
    assert!(
        bad.is_empty(),
        "warnings or errors after eth9 went away: {bad:#?}\n{}",
        fin.stderr
    );
    fin.counters.check_invariants();
    let mut on9 = Rec::flagged(
        "kubelet-readonly",
        c,
        n9,
        "tcp",
        "refused",
        "would_drop",
        "xdp",
    );
    on9.interface = "eth9".into();
    assert_same_records(&fin.records, vec![on9, readonly_alert(o, "xdp")]);
}

/// Pods' host-side interfaces (`pod_interfaces`, default: the common CNIs' globs): a veth
/// `cali7` that appears after start, its pod end in another namespace (cp), is attached with
/// tc although the uplink is on XDP; a pod's connection to the node's kubelet over it is
/// flagged (its /64 on `cali7` never joins node-subnets, which the kubelet allows), with the
/// interface's name and the tc hook; deleting it is logged and the count goes back.
#[test]
fn pod_interfaces_are_watched_with_tc_and_stay_out_of_node_subnets() {
    let lab = setup();
    let pin = context(BpfPinDir::new("podifaces"));
    let cfg = TempFile::new("podifaces.yaml", &test_config(&[]));
    let d = context(Daemon::start_on(
        &lab.node,
        &pin.path,
        &["eth0"],
        &["--config", cfg.as_str()],
    ));
    context(lab.cp.ip(&[
        "link",
        "add",
        "podv7",
        "type",
        "veth",
        "peer",
        "name",
        "cali7",
        "netns",
        &lab.node.name,
    ]));
    context(
        lab.node
            .ip(&["addr", "add", "2001:db8:7::1/64", "dev", "cali7", "nodad"]),
    );
    context(
        lab.cp
            .ip(&["addr", "add", "2001:db8:7::2/64", "dev", "podv7", "nodad"]),
    );
    context(lab.node.ip(&["link", "set", "cali7", "up"]));
    context(lab.cp.ip(&["link", "set", "podv7", "up"]));
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(3), |b| {
        metric(b, "node_monitor_attached_interfaces", &[]) == 2.0
    });
    assert!(ok, "cali7 not attached within 3 s:\n{body}\n{}", d.stderr());
    assert!(
        d.wait_log(Duration::from_secs(2), |l| l
            .contains("pod interfaces attached")),
        "{}",
        d.stderr()
    );

    let pod = sa("2001:db8:7::2".parse::<Ipv6Addr>().unwrap(), 44907);
    let kubelet = sa("2001:db8:7::1".parse::<Ipv6Addr>().unwrap(), 10250);
    assert_eq!(
        tcp_connect(&lab.cp, pod, kubelet, CONNECT_TIMEOUT),
        TcpOutcome::Refused
    );
    assert!(
        d.wait_records(Duration::from_secs(3), |r| !r.is_empty()),
        "no alert for the pod's connection over cali7:\n{}",
        d.stderr()
    );

    context(lab.node.ip(&["link", "del", "cali7"]));
    assert!(
        d.wait_log(Duration::from_secs(3), |l| l.contains("pod interface gone")
            && l.contains("cali7")),
        "{}",
        d.stderr()
    );
    let (ok, body) = wait_metrics(&lab, &d, Duration::from_secs(2), |b| {
        metric(b, "node_monitor_attached_interfaces", &[]) == 1.0
    });
    assert!(ok, "{body}");
    let fin = context(d.stop());
    fin.counters.check_invariants();
    let mut from_pod = Rec::flagged(
        "kubelet",
        pod,
        kubelet,
        "tcp",
        "refused",
        "would_drop",
        "tc",
    );
    from_pod.interface = "cali7".into();
    assert_same_records(&fin.records, vec![from_pod]);
}

/// `default-route` among the interfaces is a keyword, not a name the daemon must find at
/// start: beside `eth0` it starts and watches eth0. The lab namespaces have no default route
/// (lab rules), so the keyword adds nothing here; which interfaces it adds is the watcher's
/// unit test (`default_route_in_the_list_adds_the_uplinks_beside_the_others`).
#[test]
fn default_route_beside_a_name_starts_and_watches_the_name() {
    let lab = setup();
    let pin = context(BpfPinDir::new("defroute"));
    let cfg = TempFile::new("defroute.yaml", &test_config(&[]));
    let d = context(Daemon::start_on(
        &lab.node,
        &pin.path,
        &["default-route", "eth0"],
        &["--config", cfg.as_str()],
    ));
    let body = scrape(&lab.node, &d);
    assert_eq!(
        metric(&body, "node_monitor_attached_interfaces", &[]),
        1.0,
        "{body}"
    );
    drop(context(d.stop()));
}
