//! Raw Ethernet frame builder for data-path tests.
//!
//! Every frame is built explicitly, byte by byte, with correct IPv4 header,
//! TCP, UDP and ICMP/ICMPv6 checksums (unless a test asks for a broken one), so
//! the frames can go both through `BPF_PROG_TEST_RUN` and, raw over
//! `AF_PACKET`, through a veth into the kernel stack.
//!
//! ```ignore
//! let f = Frame::tcp(DENIED_V4, NODE_V4, 40000, 10250, SYN)
//!     .vlan(100)
//!     .vlan(200)
//!     .ipv4_options(2);
//! let bytes = f.build();
//! let b = f.boundaries();
//! let cut = truncate(&bytes, b.l4_start + 10); // TCP header cut in half
//! ```
//!
//! Std only: this file is included both by integration tests (their `common` module)
//! and by a benchmark example (`#[path = ...] mod packets;`).
#![allow(
    dead_code,
    reason = "std-only frame builder shared by the test binaries and the bench example; each uses part of it"
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// Children by explicit path: this file is also included by `#[path]` (the bench example),
// which would otherwise look for them next to it instead of under `packets/`.
#[path = "packets/checksum.rs"]
pub(crate) mod checksum;
#[path = "packets/encode.rs"]
mod encode;

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/// TCP flag bits (byte 13 of the TCP header).
pub(crate) const FIN: u8 = 0x01;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const RST: u8 = 0x04;
pub(crate) const PSH: u8 = 0x08;
pub(crate) const ACK: u8 = 0x10;
pub(crate) const URG: u8 = 0x20;

/// EtherTypes / TPIDs.
pub(crate) const ETH_P_IPV4: u16 = 0x0800;
pub(crate) const ETH_P_IPV6: u16 = 0x86dd;
pub(crate) const ETH_P_ARP: u16 = 0x0806;
pub(crate) const TPID_8021Q: u16 = 0x8100;
pub(crate) const TPID_8021AD: u16 = 0x88a8;

/// IP protocol numbers.
pub(crate) const IPPROTO_HOPOPTS: u8 = 0;
pub(crate) const IPPROTO_ICMP: u8 = 1;
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
pub(crate) const IPPROTO_ROUTING: u8 = 43;
pub(crate) const IPPROTO_FRAGMENT: u8 = 44;
pub(crate) const IPPROTO_ICMPV6: u8 = 58;
pub(crate) const IPPROTO_NONE: u8 = 59;
pub(crate) const IPPROTO_DSTOPTS: u8 = 60;

/// Header sizes.
pub(crate) const ETH_HLEN: usize = 14;
pub(crate) const VLAN_HLEN: usize = 4;
pub(crate) const IPV4_HLEN: usize = 20;
pub(crate) const IPV6_HLEN: usize = 40;
pub(crate) const TCP_HLEN: usize = 20;
pub(crate) const UDP_HLEN: usize = 8;
pub(crate) const ICMP_HLEN: usize = 8;
/// IPv6 minimum MTU: an ICMPv6 error never exceeds it (RFC 4443 2.4(c)).
pub(crate) const IPV6_MIN_MTU: usize = 1280;

/// Lab addresses (documentation ranges only: RFC 5737 / RFC 3849).
/// A source that the tests put on an allowlist.
pub(crate) const ALLOWED_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
/// A second allowed source, same /24 as `ALLOWED_V4`.
pub(crate) const ALLOWED2_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 6);
/// A source that is on no allowlist.
pub(crate) const DENIED_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);
/// The node (destination of attempts, source of answers).
pub(crate) const NODE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// An allowed source: 2001:db8:0:113::5.
pub(crate) const ALLOWED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x113, 0, 0, 0, 5);
/// A second allowed source: 2001:db8:0:113::6.
pub(crate) const ALLOWED2_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x113, 0, 0, 0, 6);
/// A source on no allowlist: 2001:db8:0:100::77.
pub(crate) const DENIED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x100, 0, 0, 0, 0x77);
/// The node: 2001:db8:0:100::1.
pub(crate) const NODE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x100, 0, 0, 0, 1);

/// Default MACs: a fixed locally administered (0x02 bit), unicast pair.
pub(crate) const SRC_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x01];
pub(crate) const DST_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x02];
pub(crate) const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// Default TTL / hop limit, IPv4 identification, TCP sequence and window.
pub(crate) const DEFAULT_TTL: u8 = 64;
pub(crate) const DEFAULT_IPV4_ID: u16 = 0x1234;
pub(crate) const DEFAULT_FRAG_ID: u32 = 0x0000_abcd;
pub(crate) const DEFAULT_TCP_SEQ: u32 = 0x1000_0000;
pub(crate) const DEFAULT_TCP_WINDOW: u16 = 64240;

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/// Network layer addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum L3 {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

impl L3 {
    /// Panics if the two addresses are not of the same family.
    pub(crate) fn new(src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> L3 {
        match (src.into(), dst.into()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => L3::V4 { src, dst },
            (IpAddr::V6(src), IpAddr::V6(dst)) => L3::V6 { src, dst },
            (s, d) => panic!("packets: mixed address families {s} -> {d}"),
        }
    }

    pub(crate) fn is_v4(&self) -> bool {
        matches!(self, L3::V4 { .. })
    }

    pub(crate) fn src(&self) -> IpAddr {
        match *self {
            L3::V4 { src, .. } => src.into(),
            L3::V6 { src, .. } => src.into(),
        }
    }

    pub(crate) fn dst(&self) -> IpAddr {
        match *self {
            L3::V4 { dst, .. } => dst.into(),
            L3::V6 { dst, .. } => dst.into(),
        }
    }
}

/// Transport layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        window: u16,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMPv4 or ICMPv6 (chosen by the L3 family): type, code, bytes 4..8 of
    /// the header, and the message body (e.g. the quoted packet).
    Icmp {
        ty: u8,
        code: u8,
        rest: [u8; 4],
        body: Vec<u8>,
    },
    /// Any other IP protocol: no L4 header is written, only `payload`.
    Other {
        proto: u8,
    },
}

impl L4 {
    /// IP protocol number for this L4 under the given family.
    pub(crate) fn proto(&self, v4: bool) -> u8 {
        match self {
            L4::Tcp { .. } => IPPROTO_TCP,
            L4::Udp { .. } => IPPROTO_UDP,
            L4::Icmp { .. } if v4 => IPPROTO_ICMP,
            L4::Icmp { .. } => IPPROTO_ICMPV6,
            L4::Other { proto } => *proto,
        }
    }
}

/// One 802.1Q / 802.1ad tag. `tpid: None` = automatic (see [`Frame::vlan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VlanTag {
    pub(crate) vid: u16,
    pub(crate) pcp: u8,
    pub(crate) tpid: Option<u16>,
}

/// IPv6 extension headers, chained in the given order before L4.
///
/// Hop-by-Hop and Destination Options carry PadN only (8 bytes) or, when
/// longer, experimental skip-if-unknown options (type 0x1e) plus at most 7
/// bytes of padding, which Linux accepts; Routing is type 0 with
/// Segments Left = 0 (so the IPv6 destination is the final destination and
/// the kernel skips it); Fragment carries identification [`DEFAULT_FRAG_ID`].
/// The kernel only accepts Hop-by-Hop first; the builder does not enforce it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExtHeader {
    /// 8 bytes.
    HopByHop,
    /// 8 bytes.
    Routing,
    /// 8 bytes. `offset_units` in 8-byte units (13 bits), `more` = M flag.
    Fragment { offset_units: u16, more: bool },
    /// 8 bytes.
    DestOpts,
    /// Hop-by-Hop with Hdr Ext Len = `len_units`: 8 * (len_units + 1) bytes.
    /// `HopByHopLen(0)` is identical to `HopByHop`.
    HopByHopLen(u8),
    /// Destination Options with Hdr Ext Len = `len_units`: 8 * (len_units + 1) bytes.
    DestOptsLen(u8),
}

impl ExtHeader {
    /// The Next Header value that announces this header.
    pub(crate) fn proto(self) -> u8 {
        match self {
            ExtHeader::HopByHop | ExtHeader::HopByHopLen(_) => IPPROTO_HOPOPTS,
            ExtHeader::Routing => IPPROTO_ROUTING,
            ExtHeader::Fragment { .. } => IPPROTO_FRAGMENT,
            ExtHeader::DestOpts | ExtHeader::DestOptsLen(_) => IPPROTO_DSTOPTS,
        }
    }

    /// Length on the wire in bytes.
    pub(crate) fn wire_len(self) -> usize {
        match self {
            ExtHeader::HopByHopLen(n) | ExtHeader::DestOptsLen(n) => 8 * (usize::from(n) + 1),
            _ => 8,
        }
    }
}

/// Experimental IPv6 option type (RFC 4727): action 00 = skip if unknown.
pub(crate) const IPV6_OPT_EXPERIMENTAL: u8 = 0x1e;

/// Byte offsets into a built frame (all relative to the frame start).
///
/// Offsets describe the bytes actually emitted, not what (possibly
/// overridden) length fields claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Boundaries {
    /// End of dst MAC + src MAC + first EtherType/TPID: always 14.
    pub(crate) eth_end: usize,
    /// End of each VLAN tag (TCI + following EtherType), outermost first.
    pub(crate) vlan_ends: Vec<usize>,
    /// Start of the IP header (= last of `vlan_ends`, or `eth_end`).
    pub(crate) l3_start: usize,
    /// End of the fixed IP header (l3_start + 20 or + 40).
    pub(crate) l3_fixed_end: usize,
    /// End of each IPv6 extension header, in order (empty for IPv4).
    pub(crate) ext_ends: Vec<usize>,
    /// End of the IP header including IPv4 options / IPv6 extension headers.
    pub(crate) l3_end: usize,
    /// Start of the L4 header (= l3_end).
    pub(crate) l4_start: usize,
    /// End of the L4 header (TCP 20, UDP 8, ICMP 8 bytes; = l4_start for
    /// `L4::Other`).
    pub(crate) l4_end: usize,
    /// End of the IP packet (L4 header, ICMP body and payload included).
    pub(crate) ip_end: usize,
    /// Frame length (ip_end plus any Ethernet padding from `pad_to`).
    pub(crate) end: usize,
}

/// A frame builder. Methods consume and return `self`; `build()` borrows.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub(crate) src_mac: [u8; 6],
    pub(crate) dst_mac: [u8; 6],
    pub(crate) vlans: Vec<VlanTag>,
    pub(crate) l3: L3,
    pub(crate) l4: L4,
    pub(crate) ttl: u8,
    pub(crate) ipv4_id: u16,
    pub(crate) ipv4_option_words: u8,
    pub(crate) ipv4_dont_fragment: bool,
    /// (offset in 8-byte units, more fragments)
    pub(crate) ipv4_frag: Option<(u16, bool)>,
    pub(crate) ipv6_exts: Vec<ExtHeader>,
    pub(crate) payload: Vec<u8>,
    pub(crate) pad_to: usize,
    // Malformation overrides: written as-is instead of the computed value.
    pub(crate) ipv4_ihl_raw: Option<u8>,
    pub(crate) ipv4_total_len_raw: Option<u16>,
    pub(crate) ipv4_checksum_raw: Option<u16>,
    pub(crate) ipv6_payload_len_raw: Option<u16>,
    pub(crate) tcp_data_offset_raw: Option<u8>,
    pub(crate) l4_checksum_raw: Option<u16>,
}

impl Frame {
    /// A frame with the given layers and all defaults.
    pub(crate) fn new(l3: L3, l4: L4) -> Frame {
        Frame {
            src_mac: SRC_MAC,
            dst_mac: DST_MAC,
            vlans: Vec::new(),
            l3,
            l4,
            ttl: DEFAULT_TTL,
            ipv4_id: DEFAULT_IPV4_ID,
            ipv4_option_words: 0,
            ipv4_dont_fragment: false,
            ipv4_frag: None,
            ipv6_exts: Vec::new(),
            payload: Vec::new(),
            pad_to: 0,
            ipv4_ihl_raw: None,
            ipv4_total_len_raw: None,
            ipv4_checksum_raw: None,
            ipv6_payload_len_raw: None,
            tcp_data_offset_raw: None,
            l4_checksum_raw: None,
        }
    }

    /// TCP segment. `flags`: [`FIN`] [`SYN`] [`RST`] [`PSH`] [`ACK`] [`URG`]
    /// (any u8; bits 0x40 ECE and 0x80 CWR pass through). The ACK number is 1
    /// when ACK is set, else 0. Panics on mixed address families.
    pub(crate) fn tcp(
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        sport: u16,
        dport: u16,
        flags: u8,
    ) -> Frame {
        let ack = u32::from(flags & ACK != 0);
        Frame::new(
            L3::new(src, dst),
            L4::Tcp {
                sport,
                dport,
                flags,
                seq: DEFAULT_TCP_SEQ,
                ack,
                window: DEFAULT_TCP_WINDOW,
            },
        )
    }

    /// UDP datagram. Panics on mixed address families.
    pub(crate) fn udp(
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        sport: u16,
        dport: u16,
    ) -> Frame {
        Frame::new(L3::new(src, dst), L4::Udp { sport, dport })
    }

    /// An IP packet of any other protocol (no L4 header; add bytes with
    /// `payload`).
    pub(crate) fn ip_proto(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, proto: u8) -> Frame {
        Frame::new(L3::new(src, dst), L4::Other { proto })
    }

    /// ICMP echo request (v4 type 8 / v6 type 128), id and seq given.
    pub(crate) fn icmp_echo(
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        id: u16,
        seq: u16,
    ) -> Frame {
        let l3 = L3::new(src, dst);
        let ty = if l3.is_v4() { 8 } else { 128 };
        let mut rest = [0u8; 4];
        rest[..2].copy_from_slice(&id.to_be_bytes());
        rest[2..].copy_from_slice(&seq.to_be_bytes());
        Frame::new(
            l3,
            L4::Icmp {
                ty,
                code: 0,
                rest,
                body: Vec::new(),
            },
        )
    }

    /// Port unreachable from `from` to `to` about `original` (whose IP packet
    /// is quoted, without its Ethernet/VLAN headers): ICMPv4 type 3 code 3
    /// quoting the IP header (with options) + the first 8 bytes after it;
    /// ICMPv6 type 1 code 4 quoting as much of the original IPv6 packet as
    /// fits in 1280 bytes (1232). Panics on mixed families.
    pub(crate) fn icmp_port_unreachable(
        from: impl Into<IpAddr>,
        to: impl Into<IpAddr>,
        original: &Frame,
    ) -> Frame {
        let l3 = L3::new(from, to);
        assert_eq!(
            l3.is_v4(),
            original.l3.is_v4(),
            "packets: ICMP error and quoted packet of different families"
        );
        let bytes = original.build();
        let b = original.boundaries();
        let ip = &bytes[b.l3_start..b.ip_end];
        let (ty, code, quote) = if l3.is_v4() {
            let n = (b.l3_end - b.l3_start + 8).min(ip.len());
            (3, 3, ip[..n].to_vec())
        } else {
            let n = (IPV6_MIN_MTU - IPV6_HLEN - ICMP_HLEN).min(ip.len());
            (1, 4, ip[..n].to_vec())
        };
        Frame::new(
            l3,
            L4::Icmp {
                ty,
                code,
                rest: [0; 4],
                body: quote,
            },
        )
    }

    // --- Ethernet -------------------------------------------------------

    pub(crate) fn src_mac(mut self, mac: [u8; 6]) -> Frame {
        self.src_mac = mac;
        self
    }

    pub(crate) fn dst_mac(mut self, mac: [u8; 6]) -> Frame {
        self.dst_mac = mac;
        self
    }

    /// Push a VLAN tag; the first call is the outermost tag. TPID is
    /// automatic: with 2+ tags the outermost is 0x88a8 (802.1ad) and the
    /// others 0x8100; a single tag is 0x8100. Any number of tags is allowed.
    pub(crate) fn vlan(self, vid: u16) -> Frame {
        self.vlan_tag(VlanTag {
            vid,
            pcp: 0,
            tpid: None,
        })
    }

    /// Push a VLAN tag with a forced TPID (e.g. 0x8100 outer + 0x8100 inner).
    pub(crate) fn vlan_tpid(self, vid: u16, tpid: u16) -> Frame {
        self.vlan_tag(VlanTag {
            vid,
            pcp: 0,
            tpid: Some(tpid),
        })
    }

    /// Push a fully specified tag.
    pub(crate) fn vlan_tag(mut self, tag: VlanTag) -> Frame {
        assert!(tag.vid <= 0x0fff, "packets: VLAN id > 12 bits");
        assert!(tag.pcp <= 7, "packets: VLAN PCP > 3 bits");
        self.vlans.push(tag);
        self
    }

    /// Append zero bytes after the IP packet until the frame is `len` bytes
    /// long (Ethernet minimum: 60). Not counted in IP lengths.
    pub(crate) fn pad_to(mut self, len: usize) -> Frame {
        self.pad_to = len;
        self
    }

    // --- IP ---------------------------------------------------------------

    /// TTL (IPv4) / Hop Limit (IPv6).
    pub(crate) fn ttl(mut self, ttl: u8) -> Frame {
        self.ttl = ttl;
        self
    }

    pub(crate) fn ipv4_id(mut self, id: u16) -> Frame {
        self.ipv4_id = id;
        self
    }

    /// IPv4 options: IHL = 5 + `words` (0..=10), filled with NOP and a final
    /// EOL.
    pub(crate) fn ipv4_options(mut self, words: u8) -> Frame {
        assert!(self.l3.is_v4(), "packets: ipv4_options on an IPv6 frame");
        assert!(words <= 10, "packets: IHL max 15 = 5 + 10 option words");
        self.ipv4_option_words = words;
        self
    }

    /// Set the DF flag.
    pub(crate) fn ipv4_df(mut self) -> Frame {
        self.ipv4_dont_fragment = true;
        self
    }

    /// IPv4 fragment: offset in 8-byte units (13 bits), MF flag. The L4
    /// header is still written at the start of the IP payload (for a non-first
    /// fragment these are just payload bytes), checksummed over what is
    /// present.
    pub(crate) fn ipv4_fragment(mut self, offset_units: u16, more_fragments: bool) -> Frame {
        assert!(self.l3.is_v4(), "packets: ipv4_fragment on an IPv6 frame");
        assert!(offset_units <= 0x1fff, "packets: fragment offset > 13 bits");
        self.ipv4_frag = Some((offset_units, more_fragments));
        self
    }

    /// IPv6 extension headers, chained in order between the IPv6 header and
    /// L4 (appends to any already set).
    pub(crate) fn ipv6_ext(mut self, kinds: &[ExtHeader]) -> Frame {
        assert!(!self.l3.is_v4(), "packets: ipv6_ext on an IPv4 frame");
        self.ipv6_exts.extend_from_slice(kinds);
        self
    }

    // --- L4 ---------------------------------------------------------------

    /// Bytes after the L4 header (after the ICMP body for ICMP).
    pub(crate) fn payload(mut self, bytes: &[u8]) -> Frame {
        self.payload = bytes.to_vec();
        self
    }

    pub(crate) fn tcp_seq(mut self, seq: u32) -> Frame {
        if let L4::Tcp { seq: s, .. } = &mut self.l4 {
            *s = seq;
        } else {
            panic!("packets: tcp_seq on a non-TCP frame");
        }
        self
    }

    pub(crate) fn tcp_ack(mut self, ack: u32) -> Frame {
        if let L4::Tcp { ack: a, .. } = &mut self.l4 {
            *a = ack;
        } else {
            panic!("packets: tcp_ack on a non-TCP frame");
        }
        self
    }

    // --- Malformations (written as-is; boundaries still describe bytes) ----

    /// Force the IPv4 IHL nibble (the header written is still 20 + options).
    pub(crate) fn ipv4_ihl_raw(mut self, ihl: u8) -> Frame {
        assert!(ihl <= 15);
        self.ipv4_ihl_raw = Some(ihl);
        self
    }

    /// Force the IPv4 Total Length field.
    pub(crate) fn ipv4_total_len_raw(mut self, len: u16) -> Frame {
        self.ipv4_total_len_raw = Some(len);
        self
    }

    /// Force the IPv4 header checksum (e.g. a wrong one).
    pub(crate) fn ipv4_checksum_raw(mut self, csum: u16) -> Frame {
        self.ipv4_checksum_raw = Some(csum);
        self
    }

    /// Force the IPv6 Payload Length field.
    pub(crate) fn ipv6_payload_len_raw(mut self, len: u16) -> Frame {
        self.ipv6_payload_len_raw = Some(len);
        self
    }

    /// Force the TCP data offset nibble (the header written is still 20 bytes).
    pub(crate) fn tcp_data_offset_raw(mut self, doff: u8) -> Frame {
        assert!(doff <= 15);
        self.tcp_data_offset_raw = Some(doff);
        self
    }

    /// Force the TCP/UDP/ICMP checksum field.
    pub(crate) fn l4_checksum_raw(mut self, csum: u16) -> Frame {
        self.l4_checksum_raw = Some(csum);
        self
    }
}

// ---------------------------------------------------------------------------
// Free helpers
// ---------------------------------------------------------------------------

/// The first `len` bytes of `frame` (all of it if shorter). Length fields are
/// left as they were: the result claims more than it holds.
pub(crate) fn truncate(frame: &[u8], len: usize) -> Vec<u8> {
    frame[..len.min(frame.len())].to_vec()
}

/// A broadcast ARP request (who-has NODE_V4 tell DENIED_V4), 42 bytes.
pub(crate) fn non_ip_frame() -> Vec<u8> {
    let mut out = Vec::with_capacity(42);
    out.extend_from_slice(&BROADCAST_MAC);
    out.extend_from_slice(&SRC_MAC);
    out.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // HTYPE Ethernet
    out.extend_from_slice(&ETH_P_IPV4.to_be_bytes()); // PTYPE
    out.push(6); // HLEN
    out.push(4); // PLEN
    out.extend_from_slice(&1u16.to_be_bytes()); // request
    out.extend_from_slice(&SRC_MAC);
    out.extend_from_slice(&DENIED_V4.octets());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&NODE_V4.octets());
    out
}
