//! Per-group counters and the config the data path runs under.

use crate::MAX_GROUPS;

/// Number of entries in the per-CPU `GROUP_STATS` array.
pub const STATS_ENTRIES: u32 = (MAX_GROUPS as u32) * 4;

/// Index into `GROUP_STATS` for (group, protocol index, verdict).
#[inline(always)]
pub const fn stats_index(group: u8, proto_idx: u32, verdict: u8) -> u32 {
    ((group as u32) << 2) | ((proto_idx & 1) << 1) | ((verdict as u32) & 1)
}

/// Counters per (group, protocol, verdict), per CPU.
///
/// The invariant the data path keeps exactly, per entry:
/// `new_conns == events + sampled_out + lost_rate_limited + lost_group_budget + lost_ringbuf_full`
/// (denied entries never count `sampled_out`; allowed entries count `lost_rate_limited` and
/// `lost_group_budget` only in sweep-watched groups, whose every new connection is reported).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct GroupStats {
    pub packets: u64,
    pub bytes: u64,
    /// New connections (TCP without ACK/RST, or the first UDP packet of an idle 5-tuple). In
    /// a denied entry, also each flow found running after its source was revoked
    /// ([`EVENT_REVOKED`](crate::EVENT_REVOKED)): from then on it is a flagged connection of its own.
    pub new_conns: u64,
    /// Packets from sources not allowed, in a group in monitor mode.
    pub would_drop: u64,
    /// Packets from sources not allowed, dropped because the group enforces.
    pub dropped: u64,
    /// Events written to the ring buffer (flagged events for denied, flow records for allowed).
    pub events: u64,
    /// Events withheld by the per-source token bucket.
    pub lost_rate_limited: u64,
    /// Events the ring buffer had no room for.
    pub lost_ringbuf_full: u64,
    /// Allowed new connections not chosen by 1-in-N sampling.
    pub sampled_out: u64,
    /// Events withheld by the node-wide budget of the group (`Settings::events_per_group`),
    /// after the source's own budget let them through.
    pub lost_group_budget: u64,
}
const _: () = assert!(size_of::<GroupStats>() == 80);

impl GroupStats {
    /// Adds another CPU's counters to this one.
    pub fn accumulate(&mut self, o: &GroupStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.new_conns += o.new_conns;
        self.would_drop += o.would_drop;
        self.dropped += o.dropped;
        self.events += o.events;
        self.lost_rate_limited += o.lost_rate_limited;
        self.lost_ringbuf_full += o.lost_ringbuf_full;
        self.sampled_out += o.sampled_out;
        self.lost_group_budget += o.lost_group_budget;
    }
}

/// Runtime settings, in the one-slot `SETTINGS` array. Rewritten on config reload.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// A 5-tuple not seen for this long starts a new connection.
    pub flow_idle_ns: u64,
    /// Bit g set: group g enforces (drops sources not allowed).
    pub drop_mask: u64,
    /// Bit g set: every new connection of group g is reported (allowed ones too, under the
    /// per-source token bucket), so that userspace can detect sweeps across its ports.
    pub sweep_mask: u64,
    /// Sample allowed new connections 1-in-N; 0 = off.
    pub sample_one_in: u32,
    /// Flagged events per source per second (token bucket rate and burst); 0 = unlimited.
    pub events_per_sec: u32,
    /// Bumped by userspace whenever allowlists change; cached verdicts from another
    /// generation are void.
    pub generation: u32,
    /// Slots in the `SOURCES` table minus one (its size is a power of two).
    pub source_slot_mask: u32,
    /// Events per group per second, node-wide (the `GROUP_BUDGET` token buckets, one for
    /// flagged and one for allowed events, burst = rate); 0 = unlimited.
    pub events_per_group: u32,
    /// The generation of the latest config that may have revoked the source of any running
    /// flow: one that moved ports out of a group, a restart that adopted flows under replaced
    /// config maps, or a revocation of allowlist entries that did not fit as suspect ranges
    /// (0: none since these maps were made). After it, every denied segment that opens no
    /// connection looks the flow table up for a revoked flow.
    pub revoked_generation: u32,
    /// Suspect ranges in the allowlist tries (entries under [`SUSPECT_GROUP`]): the networks
    /// that configs took out of allowlists. Only a source inside one can have a flow that was
    /// allowed and is revoked now, so only its denied segments look the flow table up (the
    /// verdict cache keeps that bit per source). 0: none, and no lookup for them.
    pub suspect_ranges: u32,
    pub _pad0: u32,
}
const _: () = assert!(size_of::<Settings>() == 56);

/// The group byte of the suspect ranges in the allowlist tries ([`Settings::suspect_ranges`]):
/// no group has it (kernel group ids are below [`MAX_GROUPS`](crate::MAX_GROUPS)).
pub const SUSPECT_GROUP: u8 = 0xff;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PROTO_IDX_TCP, PROTO_IDX_UDP, VERDICT_ALLOWED, VERDICT_DENIED};

    #[test]
    fn stats_index_is_dense_and_in_range() {
        let mut seen = [false; STATS_ENTRIES as usize];
        for g in 0..MAX_GROUPS as u8 {
            for p in [PROTO_IDX_TCP, PROTO_IDX_UDP] {
                for v in [VERDICT_ALLOWED, VERDICT_DENIED] {
                    let i = stats_index(g, p, v) as usize;
                    assert!(!seen[i], "index {i} used twice");
                    seen[i] = true;
                }
            }
        }
        assert!(seen.iter().all(|s| *s));
    }
}
