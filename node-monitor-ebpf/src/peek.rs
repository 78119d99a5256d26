//! A first look at the plain packet shapes, before the full parse: the packets that make up
//! nearly all live traffic (an unwatched port; an established connection's segments; a
//! flood's SYNs that a spent budget withholds) end here, on a handful of fixed-offset reads.
//!
//! The same look runs on the packet itself (XDP, and tc when the skb's headers are linear)
//! and on a copy of its headers (tc when they are not: [`HeaderCopy`]), through [`Headers`].
//! Its answers are those the full parse gives for the same bytes; anything it does not answer
//! takes the full path, which reads the same bytes again.
use node_monitor_common::{
    Addr, FAMILY_V4, FAMILY_V6, GROUP_NONE, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_RST, is_pure_syn,
};

use crate::{
    parse::{self, Packet},
    port_group,
};

/// Bytes a copy holds at most: Ethernet, IPv6 and TCP headers without options.
pub(crate) const PEEK_LEN: usize = 14 + 40 + 20;
/// Bytes the look needs at least: Ethernet, IPv4 and UDP headers. Every field it reads below
/// this offset (EtherType, IP version, fragment offset, protocol, source address) needs no
/// check of its own.
pub(crate) const PEEK_MIN: usize = 14 + 20 + 8;

/// What [`peek`] found.
pub(crate) enum Peek {
    /// Take the full path.
    Full,
    /// The full path would end it as unwatched.
    Unwatched,
    /// A TCP segment with ACK or RST (no new connection), or a pure SYN, to a port of `group`,
    /// from `src`: for [`crate::ingress::from_headers`].
    Watched {
        group: u8,
        port: u16,
        family: u8,
        /// The TCP flags.
        flags: u8,
        src: Addr,
    },
}

/// Header bytes [`peek`] can read.
pub(crate) trait Headers {
    /// Are the first `end` bytes readable?
    fn has(&self, end: usize) -> bool;
    /// The byte at `i`.
    ///
    /// # Safety
    /// `has(e)` must have held for some `e > i`.
    unsafe fn byte(&self, i: usize) -> u8;
    /// The source address of an IPv4 (at 26) or IPv6 (at 22) header behind plain Ethernet.
    ///
    /// # Safety
    /// `has(PEEK_MIN)` must have held.
    unsafe fn source(&self, family: u8) -> Addr;
}

impl Headers for Packet {
    #[inline(always)]
    fn has(&self, end: usize) -> bool {
        self.ptr_at::<u8>(end - 1).is_some()
    }

    #[inline(always)]
    unsafe fn byte(&self, i: usize) -> u8 {
        // SAFETY: the caller checked the bounds against the packet's end.
        unsafe { *self.raw(i) }
    }

    #[inline(always)]
    unsafe fn source(&self, family: u8) -> Addr {
        // SAFETY: 4 bytes at 26 or 16 at 22 lie below PEEK_MIN, which the caller checked.
        unsafe { address_at(self.raw(0), family, false) }
    }
}

/// The first bytes of a packet copied to the stack: `n` of them are written.
pub(crate) struct HeaderCopy {
    pub bytes: *const u8,
    pub n: usize,
}

impl Headers for HeaderCopy {
    #[inline(always)]
    fn has(&self, end: usize) -> bool {
        end <= self.n
    }

    #[inline(always)]
    unsafe fn byte(&self, i: usize) -> u8 {
        // SAFETY: the caller checked `i` against the bytes written; the verifier rejects a
        // read of stack bytes nobody wrote.
        unsafe { *self.bytes.add(i) }
    }

    #[inline(always)]
    unsafe fn source(&self, family: u8) -> Addr {
        // SAFETY: as for `Packet`.
        unsafe { address_at(self.bytes, family, false) }
    }
}

/// The source (`dst` false) or destination address of a plain shape's IP header at `p`.
///
/// # Safety
/// `p` must be readable for PEEK_MIN bytes (a source) or for the IP header (a destination:
/// 4 bytes at 30 for IPv4, below PEEK_MIN; 16 at 38 for IPv6, below the transport header
/// that [`plain`] checked).
#[inline(always)]
pub(crate) unsafe fn address_at(p: *const u8, family: u8, dst: bool) -> Addr {
    // SAFETY: the caller's.
    unsafe {
        if family == FAMILY_V4 {
            let off = if dst { 30 } else { 26 };
            Addr::from_v4_word(core::ptr::read_unaligned(p.add(off).cast::<u32>()))
        } else {
            let off = if dst { 38 } else { 22 };
            Addr(core::ptr::read_unaligned(p.add(off).cast::<[u64; 2]>()))
        }
    }
}

/// Where the transport header of a plain shape starts: no in-band tag; IPv4 without options
/// and not a non-first fragment, or IPv6 without extension headers; a whole TCP or UDP header,
/// inside the IP header's own length as well as the frame.
pub(crate) struct Plain {
    pub family: u8,
    pub proto: u8,
    /// Offset of the TCP or UDP header; `has(l4 + 20)` (TCP) or `has(l4 + 8)` (UDP) held.
    pub l4: usize,
}

/// The plain shape of `h`, or None for any other: those take the full parse.
#[inline(always)]
pub(crate) fn plain<H: Headers>(h: &H) -> Option<Plain> {
    if !h.has(PEEK_MIN) {
        return None;
    }
    // SAFETY: below PEEK_MIN, checked just above.
    let b = |i: usize| unsafe { h.byte(i) };
    // The IP header's length field, and the bytes of the header it does not count (IPv6's
    // fixed header).
    let (family, proto, l4, len_field, uncounted) = match u16::from_be_bytes([b(12), b(13)]) {
        0x0800 => {
            // Version 4, no options, fragment offset 0.
            if b(14) != 0x45 || u16::from_be_bytes([b(20), b(21)]) & 0x1fff != 0 {
                return None;
            }
            (FAMILY_V4, b(23), 34, u16::from_be_bytes([b(16), b(17)]), 0)
        }
        0x86dd => (FAMILY_V6, b(20), 54, u16::from_be_bytes([b(18), b(19)]), 40),
        _ => return None,
    };
    let whole = match proto {
        // SAFETY: the read follows the check.
        IPPROTO_TCP => h.has(l4 + 20) && unsafe { h.byte(l4 + 12) } >> 4 >= 5,
        IPPROTO_UDP => h.has(l4 + 8),
        _ => return None,
    };
    // A length field that ends inside the transport header (bytes past it posing as the rest
    // of one): the full parse's `TRUNC_L4`, by the full parse's own rule, where fragments are
    // looked at again.
    let len_field = usize::from(len_field);
    if parse::cut_short(
        len_field,
        uncounted + len_field,
        l4 - parse::ETH_HLEN,
        proto,
    ) {
        return None;
    }
    whole.then_some(Plain { family, proto, l4 })
}

/// The big-endian 16-bit word at `i`.
///
/// # Safety
/// As for [`Headers::byte`], for `i + 1`.
#[inline(always)]
pub(crate) unsafe fn be16<H: Headers>(h: &H, i: usize) -> u16 {
    // SAFETY: the caller's.
    unsafe { u16::from_be_bytes([h.byte(i), h.byte(i + 1)]) }
}

/// Ingress's first look: the plain shapes only ([`plain`]), answered as a port nobody watches
/// ([`Peek::Unwatched`]), or a TCP segment with ACK or RST, or a pure SYN, to a watched one
/// ([`Peek::Watched`]: an established connection's traffic, which ingress only counts, or a
/// denied attempt that a spent budget withholds, which it only counts and summarises; the
/// callee says whether it ended there). Anything else is [`Peek::Full`]. A VLAN tag the driver
/// moved into metadata plays no part in these answers, as it plays none in the full path's
/// for the same bytes.
#[inline(always)]
pub(crate) fn peek<H: Headers>(h: &H) -> Peek {
    let Some(Plain { family, proto, l4 }) = plain(h) else {
        return Peek::Full;
    };
    // SAFETY (reads): inside the transport header `plain` checked.
    let port = unsafe { be16(h, l4 + 2) };
    let group = port_group(proto, port);
    if group == GROUP_NONE {
        return Peek::Unwatched;
    }
    if proto != IPPROTO_TCP {
        return Peek::Full;
    }
    let flags = unsafe { h.byte(l4 + 13) };
    if !(flags & (TCP_ACK | TCP_RST) != 0 || is_pure_syn(flags)) {
        return Peek::Full;
    }
    Peek::Watched {
        group,
        port,
        family,
        flags,
        // SAFETY: `plain` checked PEEK_MIN.
        src: unsafe { h.source(family) },
    }
}
