//! IPv6 extension headers: chain order and next headers, padded lengths, options Linux
//! accepts, fragment headers (RFC 8200 layout) and reassembly.

use etherparse::{Ipv6ExtensionSlice, NetSlice, SlicedPacket};

use crate::{
    check::{all_l3, assert_checksums, parse, tcp_of},
    common::packets::{checksum::internet_checksum, *},
};

fn ext_chain(p: &SlicedPacket<'_>) -> (u8, Vec<(u8, u8, usize)>) {
    // (first next header, [(kind, next header, len)])
    let NetSlice::Ipv6(ip) = p.net.as_ref().unwrap() else {
        panic!("not v6")
    };
    let first = ip.header().next_header().0;
    let mut out = Vec::new();
    for e in ip.extensions().clone() {
        out.push(match e {
            Ipv6ExtensionSlice::HopByHop(s) => {
                (IPPROTO_HOPOPTS, s.next_header().0, s.slice().len())
            }
            Ipv6ExtensionSlice::Routing(s) => (IPPROTO_ROUTING, s.next_header().0, s.slice().len()),
            Ipv6ExtensionSlice::Fragment(s) => {
                (IPPROTO_FRAGMENT, s.next_header().0, s.slice().len())
            }
            Ipv6ExtensionSlice::DestinationOptions(s) => {
                (IPPROTO_DSTOPTS, s.next_header().0, s.slice().len())
            }
            Ipv6ExtensionSlice::Authentication(_) => panic!("AH"),
        });
    }
    (first, out)
}

#[test]
fn ipv6_ext_chain_order_and_next_headers() {
    let f = Frame::tcp(DENIED_V6, NODE_V6, 40000, 10250, SYN)
        .ipv6_ext(&[
            ExtHeader::HopByHop,
            ExtHeader::DestOpts,
            ExtHeader::Routing,
            ExtHeader::Fragment {
                offset_units: 0,
                more: false,
            },
            ExtHeader::DestOpts,
        ])
        .payload(b"payload");
    let bytes = f.build();
    let p = parse(&bytes);
    let (first, chain) = ext_chain(&p);
    assert_eq!(first, IPPROTO_HOPOPTS);
    assert_eq!(
        chain,
        vec![
            (IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, 8),
            (IPPROTO_DSTOPTS, IPPROTO_ROUTING, 8),
            (IPPROTO_ROUTING, IPPROTO_FRAGMENT, 8),
            (IPPROTO_FRAGMENT, IPPROTO_DSTOPTS, 8),
            (IPPROTO_DSTOPTS, IPPROTO_TCP, 8),
        ]
    );
    let NetSlice::Ipv6(ip) = p.net.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(usize::from(ip.header().payload_length()), 5 * 8 + 20 + 7);
    let t = tcp_of(&p);
    assert!(t.syn());
    assert_eq!(t.payload(), b"payload");
    // Pseudo-header checksum with extension headers present.
    assert_checksums(&bytes);

    // UDP and ICMPv6 behind extension headers too.
    for f in [
        Frame::udp(DENIED_V6, NODE_V6, 1, 30001),
        Frame::icmp_echo(DENIED_V6, NODE_V6, 1, 1),
    ] {
        let bytes = f
            .ipv6_ext(&[ExtHeader::HopByHop, ExtHeader::Routing])
            .payload(b"abcde")
            .build();
        assert_checksums(&bytes);
    }
}

#[test]
fn ipv6_ext_padded_lengths() {
    let bytes = Frame::udp(DENIED_V6, NODE_V6, 1, 30002)
        .ipv6_ext(&[
            ExtHeader::HopByHopLen(2),
            ExtHeader::DestOptsLen(0),
            ExtHeader::DestOptsLen(33),
        ])
        .build();
    let p = parse(&bytes);
    let (first, chain) = ext_chain(&p);
    assert_eq!(first, IPPROTO_HOPOPTS);
    assert_eq!(
        chain,
        vec![
            (IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, 24),
            (IPPROTO_DSTOPTS, IPPROTO_DSTOPTS, 8),
            (IPPROTO_DSTOPTS, IPPROTO_UDP, 272),
        ]
    );
    let NetSlice::Ipv6(ip) = p.net.as_ref().unwrap() else {
        panic!()
    };
    let raw = ip.extensions().slice();
    assert_eq!(&raw[..4], &[IPPROTO_DSTOPTS, 2, IPV6_OPT_EXPERIMENTAL, 20]);
    assert_checksums(&bytes);
}

/// Walk a Hop-by-Hop / Destination Options header the way Linux's
/// `ip6_parse_tlv` does and check it would be accepted with default sysctls.
fn assert_linux_accepts_tlvs(hdr: &[u8]) {
    assert_eq!(hdr.len(), 8 * (usize::from(hdr[1]) + 1));
    let mut off = 2;
    let (mut padlen, mut count) = (0usize, 0usize);
    while off < hdr.len() {
        let ty = hdr[off];
        if ty == 0 {
            padlen += 1;
            off += 1;
        } else {
            let optlen = usize::from(hdr[off + 1]) + 2;
            assert!(off + optlen <= hdr.len(), "option overruns the header");
            if ty == 1 {
                padlen += optlen;
                assert!(hdr[off + 2..off + optlen].iter().all(|&b| b == 0));
            } else {
                assert_eq!(ty >> 6, 0, "unknown option must be skip-able");
                count += 1;
                padlen = 0;
            }
            off += optlen;
        }
        assert!(padlen <= 7, "padding run > 7 bytes");
    }
    assert_eq!(off, hdr.len());
    assert!(count <= 8, "more than 8 options");
}

#[test]
fn ipv6_option_headers_are_linux_acceptable() {
    for n in 0..=255u8 {
        for kind in [
            ExtHeader::HopByHopLen(n),
            ExtHeader::DestOptsLen(n),
            ExtHeader::HopByHop,
            ExtHeader::DestOpts,
        ] {
            let (bytes, b) = Frame::udp(DENIED_V6, NODE_V6, 1, 2)
                .ipv6_ext(&[kind])
                .build_with_boundaries();
            assert_eq!(b.ext_ends[0] - b.l3_fixed_end, kind.wire_len());
            assert_linux_accepts_tlvs(&bytes[b.l3_fixed_end..b.ext_ends[0]]);
        }
    }
    assert_eq!(
        Frame::udp(DENIED_V6, NODE_V6, 1, 2)
            .ipv6_ext(&[ExtHeader::HopByHopLen(0)])
            .build(),
        Frame::udp(DENIED_V6, NODE_V6, 1, 2)
            .ipv6_ext(&[ExtHeader::HopByHop])
            .build()
    );
}

#[test]
fn ipv6_fragment_headers() {
    for (off, more) in [(0u16, true), (1, true), (100, false), (0x1fff, false)] {
        let bytes = Frame::tcp(DENIED_V6, NODE_V6, 1, 10250, SYN)
            .ipv6_ext(&[ExtHeader::Fragment {
                offset_units: off,
                more,
            }])
            .build();
        let p = parse(&bytes);
        let NetSlice::Ipv6(ip) = p.net.as_ref().unwrap() else {
            panic!()
        };
        assert!(ip.is_payload_fragmented());
        assert!(p.transport.is_none());
        let Some(Ipv6ExtensionSlice::Fragment(fr)) = ip.extensions().clone().into_iter().next()
        else {
            panic!("no fragment header")
        };
        // etherparse 0.19 decodes offset/M with the wrong bit positions
        // (JulianSchmid/etherparse#150, fixed in 0.20), so read the RFC 8200
        // layout ourselves: bytes 2..4 = offset << 3 | res(2) | M.
        let raw = fr.slice();
        let word = u16::from_be_bytes([raw[2], raw[3]]);
        assert_eq!(word >> 3, off);
        assert_eq!(word & 1 == 1, more);
        assert_eq!(word & 0b110, 0, "reserved bits");
        assert_eq!(raw[1], 0, "reserved byte");
        assert_eq!(fr.identification(), DEFAULT_FRAG_ID);
        assert_eq!(fr.next_header().0, IPPROTO_TCP);
    }
}

#[test]
fn ipv6_fragment_header_wire_layout_is_rfc8200() {
    // Same layout as Linux: frag_off & htons(0xfff8) = offset, htons(1) = M.
    let f = Frame::udp(DENIED_V6, NODE_V6, 1, 2).ipv6_ext(&[ExtHeader::Fragment {
        offset_units: 1,
        more: true,
    }]);
    let (bytes, b) = f.build_with_boundaries();
    let h = &bytes[b.l3_fixed_end..b.ext_ends[0]];
    assert_eq!(h, &[IPPROTO_UDP, 0, 0x00, 0x09, 0x00, 0x00, 0xab, 0xcd]);
    let f = Frame::udp(DENIED_V6, NODE_V6, 1, 2).ipv6_ext(&[ExtHeader::Fragment {
        offset_units: 0x1fff,
        more: false,
    }]);
    let (bytes, b) = f.build_with_boundaries();
    assert_eq!(
        &bytes[b.l3_fixed_end + 2..b.l3_fixed_end + 4],
        &[0xff, 0xf8]
    );
}

#[test]
fn fragments_reassemble_to_the_original_datagram() {
    for (src, dst) in all_l3() {
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let whole = Frame::udp(src, dst, 41000, 30053).payload(&payload);
        let (wb, wbnd) = whole.build_with_boundaries();
        let datagram = &wb[wbnd.l4_start..wbnd.ip_end];
        let frags = whole.fragments(50); // 400 bytes each: 400, 400, 208
        assert_eq!(frags.len(), 3);
        let mut joined = Vec::new();
        for (i, fb) in frags.iter().enumerate() {
            let p = parse(fb);
            let (off, more, body) = match p.net.as_ref().unwrap() {
                NetSlice::Ipv4(ip) => {
                    let h = ip.header();
                    assert_eq!(internet_checksum(h.slice()), 0);
                    assert_eq!(h.protocol().0, IPPROTO_UDP);
                    assert_eq!(h.identification(), DEFAULT_IPV4_ID);
                    (
                        h.fragments_offset().value(),
                        h.more_fragments(),
                        ip.payload().payload,
                    )
                }
                NetSlice::Ipv6(ip) => {
                    let raw = ip.extensions().slice();
                    assert_eq!(ip.header().next_header().0, IPPROTO_FRAGMENT);
                    assert_eq!(raw[0], IPPROTO_UDP);
                    let word = u16::from_be_bytes([raw[2], raw[3]]);
                    (word >> 3, word & 1 == 1, ip.payload().payload)
                }
                NetSlice::Arp(_) => panic!(),
            };
            assert_eq!(usize::from(off) * 8, joined.len(), "fragment {i}");
            assert_eq!(more, i + 1 < frags.len());
            joined.extend_from_slice(body);
        }
        assert_eq!(joined, datagram);
    }
}
