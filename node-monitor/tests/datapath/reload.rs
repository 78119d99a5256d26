//! The per-CPU verdict cache and config reloads: a cached verdict never outlives the
//! allowlist it came from.

use std::net::IpAddr;

use node_monitor::config::{Config, Protocol};
use node_monitor_common::{
    ACTION_WOULD_DROP, Addr, EVENT_REVOKED, Event, VERDICT_ALLOWED, VERDICT_DENIED,
};

use crate::{
    common::{packets::*, progrun::*},
    config::*,
    expect::*,
};

/// The per-CPU verdict cache never outlives a config change: a source cached as allowed is
/// denied once a reload removes its CIDR, and allowed again when the CIDR comes back; a
/// source cached as denied becomes allowed when a reload adds it.
fn verdict_cache_follows_reloads(fam: Fam, prog: Prog) {
    let with = |cidrs: &str| {
        format!(
            "groups:\n  kubelet: {{ protocols: [tcp], ports: [\"10250\"], allow: [{cidrs}] }}\n\
             sampling: {{ allowed_flows_one_in: 0 }}\n"
        )
    };
    let allowed_net = match fam {
        Fam::V4 => "\"203.0.113.0/24\"",
        Fam::V6 => "\"2001:db8:0:113::/64\"",
    };
    let mut h = Harness::yaml(&with(allowed_net));
    let src = fam.allowed();
    let denied = fam.denied();
    // Established packets touch no flow state: only the verdict (and its cache) decides.
    let ack = |from: IpAddr| Frame::tcp(from, fam.node(), 41000, 10250, ACK).build();
    let packets = |h: &Harness, v: u8| h.stat("kubelet", Protocol::Tcp, v).packets;
    for _ in 0..3 {
        h.run(prog, &ack(src));
        h.run(prog, &ack(denied));
    }
    assert_eq!(packets(&h, VERDICT_ALLOWED), 3, "allowed before the reload");
    assert_eq!(packets(&h, VERDICT_DENIED), 3, "denied before the reload");

    // Reload: the allowlist now holds only the other family's range, so `src` is denied...
    let other = match fam {
        Fam::V4 => "\"2001:db8:0:113::/64\"",
        Fam::V6 => "\"203.0.113.0/24\"",
    };
    let cfg = Config::from_yaml(&with(other), "reload").expect("reload config");
    h.dp.apply_config(&cfg, &[]).expect("apply_config");
    h.run(prog, &ack(src));
    assert_eq!(
        packets(&h, VERDICT_ALLOWED),
        3,
        "a cached allow must not survive the reload"
    );
    assert_eq!(
        packets(&h, VERDICT_DENIED),
        4,
        "the source is denied after the reload"
    );

    // ...and a reload that allows both makes the cached denial of `denied` void too.
    let both = format!("{allowed_net}, \"198.51.100.0/24\", \"2001:db8:0:100::/64\"");
    let cfg = Config::from_yaml(&with(&both), "reload").expect("reload config");
    h.dp.apply_config(&cfg, &[]).expect("apply_config");
    h.run(prog, &ack(src));
    h.run(prog, &ack(denied));
    assert_eq!(
        packets(&h, VERDICT_ALLOWED),
        5,
        "both allowed after the second reload"
    );
    assert_eq!(packets(&h, VERDICT_DENIED), 4, "no more denials");
    let _ = h.events();
}
matrix!(verdict_cache_follows_reloads);

/// A source revoked by a reload while its flows run is reported on the next packet of each
/// flow, once: a TCP flow opened while allowed (its next ACK), and a warm UDP 5-tuple (its
/// next datagram). The flows turn flagged under the new generation; the events count as new
/// connections of the denied entry (the counter identity holds); later packets raise
/// nothing more; a source that stays allowed and a reload that changes nothing for a source
/// raise nothing.
fn revoked_source_is_flagged_on_its_next_packet(fam: Fam, prog: Prog) {
    let with = |cidrs: &str| {
        format!(
            "groups:\n  kubelet: {{ protocols: [tcp], ports: [\"10250\"], allow: [{cidrs}] }}\n  \
             np: {{ protocols: [udp], ports: [\"30000\"], allow: [{cidrs}] }}\n\
             sampling: {{ allowed_flows_one_in: 0 }}\n"
        )
    };
    let (both, only_second) = match fam {
        Fam::V4 => (
            "\"203.0.113.0/24\", \"198.51.100.0/24\"",
            "\"198.51.100.0/24\"",
        ),
        Fam::V6 => (
            "\"2001:db8:0:113::/64\", \"2001:db8:0:100::/64\"",
            "\"2001:db8:0:100::/64\"",
        ),
    };
    let mut h = Harness::yaml(&with(both));
    let (revoked, kept) = (fam.allowed(), fam.denied());
    let syn = tcp(revoked, fam.node(), 41000, 10250, SYN);
    let ack = tcp(revoked, fam.node(), 41000, 10250, ACK);
    let dgram = udp(revoked, fam.node(), 41001, 30000);
    let kept_ack = tcp(kept, fam.node(), 41002, 10250, ACK);
    h.run(prog, &syn.build());
    h.run(prog, &tcp(kept, fam.node(), 41002, 10250, SYN).build());
    h.run(prog, &dgram.build());
    h.run(prog, &ack.build());
    assert!(h.events().is_empty(), "allowed, sampling off: no events");
    let key = flow_key(revoked, fam.node(), 41000, 10250, IPPROTO_TCP);
    let before = h.flow(&key).expect("the allowed SYN opened a flow");
    assert_eq!(before.verdict, A);

    // Reload: only the second range stays allowed. The first becomes a suspect range (once,
    // for both groups): only its sources' denied segments look the flow table up; nothing
    // revokes everything.
    let cfg = Config::from_yaml(&with(only_second), "reload").expect("reload config");
    h.dp.apply_config(&cfg, &[]).expect("apply_config");
    let settings = h.dp.settings().expect("settings");
    assert_eq!(
        (settings.suspect_ranges, settings.revoked_generation),
        (1, 0),
        "{settings:?}"
    );
    let action = ACTION_WOULD_DROP;
    run_expect(&h, prog, &ack, prog.pass(), "revoked ACK passes (monitor)");
    run_expect(&h, prog, &dgram, prog.pass(), "revoked datagram passes");
    run_expect(&h, prog, &kept_ack, prog.pass(), "kept source");
    let evs = h.events();
    let want = [
        Event {
            group: h.gid("kubelet"),
            verdict: D,
            action,
            ..event_for(EVENT_REVOKED, prog, &ack)
        },
        Event {
            group: h.gid("np"),
            verdict: D,
            action,
            ..event_for(EVENT_REVOKED, prog, &dgram)
        },
    ];
    assert_events("revoked flows", &evs, &want);
    // The verdict cache keeps the suspect bit with the source: set for the revoked source,
    // clear for the other one.
    let suspect = |src: IpAddr| {
        let addr = Addr::from_ip(src);
        let slots = h.dp.verdict_slots(&addr).expect("verdict slots");
        let mine: Vec<u8> = slots
            .iter()
            .filter(|s| s.addr == addr && s.generation == settings.generation)
            .map(|s| s.suspect)
            .collect();
        assert!(
            !mine.is_empty(),
            "{src} has no slot of this generation: {slots:?}"
        );
        mine.iter().all(|s| *s == 1)
    };
    assert!(suspect(revoked), "the revoked source is suspect");
    assert!(!suspect(kept), "the kept source is not");
    let after = h.flow(&key).expect("flow kept");
    assert_eq!(after.verdict, D, "the flow is flagged now");
    assert_eq!(after.flagged, 1);
    assert_ne!(
        after.generation, before.generation,
        "the flow carries the new generation"
    );
    let kubelet = h.stat("kubelet", Protocol::Tcp, D);
    assert_eq!(
        (
            kubelet.packets,
            kubelet.new_conns,
            kubelet.events,
            kubelet.would_drop
        ),
        (1, 1, 1, 1),
        "kubelet denied entry: {kubelet:?}"
    );
    let np = h.stat("np", Protocol::Udp, D);
    assert_eq!((np.new_conns, np.events), (1, 1), "np denied entry: {np:?}");

    // Once per flow: more packets of the revoked flows raise nothing.
    for _ in 0..3 {
        h.run(prog, &ack.build());
        h.run(prog, &dgram.build());
    }
    assert!(h.events().is_empty(), "one event per revoked flow");
    assert_eq!(h.stat("kubelet", Protocol::Tcp, D).new_conns, 1);
    assert_all_invariants("after revocation", &h);
}
matrix!(revoked_source_is_flagged_on_its_next_packet);
