//! Event budgets: token buckets per source (`SOURCES`) and per group (`GROUP_BUDGET`).

use crate::Addr;

/// One slot of the per-source budget table `SOURCES`: an array shared by all CPUs,
/// direct-mapped by a hash of the source address ([`source_slot`]). A lookup is an inlined
/// array access rather than a hash-map helper call.
///
/// Two budgets per source, so that allowed traffic (a sweep-watched NodePort range open to
/// everyone) can never spend what the source's flagged events need; and a bit set of the
/// groups whose first flagged event of the current window has been reported, which no
/// bucket withholds ([`source_budget_take`]). A source that finds its slot held by another
/// takes it over as it is: buckets, window and bits (never a fresh, full bucket, so that two
/// sources alternating in one slot share one budget instead of each getting a new burst).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceSlot {
    pub addr: Addr,
    /// Budget of flagged (denied) events.
    pub flagged: TokenBucket,
    /// Budget of allowed events reported in sweep-watched groups.
    pub allowed: TokenBucket,
    /// Start of the current window ([`BUDGET_WINDOW_NS`]).
    pub window_ns: u64,
    /// Bit g set: group g's first flagged event of this window was reported.
    pub reported: u64,
    pub family: u8,
    pub _pad0: u8,
    pub _pad1: u16,
    pub _pad2: u32,
}
const _: () = assert!(size_of::<SourceSlot>() == 72);

/// The window in which the first flagged event of each (source, group) is always reported:
/// one second, the refill period of a bucket.
pub const BUDGET_WINDOW_NS: u64 = TOKEN_SCALE;

/// Decides whether an event of `group` from the slot's source may be sent. `flagged`:
/// a denied new connection, under the flagged bucket, and always sent when it is the
/// group's first flagged event of the window (it still takes a token if one is there, so the
/// burst of a source is `rate` plus at most one per further group). Otherwise an allowed
/// one, under the allowed bucket. `rate == 0` means unlimited. Pure, so host tests cover it.
#[inline(always)]
pub fn source_budget_take(
    slot: &mut SourceSlot,
    now_ns: u64,
    rate: u32,
    group: u8,
    flagged: bool,
) -> bool {
    if rate == 0 {
        return true;
    }
    if !flagged {
        return token_bucket_take(&mut slot.allowed, now_ns, rate);
    }
    if now_ns.saturating_sub(slot.window_ns) >= BUDGET_WINDOW_NS {
        slot.window_ns = now_ns;
        slot.reported = 0;
    }
    let token = token_bucket_take(&mut slot.flagged, now_ns, rate);
    let bit = 1u64 << (group & 63);
    if slot.reported & bit == 0 {
        slot.reported |= bit;
        return true;
    }
    token
}

/// Would [`source_budget_take`] say no to a flagged event of `group` at `now_ns`? Reads the
/// slot without changing it (whoever holds it: a source that takes a slot over keeps its
/// buckets and reported groups). The data path asks this before its flow-table lookup: a
/// denied SYN whose budget is spent inserts no entry, so the lookup can be skipped.
#[inline(always)]
pub fn source_budget_spent(slot: &SourceSlot, now_ns: u64, rate: u32, group: u8) -> bool {
    if rate == 0 {
        return false;
    }
    let fresh_window = now_ns.saturating_sub(slot.window_ns) >= BUDGET_WINDOW_NS;
    let reported = !fresh_window && slot.reported & (1u64 << (group & 63)) != 0;
    reported && token_bucket_empty(&slot.flagged, now_ns, rate)
}

/// Slots in the `SOURCES` table for a configured number of sources: the next power of two.
pub const fn source_slots(sources: u32) -> u32 {
    match sources.checked_next_power_of_two() {
        Some(n) => n,
        None => 1 << 31,
    }
}

/// The `SOURCES` slot of a source: a multiplicative hash of its address, masked to the table.
#[inline(always)]
pub fn source_slot(addr: &Addr, mask: u32) -> u32 {
    let x = addr.0[0] ^ addr.0[1];
    let h = (x ^ (x >> 32)) as u32;
    (u64::from(h).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32 & mask
}

/// A per-source token bucket; tokens are scaled by 1e9 (token-nanoseconds).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    pub tokens: u64,
    pub last_ns: u64,
}
const _: () = assert!(size_of::<TokenBucket>() == 16);

/// Token units per whole event.
pub const TOKEN_SCALE: u64 = 1_000_000_000;

/// Refills a token bucket and takes one token if there is one.
/// `rate` is events per second (also the burst); `rate == 0` means unlimited.
/// Returns true when the event may be sent. Pure, so host tests cover it.
#[inline(always)]
pub fn token_bucket_take(bucket: &mut TokenBucket, now_ns: u64, rate: u32) -> bool {
    if rate == 0 {
        return true;
    }
    let cap = u64::from(rate) * TOKEN_SCALE;
    let elapsed = now_ns.saturating_sub(bucket.last_ns);
    let tokens = if elapsed >= TOKEN_SCALE {
        cap
    } else {
        let refilled = bucket.tokens + elapsed * u64::from(rate);
        if refilled > cap { cap } else { refilled }
    };
    bucket.last_ns = now_ns;
    if tokens >= TOKEN_SCALE {
        bucket.tokens = tokens - TOKEN_SCALE;
        true
    } else {
        bucket.tokens = tokens;
        false
    }
}

/// Would [`token_bucket_take`] say no at `now_ns`? The same refill, without writing it.
#[inline(always)]
pub fn token_bucket_empty(bucket: &TokenBucket, now_ns: u64, rate: u32) -> bool {
    if rate == 0 {
        return false;
    }
    let elapsed = now_ns.saturating_sub(bucket.last_ns);
    if elapsed >= TOKEN_SCALE {
        return false;
    }
    let cap = u64::from(rate) * TOKEN_SCALE;
    let refilled = bucket.tokens + elapsed * u64::from(rate);
    let tokens = if refilled > cap { cap } else { refilled };
    tokens < TOKEN_SCALE
}

/// One slot of `GROUP_BUDGET` (indexed by group id): the node-wide event budget of a group,
/// in an array shared by all CPUs. Two buckets, as per source: allowed events reported in a
/// sweep-watched group never spend what the group's flagged events need; and a third for the
/// handshakes that denied sources complete after budgets withheld both their attempt and the
/// node's acceptance (`ACCEPTS`): spoofed sources never complete a handshake, so a spoofed
/// flood that empties the flagged bucket cannot empty this one. CPUs update a slot
/// without a lock: two CPUs that race may both take the last token (or one refill may be
/// lost), so the budget can be overshot by at most one event per CPU per race, never more.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupBudget {
    pub flagged: TokenBucket,
    pub allowed: TokenBucket,
    pub completed: TokenBucket,
    /// The kernel's jiffies when ingress last saw a denied source's new-connection candidate
    /// of this group, or egress recorded an acceptance nobody saw asked for (0: never): the
    /// gate in front of egress's `REFUSAL_TAGS` check of a refusal (RST, ICMP port
    /// unreachable), which can only answer a flagged attempt within [`REFUSAL_WAIT_JIFFIES`]
    /// of it (see [`refusal_may_answer`]). Jiffies, not the nanosecond clock: reading them
    /// costs a load, where the clock costs a paravirtual clock read on every refusal.
    pub flagged_jiffies: u64,
}
const _: () = assert!(size_of::<GroupBudget>() == 56);

/// How long after a group's last flagged attempt (`GroupBudget::flagged_jiffies`) egress
/// still checks the node's refusals (RST, ICMP port unreachable) against `REFUSAL_TAGS`:
/// 10,000 jiffies, 10 s at HZ=1000 and up to 100 s at HZ=100. The node refuses at once, so
/// this leaves a wide margin; after it, a refusal from the group's ports costs one array read
/// and one jiffies read. The gate only saves work: what is looked up is decided by the tags.
pub const REFUSAL_WAIT_JIFFIES: u64 = 10_000;

/// May a refusal sent at `now` (jiffies) answer a flagged attempt of a group whose last one
/// came at `flagged` (0: never)? Pure, so host tests cover it.
#[inline(always)]
pub const fn refusal_may_answer(flagged: u64, now: u64) -> bool {
    flagged != 0 && now.saturating_sub(flagged) <= REFUSAL_WAIT_JIFFIES
}

/// How recent a group's last flagged attempt (`GroupBudget::flagged_jiffies`) must be for an
/// empty flagged bucket to mean a flood is under way ([`flood_recent`]): 250 jiffies, 0.25 s
/// at HZ=1000 and up to 2.5 s at HZ=100. A bucket refills only when taken, so an empty one
/// alone says nothing of now; the last attempt's time does.
pub const FLOOD_HINT_JIFFIES: u64 = 250;

/// A group's flagged budget is spent by a flood while both halves hold: this one, from the
/// group's slot alone (the bucket has been taken: one never taken holds 0 tokens and means
/// nothing; its last take left it with less than one token; a flagged attempt is on record),
/// and [`flood_recent`], which needs the jiffies (the data path reads them only when this
/// half holds). While both do, ingress asks the allowlist's trie directly and leaves the
/// per-CPU verdict cache alone: a flood of new sources would miss it on every packet and
/// take a slot over each time, evicting the sources that come back. Only a hint for what to
/// read: the verdict is the trie's either way. Pure, so host tests cover it.
#[inline(always)]
pub const fn flood_spent(bucket: &TokenBucket, flagged: u64) -> bool {
    bucket.last_ns != 0 && bucket.tokens < TOKEN_SCALE && flagged != 0
}

/// [`flood_spent`]'s second half: the last flagged attempt (`flagged`, jiffies) came within
/// [`FLOOD_HINT_JIFFIES`] of `now` (a mark by another CPU after `now` was read counts as
/// recent).
#[inline(always)]
pub const fn flood_recent(flagged: u64, now: u64) -> bool {
    now.saturating_sub(flagged) <= FLOOD_HINT_JIFFIES
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The peeks agree with what taking would say, over a run of takes at varied spacing
    /// (bursts, refills, window turns, two groups), and never change the slot.
    #[test]
    fn spent_budgets_predict_refused_takes() {
        for rate in [1u32, 3, 20] {
            let mut slot = SourceSlot::default();
            let mut now = 5 * TOKEN_SCALE;
            let mut seen = (0, 0);
            for i in 0u64..5000 {
                now += (i * 7919) % (TOKEN_SCALE / 200) + if i % 97 == 0 { TOKEN_SCALE } else { 0 };
                let group = u8::from(i % 3 == 0) + 1;
                let before = slot;
                let spent = source_budget_spent(&slot, now, rate, group);
                let empty = token_bucket_empty(&slot.flagged, now, rate);
                assert_eq!(slot, before, "a peek writes nothing");
                let mut bucket = slot.flagged;
                assert_eq!(empty, !token_bucket_take(&mut bucket, now, rate));
                let took = source_budget_take(&mut slot, now, rate, group, true);
                assert_eq!(spent, !took, "rate {rate}, take {i}");
                if spent { seen.0 += 1 } else { seen.1 += 1 }
            }
            assert!(
                seen.0 > 0 && seen.1 > 0,
                "both outcomes exercised: {seen:?}"
            );
        }
        assert!(
            !source_budget_spent(&SourceSlot::default(), 1, 0, 1),
            "rate 0: unlimited"
        );
    }

    #[test]
    fn a_refusal_is_checked_only_near_a_flagged_attempt() {
        assert!(!refusal_may_answer(0, 5), "no flagged attempt yet");
        assert!(refusal_may_answer(100, 100));
        assert!(refusal_may_answer(100, 100 + REFUSAL_WAIT_JIFFIES));
        assert!(!refusal_may_answer(100, 101 + REFUSAL_WAIT_JIFFIES));
        // A read before the mark (another CPU wrote it meanwhile) is near, not far.
        assert!(refusal_may_answer(100, 99));
    }

    /// The hint follows a flood: off before any take and while tokens remain, on once the
    /// budget is spent and attempts keep coming, off again when they stop (the bucket still
    /// empty, as nothing refills it without a take).
    #[test]
    fn the_flood_hint_needs_a_spent_bucket_and_recent_attempts() {
        // Both halves, as the data path asks them.
        let flood_hint =
            |b: &TokenBucket, flagged, now| flood_spent(b, flagged) && flood_recent(flagged, now);
        let rate = 3;
        let mut bucket = TokenBucket::default();
        let j0 = 4_000;
        assert!(!flood_hint(&bucket, j0, j0), "never taken");
        let t0 = 10 * TOKEN_SCALE;
        assert!(token_bucket_take(&mut bucket, t0, rate));
        assert!(!flood_hint(&bucket, j0, j0), "two tokens left");
        assert!(token_bucket_take(&mut bucket, t0, rate));
        assert!(token_bucket_take(&mut bucket, t0, rate));
        assert!(flood_hint(&bucket, j0, j0), "the last token taken");
        assert!(!token_bucket_take(&mut bucket, t0, rate));
        assert!(
            flood_hint(&bucket, j0, j0 + FLOOD_HINT_JIFFIES),
            "still coming"
        );
        assert!(
            !flood_hint(&bucket, j0, j0 + FLOOD_HINT_JIFFIES + 1),
            "the attempts stopped"
        );
        assert!(!flood_hint(&bucket, 0, j0), "no flagged attempt recorded");
        assert!(
            flood_hint(&bucket, j0, j0 - 1),
            "marked by another CPU meanwhile"
        );
        // A refilled take leaves tokens: the hint is off again while attempts still come.
        assert!(token_bucket_take(&mut bucket, t0 + TOKEN_SCALE, rate));
        assert!(!flood_hint(&bucket, j0, j0));
    }

    #[test]
    fn token_bucket_allows_burst_then_rate() {
        let mut b = TokenBucket::default();
        let t0 = 10 * TOKEN_SCALE;
        // A fresh bucket (last_ns = 0, long ago) is full: `rate` events pass at once.
        let passed = (0..10).filter(|_| token_bucket_take(&mut b, t0, 5)).count();
        assert_eq!(passed, 5);
        // 200 ms later at 5/s exactly one more token has accrued.
        let t1 = t0 + 200_000_000;
        assert!(token_bucket_take(&mut b, t1, 5));
        assert!(!token_bucket_take(&mut b, t1, 5));
        // Rate 0 is unlimited.
        assert!((0..1000).all(|_| token_bucket_take(&mut b, t1, 0)));
    }

    #[test]
    fn source_slots_are_powers_of_two_and_spread() {
        assert_eq!(source_slots(256), 256);
        assert_eq!(source_slots(257), 512);
        assert_eq!(source_slots(16_777_216), 16_777_216);
        assert_eq!(source_slots(0), 1);
        let mask = source_slots(16_384) - 1;
        let mut used = [false; 16_384];
        for i in 0..4096u32 {
            let v4 = Addr::from_v4_word(u32::from_ne_bytes([198, 51, (i >> 8) as u8, i as u8]));
            let s = source_slot(&v4, mask);
            assert!(s <= mask);
            used[s as usize] = true;
        }
        // 4096 neighbouring addresses in a 16,384-slot table: few collisions.
        assert!(used.iter().filter(|u| **u).count() > 3500);
    }

    #[test]
    fn token_bucket_survives_clock_going_backwards() {
        let mut b = TokenBucket {
            tokens: 0,
            last_ns: 5 * TOKEN_SCALE,
        };
        assert!(!token_bucket_take(&mut b, 4 * TOKEN_SCALE, 1));
    }

    #[test]
    fn allowed_events_spend_no_flagged_budget() {
        let mut slot = SourceSlot::default();
        let t0 = 10 * TOKEN_SCALE;
        let allowed = (0..10)
            .filter(|_| source_budget_take(&mut slot, t0, 3, 9, false))
            .count();
        assert_eq!(allowed, 3);
        let flagged = (0..10)
            .filter(|_| source_budget_take(&mut slot, t0, 3, 1, true))
            .count();
        assert_eq!(flagged, 3);
    }

    #[test]
    fn first_flagged_event_of_each_group_per_window() {
        let mut slot = SourceSlot::default();
        let t0 = 10 * TOKEN_SCALE;
        // Group 1 spends the burst (its first event takes a token too).
        let g1 = (0..10)
            .filter(|_| source_budget_take(&mut slot, t0, 2, 1, true))
            .count();
        assert_eq!(g1, 2);
        // Groups 2 and 63: their first event passes with the bucket empty; the next does not.
        for g in [2, 63] {
            assert!(source_budget_take(&mut slot, t0, 2, g, true));
            assert!(!source_budget_take(&mut slot, t0, 2, g, true));
        }
        // Within the window, group 2 stays reported (100 ms refill no token at rate 2: 0.2).
        let t1 = t0 + 100_000_000;
        assert!(!source_budget_take(&mut slot, t1, 2, 2, true));
        // A new window: group 1 spends the refilled bucket, and group 2's first event of
        // this window passes again on an empty bucket.
        let t2 = t0 + BUDGET_WINDOW_NS;
        assert!(source_budget_take(&mut slot, t2, 2, 1, true));
        assert!(source_budget_take(&mut slot, t2, 2, 1, true));
        assert!(!source_budget_take(&mut slot, t2, 2, 1, true));
        assert!(source_budget_take(&mut slot, t2, 2, 2, true));
        assert!(!source_budget_take(&mut slot, t2, 2, 2, true));
        // Unlimited stays unlimited.
        assert!((0..100).all(|_| source_budget_take(&mut slot, t2, 0, 2, true)));
    }
}
