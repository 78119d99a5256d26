//! Allowlist lookups: the per-CPU verdict cache in front of the LPM tries, and the source
//! ranges of the ports that have their own (NodePorts whose Service sets
//! `loadBalancerSourceRanges`).
use aya_ebpf::maps::lpm_trie::Key;
use node_monitor_common::{
    Addr, FAMILY_V4, IPPROTO_TCP, PORT_KEY_BITS, PORT_RANGES_ANY, PORT_RANGES_MARK, SUSPECT_GROUP,
    Settings, port_key_v4, verdict_slot,
};

use crate::{
    budget::flooded,
    maps::{ALLOW_V4, ALLOW_V6, PORT_ALLOW_V4, PORT_ALLOW_V6, PORTS_TCP, PORTS_UDP, VERDICTS},
};

/// What the allowlists say of a source for a group.
#[derive(Clone, Copy)]
pub(crate) struct SourceVerdict {
    /// In the group's allowlist.
    pub allowed: bool,
    /// In a suspect range (`Settings::suspect_ranges`): a config took it out of an allowlist,
    /// so a flow it opened while allowed may still run.
    pub suspect: bool,
}

/// [`source_verdict`] for a packet to `port` (protocol `proto`) of `group`: when the port's
/// table entry carries `PORT_RANGES_MARK`, a source the group allows must also lie in the
/// port's own source ranges (or in those every marked port accepts). The cache holds the
/// group's verdict only; the port's ranges are asked of their trie, and only for a marked
/// port and a source its group allows: an unmarked port pays one inlined array read when the
/// group allows the source, nothing when it does not.
#[inline(always)]
pub(crate) fn port_source_verdict(
    group: u8,
    proto: u8,
    port: u16,
    family: u8,
    src: &Addr,
    settings: &Settings,
) -> SourceVerdict {
    let mut v = source_verdict(group, family, src, settings);
    if v.allowed && port_denies(proto, port, family, src) {
        v.allowed = false;
    }
    v
}

/// [`port_source_verdict`]'s `allowed` alone, for the paths that need nothing else of the
/// verdict (first fragments, egress's acceptances nobody saw asked for), asked in the other
/// order: the port's ranges first (the [`port_denies`] subprogram), then the group. The
/// verifier then meets the rest of those paths in one more state (the port denies), not in
/// one more per path through the verdict cache and the group's trie that ends in "allowed",
/// as `port_source_verdict` there would cost (about 10,700 more verified instructions on tc
/// ingress, past 900,000). Those paths are rare: a marked port's ranges asked of a source its
/// group denies cost nothing worth saving.
#[inline(always)]
pub(crate) fn port_allows(
    group: u8,
    proto: u8,
    port: u16,
    family: u8,
    src: &Addr,
    settings: &Settings,
) -> bool {
    !port_denies(proto, port, family, src) && source_verdict(group, family, src, settings).allowed
}

/// Is `port` marked and `src` outside its ranges? A BPF subprogram of its own (not inlined):
/// the verifier then meets the rest of the ingress path in two states (the port's ranges
/// allow or deny), not in one per path through the lookups, which keeps tc ingress under the
/// kernel's 1M-instruction limit.
#[inline(never)]
fn port_denies(proto: u8, port: u16, family: u8, src: &Addr) -> bool {
    port_marked(proto, port) && !port_allowed(proto, port, family, src)
}

/// Does `port`'s table entry carry `PORT_RANGES_MARK`? Each branch names its map, as
/// `port_group` does, so that the verifier inlines the array read.
#[inline(always)]
fn port_marked(proto: u8, port: u16) -> bool {
    let e = if proto == IPPROTO_TCP {
        PORTS_TCP.get(u32::from(port))
    } else {
        PORTS_UDP.get(u32::from(port))
    };
    matches!(e, Some(e) if *e & PORT_RANGES_MARK != 0)
}

/// Is `src` in `port`'s source ranges, or in the ranges every marked port accepts? One key
/// on the stack, rewritten for the second lookup.
#[inline(always)]
fn port_allowed(proto: u8, port: u16, family: u8, src: &Addr) -> bool {
    if family == FAMILY_V4 {
        let a = src.v4_octets();
        let mut key = Key::new(PORT_KEY_BITS + 32, port_key_v4(proto, port, a));
        if PORT_ALLOW_V4.get(&key).is_some() {
            return true;
        }
        key.data = port_key_v4(PORT_RANGES_ANY, 0, a);
        PORT_ALLOW_V4.get(&key).is_some()
    } else {
        let p = port.to_be_bytes();
        let mut data = [0u8; 19];
        data[0] = proto;
        data[1] = p[0];
        data[2] = p[1];
        data[3..].copy_from_slice(&src.octets());
        let mut key = Key::new(PORT_KEY_BITS + 128, data);
        if PORT_ALLOW_V6.get(&key).is_some() {
            return true;
        }
        key.data[0] = PORT_RANGES_ANY;
        key.data[1] = 0;
        key.data[2] = 0;
        PORT_ALLOW_V6.get(&key).is_some()
    }
}

/// Is `src` in `group`'s allowlist, and does it lie in a suspect range? Answers are cached
/// per CPU, per source slot and per config generation; the allowlist's trie is asked only on
/// a miss, the suspect ranges' when the source takes its cache slot, and only while there are
/// suspect ranges. While a flood spends the group's flagged budget ([`flooded`]) the cache is
/// neither read nor written and both tries are asked: a spoofed flood's sources miss it
/// anyway, each read of a random slot of this CPU's 384 KiB copy is a cache miss of its own,
/// and each takeover would evict a source that comes back. Live, that took denied SYNs from
/// random sources from about +420 to +320 ns on XDP and +560 to +370 on tc (BENCHMARKS.md);
/// reading the slot but not taking it over saved nothing. The price: every other packet of
/// the group reads the group's budget slot (one line, rarely written but by a flood), and
/// during a flood its allowed sources pay the trie. Callers ask [`port_source_verdict`] or
/// [`port_allows`], so that a port's own source ranges hold on every path.
#[inline(always)]
fn source_verdict(group: u8, family: u8, src: &Addr, settings: &Settings) -> SourceVerdict {
    let generation = settings.generation;
    let bit = 1u64 << (group & 63);
    // While a flood spends the group's flagged budget, the tries are asked directly.
    let slot = if flooded(group, settings) {
        None
    } else {
        VERDICTS.get_ptr_mut(verdict_slot(src))
    };
    let Some(slot) = slot else {
        return SourceVerdict {
            allowed: lpm_allowed(group, family, src),
            suspect: suspect(family, src, settings),
        };
    };
    // SAFETY: this CPU's copy of a per-CPU value; nothing else writes it meanwhile.
    let slot = unsafe { &mut *slot };
    let same = slot.generation == generation && slot.family == family && same_addr(&slot.addr, src);
    if same && slot.known & bit != 0 {
        return SourceVerdict {
            allowed: slot.allowed & bit != 0,
            suspect: slot.suspect != 0,
        };
    }
    let allowed = lpm_allowed(group, family, src);
    let allowed_bit = if allowed { bit } else { 0 };
    if same {
        slot.known |= bit;
        slot.allowed |= allowed_bit;
    } else {
        // Direct-mapped: this source takes the slot over. (Every field is written with a
        // computed value: constant zeros would be merged into a call to a byte-loop memset.)
        slot.addr = *src;
        slot.family = family;
        slot.generation = generation;
        slot.known = bit;
        slot.allowed = allowed_bit;
        slot.suspect = u8::from(suspect(family, src, settings));
    }
    SourceVerdict {
        allowed,
        suspect: slot.suspect != 0,
    }
}

/// Does `src` lie in a suspect range? One more trie lookup, only while there are any.
#[inline(always)]
fn suspect(family: u8, src: &Addr, settings: &Settings) -> bool {
    settings.suspect_ranges != 0 && lpm_allowed(SUSPECT_GROUP, family, src)
}

/// Compares two addresses as two 64-bit words (no call to memcmp).
#[inline(always)]
pub(crate) fn same_addr(a: &Addr, b: &Addr) -> bool {
    a.0[0] == b.0[0] && a.0[1] == b.0[1]
}

#[inline(always)]
fn lpm_allowed(group: u8, family: u8, src: &Addr) -> bool {
    if family == FAMILY_V4 {
        let a = src.v4_octets();
        let key = Key::new(8 + 32, [group, a[0], a[1], a[2], a[3]]);
        ALLOW_V4.get(&key).is_some()
    } else {
        let mut data = [0u8; 17];
        data[0] = group;
        data[1..].copy_from_slice(&src.octets());
        ALLOW_V6.get(&Key::new(8 + 128, data)).is_some()
    }
}
