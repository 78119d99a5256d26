//! The shape (type, key and value sizes, entries) every map must have for a config's limits:
//! what the loader sizes maps to, and what a pinned map must match to be adopted.
use std::mem::size_of;

use aya::maps::{MapInfo, MapType};
use node_monitor_common::{
    ACCEPTS_ENTRIES, AllowKeyV4, AllowKeyV6, DEFAULT_ALLOW_ENTRIES, DEFAULT_FLOWS,
    DEFAULT_RINGBUF_BYTES, DEFAULT_SOURCES, FloodTop, FlowKey, FlowState, GROUP_NAME_BYTES,
    GroupAnswers, GroupBudget, GroupStats, HLL_REGISTERS, MAX_GROUPS, PORT_ALLOW_ENTRIES,
    PORT_TABLE_ENTRIES, PendingAccept, PortAllowKeyV4, PortAllowKeyV6, REFUSAL_TAG_SLOTS,
    STATS_ENTRIES, Settings, SourceSlot, VERDICT_SLOTS, VerdictSlot, map_name, reason,
    source_slots,
};

use crate::config::Limits;

/// Expected shape of a map, to decide whether a pinned one can be adopted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct MapShape {
    pub(super) ty: MapType,
    pub(super) key_size: u32,
    pub(super) value_size: u32,
    pub(super) max_entries: u32,
}

impl MapShape {
    fn new(ty: MapType, key_size: usize, value_size: usize, max_entries: u32) -> MapShape {
        MapShape {
            ty,
            key_size: key_size as u32,
            value_size: value_size as u32,
            max_entries,
        }
    }

    /// The shape of a map the kernel describes (a pinned one).
    pub(super) fn of(info: &MapInfo) -> MapShape {
        MapShape {
            ty: info.map_type().unwrap_or(MapType::Unspecified),
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
        }
    }
}

/// Every map of the object, by name, with the shape `limits` give it.
pub(super) fn expected_shapes(limits: &Limits) -> [(&'static str, MapShape); 21] {
    let s = MapShape::new;
    [
        (
            map_name::PORTS_TCP,
            s(MapType::Array, 4, 1, PORT_TABLE_ENTRIES),
        ),
        (
            map_name::PORTS_UDP,
            s(MapType::Array, 4, 1, PORT_TABLE_ENTRIES),
        ),
        (
            map_name::ALLOW_V4,
            s(
                MapType::LpmTrie,
                4 + size_of::<AllowKeyV4>(),
                1,
                limits.allow_entries,
            ),
        ),
        (
            map_name::ALLOW_V6,
            s(
                MapType::LpmTrie,
                4 + size_of::<AllowKeyV6>(),
                1,
                limits.allow_entries,
            ),
        ),
        (
            map_name::SETTINGS,
            s(MapType::Array, 4, size_of::<Settings>(), 1),
        ),
        (
            map_name::GROUP_STATS,
            s(
                MapType::PerCpuArray,
                4,
                size_of::<GroupStats>(),
                STATS_ENTRIES,
            ),
        ),
        (
            map_name::REASONS,
            s(MapType::PerCpuArray, 4, 8, reason::COUNT),
        ),
        (
            map_name::FLOWS,
            s(
                MapType::LruHash,
                size_of::<FlowKey>(),
                size_of::<FlowState>(),
                limits.flows,
            ),
        ),
        (
            map_name::SOURCES,
            s(
                MapType::Array,
                4,
                size_of::<SourceSlot>(),
                source_slots(limits.sources),
            ),
        ),
        (
            map_name::EVENTS,
            s(MapType::RingBuf, 0, 0, limits.ring_buffer_bytes),
        ),
        (
            map_name::GROUP_NAMES,
            s(MapType::Array, 4, GROUP_NAME_BYTES, MAX_GROUPS as u32),
        ),
        (
            map_name::VERDICTS,
            s(
                MapType::PerCpuArray,
                4,
                size_of::<VerdictSlot>(),
                VERDICT_SLOTS,
            ),
        ),
        (
            map_name::GROUP_BUDGET,
            s(
                MapType::Array,
                4,
                size_of::<GroupBudget>(),
                MAX_GROUPS as u32,
            ),
        ),
        (
            map_name::FLOOD_HLL,
            s(MapType::PerCpuArray, 4, HLL_REGISTERS, MAX_GROUPS as u32),
        ),
        (
            map_name::FLOOD_TOP,
            s(
                MapType::PerCpuArray,
                4,
                size_of::<FloodTop>(),
                MAX_GROUPS as u32,
            ),
        ),
        (
            map_name::FLOOD_ANSWERS,
            s(
                MapType::PerCpuArray,
                4,
                size_of::<GroupAnswers>(),
                MAX_GROUPS as u32,
            ),
        ),
        (
            map_name::ACCEPTS,
            s(
                MapType::LruHash,
                size_of::<FlowKey>(),
                size_of::<PendingAccept>(),
                ACCEPTS_ENTRIES,
            ),
        ),
        (map_name::ACCEPT_GATE, s(MapType::Array, 4, 8, 1)),
        (
            map_name::REFUSAL_TAGS,
            s(MapType::Array, 4, 4, REFUSAL_TAG_SLOTS),
        ),
        (
            map_name::PORT_ALLOW_V4,
            s(
                MapType::LpmTrie,
                4 + size_of::<PortAllowKeyV4>(),
                1,
                PORT_ALLOW_ENTRIES,
            ),
        ),
        (
            map_name::PORT_ALLOW_V6,
            s(
                MapType::LpmTrie,
                4 + size_of::<PortAllowKeyV6>(),
                1,
                PORT_ALLOW_ENTRIES,
            ),
        ),
    ]
}

/// The size the eBPF object declares for the maps that `limits` can resize (0 for the
/// others): the loader overrides a map's size only when it differs.
pub(super) fn default_max_entries(name: &str) -> u32 {
    match name {
        n if n == map_name::FLOWS => DEFAULT_FLOWS,
        n if n == map_name::SOURCES => source_slots(DEFAULT_SOURCES),
        n if n == map_name::ALLOW_V4 || n == map_name::ALLOW_V6 => DEFAULT_ALLOW_ENTRIES,
        n if n == map_name::EVENTS => DEFAULT_RINGBUF_BYTES,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn shape<'a>(shapes: &'a [(&'static str, MapShape)], name: &str) -> &'a MapShape {
        &shapes
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no shape for {name}"))
            .1
    }

    #[test]
    fn every_map_once_with_a_name_the_kernel_keeps_whole() {
        let shapes = expected_shapes(&Limits::DEFAULT);
        let names: BTreeSet<&str> = shapes.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), shapes.len(), "a map is listed twice");
        for name in names {
            assert!(
                name.len() < 16,
                "{name}: the kernel truncates names of 16 bytes or more"
            );
        }
    }

    #[test]
    fn resizable_maps_follow_the_limits() {
        let limits = Limits {
            flows: 4096,
            sources: 1000,
            ring_buffer_bytes: 1 << 16,
            allow_entries: 77,
            ..Limits::DEFAULT
        };
        let shapes = expected_shapes(&limits);
        assert_eq!(shape(&shapes, map_name::FLOWS).max_entries, 4096);
        assert_eq!(shape(&shapes, map_name::EVENTS).max_entries, 1 << 16);
        assert_eq!(shape(&shapes, map_name::ALLOW_V4).max_entries, 77);
        assert_eq!(shape(&shapes, map_name::ALLOW_V6).max_entries, 77);
        // The source table is a power of two (the programs mask a hash with it).
        let sources = shape(&shapes, map_name::SOURCES).max_entries;
        assert_eq!(sources, source_slots(1000));
        assert!(sources.is_power_of_two() && sources >= 1000);
        // Fixed maps do not move with the limits.
        let fixed = expected_shapes(&Limits::DEFAULT);
        for name in [
            map_name::PORTS_TCP,
            map_name::PORTS_UDP,
            map_name::SETTINGS,
            map_name::GROUP_STATS,
            map_name::REASONS,
            map_name::GROUP_NAMES,
            map_name::VERDICTS,
        ] {
            assert_eq!(shape(&shapes, name), shape(&fixed, name), "{name}");
        }
    }

    #[test]
    fn a_change_of_limits_changes_the_shape_so_the_pin_is_replaced() {
        let a = expected_shapes(&Limits::DEFAULT);
        let b = expected_shapes(&Limits {
            flows: Limits::DEFAULT.flows * 2,
            ..Limits::DEFAULT
        });
        assert_ne!(shape(&a, map_name::FLOWS), shape(&b, map_name::FLOWS));
        // Limits that no map holds (timeouts, rates) leave every shape alone.
        let c = expected_shapes(&Limits {
            answer_timeout_ms: 5,
            flow_idle_timeout_ms: 7,
            events_per_source_per_second: 0,
            ..Limits::DEFAULT
        });
        assert_eq!(a, c);
    }

    #[test]
    fn key_and_value_sizes_match_the_shared_types() {
        let shapes = expected_shapes(&Limits::DEFAULT);
        // LPM trie keys: a u32 prefix length, then the group byte and the address.
        assert_eq!(shape(&shapes, map_name::ALLOW_V4).key_size, 4 + 1 + 4);
        assert_eq!(shape(&shapes, map_name::ALLOW_V6).key_size, 4 + 1 + 16);
        assert_eq!(shape(&shapes, map_name::PORTS_TCP).max_entries, 65_536);
        assert_eq!(shape(&shapes, map_name::PORTS_TCP).value_size, 1);
        let stats = shape(&shapes, map_name::GROUP_STATS);
        assert_eq!(stats.ty, MapType::PerCpuArray);
        assert_eq!(stats.value_size as usize, size_of::<GroupStats>());
        assert_eq!(
            shape(&shapes, map_name::GROUP_NAMES).max_entries as usize,
            MAX_GROUPS
        );
        // A source slot: address, two token buckets (flagged, allowed), the window and its
        // reported groups. A pin of another slot size (the older one-bucket 40 bytes) no
        // longer fits and is replaced.
        let sources = shape(&shapes, map_name::SOURCES);
        assert_eq!(
            (sources.ty, sources.key_size, sources.value_size),
            (MapType::Array, 4, 72)
        );
        let events = shape(&shapes, map_name::EVENTS);
        assert_eq!(
            (events.ty, events.key_size, events.value_size),
            (MapType::RingBuf, 0, 0)
        );
    }

    #[test]
    fn the_default_limits_are_the_sizes_compiled_into_the_object() {
        // With the default limits the loader overrides no size: the object's own sizes and
        // the config's defaults agree.
        for (name, shape) in expected_shapes(&Limits::DEFAULT) {
            let compiled = default_max_entries(name);
            assert!(
                compiled == 0 || compiled == shape.max_entries,
                "{name}: object says {compiled}, default limits say {}",
                shape.max_entries
            );
        }
        assert_eq!(default_max_entries(map_name::FLOWS), DEFAULT_FLOWS);
        assert_eq!(default_max_entries(map_name::PORTS_TCP), 0);
    }
}
