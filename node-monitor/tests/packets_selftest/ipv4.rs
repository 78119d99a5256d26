//! IPv4 options at every IHL, and fragments.

use etherparse::NetSlice;

use crate::{
    check::{assert_checksums, parse, tcp_of},
    common::packets::{checksum::internet_checksum, *},
};

#[test]
fn ipv4_options_every_ihl() {
    for words in 0..=10u8 {
        let f = Frame::tcp(DENIED_V4, NODE_V4, 40000, 2379, SYN)
            .vlan(5)
            .ipv4_options(words)
            .payload(b"abc");
        let bytes = f.build();
        let p = parse(&bytes);
        let NetSlice::Ipv4(ip) = p.net.as_ref().unwrap() else {
            panic!()
        };
        let h = ip.header();
        assert_eq!(h.ihl(), 5 + words);
        let opts = h.options();
        assert_eq!(opts.len(), 4 * usize::from(words));
        if words > 0 {
            assert!(opts[..opts.len() - 1].iter().all(|&b| b == 1), "NOPs");
            assert_eq!(*opts.last().unwrap(), 0, "EOL");
        }
        assert_eq!(usize::from(h.total_len()), 20 + opts.len() + 20 + 3);
        let t = tcp_of(&p);
        assert_eq!(t.destination_port(), 2379);
        assert_eq!(t.payload(), b"abc");
        assert_checksums(&bytes);
        let b = f.boundaries();
        assert_eq!(b.l3_end - b.l3_start, 4 * (5 + usize::from(words)));
    }
}

#[test]
#[should_panic(expected = "IHL max 15")]
fn ipv4_options_too_many_words_panics() {
    let _ = Frame::tcp(DENIED_V4, NODE_V4, 1, 2, SYN).ipv4_options(11);
}

#[test]
fn ipv4_fragments() {
    // first fragment: offset 0, MF
    let bytes = Frame::udp(DENIED_V4, NODE_V4, 1, 30000)
        .payload(&[0; 64])
        .ipv4_fragment(0, true)
        .build();
    let p = parse(&bytes);
    let NetSlice::Ipv4(ip) = p.net.as_ref().unwrap() else {
        panic!()
    };
    assert!(ip.header().more_fragments());
    assert_eq!(ip.header().fragments_offset().value(), 0);
    assert!(ip.is_payload_fragmented());
    assert!(!ip.header().dont_fragment());
    assert_eq!(internet_checksum(ip.header().slice()), 0);
    // The L4 header is there even though etherparse does not parse fragments.
    assert!(p.transport.is_none());
    let l4 = ip.payload().payload;
    assert_eq!(u16::from_be_bytes([l4[2], l4[3]]), 30000);

    // non-first fragments, with and without MF
    for (off, mf) in [(1u16, true), (185, false), (0x1fff, false)] {
        let bytes = Frame::tcp(DENIED_V4, NODE_V4, 1, 10250, SYN)
            .ipv4_options(1)
            .ipv4_fragment(off, mf)
            .build();
        let p = parse(&bytes);
        let NetSlice::Ipv4(ip) = p.net.as_ref().unwrap() else {
            panic!()
        };
        assert_eq!(ip.header().fragments_offset().value(), off);
        assert_eq!(ip.header().more_fragments(), mf);
        assert_eq!(ip.header().ihl(), 6);
        assert!(ip.is_payload_fragmented());
        assert!(p.transport.is_none());
        assert_eq!(internet_checksum(ip.header().slice()), 0);
    }
}
