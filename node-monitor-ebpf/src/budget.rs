//! Event budgets: how many events a source may send.
use node_monitor_common::{Addr, Settings, source_budget_take, source_slot};

use crate::{allow::same_addr, maps::SOURCES};

/// May the source send this event? See [`source_budget_take`]: flagged and allowed events
/// have budgets of their own. A source that finds its slot held by another takes the slot
/// over as it is (buckets and reported groups): a takeover never brings a fresh bucket.
#[inline(always)]
pub(crate) fn take_budget(
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
