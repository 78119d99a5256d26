//! Kernel group ids: which id each configured group gets, kept stable across reloads and
//! restarts through the pinned `GROUP_NAMES` map (id → name).
use std::collections::{BTreeMap, BTreeSet};

use aya::maps::{Array, MapData};
use node_monitor_common::{GROUP_NAME_BYTES, GroupName, MAX_GROUPS, map_name};

use super::{Datapath, DatapathError, Result};
use crate::config::Config;

/// Stable kernel ids for group names.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct GroupIds(BTreeMap<String, u8>);

impl GroupIds {
    /// Keeps the ids of names that `prev` knew, gives new names the lowest free ids, and
    /// returns the ids that were newly handed out (their counters must start at zero).
    /// A new name gets an id that no group of `prev` held if there is one: the id of a group
    /// this same change removes still has its ports and counters in the kernel until the new
    /// tables are written, so it is handed out again only when no other is left.
    /// Err carries the number of ids there are, when the config has more groups.
    pub(crate) fn assign(prev: &GroupIds, cfg: &Config) -> Result<(GroupIds, Vec<u8>), usize> {
        let mut ids = BTreeMap::new();
        for g in &cfg.groups {
            if let Some(id) = prev.0.get(&g.name) {
                ids.insert(g.name.clone(), *id);
            }
        }
        let held_before: BTreeSet<u8> = prev.0.values().copied().collect();
        let mut fresh = Vec::new();
        for g in &cfg.groups {
            if ids.contains_key(&g.name) {
                continue;
            }
            let used: BTreeSet<u8> = ids.values().copied().collect();
            let free = |i: &u8| !used.contains(i);
            let id = (1..MAX_GROUPS as u8)
                .filter(free)
                .find(|i| !held_before.contains(i))
                .or_else(|| (1..MAX_GROUPS as u8).find(free))
                .ok_or(MAX_GROUPS - 1)?;
            ids.insert(g.name.clone(), id);
            fresh.push(id);
        }
        Ok((GroupIds(ids), fresh))
    }
    pub fn id(&self, name: &str) -> Option<u8> {
        self.0.get(name).copied()
    }
    pub fn name(&self, id: u8) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.as_str())
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, u8)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The ids recorded in `GROUP_NAMES` slots `1..MAX_GROUPS` (`slots[i]` is id `i + 1`);
    /// empty and unreadable slots hold no group.
    fn from_slots(slots: impl IntoIterator<Item = (u8, GroupName)>) -> GroupIds {
        let mut ids = BTreeMap::new();
        for (id, slot) in slots {
            if let Some(name) = slot_name(&slot) {
                ids.insert(name.to_owned(), id);
            }
        }
        GroupIds(ids)
    }

    /// Group ids recorded by an earlier run (or by this one), from the `GROUP_NAMES` map.
    pub(super) fn read(map: &Array<MapData, GroupName>) -> Result<GroupIds> {
        let mut slots = Vec::new();
        for id in 1..MAX_GROUPS as u8 {
            let slot = map
                .get(&u32::from(id), 0)
                .map_err(|error| DatapathError::Map {
                    name: map_name::GROUP_NAMES,
                    error,
                })?;
            slots.push((id, slot));
        }
        Ok(GroupIds::from_slots(slots))
    }
}

/// A `GROUP_NAMES` slot: the name, NUL-padded (and NUL-terminated: names are cut to
/// `GROUP_NAME_BYTES - 1` bytes; config validation keeps them shorter than that).
fn name_slot(name: Option<&str>) -> GroupName {
    let mut slot = [0u8; GROUP_NAME_BYTES];
    if let Some(name) = name {
        let n = name.len().min(GROUP_NAME_BYTES - 1);
        slot[..n].copy_from_slice(&name.as_bytes()[..n]);
    }
    slot
}

/// The name a `GROUP_NAMES` slot holds, if any.
fn slot_name(slot: &GroupName) -> Option<&str> {
    let len = slot.iter().position(|b| *b == 0).unwrap_or(slot.len());
    if len == 0 {
        return None;
    }
    std::str::from_utf8(&slot[..len]).ok()
}

impl Datapath {
    pub fn group_ids(&self) -> &GroupIds {
        &self.ids
    }

    /// Records names for every id in use and clears the slots of ids no longer in use.
    pub(super) fn write_group_names(&mut self, ids: &GroupIds) -> Result<()> {
        for id in 1..MAX_GROUPS as u8 {
            self.group_names
                .set(u32::from(id), name_slot(ids.name(id)), 0)
                .map_err(|error| DatapathError::Map {
                    name: map_name::GROUP_NAMES,
                    error,
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config whose groups are `names`, in this order (one TCP port each).
    fn config(names: &[&str]) -> Config {
        let mut yaml = String::from("groups:\n");
        for (i, name) in names.iter().enumerate() {
            yaml.push_str(&format!(
                "  {name}: {{ protocols: [tcp], ports: [{}] }}\n",
                1000 + i
            ));
        }
        Config::from_yaml(&yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn ids(pairs: &[(&str, u8)]) -> GroupIds {
        GroupIds(pairs.iter().map(|(n, i)| ((*n).to_owned(), *i)).collect())
    }

    #[test]
    fn a_first_run_numbers_groups_from_one_in_file_order() {
        let (got, fresh) =
            GroupIds::assign(&GroupIds::default(), &config(&["b", "a", "c"])).expect("room");
        assert_eq!(got, ids(&[("b", 1), ("a", 2), ("c", 3)]));
        assert_eq!(fresh, [1, 2, 3]);
    }

    #[test]
    fn ids_survive_a_reload_that_reorders_the_groups() {
        let prev = ids(&[("a", 1), ("b", 2), ("c", 3)]);
        let (got, fresh) = GroupIds::assign(&prev, &config(&["c", "a", "b"])).expect("room");
        assert_eq!(got, prev);
        assert!(fresh.is_empty(), "no counter may be reset: {fresh:?}");
    }

    #[test]
    fn a_new_group_never_takes_the_id_of_a_group_the_same_change_removes() {
        let prev = ids(&[("a", 1), ("b", 2), ("c", 3)]);
        let (got, fresh) = GroupIds::assign(&prev, &config(&["a", "c", "d", "e"])).expect("room");
        // b's id 2 still has b's ports and counters in the kernel until the new tables are
        // written: d and e get ids no running group held; a and c keep theirs.
        assert_eq!(got, ids(&[("a", 1), ("c", 3), ("d", 4), ("e", 5)]));
        assert_eq!(fresh, [4, 5], "new ids start their counters over");
        // A renamed group is a new group: a new id, its old id left alone.
        let (got, fresh) = GroupIds::assign(&prev, &config(&["a", "b2", "c"])).expect("room");
        assert_eq!(got, ids(&[("a", 1), ("b2", 4), ("c", 3)]));
        assert_eq!(fresh, [4]);
    }

    #[test]
    fn an_id_freed_by_an_earlier_change_is_handed_out_again() {
        // b was removed by an earlier reload (prev no longer holds it): its id 2 is free.
        let prev = ids(&[("a", 1), ("c", 3)]);
        let (got, fresh) = GroupIds::assign(&prev, &config(&["a", "c", "d"])).expect("room");
        assert_eq!(got, ids(&[("a", 1), ("c", 3), ("d", 2)]));
        assert_eq!(fresh, [2]);
    }

    #[test]
    fn a_kept_name_keeps_its_id_even_when_a_new_group_comes_first() {
        let prev = ids(&[("a", 5)]);
        let (got, fresh) = GroupIds::assign(&prev, &config(&["new", "a"])).expect("room");
        assert_eq!(got, ids(&[("new", 1), ("a", 5)]));
        assert_eq!(fresh, [1]);
    }

    #[test]
    fn every_id_can_be_handed_out_and_one_more_group_is_an_error() {
        let names: Vec<String> = (0..MAX_GROUPS - 1).map(|i| format!("g{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut cfg = config(&refs);
        let (full, fresh) = GroupIds::assign(&GroupIds::default(), &cfg).expect("room");
        assert_eq!(fresh.len(), MAX_GROUPS - 1);
        assert_eq!(full.id("g0"), Some(1));
        assert_eq!(
            full.id(&format!("g{}", MAX_GROUPS - 2)),
            Some(MAX_GROUPS as u8 - 1)
        );
        // Id 0 means "not watched" in the port tables: it is never handed out.
        assert!(full.iter().all(|(_, id)| id != 0));

        // Config validation stops a 64th group; should one get through, it is an error,
        // never a wrapped or shared id.
        let mut extra = cfg.groups[0].clone();
        extra.name = "one-more".to_owned();
        cfg.groups.push(extra);
        assert_eq!(
            GroupIds::assign(&full, &cfg),
            Err(MAX_GROUPS - 1),
            "one id too few"
        );
    }

    #[test]
    fn ids_of_names_the_config_dropped_are_free_again() {
        // A previous run used every id; the new config keeps one name and brings others.
        let prev = GroupIds(
            (1..MAX_GROUPS as u8)
                .map(|i| (format!("old{i}"), i))
                .collect(),
        );
        let (got, fresh) = GroupIds::assign(&prev, &config(&["x", "old7", "y"])).expect("room");
        assert_eq!(got, ids(&[("x", 1), ("old7", 7), ("y", 2)]));
        assert_eq!(fresh, [1, 2]);
    }

    #[test]
    fn lookups_both_ways() {
        let g = ids(&[("kubelet", 1), ("etcd", 7)]);
        assert_eq!(g.id("etcd"), Some(7));
        assert_eq!(g.id("nope"), None);
        assert_eq!(g.name(1), Some("kubelet"));
        assert_eq!(g.name(2), None);
        assert_eq!(g.iter().collect::<Vec<_>>(), [("etcd", 7), ("kubelet", 1)]);
    }

    #[test]
    fn names_round_trip_through_the_map_slots() {
        let g = ids(&[("kubelet", 1), ("etcd-peer", 9), (&"x".repeat(63), 63)]);
        let slots = (1..MAX_GROUPS as u8).map(|id| (id, name_slot(g.name(id))));
        assert_eq!(GroupIds::from_slots(slots), g);
    }

    #[test]
    fn slots_cut_names_and_skip_empty_or_garbled_ones() {
        let long = "y".repeat(GROUP_NAME_BYTES + 5);
        let slot = name_slot(Some(&long));
        assert_eq!(slot[GROUP_NAME_BYTES - 1], 0, "always NUL-terminated");
        assert_eq!(slot_name(&slot), Some(&long[..GROUP_NAME_BYTES - 1]));
        assert_eq!(slot_name(&name_slot(None)), None);
        let mut bad = [0u8; GROUP_NAME_BYTES];
        bad[..2].copy_from_slice(&[0xff, 0xfe]);
        assert_eq!(slot_name(&bad), None);
        let got = GroupIds::from_slots([(1, name_slot(Some("a"))), (2, bad), (3, name_slot(None))]);
        assert_eq!(got, ids(&[("a", 1)]));
    }
}
