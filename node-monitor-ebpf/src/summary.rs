//! Flood summaries: what the data path keeps instead of events while budgets withhold them.
//!
//! Every new connection whose event a budget withholds (the source's own budget or the
//! group's node-wide one) is summarised per group: its source goes into a HyperLogLog
//! sketch (the number of distinct sources) and into a space-saving table of the top
//! sources (with how many of theirs the source's own budget withheld), and its destination
//! port into a space-saving table of the top ports. Only the withheld path pays for this
//! (one hash, one register, two scans of 8 entries); the unwatched-port fast path and every
//! event that is sent never reach it. Events lost to a full ring buffer are not summarised
//! (they are counted; the ring is full because events are being sent). The choice of
//! "withheld" rather than "every denied new connection while over budget": the summary then
//! describes exactly what no event reports, and a source's attempts withheld by its own
//! budget are attributed to it even when its group is far from the group budget. The egress program counts the node's answers per group
//! ([`count_answer`]). Userspace merges the per-CPU copies and resets the sketches at the end
//! of each flood window (the answers are cumulative counters it diffs).
use node_monitor_common::{
    ANSWER_ACCEPTED, ANSWER_REFUSED, Addr, GROUP_NONE, IPPROTO_TCP, hll_add, source_hash,
    top_port_add, top_source_add,
};

use crate::maps::{FLOOD_ANSWERS, FLOOD_HLL, FLOOD_TOP};

/// A new connection of `group` from `src` to `dst_port` whose event was withheld;
/// `rate_limited`: by the source's own budget (else by the group's).
#[inline(always)]
pub(crate) fn withheld(group: u8, family: u8, src: &Addr, dst_port: u16, rate_limited: bool) {
    let index = u32::from(group);
    if let Some(regs) = FLOOD_HLL.get_ptr_mut(index) {
        // SAFETY: this CPU's copy of a per-CPU value; nothing else writes it meanwhile.
        hll_add(unsafe { &mut *regs }, source_hash(src));
    }
    if let Some(top) = FLOOD_TOP.get_ptr_mut(index) {
        // SAFETY: as above.
        let top = unsafe { &mut *top };
        top_source_add(&mut top.sources, src, family, rate_limited);
        top_port_add(&mut top.ports, dst_port);
    }
}

/// The node answered from a port of `group` (tc egress), over TCP: a SYN-ACK (accepted) or a
/// RST (refused), counted per group whether or not the attempt has a flow entry.
#[inline(always)]
pub(crate) fn count_answer(proto: u8, group: u8, answer: u8) {
    if proto != IPPROTO_TCP || group == GROUP_NONE {
        return;
    }
    let Some(c) = FLOOD_ANSWERS.get_ptr_mut(u32::from(group)) else {
        return;
    };
    // SAFETY: this CPU's copy of a per-CPU value; nothing else writes it meanwhile.
    let c = unsafe { &mut *c };
    if answer == ANSWER_ACCEPTED {
        c.accepted += 1;
    } else if answer == ANSWER_REFUSED {
        c.refused += 1;
    }
}
