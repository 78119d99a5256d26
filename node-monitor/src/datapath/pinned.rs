//! The counters a running (or earlier) daemon left pinned, read without loading anything:
//! for `node-monitor audit`, which correlates open doors with the traffic seen.
use std::{collections::BTreeMap, path::Path};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use node_monitor_common::{ANSWER_ACCEPTED, FlowKey, FlowState, GroupName, GroupStats, map_name};

use super::{
    DatapathError, GroupIds, Result,
    counters::{GroupCounters, summed_counters},
};

fn open(dir: &Path, name: &'static str) -> Result<MapData> {
    let path = dir.join("maps").join(name);
    MapData::from_pin(&path).map_err(|error| DatapathError::Map { name, error })
}

/// Counters of every group named in the pinned `GROUP_NAMES`, from the pinned
/// `GROUP_STATS` under the pin directory `dir`, summed over CPUs.
pub fn pinned_group_counters(dir: &Path) -> Result<Vec<GroupCounters>> {
    let names = group_names(dir)?;
    let stats: PerCpuArray<MapData, GroupStats> =
        PerCpuArray::try_from(Map::PerCpuArray(open(dir, map_name::GROUP_STATS)?)).map_err(
            |error| DatapathError::Map {
                name: map_name::GROUP_STATS,
                error,
            },
        )?;
    summed_counters(&stats, &GroupIds::read(&names)?)
}

fn group_names(dir: &Path) -> Result<Array<MapData, GroupName>> {
    Array::try_from(Map::Array(open(dir, map_name::GROUP_NAMES)?)).map_err(|error| {
        DatapathError::Map {
            name: map_name::GROUP_NAMES,
            error,
        }
    })
}

/// The flagged connections the node accepted, among the flows the pinned `FLOWS` table still
/// holds: entries whose new connection was flagged (a source outside the allowlist) and that
/// egress saw answered with a SYN-ACK (or, for UDP, a reply). Counted by (group name, IP
/// protocol, destination port). The table is an LRU of recent flows: older acceptances may
/// have left it. One syscall per entry, for `node-monitor audit`.
pub fn pinned_accepted_flagged(dir: &Path) -> Result<BTreeMap<(String, u8, u16), u64>> {
    let ids = GroupIds::read(&group_names(dir)?)?;
    let err = |error| DatapathError::Map {
        name: map_name::FLOWS,
        error,
    };
    let flows: BpfHashMap<MapData, FlowKey, FlowState> =
        BpfHashMap::try_from(Map::LruHashMap(open(dir, map_name::FLOWS)?)).map_err(err)?;
    let mut out = BTreeMap::new();
    // An entry the programs evict during the walk ends it early or is skipped: what is read
    // is a lower bound, never an error.
    for (key, state) in flows.iter().flatten() {
        if state.flagged == 0 || state.answer != ANSWER_ACCEPTED {
            continue;
        }
        if let Some(group) = ids.name(state.group) {
            *out.entry((group.to_owned(), key.proto, key.dst_port))
                .or_insert(0) += 1;
        }
    }
    Ok(out)
}
