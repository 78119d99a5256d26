//! Event budgets: how many events a source may send, and how many a group may send
//! node-wide.
use aya_ebpf::helpers::bpf_jiffies64;
use node_monitor_common::{
    Addr, FlowKey, Settings, flood_recent, flood_spent, refusal_may_answer, refusal_tag,
    source_budget_spent, source_budget_take, source_slot, token_bucket_empty, token_bucket_take,
};

use crate::{
    allow::same_addr,
    maps::{GROUP_BUDGET, REFUSAL_TAGS, SOURCES},
};

/// What the budgets decided for one new connection's event.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// Within both budgets: send it.
    Send,
    /// Withheld by the source's own budget (`lost_rate_limited`).
    RateLimited,
    /// Withheld by the group's node-wide budget (`lost_group_budget`).
    OverGroup,
}

/// May this event be sent? While the group's node-wide budget is spent, no: withheld by it,
/// and the source's slot is not touched ([`group_spent`]). Otherwise first the source's
/// budget ([`take_source_budget`]), then the group's ([`take_group_budget`]): a source that
/// its own budget stops never spends the group's tokens, so one noisy source cannot use up
/// what others need. Looking at the group first keeps a spoofed flood that has spent it from
/// reading and taking over a slot of the (shared, direct-mapped) source table per packet: a
/// cache miss each, and the real sources' slots kept. The cost: while the group's budget is
/// spent, a source whose own budget is spent too is counted under the group's.
#[inline(always)]
pub(crate) fn take_budget(
    family: u8,
    src: &Addr,
    now: u64,
    settings: &Settings,
    group: u8,
    flagged: bool,
) -> Budget {
    if flagged {
        mark_flagged(group);
    }
    if group_spent(now, settings, group, flagged) {
        return Budget::OverGroup;
    }
    if !take_source_budget(family, src, now, settings, group, flagged) {
        return Budget::RateLimited;
    }
    if !take_group_budget(now, settings, group, flagged) {
        return Budget::OverGroup;
    }
    Budget::Send
}

/// Is the group's node-wide bucket for this kind of event (flagged or allowed) empty at `now`?
/// Reads it, changes nothing.
#[inline(always)]
fn group_spent(now: u64, settings: &Settings, group: u8, flagged: bool) -> bool {
    match GROUP_BUDGET.get(u32::from(group)) {
        Some(slot) => token_bucket_empty(
            if flagged {
                &slot.flagged
            } else {
                &slot.allowed
            },
            now,
            settings.events_per_group,
        ),
        None => false,
    }
}

/// Would [`take_budget`] withhold a flagged event of `group` from `src` at `now`? Reads the
/// group's bucket, then (while it is not spent) the source's slot, as `take_budget` does;
/// changes nothing. Ingress asks before its flow-table
/// lookup for a denied SYN: whatever the answer, [`take_budget`] still decides, and only a
/// yes here lets the lookup be skipped (a withheld attempt inserts no entry anyway).
#[inline(always)]
pub(crate) fn spent(src: &Addr, now: u64, settings: &Settings, group: u8) -> bool {
    if group_spent(now, settings, group, true) {
        return true;
    }
    match SOURCES.get(source_slot(src, settings.source_slot_mask)) {
        Some(slot) => source_budget_spent(slot, now, settings.events_per_sec, group),
        None => false,
    }
}

/// May the source send this event? See [`source_budget_take`]: flagged and allowed events
/// have budgets of their own. A source that finds its slot held by another takes the slot
/// over as it is (buckets and reported groups): a takeover never brings a fresh bucket.
#[inline(always)]
fn take_source_budget(
    family: u8,
    src: &Addr,
    now: u64,
    settings: &Settings,
    group: u8,
    flagged: bool,
) -> bool {
    let rate = settings.events_per_sec;
    if rate == 0 {
        return true;
    }
    let Some(slot) = SOURCES.get_ptr_mut(source_slot(src, settings.source_slot_mask)) else {
        return true;
    };
    // SAFETY: a map value pointer shared by all CPUs; a race between CPUs can only mis-count
    // a token or hand the slot to one of two sources.
    let slot = unsafe { &mut *slot };
    if slot.family != family || !same_addr(&slot.addr, src) {
        slot.addr = *src;
        slot.family = family;
    }
    source_budget_take(slot, now, rate, group, flagged)
}

/// May the group send one more event node-wide? A token bucket per group and kind
/// (flagged, allowed) in one array slot shared by all CPUs, so that the budget holds
/// whichever CPUs a flood lands on (a per-CPU share of the rate would starve a group whose
/// traffic one CPU receives). Updates are not atomic: a race between CPUs can only let one
/// more event through or lose one refill; the budget stays bounded.
#[inline(always)]
fn take_group_budget(now: u64, settings: &Settings, group: u8, flagged: bool) -> bool {
    let rate = settings.events_per_group;
    if rate == 0 {
        return true;
    }
    let Some(slot) = GROUP_BUDGET.get_ptr_mut(u32::from(group)) else {
        return true;
    };
    // SAFETY: a map value pointer shared by all CPUs; see above for what a race can do.
    let slot = unsafe { &mut *slot };
    let bucket = if flagged {
        &mut slot.flagged
    } else {
        &mut slot.allowed
    };
    token_bucket_take(bucket, now, rate)
}

/// May the group report one more handshake completed past the budgets ([`crate::handshake`])?
/// The group's `completed` bucket, at the group's rate (unlimited when that is 0).
#[inline(always)]
pub(crate) fn take_completed_budget(now: u64, settings: &Settings, group: u8) -> bool {
    let rate = settings.events_per_group;
    if rate == 0 {
        return true;
    }
    let Some(slot) = GROUP_BUDGET.get_ptr_mut(u32::from(group)) else {
        return true;
    };
    // SAFETY: a map value pointer shared by all CPUs; see `take_group_budget`.
    token_bucket_take(unsafe { &mut (*slot).completed }, now, rate)
}

/// A flagged attempt of `group`: opens the gate in front of egress's check of the node's
/// refusals ([`refusal_gate_open`]). Every flagged attempt that takes a budget passes here;
/// ingress also marks a denied source's candidate that continues a flow on record.
#[inline(always)]
pub(crate) fn mark_flagged(group: u8) {
    if let Some(slot) = GROUP_BUDGET.get_ptr_mut(u32::from(group)) {
        // SAFETY: a map value pointer shared by all CPUs; a racing write stores another
        // recent time, which keeps the gate open just as well.
        unsafe { (*slot).flagged_jiffies = bpf_jiffies64() };
    }
}

/// Egress: may a refusal (RST, ICMP port unreachable) from a port of `group` answer a flagged
/// attempt, i.e. did `group` see one within `REFUSAL_WAIT_JIFFIES`? While it did not, egress
/// checks no tag: no flow of the group can be waiting for a refusal. Without the map slot it
/// says yes (the tags decide).
#[inline(always)]
pub(crate) fn refusal_gate_open(group: u8) -> bool {
    let Some(slot) = GROUP_BUDGET.get(u32::from(group)) else {
        return true;
    };
    let last = slot.flagged_jiffies;
    last != 0 && refusal_may_answer(last, unsafe { bpf_jiffies64() })
}

/// Is a flood spending `group`'s flagged budget right now
/// ([`node_monitor_common::flood_spent`] and `flood_recent`)? Then ingress leaves the per-CPU verdict cache alone
/// ([`crate::allow`]). One read of the group's slot (the line its new connections' budgets
/// read too), and of the jiffies only while the flagged bucket is spent. Without a group
/// budget (`events_per_group` 0) or the map slot: no.
#[inline(always)]
pub(crate) fn flooded(group: u8, settings: &Settings) -> bool {
    if settings.events_per_group == 0 {
        return false;
    }
    let Some(slot) = GROUP_BUDGET.get(u32::from(group)) else {
        return false;
    };
    flood_spent(&slot.flagged, slot.flagged_jiffies)
        && flood_recent(slot.flagged_jiffies, unsafe { bpf_jiffies64() })
}

/// A flagged flow recorded in the flow table (inserted, reopened, revoked, or continued by a
/// denied candidate): its tag goes into its `REFUSAL_TAGS` slot, so that egress looks the
/// node's refusal of it up ([`refusal_awaited`]).
#[inline(always)]
pub(crate) fn mark_flagged_flow(key: &FlowKey) {
    let (index, tag) = refusal_tag(key);
    if let Some(slot) = REFUSAL_TAGS.get_ptr_mut(index) {
        // SAFETY: a map value pointer shared by all CPUs; a racing write leaves one of two
        // tags, and the other flow's refusal is then reported as no answer (see
        // `REFUSAL_TAG_SLOTS`). Written only when it changes, so that a slot read by every
        // refusal is not dirtied by each retransmitted attempt.
        unsafe {
            if *slot != tag {
                *slot = tag;
            }
        }
    }
}

/// Egress: may a refusal with the ingress-oriented `key` answer a flagged flow on record? Only
/// when the key's slot holds its tag ([`mark_flagged_flow`]); without the map slot, yes (the
/// lookup decides).
#[inline(always)]
pub(crate) fn refusal_awaited(key: &FlowKey) -> bool {
    let (index, tag) = refusal_tag(key);
    match REFUSAL_TAGS.get(index) {
        Some(t) => *t == tag,
        None => true,
    }
}
