//! The per-CPU verdict cache and config reloads: a cached verdict never outlives the
//! allowlist it came from.

use std::net::IpAddr;

use node_monitor::config::{Config, Protocol};
use node_monitor_common::{VERDICT_ALLOWED, VERDICT_DENIED};

use crate::common::{packets::*, progrun::*};

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
