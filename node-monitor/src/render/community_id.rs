//! Community ID v1 flow hashes (<https://github.com/corelight/community-id-spec>): the same
//! flow gets the same id in Zeek, Suricata, Elastic, Arkime... so a SIEM can join them.
use std::net::IpAddr;

use base64::Engine as _;
use sha1::{Digest, Sha1};

const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;
const SCTP: u8 = 132;

/// ICMP type → the type of its counterpart (request ↔ reply), as in the spec.
fn icmp_counterpart(proto: u8, ty: u16) -> Option<u16> {
    let pair = match (proto, ty) {
        (ICMP, 8) => 0,
        (ICMP, 0) => 8,
        (ICMP, 13) => 14,
        (ICMP, 14) => 13,
        (ICMP, 15) => 16,
        (ICMP, 16) => 15,
        (ICMP, 10) => 9,
        (ICMP, 17) => 18,
        (ICMP, 18) => 17,
        (ICMPV6, 128) => 129,
        (ICMPV6, 129) => 128,
        (ICMPV6, 133) => 134,
        (ICMPV6, 134) => 133,
        (ICMPV6, 135) => 136,
        (ICMPV6, 136) => 135,
        (ICMPV6, 130) => 131,
        (ICMPV6, 131) => 130,
        (ICMPV6, 139) => 140,
        (ICMPV6, 140) => 139,
        (ICMPV6, 144) => 145,
        (ICMPV6, 145) => 144,
        _ => return None,
    };
    Some(pair)
}

/// An address as bytes on the stack: 4 for IPv4, 16 for IPv6.
fn octets(ip: IpAddr) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(a) => {
            b[..4].copy_from_slice(&a.octets());
            (b, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}

/// A Community ID v1 in text form (`"1:"` and 28 base64 characters), held on the stack so
/// that a formatter writes it without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CommunityId {
    text: [u8; 30],
    len: usize,
}

impl CommunityId {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Display for CommunityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for CommunityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The Community ID v1 of a flow: `"1:" + base64(sha1(seed ‖ lower endpoint ‖ higher
/// endpoint ‖ proto ‖ 0 ‖ ports))`. For ICMP/ICMPv6, `sport` is the type and `dport` the
/// code; for protocols without ports, the ports are ignored. Addresses of different families
/// are hashed as given (they do not occur in one flow).
pub fn community_id_v1(
    seed: u16,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
) -> String {
    community_id_v1_text(seed, src, dst, proto, sport, dport)
        .as_str()
        .to_owned()
}

/// [`community_id_v1`] without allocating.
pub fn community_id_v1_text(
    seed: u16,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
) -> CommunityId {
    let ((sbuf, slen), (dbuf, dlen)) = (octets(src), octets(dst));
    let (saddr, daddr) = (&sbuf[..slen], &dbuf[..dlen]);
    let is_lt = |a: &[u8], b: &[u8], pa: u16, pb: u16| a < b || (a == b && pa < pb);
    let (ports, one_way) = match proto {
        TCP | UDP | SCTP => (Some((sport, dport)), false),
        ICMP | ICMPV6 => match icmp_counterpart(proto, sport) {
            Some(counter) => (Some((sport, counter)), false),
            None => (Some((sport, dport)), true),
        },
        _ => (None, false),
    };
    let (p1, p2) = ports.unwrap_or((0, 0));
    let keep = one_way || is_lt(saddr, daddr, p1, p2);
    let (a, b, pa, pb) = if keep {
        (saddr, daddr, p1, p2)
    } else {
        (daddr, saddr, p2, p1)
    };

    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(a);
    h.update(b);
    h.update([proto, 0]);
    if ports.is_some() {
        h.update(pa.to_be_bytes());
        h.update(pb.to_be_bytes());
    }
    let mut text = [0u8; 30];
    text[..2].copy_from_slice(b"1:");
    // 20 digest bytes are exactly 28 base64 characters: the slice always fits.
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(h.finalize(), &mut text[2..])
        .unwrap_or(0);
    CommunityId { text, len: 2 + n }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u16, s: &str, d: &str, proto: u8, sp: u16, dp: u16) -> String {
        community_id_v1(seed, s.parse().unwrap(), d.parse().unwrap(), proto, sp, dp)
    }

    /// Vectors from the spec repository's `baseline/baseline_deflt.json` (seed 0) and
    /// `baseline/baseline_seed1.json` (seed 1); each is checked in both directions.
    #[test]
    fn spec_baseline_vectors() {
        let vectors: &[(u16, &str, &str, u8, u16, u16, &str)] = &[
            (
                0,
                "128.232.110.120",
                "66.35.250.204",
                6,
                34855,
                80,
                "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            ),
            (
                0,
                "192.168.1.52",
                "8.8.8.8",
                17,
                54585,
                53,
                "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            ),
            (
                0,
                "2001:470:e5bf:dead:4957:2174:e82c:4887",
                "2607:f8b0:400c:c03::1a",
                6,
                63943,
                25,
                "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            ),
            (
                0,
                "192.168.170.8",
                "192.168.170.56",
                132,
                7,
                7,
                "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
            ),
            (
                1,
                "128.232.110.120",
                "66.35.250.204",
                6,
                34855,
                80,
                "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
            ),
            (
                1,
                "192.168.1.52",
                "8.8.8.8",
                17,
                54585,
                53,
                "1:Q9We8WO3piVF8yEQBNJF4uiSVrI=",
            ),
            (
                1,
                "2001:470:e5bf:dead:4957:2174:e82c:4887",
                "2607:f8b0:400c:c03::1a",
                6,
                63943,
                25,
                "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
            ),
            (
                1,
                "192.168.170.8",
                "192.168.170.56",
                132,
                7,
                7,
                "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg=",
            ),
        ];
        for &(seed, s, d, proto, sp, dp, want) in vectors {
            assert_eq!(
                id(seed, s, d, proto, sp, dp),
                want,
                "{s}:{sp} -> {d}:{dp} seed {seed}"
            );
            assert_eq!(
                id(seed, d, s, proto, dp, sp),
                want,
                "reverse {d}:{dp} -> {s}:{sp}"
            );
        }
    }

    #[test]
    fn spec_baseline_icmp_and_portless() {
        // ICMP echo and its reply share an id; an unpaired type is one-way.
        assert_eq!(
            id(0, "192.168.0.89", "192.168.0.1", 1, 8, 0),
            "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
        );
        assert_eq!(
            id(0, "192.168.0.1", "192.168.0.89", 1, 0, 8),
            "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
        );
        assert_eq!(
            id(0, "10.0.0.1", "10.0.0.2", 1, 11, 0),
            "1:YHxtAirCG//0OzkcVAukqKQN9xM="
        );
        assert_eq!(
            id(1, "10.0.0.1", "10.0.0.2", 1, 11, 0),
            "1:XjUibYHaafLQ3pxQeiMI8g25q20="
        );
        assert_eq!(
            id(
                0,
                "fe80::200:86ff:fe05:80da",
                "fe80::260:97ff:fe07:69ea",
                58,
                135,
                136
            ),
            "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="
        );
        assert_eq!(
            id(0, "fe80::260:97ff:fe07:69ea", "ff02::1", 58, 134, 133),
            "1:pkvHqCL88/tg1k4cPigmZXUtL00="
        );
        assert_eq!(
            id(
                0,
                "3ffe:501:1800:2345::2",
                "3ffe:507:0:1:200:86ff:fe05:80da",
                58,
                3,
                0
            ),
            "1:2ObVBgIn28oZvibYZhZMBgh7WdQ="
        );
        // RSVP (46): no ports.
        assert_eq!(
            id(0, "10.1.12.1", "10.1.12.2", 46, 0, 0),
            "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="
        );
        assert_eq!(
            id(1, "10.1.12.2", "10.1.12.1", 46, 9, 9),
            "1:rYir8gphR31noO9iDRQmF/BteEI="
        );
    }
}
