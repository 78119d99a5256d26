//! ICMP and ICMPv6: port unreachable quoting the datagram, echo, family checks.

use etherparse::{NetSlice, TransportSlice};

use crate::{
    check::{all_l3, assert_checksums, parse},
    common::packets::{checksum::internet_checksum, *},
};

#[test]
fn icmpv4_port_unreachable_quotes_header_and_8_bytes() {
    for words in [0u8, 3] {
        let orig = Frame::udp(DENIED_V4, NODE_V4, 41000, 30053)
            .vlan(9)
            .ipv4_options(words)
            .payload(&[0x55; 100]);
        let ob = orig.build();
        let obnd = orig.boundaries();
        let bytes = Frame::icmp_port_unreachable(NODE_V4, DENIED_V4, &orig).build();
        let p = parse(&bytes);
        let NetSlice::Ipv4(ip) = p.net.as_ref().unwrap() else {
            panic!()
        };
        assert_eq!(ip.header().protocol().0, IPPROTO_ICMP);
        let TransportSlice::Icmpv4(i) = p.transport.as_ref().unwrap() else {
            panic!()
        };
        assert_eq!((i.type_u8(), i.code_u8()), (3, 3));
        let quote = i.payload();
        assert_eq!(quote.len(), 20 + 4 * usize::from(words) + 8);
        assert_eq!(quote, &ob[obnd.l3_start..obnd.l4_start + 8]);
        assert_checksums(&bytes);
        assert_eq!(internet_checksum(i.slice()), 0);
    }
}

#[test]
fn icmpv6_port_unreachable_quotes_as_much_as_fits() {
    // small original: quoted whole
    let orig = Frame::udp(DENIED_V6, NODE_V6, 41000, 30053)
        .ipv6_ext(&[ExtHeader::DestOpts])
        .payload(b"q");
    let ob = orig.build();
    let bytes = Frame::icmp_port_unreachable(NODE_V6, DENIED_V6, &orig).build();
    let p = parse(&bytes);
    let TransportSlice::Icmpv6(i) = p.transport.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!((i.type_u8(), i.code_u8()), (1, 4));
    assert_eq!(i.payload(), &ob[ETH_HLEN..]);
    assert_checksums(&bytes);

    // big original: the error is exactly the IPv6 minimum MTU
    let orig = Frame::udp(DENIED_V6, NODE_V6, 41000, 30053).payload(&[7; 3000]);
    let ob = orig.build();
    let f = Frame::icmp_port_unreachable(NODE_V6, DENIED_V6, &orig);
    let bytes = f.build();
    let b = f.boundaries();
    assert_eq!(b.ip_end - b.l3_start, IPV6_MIN_MTU);
    let p = parse(&bytes);
    let TransportSlice::Icmpv6(i) = p.transport.as_ref().unwrap() else {
        panic!()
    };
    assert_eq!(i.payload(), &ob[ETH_HLEN..ETH_HLEN + 1232]);
    assert_checksums(&bytes);
}

#[test]
fn icmp_echo_both_families() {
    for (src, dst) in all_l3() {
        let bytes = Frame::icmp_echo(src, dst, 0x1234, 7)
            .payload(b"ping")
            .build();
        assert_checksums(&bytes);
    }
}

#[test]
#[should_panic(expected = "different families")]
fn icmp_error_family_mismatch_panics() {
    let orig = Frame::udp(DENIED_V6, NODE_V6, 1, 2);
    let _ = Frame::icmp_port_unreachable(NODE_V4, DENIED_V4, &orig);
}
