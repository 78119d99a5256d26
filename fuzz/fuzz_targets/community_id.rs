//! Community ID v1: any tuple in, `1:` and 28 base64 characters out; the same flow seen
//! from either end has the same id.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use node_monitor::render::community_id::community_id_v1;
use node_monitor_fuzz::ip;

#[derive(Debug, Arbitrary)]
struct Input {
    seed: u16,
    v6: bool,
    a: [u8; 16],
    b: [u8; 16],
    proto: u8,
    sport: u16,
    dport: u16,
}

fuzz_target!(|i: Input| {
    let (a, b) = (ip(i.v6, i.a), ip(i.v6, i.b));
    let id = community_id_v1(i.seed, a, b, i.proto, i.sport, i.dport);
    assert!(id.starts_with("1:") && id.len() == 30, "{id}");
    // Ports are symmetric for TCP, UDP and SCTP (ICMP maps types, not checked here).
    if matches!(i.proto, 6 | 17 | 132) {
        assert_eq!(id, community_id_v1(i.seed, b, a, i.proto, i.dport, i.sport));
    }
});
