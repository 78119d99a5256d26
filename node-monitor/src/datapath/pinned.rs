//! The counters a running (or earlier) daemon left pinned, read without loading anything:
//! for `node-monitor audit`, which correlates open doors with the traffic seen.
use std::path::Path;

use aya::maps::{Array, Map, MapData, PerCpuArray};
use node_monitor_common::{GroupName, GroupStats, map_name, stats_index};

use super::{
    DatapathError, GroupIds, Result,
    counters::{GROUP_SLOTS, GroupCounters},
};

fn open(dir: &Path, name: &'static str) -> Result<MapData> {
    let path = dir.join("maps").join(name);
    MapData::from_pin(&path).map_err(|error| DatapathError::Map { name, error })
}

/// Counters of every group named in the pinned `GROUP_NAMES`, from the pinned
/// `GROUP_STATS` under the pin directory `dir`, summed over CPUs.
pub fn pinned_group_counters(dir: &Path) -> Result<Vec<GroupCounters>> {
    let names: Array<MapData, GroupName> =
        Array::try_from(Map::Array(open(dir, map_name::GROUP_NAMES)?)).map_err(|error| {
            DatapathError::Map {
                name: map_name::GROUP_NAMES,
                error,
            }
        })?;
    let stats: PerCpuArray<MapData, GroupStats> =
        PerCpuArray::try_from(Map::PerCpuArray(open(dir, map_name::GROUP_STATS)?)).map_err(
            |error| DatapathError::Map {
                name: map_name::GROUP_STATS,
                error,
            },
        )?;
    let ids = GroupIds::read(&names)?;
    let mut out = Vec::new();
    for (name, id) in ids.iter() {
        for (proto, pidx, verdict) in GROUP_SLOTS {
            let per_cpu = stats
                .get(&stats_index(id, pidx, verdict), 0)
                .map_err(|error| DatapathError::Map {
                    name: map_name::GROUP_STATS,
                    error,
                })?;
            let mut sum = GroupStats::default();
            for s in per_cpu.iter() {
                sum.accumulate(s);
            }
            out.push(GroupCounters {
                group: name.to_owned(),
                proto,
                verdict,
                stats: sum,
            });
        }
    }
    Ok(out)
}
