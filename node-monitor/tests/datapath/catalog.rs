//! The embedded default catalog, loaded into the data path: every group classifies
//! the allowed and the denied source as the catalog says.

use ipnet::IpNet;
use node_monitor::config::{Config, Protocol};
use node_monitor_common::ACTION_WOULD_DROP;

use crate::{
    common::{packets::*, progrun::*},
    config::*,
    expect::*,
};

matrix!(default_catalog_classifies_every_group);

/// How the default catalog treats ALLOWED_* (inside the node subnets) and DENIED_*.
fn catalog_expectation(group: &str) -> (u8, u8) {
    match group {
        "kubelet" | "apiserver" | "etcd-client" | "etcd-peer" | "kube-proxy-healthz" => (A, D),
        "kubelet-readonly" | "kubelet-healthz" | "etcd-metrics" | "scheduler"
        | "controller-manager" | "kube-proxy-metrics" => (D, D),
        "nodeport" => (A, A),
        other => panic!("default catalog has a group this test does not know: {other}"),
    }
}

fn default_catalog_classifies_every_group(fam: Fam, prog: Prog) {
    let cfg = Config::default_config();
    let subnets: Vec<IpNet> = ["203.0.113.0/24", "2001:db8:0:113::/64"]
        .iter()
        .map(|s| s.parse().expect("subnet"))
        .collect();
    let mut h = Harness::load(&cfg, &subnets);
    let mut names: Vec<&str> = cfg.groups.iter().map(|g| g.name.as_str()).collect();
    names.sort_unstable();
    let mut known = vec![
        "kubelet",
        "kubelet-readonly",
        "kubelet-healthz",
        "apiserver",
        "etcd-client",
        "etcd-peer",
        "etcd-metrics",
        "scheduler",
        "controller-manager",
        "kube-proxy-healthz",
        "kube-proxy-metrics",
        "nodeport",
    ];
    known.sort_unstable();
    assert_eq!(names, known, "the default catalog's groups");

    let mut sport = 50000u16;
    for g in &cfg.groups {
        let (v_allowed, v_denied) = catalog_expectation(&g.name);
        for proto in &g.protocols {
            let r = g.ports[0];
            let ports = if r.start == r.end {
                vec![r.start]
            } else {
                vec![r.start, r.end]
            };
            for port in ports {
                for (src, verdict) in [(fam.allowed(), v_allowed), (fam.denied(), v_denied)] {
                    sport += 1;
                    let f = match proto {
                        Protocol::Tcp => tcp(src, fam.node(), sport, port, SYN),
                        Protocol::Udp => udp(src, fam.node(), sport, port),
                    };
                    let ctx = format!("{}/{proto} port {port} from {src}", g.name);
                    let before = h.stat(&g.name, *proto, verdict);
                    let all_before = h.stats();
                    run_expect(&h, prog, &f, prog.pass(), &ctx);
                    let after = h.stat(&g.name, *proto, verdict);
                    assert_eq!(
                        after.packets,
                        before.packets + 1,
                        "{ctx}: packets (verdict {verdict})"
                    );
                    assert_eq!(after.bytes, before.bytes + len(&f), "{ctx}: bytes");
                    assert_eq!(after.new_conns, before.new_conns + 1, "{ctx}: new_conns");
                    assert_eq!(
                        after.would_drop,
                        before.would_drop + u64::from(verdict == D),
                        "{ctx}: would_drop"
                    );
                    // Nothing else moved.
                    let mut all_after = h.stats();
                    all_after.insert((g.name.clone(), proto.name(), verdict), before);
                    assert_eq!(all_after, all_before, "{ctx}: only its own entry moves");
                    let evs = h.events();
                    for e in &evs {
                        assert_eq!(e.group, h.gid(&g.name), "{ctx}: event group id");
                        assert_eq!(e.verdict, verdict, "{ctx}: event verdict");
                    }
                    if verdict == D {
                        // Default limits: 20 events per source per second; each source sends
                        // fewer than that here, so every denied connection is reported.
                        let want = flagged(&h, prog, &f, &g.name, ACTION_WOULD_DROP);
                        assert_events(&ctx, &evs, &[want]);
                    } else if g.detect_sweeps {
                        // Sweep-watched (nodeport): every new connection is reported, and
                        // `sampled` says whether 1-in-100 sampling also chose it.
                        let [e] = evs.as_slice() else {
                            panic!(
                                "{ctx}: a sweep-watched group reports every connection, got {evs:?}"
                            );
                        };
                        let mut want = sampled(&h, prog, &f, &g.name);
                        want.sampled = e.sampled;
                        assert!(e.sampled <= 1, "{ctx}: sampled flag");
                        assert_event(&ctx, e, &want);
                    } else if let [e] = evs.as_slice() {
                        // Allowed: sampled one in 100 (random), so maybe an event.
                        assert_event(&ctx, e, &sampled(&h, prog, &f, &g.name));
                    }
                }
            }
        }
    }
    assert_all_invariants("default catalog", &h);
    h.assert_reasons("default catalog", &[]);
}
