//! One bounds-checked packet parser shared by every program.
//!
//! Every read goes through [`Packet::ptr_at`], which checks the access against
//! `data_end` the way the verifier wants. Parsing stops at the first header that
//! does not fit and reports why, as a `reason::*` index.
use core::ptr::read_unaligned;

use node_monitor_common::{
    Addr, FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, reason,
};

/// Ethernet header: where the IP header of an untagged frame starts.
pub(crate) const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const TCP_MIN_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
const ICMP_HLEN: usize = 8;

const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AH: u8 = 51;
const IPV6_DSTOPTS: u8 = 60;

/// Why parsing stopped: an index into the `REASONS` counters.
pub type Reason = u32;

/// The packet's bytes: `[start, end)`.
#[derive(Clone, Copy)]
pub struct Packet {
    start: usize,
    end: usize,
}

impl Packet {
    #[inline(always)]
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// A pointer to a `T` at `off`, if all of it lies inside the packet.
    #[inline(always)]
    pub fn ptr_at<T>(&self, off: usize) -> Option<*const T> {
        let size = core::mem::size_of::<T>();
        if self.start + off + size > self.end {
            return None;
        }
        Some((self.start + off) as *const T)
    }

    /// The address of byte `off`, unchecked: for reads whose bounds the caller checked.
    #[inline(always)]
    pub fn raw(&self, off: usize) -> *const u8 {
        (self.start + off) as *const u8
    }

    #[inline(always)]
    fn be16_at(&self, off: usize, why: Reason) -> Result<u16, Reason> {
        let p = self.ptr_at::<[u8; 2]>(off).ok_or(why)?;
        // SAFETY: ptr_at checked bounds; read_unaligned has no alignment requirement.
        Ok(u16::from_be_bytes(unsafe { read_unaligned(p) }))
    }

    /// An IPv4 address at `off`, read as one 32-bit word.
    #[inline(always)]
    fn addr_v4_at(&self, off: usize, why: Reason) -> Result<Addr, Reason> {
        let p = self.ptr_at::<u32>(off).ok_or(why)?;
        // SAFETY: ptr_at checked bounds; read_unaligned has no alignment requirement.
        Ok(Addr::from_v4_word(unsafe { read_unaligned(p) }))
    }

    /// An IPv6 address at `off`, read as two 64-bit words.
    #[inline(always)]
    fn addr_v6_at(&self, off: usize, why: Reason) -> Result<Addr, Reason> {
        let p = self.ptr_at::<[u64; 2]>(off).ok_or(why)?;
        // SAFETY: as above.
        Ok(Addr(unsafe { read_unaligned(p) }))
    }

    /// Checks that `N` bytes at `off` lie inside the packet and returns where they start,
    /// for reading single fields with [`field_be16`] and [`field_u8`]: copying a whole
    /// header out would load bytes nobody reads.
    #[inline(always)]
    fn span<const N: usize>(&self, off: usize, why: Reason) -> Result<*const u8, Reason> {
        Ok(self.ptr_at::<[u8; N]>(off).ok_or(why)?.cast())
    }

    #[inline(always)]
    fn bytes_at<const N: usize>(&self, off: usize, why: Reason) -> Result<[u8; N], Reason> {
        let p = self.ptr_at::<[u8; N]>(off).ok_or(why)?;
        // SAFETY: as above.
        Ok(unsafe { read_unaligned(p) })
    }
}

/// The big-endian 16-bit field at `k` of a span (see [`Packet::span`]).
///
/// # Safety
/// `k + 2` must not exceed the span's checked length.
#[inline(always)]
unsafe fn field_be16(p: *const u8, k: usize) -> u16 {
    // SAFETY: the caller keeps the read inside the checked span; no alignment is assumed.
    u16::from_be_bytes(unsafe { read_unaligned(p.add(k).cast::<[u8; 2]>()) })
}

/// The byte at `k` of a span.
///
/// # Safety
/// `k` must lie inside the span's checked length.
#[inline(always)]
unsafe fn field_u8(p: *const u8, k: usize) -> u8 {
    // SAFETY: as above.
    unsafe { *p.add(k) }
}

/// Where the network and transport headers are, after link-layer parsing.
#[derive(Clone, Copy)]
pub struct L3 {
    pub family: u8,
    /// IP protocol of the transport header (after IPv6 extension headers).
    pub proto: u8,
    pub l3_off: usize,
    pub l4_off: usize,
    pub vlan: [u16; MAX_VLAN_TAGS],
}

/// Ports and flags of a TCP or UDP header.
#[derive(Clone, Copy)]
pub struct L4 {
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u8,
    /// TCP sequence number as it sits in the packet (only compared for equality); 0 for UDP.
    pub seq: u32,
}

/// In-band tags walked at most, priority tags included: the kernel strips any number of
/// priority tags (VLAN id 0) in `__netif_receive_skb_core`, so the walk goes past them, to
/// this bound; only tags with a VLAN id count towards [`MAX_VLAN_TAGS`]. (Each tag the walk
/// may take multiplies what the verifier explores behind it: 4 here, with 8 in
/// [`port_past_limits`], keeps the programs far from its 1M-instruction limit.)
const VLAN_WALK: usize = 4;
/// Extension headers and tags walked at most by [`port_past_limits`], the look for a
/// destination port behind a header chain the strict parse gave up on.
const FAILSAFE_WALK: usize = 8;

/// Parses Ethernet (with up to [`MAX_VLAN_TAGS`] 802.1Q/802.1ad tags in total, counting a tag
/// the driver already moved into metadata: `meta_vlan`, its 12-bit id, 0 for none)
/// and the IP header(s). Priority tags (802.1p, VLAN id 0) are skipped the way the kernel's
/// receive path skips them (`__netif_receive_skb_core`: a tag with id 0 is cleared, and an
/// inner tag after it is untagged again): they neither count as tags nor appear in `vlan`.
/// A packet whose IP length field ends inside its TCP/UDP header is `TRUNC_L4`
/// ([`cut_short`]).
#[inline(always)]
pub fn parse_l3(pkt: &Packet, meta_vlan: u16) -> Result<L3, Reason> {
    parse_l3_as::<true>(pkt, meta_vlan)
}

/// [`parse_l3`], with or without (`WHOLE`) the check of the IP length field.
#[inline(always)]
fn parse_l3_as<const WHOLE: bool>(pkt: &Packet, meta_vlan: u16) -> Result<L3, Reason> {
    let (ethertype, off, vlan) = walk_vlan::<VLAN_WALK>(pkt, meta_vlan, MAX_VLAN_TAGS)?;
    match ethertype {
        ETH_P_IPV4 => parse_ipv4::<WHOLE>(pkt, off, vlan),
        ETH_P_IPV6 => parse_ipv6::<MAX_IPV6_EXT_HEADERS, WHOLE>(pkt, off, vlan),
        _ => Err(reason::NOT_IP),
    }
}

/// Walks at most `WALK` in-band tags, of which at most `max_tags` (metadata tag included)
/// may carry a VLAN id. Returns the EtherType after the tags, where it ends, and the ids.
#[inline(always)]
fn walk_vlan<const WALK: usize>(
    pkt: &Packet,
    meta_vlan: u16,
    max_tags: usize,
) -> Result<(u16, usize, [u16; MAX_VLAN_TAGS]), Reason> {
    let mut ethertype = pkt.be16_at(12, reason::TRUNC_ETH)?;
    let mut off = ETH_HLEN;
    let mut vlan = [0u16; MAX_VLAN_TAGS];
    // Stored whatever it is (0 when there is none), so that no branch splits the verifier's
    // walk of everything below into a tagged and an untagged copy.
    // `tags` is 1 for an id of 1..=4095 and 0 for none, by arithmetic: a comparison here
    // would be compiled to a branch.
    vlan[0] = meta_vlan & 0x0fff;
    let mut tags = (usize::from(vlan[0]) + 0x0fff) >> 12;
    // A bounded loop.
    for _ in 0..WALK {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let tci = pkt.be16_at(off, reason::TRUNC_VLAN)?;
        ethertype = pkt.be16_at(off + 2, reason::TRUNC_VLAN)?;
        off += VLAN_HLEN;
        let id = tci & 0x0fff;
        if id == 0 {
            continue;
        }
        if tags >= max_tags {
            return Err(reason::VLAN_TOO_DEEP);
        }
        if tags < MAX_VLAN_TAGS {
            vlan[tags] = id;
        }
        tags += 1;
    }
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        return Err(reason::VLAN_TOO_DEEP);
    }
    Ok((ethertype, off, vlan))
}

/// Where the strict parse gave up on a chain longer than its bounds (too many tags, too many
/// extension headers) or on a broken transport header: walks further (to [`FAILSAFE_WALK`]
/// tags and extension headers) and returns the transport protocol and destination port, if
/// the four bytes of TCP/UDP ports are there to read. Never a port from a non-first fragment.
#[inline(always)]
pub fn port_past_limits(pkt: &Packet, meta_vlan: u16) -> Option<(u8, u16)> {
    let (ethertype, off, vlan) =
        walk_vlan::<FAILSAFE_WALK>(pkt, meta_vlan, FAILSAFE_WALK + 1).ok()?;
    let l3 = match ethertype {
        ETH_P_IPV4 => parse_ipv4::<false>(pkt, off, vlan),
        ETH_P_IPV6 => parse_ipv6::<FAILSAFE_WALK, false>(pkt, off, vlan),
        _ => Err(reason::NOT_IP),
    }
    .ok()?;
    if l3.proto != IPPROTO_TCP && l3.proto != IPPROTO_UDP {
        return None;
    }
    let ports = pkt.bytes_at::<4>(l3.l4_off, reason::TRUNC_L4).ok()?;
    Some((l3.proto, u16::from_be_bytes([ports[2], ports[3]])))
}

/// The least of a transport header the parse reads: a TCP header without options, a UDP
/// header; 0 for any other protocol.
#[inline(always)]
pub fn l4_min(proto: u8) -> usize {
    match proto {
        IPPROTO_TCP => TCP_MIN_HLEN,
        IPPROTO_UDP => UDP_HLEN,
        _ => 0,
    }
}

/// Does an IP packet's own length end before a whole transport header? `len_field` is the
/// header's length field (IPv4 Total Length, IPv6 Payload Length), `ip_len` the bytes it
/// gives from the start of the IP header, `l4_rel` where the transport header starts, from
/// there. The kernel trims a frame to that length before anything reads the transport header,
/// so bytes past it (Ethernet padding, or bytes a sender put there) are not part of the
/// packet: read as the rest of a header, they would let a tiny first fragment of a SYN pose
/// as an ACK. A length field of 0 (GRO's BIG TCP writes it so) stands for the frame's length.
#[inline(always)]
pub fn cut_short(len_field: usize, ip_len: usize, l4_rel: usize, proto: u8) -> bool {
    len_field != 0 && ip_len < l4_rel + l4_min(proto)
}

/// Parses the IPv4 header at `off`. With `WHOLE`, a packet whose Total Length ends inside its
/// TCP/UDP header ([`cut_short`]) is `TRUNC_L4`, as a frame cut there is; without it (the
/// look for a port behind a chain, [`port_past_limits`]) the header is read to the frame's end.
#[inline(always)]
fn parse_ipv4<const WHOLE: bool>(
    pkt: &Packet,
    off: usize,
    vlan: [u16; MAX_VLAN_TAGS],
) -> Result<L3, Reason> {
    // The fixed part first, so that a short frame is "truncated", not "bad". (Reads are at
    // least two bytes wide: LLVM turns a one-byte bounds check into a form the verifier
    // cannot use.)
    let h = pkt.span::<IPV4_MIN_HLEN>(off, reason::TRUNC_IPV4)?;
    // SAFETY (all field reads below): offsets inside the 20 bytes just checked.
    let vihl = unsafe { field_u8(h, 0) };
    if vihl >> 4 != 4 {
        return Err(reason::BAD_IPV4);
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if ihl < IPV4_MIN_HLEN {
        return Err(reason::BAD_IPV4);
    }
    // Options must be present in full.
    if off + ihl > pkt.len() {
        return Err(reason::TRUNC_IPV4);
    }
    let frag = unsafe { field_be16(h, 6) };
    if frag & 0x1fff != 0 {
        return Err(reason::IPV4_FRAGMENT);
    }
    let proto = unsafe { field_u8(h, 9) };
    let total = unsafe { field_be16(h, 2) } as usize;
    if WHOLE && cut_short(total, total, ihl, proto) {
        return Err(reason::TRUNC_L4);
    }
    Ok(L3 {
        family: FAMILY_V4,
        proto,
        l3_off: off,
        l4_off: off + ihl,
        vlan,
    })
}

/// Parses the IPv6 header at `off` and up to `EXT` extension headers; `WHOLE` as for
/// [`parse_ipv4`], by the Payload Length.
#[inline(always)]
fn parse_ipv6<const EXT: usize, const WHOLE: bool>(
    pkt: &Packet,
    off: usize,
    vlan: [u16; MAX_VLAN_TAGS],
) -> Result<L3, Reason> {
    pkt.ptr_at::<[u8; IPV6_HLEN]>(off)
        .ok_or(reason::TRUNC_IPV6)?;
    let fixed = pkt.bytes_at::<4>(off + 4, reason::TRUNC_IPV6)?;
    let payload = usize::from(u16::from_be_bytes([fixed[0], fixed[1]]));
    let (next, cur) = skip_ipv6_ext::<EXT>(pkt, fixed[2], off + IPV6_HLEN)?;
    if WHOLE && cut_short(payload, IPV6_HLEN + payload, cur - off, next) {
        return Err(reason::TRUNC_L4);
    }
    Ok(L3 {
        family: FAMILY_V6,
        proto: next,
        l3_off: off,
        l4_off: cur,
        vlan,
    })
}

/// Skips at most `EXT` extension headers starting at `cur` (whose type is `next`): a bounded
/// loop. Returns the transport protocol and where its header starts.
#[inline(always)]
fn skip_ipv6_ext<const EXT: usize>(
    pkt: &Packet,
    mut next: u8,
    mut cur: usize,
) -> Result<(u8, usize), Reason> {
    for _ in 0..EXT {
        match next {
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS => {
                let hdr = pkt.bytes_at::<2>(cur, reason::TRUNC_IPV6_EXT)?;
                let len = (hdr[1] as usize + 1) * 8;
                if cur + len > pkt.len() {
                    return Err(reason::TRUNC_IPV6_EXT);
                }
                next = hdr[0];
                cur += len;
            }
            IPV6_AH => {
                let hdr = pkt.bytes_at::<2>(cur, reason::TRUNC_IPV6_EXT)?;
                let len = (hdr[1] as usize + 2) * 4;
                if cur + len > pkt.len() {
                    return Err(reason::TRUNC_IPV6_EXT);
                }
                next = hdr[0];
                cur += len;
            }
            IPV6_FRAGMENT => {
                let hdr = pkt.bytes_at::<8>(cur, reason::TRUNC_IPV6_EXT)?;
                let frag_off = u16::from_be_bytes([hdr[2], hdr[3]]) >> 3;
                if frag_off != 0 {
                    return Err(reason::IPV6_FRAGMENT);
                }
                next = hdr[0];
                cur += 8;
            }
            _ => break,
        }
    }
    if matches!(
        next,
        IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS | IPV6_AH | IPV6_FRAGMENT
    ) {
        return Err(reason::IPV6_EXT_LIMIT);
    }
    Ok((next, cur))
}

/// Does the parse stop for want of bytes (a truncation reason)? On tc, where only the linear
/// part of an skb is readable, that asks for a longer pull. (An IP length field that cuts the
/// transport header asks for none: more bytes would not change it.)
#[inline(always)]
pub fn runs_past_end(pkt: &Packet, meta_vlan: u16) -> bool {
    let r = match parse_l3_as::<false>(pkt, meta_vlan) {
        Ok(l3) => match parse_l4(pkt, &l3) {
            Ok(_) => return false,
            Err(r) => r,
        },
        Err(r) => r,
    };
    matches!(
        r,
        reason::TRUNC_ETH
            | reason::TRUNC_VLAN
            | reason::TRUNC_IPV4
            | reason::TRUNC_IPV6
            | reason::TRUNC_IPV6_EXT
            | reason::TRUNC_L4
    )
}

/// Parses the TCP or UDP header at `l3.l4_off`. Other protocols are `OTHER_L4`.
#[inline(always)]
pub fn parse_l4(pkt: &Packet, l3: &L3) -> Result<L4, Reason> {
    let off = l3.l4_off;
    match l3.proto {
        IPPROTO_TCP => {
            let h = pkt.span::<TCP_MIN_HLEN>(off, reason::TRUNC_L4)?;
            // SAFETY (field reads): offsets inside the 20 bytes just checked.
            if unsafe { field_u8(h, 12) } >> 4 < 5 {
                return Err(reason::BAD_TCP);
            }
            Ok(L4 {
                src_port: unsafe { field_be16(h, 0) },
                dst_port: unsafe { field_be16(h, 2) },
                tcp_flags: unsafe { field_u8(h, 13) },
                seq: u32::from_ne_bytes(unsafe { read_unaligned(h.add(4).cast::<[u8; 4]>()) }),
            })
        }
        IPPROTO_UDP => {
            let h = pkt.span::<UDP_HLEN>(off, reason::TRUNC_L4)?;
            // SAFETY (field reads): offsets inside the 8 bytes just checked.
            Ok(L4 {
                src_port: unsafe { field_be16(h, 0) },
                dst_port: unsafe { field_be16(h, 2) },
                tcp_flags: 0,
                seq: 0,
            })
        }
        _ => Err(reason::OTHER_L4),
    }
}

/// Source and destination addresses (IPv4 in the first 4 bytes, the rest zero).
#[inline(always)]
pub fn addresses(pkt: &Packet, l3: &L3) -> Result<(Addr, Addr), Reason> {
    Ok((address(pkt, l3, false)?, address(pkt, l3, true)?))
}

/// The source (`dst` false) or destination address: read separately, since an established
/// packet needs only its source.
#[inline(always)]
pub fn address(pkt: &Packet, l3: &L3, dst: bool) -> Result<Addr, Reason> {
    if l3.family == FAMILY_V4 {
        let off = if dst { 16 } else { 12 };
        pkt.addr_v4_at(l3.l3_off + off, reason::TRUNC_IPV4)
    } else {
        let off = if dst { 24 } else { 8 };
        pkt.addr_v6_at(l3.l3_off + off, reason::TRUNC_IPV6)
    }
}

/// The UDP datagram quoted by an ICMPv4 "port unreachable" (type 3 code 3) or ICMPv6
/// "port unreachable" (type 1 code 4) message, in its original (ingress) orientation.
pub struct Quoted {
    pub src: Addr,
    pub dst: Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

#[inline(always)]
pub fn icmp_port_unreachable(pkt: &Packet, l3: &L3) -> Option<Quoted> {
    let off = l3.l4_off;
    let icmp = pkt.bytes_at::<2>(off, reason::TRUNC_L4).ok()?;
    let inner = off + ICMP_HLEN;
    let (src, dst, ports_off) = if l3.proto == IPPROTO_ICMP && l3.family == FAMILY_V4 {
        if icmp != [3, 3] {
            return None;
        }
        let h = pkt
            .bytes_at::<IPV4_MIN_HLEN>(inner, reason::TRUNC_L4)
            .ok()?;
        let ihl = ((h[0] & 0x0f) as usize) * 4;
        if h[0] >> 4 != 4 || ihl < IPV4_MIN_HLEN || h[9] != IPPROTO_UDP {
            return None;
        }
        let word =
            |i: usize| Addr::from_v4_word(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
        (word(12), word(16), inner + ihl)
    } else if l3.proto == IPPROTO_ICMPV6 && l3.family == FAMILY_V6 {
        if icmp != [1, 4] {
            return None;
        }
        // The quoted datagram may carry extension headers, as ingress allows them.
        let next = pkt.bytes_at::<2>(inner + 6, reason::TRUNC_L4).ok()?[0];
        let src = pkt.addr_v6_at(inner + 8, reason::TRUNC_L4).ok()?;
        let dst = pkt.addr_v6_at(inner + 24, reason::TRUNC_L4).ok()?;
        let (next, l4) =
            skip_ipv6_ext::<MAX_IPV6_EXT_HEADERS>(pkt, next, inner + IPV6_HLEN).ok()?;
        if next != IPPROTO_UDP {
            return None;
        }
        (src, dst, l4)
    } else {
        return None;
    };
    let ports = pkt.bytes_at::<4>(ports_off, reason::TRUNC_L4).ok()?;
    Some(Quoted {
        src,
        dst,
        src_port: u16::from_be_bytes([ports[0], ports[1]]),
        dst_port: u16::from_be_bytes([ports[2], ports[3]]),
    })
}

/// The header facts of an IPv4 fragment (or of any IPv4 packet), for [`crate::fragments`].
pub struct Ipv4Frag {
    pub l3: L3,
    /// Fragment offset in 8-byte units.
    pub offset_units: u16,
    /// More Fragments flag.
    pub more: bool,
    /// Transport bytes the fragment carries: by its Total Length, within the frame (so that
    /// Ethernet padding after a tiny fragment is not read as its header).
    pub l4_len: usize,
}

/// Reads the IPv4 header behind the link layer (as [`parse_l3`] walks it) without stopping
/// at fragments: where the transport bytes start, the fragment offset and flag, and how many
/// transport bytes there are. `None` for anything but a well-formed IPv4 header.
#[inline(always)]
pub fn ipv4_fragment(pkt: &Packet, meta_vlan: u16) -> Option<Ipv4Frag> {
    let (ethertype, off, vlan) = walk_vlan::<VLAN_WALK>(pkt, meta_vlan, MAX_VLAN_TAGS).ok()?;
    if ethertype != ETH_P_IPV4 {
        return None;
    }
    let h = pkt.span::<IPV4_MIN_HLEN>(off, reason::TRUNC_IPV4).ok()?;
    // SAFETY (field reads): offsets inside the 20 bytes just checked.
    let vihl = unsafe { field_u8(h, 0) };
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if vihl >> 4 != 4 || ihl < IPV4_MIN_HLEN {
        return None;
    }
    let total = unsafe { field_be16(h, 2) } as usize;
    let frag = unsafe { field_be16(h, 6) };
    let proto = unsafe { field_u8(h, 9) };
    let l4_off = off + ihl;
    let end = core::cmp::min(off + total, pkt.len());
    Some(Ipv4Frag {
        l3: L3 {
            family: FAMILY_V4,
            proto,
            l3_off: off,
            l4_off,
            vlan,
        },
        offset_units: frag & 0x1fff,
        more: frag & 0x2000 != 0,
        l4_len: end.saturating_sub(l4_off),
    })
}

/// The big-endian 16-bit word at `off`, if it lies inside the packet.
#[inline(always)]
pub fn be16(pkt: &Packet, off: usize) -> Option<u16> {
    pkt.be16_at(off, reason::TRUNC_L4).ok()
}

/// The 4 bytes at `off` as they sit in the packet (a TCP sequence number, compared for
/// equality only), if they lie inside the packet.
#[inline(always)]
pub fn raw32(pkt: &Packet, off: usize) -> Option<u32> {
    pkt.bytes_at::<4>(off, reason::TRUNC_L4)
        .ok()
        .map(u32::from_ne_bytes)
}
