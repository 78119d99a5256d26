//! Sources revoked while their flows run: a reload that takes a source out of an allowlist
//! is enforced on its next packet by the verdict cache (its generation changes), and the
//! flows it opened while allowed are reported on their next packet, not when they go idle.
use node_monitor_common::{
    ANSWER_NONE, COMPLETES_NONE, EVENT_REVOKED, FlowKey, FlowState, GroupStats, Settings,
    VERDICT_ALLOWED, VERDICT_DENIED,
};

use crate::{
    Meta,
    budget::take_budget,
    emit::{EventFacts, send},
    ingress::withheld,
    parse::{L3, L4},
};

/// Called for a packet of flow `f` whose source is denied now. True once per flow: when the
/// flow's verdict was decided under an earlier config generation and was `allowed`. The
/// flow becomes a flagged one (its answer unknown: it was not tracked while allowed). Any
/// other flow from another generation just takes the current one.
#[inline(always)]
pub(crate) fn revoked(f: &mut FlowState, generation: u32) -> bool {
    if f.generation == generation {
        return false;
    }
    f.generation = generation;
    if f.verdict != VERDICT_ALLOWED {
        return false;
    }
    f.verdict = VERDICT_DENIED;
    f.flagged = 1;
    f.answer = ANSWER_NONE;
    true
}

/// Reports a revoked flow as a flagged connection of its own: counted in `new_conns` of the
/// denied entry `stats`, under the source's flagged budget (the first of each group in a
/// window always goes out) and the group's, withheld ones summarised like any other, so the
/// counter identity holds.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "inlined; a struct would be built on the 512-byte BPF stack"
)]
pub(crate) fn report(
    meta: &Meta,
    l3: &L3,
    l4: &L4,
    key: &FlowKey,
    now: u64,
    settings: &Settings,
    stats: &mut GroupStats,
    group: u8,
    action: u8,
) {
    stats.new_conns += 1;
    let budget = take_budget(key.family, &key.src_addr, now, settings, group, true);
    if withheld(
        budget,
        stats,
        group,
        key.family,
        &key.src_addr,
        key.dst_port,
    ) {
        return;
    }
    let ev = EventFacts {
        kind: EVENT_REVOKED,
        group,
        verdict: VERDICT_DENIED,
        action,
        answer: ANSWER_NONE,
        sampled: 0,
        completes: COMPLETES_NONE,
    };
    send(meta, l3, l4, key, now, &ev, stats);
}
