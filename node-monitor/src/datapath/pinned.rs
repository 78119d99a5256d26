//! The counters a running (or earlier) daemon left pinned, read without loading anything:
//! for `node-monitor audit`, which correlates open doors with the traffic seen.
use std::path::Path;

use aya::maps::{Array, Map, MapData, PerCpuArray};
use node_monitor_common::{GroupName, GroupStats, map_name};

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
    summed_counters(&stats, &GroupIds::read(&names)?)
}
