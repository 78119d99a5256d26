//! The node-monitor data path: XDP ingress, tc ingress and tc egress programs that share one
//! parser ([`parse`]) and one classification path ([`ingress`], [`egress`]).
//!
//! Every program fails open: whatever cannot be parsed or classified passes untouched and is
//! counted by reason. Only a group configured with `action: drop` ever drops: packets from
//! sources outside its allowlist, and (failing closed) packets to its ports that the parser
//! gave up on while their destination port could still be read ([`ingress::fails_closed`]),
//! first fragments to its ports from such sources ([`fragments`]), and on egress the node's
//! acceptance of a connection from such a source that ingress never saw ([`unseen`]).
#![no_std]
#![no_main]
#![expect(
    clippy::needless_borrows_for_generic_args,
    reason = "map keys and values are passed by reference so they are not copied again on the 512-byte BPF stack"
)]
#![expect(
    clippy::needless_pass_by_value,
    reason = "aya's program macros hand each program its context by value"
)]

mod allow;
mod budget;
mod egress;
mod emit;
mod fragments;
mod handshake;
mod ingress;
mod maps;
mod parse;
mod peek;
mod revoke;
mod summary;
mod unseen;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use egress::egress;
use ingress::ingress;
use maps::{PORTS_TCP, PORTS_UDP, REASONS};
use node_monitor_common::{
    ACTION_DROPPED, ACTION_PASS, GROUP_NONE, HOOK_TC_EGRESS, HOOK_TC_INGRESS, HOOK_XDP, IPPROTO_TCP,
};
use parse::{Packet, Reason};
use peek::{HeaderCopy, PEEK_LEN, PEEK_MIN, Peek, peek};

/// Packet facts the entry points hand to the shared path.
pub(crate) struct Meta {
    pub ifindex: u32,
    pub pkt_len: u32,
    /// VLAN id the driver moved into metadata (tc only; 0 = none).
    pub meta_vlan: u16,
    pub hook: u8,
}

#[xdp]
pub fn nm_xdp_ingress(ctx: XdpContext) -> u32 {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let pkt_len = pkt.len() as u32;
    // Fail open: only an explicit drop decision drops.
    let action = match end_on_peek(peek(&pkt), pkt_len) {
        Some(action) => action,
        None => {
            // SAFETY: the kernel hands a valid xdp_md.
            let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
            let meta = Meta {
                ifindex,
                pkt_len,
                meta_vlan: 0,
                hook: HOOK_XDP,
            };
            ingress(&pkt, &meta)
        }
    };
    match action {
        ACTION_DROPPED => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

/// An empty XDP program: the baseline that benchmarks subtract. Never attached.
#[xdp]
pub fn nm_baseline(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[classifier]
pub fn nm_tc_ingress(ctx: TcContext) -> i32 {
    let action = match tc_peek(&ctx) {
        Some(action) => action,
        None => {
            let (pkt, meta) = tc_packet(&ctx, HOOK_TC_INGRESS);
            ingress(&pkt, &meta)
        }
    };
    // Fail open: only an explicit drop decision drops.
    match action {
        ACTION_DROPPED => TC_ACT_SHOT,
        _ => TC_ACT_OK,
    }
}

#[classifier]
pub fn nm_tc_egress(ctx: TcContext) -> i32 {
    let action = match egress::first_look(&Packet::new(ctx.data(), ctx.data_end())) {
        Some(action) => action,
        None => {
            let (pkt, meta) = tc_packet(&ctx, HOOK_TC_EGRESS);
            egress(&pkt, &meta)
        }
    };
    // Egress observes, and drops only a drop group's acceptance nobody saw asked for
    // (NM-1030, see `unseen`); anything else passes.
    match action {
        ACTION_DROPPED => TC_ACT_SHOT,
        _ => TC_ACT_OK,
    }
}

/// Bytes of headers pulled into the linear part of an skb before the first parse.
const TC_PULL_LEN: u32 = 128;
/// Bytes pulled at most when the header chain runs past the first pull and more of the
/// packet lies behind it: a 300-byte IPv6 option header, a chain of extension headers, or
/// IPv4 options behind tags must not hide the transport header from the parser, since the
/// kernel reads it wherever it lies.
const TC_PULL_MAX: u32 = 2048;

/// Ends an ingress packet on what [`peek`] found, when the full path would end it the same way:
/// the `ACTION_*` taken, or None for the full path (nothing is counted then).
#[inline(always)]
fn end_on_peek(found: Peek, pkt_len: u32) -> Option<u8> {
    match found {
        Peek::Full => None,
        Peek::Unwatched => {
            count_reason(node_monitor_common::reason::UNWATCHED);
            Some(ACTION_PASS)
        }
        Peek::Watched {
            group,
            port,
            family,
            flags,
            src,
        } => ingress::from_headers(group, port, family, flags, &src, pkt_len),
    }
}

/// tc ingress's first look ([`peek`]; the `ACTION_*` taken, or None for the full path). An
/// skb whose headers are linear is looked at in place. One whose headers lie outside the
/// linear part is looked at in a copy of them (`bpf_skb_load_bytes`), so that the packets
/// the full path would end early cost no pull: `bpf_skb_pull_data` on a non-linear skb
/// reallocates its head, the most expensive thing this path would do.
#[inline(always)]
fn tc_peek(ctx: &TcContext) -> Option<u8> {
    let len = ctx.len();
    let found = if ctx.data_end() - ctx.data() >= core::cmp::min(len, TC_PULL_LEN) as usize {
        peek(&Packet::new(ctx.data(), ctx.data_end()))
    } else if len < PEEK_MIN as u32 {
        Peek::Full
    } else {
        let n = core::cmp::min(len, PEEK_LEN as u32);
        // Not zeroed first: LLVM turns zeroing 74 bytes into a call to a byte-loop `memset`
        // (about 370 instructions, most of this path's cost on a live packet). The helper
        // writes the first `n` bytes, and only those are read.
        let mut h = core::mem::MaybeUninit::<[u8; PEEK_LEN]>::uninit();
        // SAFETY: `h` is writable for PEEK_LEN bytes and `n` lies in [PEEK_MIN, PEEK_LEN].
        let ret = unsafe {
            aya_ebpf::helpers::bpf_skb_load_bytes(ctx.skb.skb.cast(), 0, h.as_mut_ptr().cast(), n)
        };
        if ret == 0 {
            peek(&HeaderCopy {
                bytes: h.as_ptr().cast(),
                n: n as usize,
            })
        } else {
            Peek::Full
        }
    };
    end_on_peek(found, len)
}

#[inline(always)]
fn tc_packet(ctx: &TcContext, hook: u8) -> (Packet, Meta) {
    let skb = ctx.skb.skb;
    let len = ctx.len();
    // SAFETY: the kernel hands a valid __sk_buff; these fields are readable by sched_cls.
    let (ifindex, vlan_present, vlan_tci) =
        unsafe { ((*skb).ifindex, (*skb).vlan_present, (*skb).vlan_tci) };
    // The 12-bit id of a tag the stack took out, 0 for none; a priority tag (id 0) is
    // skipped, as the kernel's receive path does. Computed without a branch: the mask is all
    // ones when a tag is present. A branch here made the verifier walk every parse twice,
    // once with a known 0 and once with an unknown id (tc ingress 899k instructions against
    // 714k without it).
    let meta_vlan = (vlan_tci & 0x0fff & 0u32.wrapping_sub(vlan_present & 1)) as u16;
    // Headers of a non-linear skb may sit outside the directly readable part: pull them in.
    let want = core::cmp::min(len, TC_PULL_LEN);
    if ctx.data_end() - ctx.data() < want as usize {
        let _ = ctx.pull_data(want);
    }
    // One more pull, only on ingress (egress sees the node's own answers, whose headers its
    // stack wrote linear) and only for a non-linear skb whose headers the parse finds cut
    // short. `hook` is a constant at each call site, so egress carries no code for it.
    if hook == HOOK_TC_INGRESS
        && ((ctx.data_end() - ctx.data()) as u32) < len
        && parse::runs_past_end(&Packet::new(ctx.data(), ctx.data_end()), meta_vlan)
    {
        let _ = ctx.pull_data(core::cmp::min(len, TC_PULL_MAX));
    }
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    (
        pkt,
        Meta {
            ifindex,
            pkt_len: len,
            meta_vlan,
            hook,
        },
    )
}

#[inline(always)]
pub(crate) fn count_reason(r: Reason) {
    if let Some(c) = REASONS.get_ptr_mut(r) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

/// The group watching `port`. Each branch names its map directly: with a constant map the
/// verifier inlines the array lookup, while a map chosen at run time costs a helper call.
/// The entry's top bit (`PORT_RANGES_MARK`: the port has source ranges of its own, see
/// [`allow::port_source_verdict`]) is not part of the group id.
#[inline(always)]
pub(crate) fn port_group(proto: u8, port: u16) -> u8 {
    let g = if proto == IPPROTO_TCP {
        PORTS_TCP.get(u32::from(port))
    } else {
        PORTS_UDP.get(u32::from(port))
    };
    match g {
        Some(g) => *g & node_monitor_common::PORT_GROUP_MASK,
        None => GROUP_NONE,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach this; it exists only to satisfy no_std.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
