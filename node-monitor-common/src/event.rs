//! The records of the `EVENTS` ring buffer.

use crate::Addr;

/// One record in the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// The 5-tuple in ingress orientation (source = remote peer), also for answers.
    pub src_addr: Addr,
    pub dst_addr: Addr,
    pub ifindex: u32,
    /// Length of the packet on the wire (frame length).
    pub pkt_len: u32,
    pub src_port: u16,
    pub dst_port: u16,
    /// VLAN ids (12 bits), outer then inner; 0 = no tag.
    pub vlan_outer: u16,
    pub vlan_inner: u16,
    /// `EVENT_*`.
    pub kind: u8,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    pub tcp_flags: u8,
    pub group: u8,
    /// `VERDICT_*`.
    pub verdict: u8,
    /// `ACTION_*`.
    pub action: u8,
    /// `ANSWER_*` (answer events).
    pub answer: u8,
    /// `HOOK_*`.
    pub hook: u8,
    /// For `EVENT_SAMPLED`: 1 when 1-in-N sampling chose this connection as a flow record;
    /// 0 when it is reported only because its group is sweep-watched.
    pub sampled: u8,
    /// `FRAGMENT_*`: whether the event's packet was a first fragment, and whether its TCP
    /// flags could be read.
    pub fragment: u8,
    /// `COMPLETES_*`: for an [`EVENT_UNSEEN`](crate::EVENT_UNSEEN) from ingress, the peer's ACK
    /// that completed the handshake of an acceptance the budgets withheld, or of one that was
    /// reported; `COMPLETES_NONE` for every other event.
    pub completes: u8,
    pub _pad1: u32,
}
const _: () = assert!(size_of::<Event>() == 72);
