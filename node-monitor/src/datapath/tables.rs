//! Config → map contents: the per-protocol port tables, the LPM trie allowlists and the
//! settings slot, computed from the config under kernel group ids and written as diffs.
use std::collections::BTreeSet;

use aya::maps::{Array, LpmTrie, MapData, PerCpuValues, lpm_trie::Key};
use ipnet::IpNet;
use node_monitor_common::{
    AllowKeyV4, AllowKeyV6, GroupStats, PORT_GROUP_MASK, PORT_TABLE_ENTRIES, SUSPECT_GROUP,
    Settings, map_name, source_slots,
};

use super::{Datapath, DatapathError, GroupIds, Result, counters::stats_indexes};
use crate::config::{Action, Config, SetValues};

impl Datapath {
    /// Writes the config into the maps: port tables, allowlists, settings, group names. Used
    /// at start and on reload; programs stay attached and counters keep counting.
    ///
    /// Atomic as far as the kernel's maps allow: everything is computed, and checked to fit,
    /// before anything is written. The writes then go in an order in which no packet meets a
    /// half-written config: a reused group id is unmapped before its counters start over;
    /// allowlist entries are added before the port tables send packets to their groups, and
    /// stale ones removed only after (when old and new entries do not fit in the trie at
    /// once, the stale ones leave first: a source that moves from one prefix to another may
    /// then be flagged for that moment, never the other way round); the settings (the
    /// generation that voids every cached verdict) last. A write that fails undoes the ones
    /// before it, and the running config stays in force.
    pub fn apply_config(&mut self, cfg: &Config, node_subnets: &[IpNet]) -> Result<()> {
        self.apply_config_with(
            cfg,
            &SetValues {
                node_subnets: node_subnets.to_vec(),
                ..SetValues::default()
            },
        )
    }

    /// [`Datapath::apply_config`] with the value of every symbolic set given, those resolved
    /// from the cluster included: what the daemon calls when the cluster changes.
    pub fn apply_config_with(&mut self, cfg: &Config, sets: &SetValues) -> Result<()> {
        let (ids, fresh) =
            GroupIds::assign(&self.ids, cfg).map_err(|max| DatapathError::TooManyGroups { max })?;
        let [mut tcp, mut udp] = port_tables(cfg, &ids);
        // Ports with source ranges of their own keep their mark under the new groups.
        self.mark_ports(&mut tcp, 0);
        self.mark_ports(&mut udp, 1);
        let (allow_v4, allow_v6) = allow_keys(cfg, &ids, cfg.resolve_allowlists_with(sets));
        let have_v4 = trie_entries(&self.allow_v4);
        let have_v6 = trie_entries(&self.allow_v6);
        let max = self.limits.allow_entries;
        // The allowlists must fit; the suspect ranges beside them only if they can.
        check_fits(&BTreeSet::new(), &allow_v4, "IPv4", max)?;
        check_fits(&BTreeSet::new(), &allow_v6, "IPv6", max)?;
        let old_ports = [self.port_table(0)?, self.port_table(1)?];
        let moved_ports = ports_revoke(&old_ports, &[&tcp, &udp]);
        let suspects = Suspects::after(&have_v4, &allow_v4, &have_v6, &allow_v6, max);
        let (want_v4, want_v6) = suspects.with_allowlists(allow_v4, allow_v6);
        let v4_beside = check_fits(&have_v4, &want_v4, "IPv4", max)?;
        let v6_beside = check_fits(&have_v6, &want_v6, "IPv6", max)?;
        let prev = self.read_settings()?;
        let saved_counters = self.read_stats_slots(&fresh)?;

        let plan = Plan {
            ports: [tcp, udp],
            fresh: &fresh,
            want_v4: &want_v4,
            want_v6: &want_v6,
            have_v4: &have_v4,
            have_v6: &have_v6,
            beside: [v4_beside, v6_beside],
            settings: settings_for(
                cfg,
                &ids,
                &prev,
                &Revocation {
                    everything: moved_ports || suspects.overflow,
                    suspect_ranges: suspects.count(),
                },
                self.limits.sources,
            ),
            ids: &ids,
        };
        if let Err(e) = self.write_plan(&plan, &old_ports) {
            // Undo, best effort: each step is put back to what the running config wrote.
            let undo = [
                self.set_port_table(0, &old_ports[0]),
                self.set_port_table(1, &old_ports[1]),
                restore_trie(&mut self.allow_v4, &have_v4, map_name::ALLOW_V4),
                restore_trie(&mut self.allow_v6, &have_v6, map_name::ALLOW_V6),
                self.write_stats_slots(saved_counters),
                self.write_settings(prev),
                self.write_group_names(&self.ids.clone()),
            ];
            for u in undo.into_iter().filter_map(Result::err) {
                tracing::error!(error = %u, "undoing a config that could not be written in full");
            }
            return Err(e);
        }
        self.ids = ids;
        Ok(())
    }

    /// The writes of [`apply_config`](Self::apply_config), in their order; stops at the
    /// first error.
    fn write_plan(&mut self, plan: &Plan<'_>, old_ports: &[Vec<u8>; 2]) -> Result<()> {
        // 1. Ports that still send packets to an id about to be handed to a new group stop
        //    being watched, so that its counters can start over without counting the old
        //    group's packets (ids are reused only when none was left unused).
        for (i, old) in old_ports.iter().enumerate() {
            let fresh = |g: &u8| plan.fresh.contains(&(g & PORT_GROUP_MASK));
            if old.iter().any(fresh) {
                let unmapped: Vec<u8> = old.iter().map(|g| if fresh(g) { 0 } else { *g }).collect();
                self.set_port_table(i, &unmapped)?;
            }
        }
        // 2. New ids start from zero, whatever an old group under the same id left behind.
        self.reset_group_counters(plan.fresh)?;
        self.reset_flood_state(plan.fresh)?;
        // 3. Allowlist entries in before any port sends a packet to their group (stale ones
        //    out first where old and new do not fit at once).
        let [v4_beside, v6_beside] = plan.beside;
        if !v4_beside {
            remove_entries(
                &mut self.allow_v4,
                plan.want_v4,
                plan.have_v4,
                map_name::ALLOW_V4,
            )?;
        }
        if !v6_beside {
            remove_entries(
                &mut self.allow_v6,
                plan.want_v6,
                plan.have_v6,
                map_name::ALLOW_V6,
            )?;
        }
        add_entries(
            &mut self.allow_v4,
            plan.want_v4,
            plan.have_v4,
            map_name::ALLOW_V4,
        )?;
        add_entries(
            &mut self.allow_v6,
            plan.want_v6,
            plan.have_v6,
            map_name::ALLOW_V6,
        )?;
        // 4. The port tables.
        self.set_port_table(0, &plan.ports[0])?;
        self.set_port_table(1, &plan.ports[1])?;
        // 5. Stale entries out: sources the new config no longer allows.
        if v4_beside {
            remove_entries(
                &mut self.allow_v4,
                plan.want_v4,
                plan.have_v4,
                map_name::ALLOW_V4,
            )?;
        }
        if v6_beside {
            remove_entries(
                &mut self.allow_v6,
                plan.want_v6,
                plan.have_v6,
                map_name::ALLOW_V6,
            )?;
        }
        // 6. Settings last: the new generation voids every cached verdict, now that the
        //    tries hold the new allowlists.
        self.write_settings(plan.settings)?;
        self.write_group_names(plan.ids)
    }

    /// What port table `i` (0 TCP, 1 UDP) holds: the shadow copy, or read from the map once.
    pub(super) fn port_table(&mut self, i: usize) -> Result<Vec<u8>> {
        if let Some(have) = &self.ports_shadow[i] {
            return Ok(have.clone());
        }
        let (map, name) = self.port_map(i);
        let mut have = vec![0u8; PORT_TABLE_ENTRIES as usize];
        for (port, slot) in (0u32..).zip(have.iter_mut()) {
            *slot = map
                .get(&port, 0)
                .map_err(|error| DatapathError::Map { name, error })?;
        }
        self.ports_shadow[i] = Some(have.clone());
        Ok(have)
    }

    /// Brings port table `i` to `want`, writing only the entries that differ; the shadow
    /// copy follows every entry written, so it is right even when a write fails half-way.
    pub(super) fn set_port_table(&mut self, i: usize, want: &[u8]) -> Result<()> {
        let mut have = self.port_table(i)?;
        let (map, name) = self.port_map_mut(i);
        let mut result = Ok(());
        for (port, g) in port_changes(want, &have).collect::<Vec<_>>() {
            if let Err(error) = map.set(port, g, 0) {
                result = Err(DatapathError::Map { name, error });
                break;
            }
            have[port as usize] = g;
        }
        self.ports_shadow[i] = Some(have);
        result
    }

    fn port_map(&self, i: usize) -> (&Array<MapData, u8>, &'static str) {
        if i == 0 {
            (&self.ports_tcp, map_name::PORTS_TCP)
        } else {
            (&self.ports_udp, map_name::PORTS_UDP)
        }
    }

    fn port_map_mut(&mut self, i: usize) -> (&mut Array<MapData, u8>, &'static str) {
        if i == 0 {
            (&mut self.ports_tcp, map_name::PORTS_TCP)
        } else {
            (&mut self.ports_udp, map_name::PORTS_UDP)
        }
    }

    /// The per-CPU counters of every (protocol, verdict) slot of `ids`, to put back if a
    /// config that zeroed them cannot be written in full.
    fn read_stats_slots(&self, ids: &[u8]) -> Result<Vec<(u32, PerCpuValues<GroupStats>)>> {
        let mut out = Vec::new();
        for index in ids.iter().flat_map(|id| stats_indexes(*id)) {
            let values = self
                .stats
                .get(&index, 0)
                .map_err(|error| DatapathError::Map {
                    name: map_name::GROUP_STATS,
                    error,
                })?;
            out.push((index, values));
        }
        Ok(out)
    }

    fn write_stats_slots(&mut self, slots: Vec<(u32, PerCpuValues<GroupStats>)>) -> Result<()> {
        for (index, values) in slots {
            self.stats
                .set(index, values, 0)
                .map_err(|error| DatapathError::Map {
                    name: map_name::GROUP_STATS,
                    error,
                })?;
        }
        Ok(())
    }

    /// The settings slot as the programs see it.
    pub(super) fn read_settings(&self) -> Result<Settings> {
        self.settings
            .get(&0, 0)
            .map_err(|error| DatapathError::Map {
                name: map_name::SETTINGS,
                error,
            })
    }

    pub(super) fn write_settings(&mut self, s: Settings) -> Result<()> {
        self.settings
            .set(0, s, 0)
            .map_err(|error| DatapathError::Map {
                name: map_name::SETTINGS,
                error,
            })
    }
}

/// The TCP and UDP port tables (port → kernel group id, 0 = not watched).
fn port_tables(cfg: &Config, ids: &GroupIds) -> [Vec<u8>; 2] {
    let (tcp, udp) = cfg.port_tables(|g| ids.id(&g.name));
    [tcp, udp]
}

/// LPM trie entries `(prefix length, key data)`.
pub(super) type TrieEntries<K> = BTreeSet<(u32, K)>;

/// LPM trie entries `(prefix length, group byte | address)` per family, from the resolved
/// allowlists (`(config group id, prefix)` pairs), under kernel ids. The prefix length
/// counts the group byte, so each group matches only its own entries.
fn allow_keys(
    cfg: &Config,
    ids: &GroupIds,
    resolved: Vec<(u8, IpNet)>,
) -> (TrieEntries<AllowKeyV4>, TrieEntries<AllowKeyV6>) {
    let mut want_v4 = BTreeSet::new();
    let mut want_v6 = BTreeSet::new();
    for (cfg_id, net) in resolved {
        let Some(g) = cfg.group_by_id(cfg_id) else {
            continue;
        };
        let Some(kid) = ids.id(&g.name) else { continue };
        match net {
            IpNet::V4(n) => {
                let o = n.network().octets();
                want_v4.insert((8 + u32::from(n.prefix_len()), [kid, o[0], o[1], o[2], o[3]]));
            }
            IpNet::V6(n) => {
                let mut d = [0u8; 17];
                d[0] = kid;
                d[1..].copy_from_slice(&n.network().octets());
                want_v6.insert((8 + u32::from(n.prefix_len()), d));
            }
        }
    }
    (want_v4, want_v6)
}

/// The settings slot for `cfg`: enforcement and sweep bits by kernel id, and the next
/// generation after `prev_generation` (never 0, which no cached verdict may match).
/// Does a config that writes `ports` over `old_ports` move a port out of its group (so that
/// any flow on it may have been allowed by the old group and not the new)?
fn ports_revoke(old_ports: &[Vec<u8>; 2], ports: &[&Vec<u8>; 2]) -> bool {
    old_ports.iter().zip(ports).any(|(old, new)| {
        old.iter().zip(new.iter()).any(|(o, n)| {
            let (o, n) = (o & PORT_GROUP_MASK, n & PORT_GROUP_MASK);
            o != 0 && o != n
        })
    })
}

/// Is this trie entry a suspect range rather than a group's allowlist entry?
fn is_suspect<const N: usize>(entry: &(u32, [u8; N])) -> bool {
    entry.1[0] == SUSPECT_GROUP
}

/// The suspect ranges after a config: those the tries hold, and the network of every
/// allowlist entry the config takes away (whatever its group), under [`SUSPECT_GROUP`]. Only
/// a source inside one may have a running flow that an allowlist allowed and no longer does.
/// They stay (no flow entry says when its flow ended); when they do not fit beside the
/// allowlists they are all dropped and the config revokes everything (`overflow`).
struct Suspects {
    v4: TrieEntries<AllowKeyV4>,
    v6: TrieEntries<AllowKeyV6>,
    overflow: bool,
}

impl Suspects {
    fn after(
        have_v4: &TrieEntries<AllowKeyV4>,
        allow_v4: &TrieEntries<AllowKeyV4>,
        have_v6: &TrieEntries<AllowKeyV6>,
        allow_v6: &TrieEntries<AllowKeyV6>,
        max: u32,
    ) -> Suspects {
        fn suspects<const N: usize>(
            have: &TrieEntries<[u8; N]>,
            allow: &TrieEntries<[u8; N]>,
        ) -> TrieEntries<[u8; N]> {
            have.iter()
                .filter(|e| is_suspect(e) || !allow.contains(e))
                .map(|&(plen, mut data)| {
                    data[0] = SUSPECT_GROUP;
                    (plen, data)
                })
                .collect()
        }
        let (v4, v6) = (suspects(have_v4, allow_v4), suspects(have_v6, allow_v6));
        let fits =
            allow_v4.len() + v4.len() <= max as usize && allow_v6.len() + v6.len() <= max as usize;
        if fits {
            Suspects {
                v4,
                v6,
                overflow: false,
            }
        } else {
            Suspects {
                v4: BTreeSet::new(),
                v6: BTreeSet::new(),
                overflow: true,
            }
        }
    }

    fn count(&self) -> u32 {
        u32::try_from(self.v4.len() + self.v6.len()).unwrap_or(u32::MAX)
    }

    /// What the tries are to hold: the allowlists and the suspect ranges.
    fn with_allowlists(
        &self,
        mut v4: TrieEntries<AllowKeyV4>,
        mut v6: TrieEntries<AllowKeyV6>,
    ) -> (TrieEntries<AllowKeyV4>, TrieEntries<AllowKeyV6>) {
        v4.extend(self.v4.iter().copied());
        v6.extend(self.v6.iter().copied());
        (v4, v6)
    }
}

/// What a config revokes.
struct Revocation {
    /// Possibly any running flow's source (ports moved, or suspect ranges that did not fit).
    everything: bool,
    /// Suspect ranges the tries hold after it.
    suspect_ranges: u32,
}

/// The settings of `cfg` after `prev`: a new generation, which is also the revoked
/// generation when the config revokes `everything`, and the count of suspect ranges.
fn settings_for(
    cfg: &Config,
    ids: &GroupIds,
    prev: &Settings,
    revokes: &Revocation,
    sources: u32,
) -> Settings {
    let generation = prev.generation.wrapping_add(1).max(1);
    let mut drop_mask = 0u64;
    let mut sweep_mask = 0u64;
    for g in &cfg.groups {
        let Some(kid) = ids.id(&g.name) else { continue };
        if g.action == Action::Drop {
            drop_mask |= 1u64 << kid;
        }
        if g.detect_sweeps {
            sweep_mask |= 1u64 << kid;
        }
    }
    Settings {
        flow_idle_ns: cfg.limits.flow_idle_timeout_ms.saturating_mul(1_000_000),
        drop_mask,
        sweep_mask,
        sample_one_in: cfg.sampling.allowed_flows_one_in,
        events_per_sec: cfg.limits.events_per_source_per_second,
        generation,
        source_slot_mask: source_slots(sources) - 1,
        events_per_group: cfg.limits.events_per_group_per_second,
        revoked_generation: if revokes.everything {
            generation
        } else {
            prev.revoked_generation
        },
        suspect_ranges: revokes.suspect_ranges,
        _pad0: 0,
    }
}

/// The `(port, group)` writes that bring a table holding `have` to `want`.
fn port_changes<'a>(want: &'a [u8], have: &'a [u8]) -> impl Iterator<Item = (u32, u8)> + 'a {
    want.iter()
        .zip(have)
        .enumerate()
        .filter(|(_, (g, cur))| g != cur)
        .map(|(port, (g, _))| (port as u32, *g))
}

/// Everything [`Datapath::apply_config`] writes, computed before the first write.
struct Plan<'a> {
    ports: [Vec<u8>; 2],
    fresh: &'a [u8],
    want_v4: &'a TrieEntries<AllowKeyV4>,
    want_v6: &'a TrieEntries<AllowKeyV6>,
    have_v4: &'a TrieEntries<AllowKeyV4>,
    have_v6: &'a TrieEntries<AllowKeyV6>,
    /// Per family (IPv4, IPv6): old and new entries fit in the trie at once.
    beside: [bool; 2],
    settings: Settings,
    ids: &'a GroupIds,
}

/// What a trie holds now.
pub(super) fn trie_entries<K: aya::Pod + Ord + Copy>(
    trie: &LpmTrie<MapData, K, u8>,
) -> TrieEntries<K> {
    trie.keys()
        .filter_map(std::result::Result::ok)
        .map(|k| (k.prefix_len(), k.data()))
        .collect()
}

/// Whether a trie of `max` entries can hold `want` (an error if not), and whether it can hold
/// `want` beside what it holds now (`have`), so that new entries can go in before stale
/// ones leave.
fn check_fits<K: Ord>(
    have: &TrieEntries<K>,
    want: &TrieEntries<K>,
    family: &'static str,
    max: u32,
) -> Result<bool> {
    if want.len() > max as usize {
        return Err(DatapathError::AllowlistFull {
            family,
            needed: want.len(),
            max,
        });
    }
    Ok(have.union(want).count() <= max as usize)
}

pub(super) fn add_entries<K: aya::Pod + Ord + Copy>(
    trie: &mut LpmTrie<MapData, K, u8>,
    want: &TrieEntries<K>,
    have: &TrieEntries<K>,
    name: &'static str,
) -> Result<()> {
    for (plen, data) in want.difference(have) {
        trie.insert(&Key::new(*plen, *data), 1, 0)
            .map_err(|error| DatapathError::Map { name, error })?;
    }
    Ok(())
}

pub(super) fn remove_entries<K: aya::Pod + Ord + Copy>(
    trie: &mut LpmTrie<MapData, K, u8>,
    want: &TrieEntries<K>,
    have: &TrieEntries<K>,
    name: &'static str,
) -> Result<()> {
    for (plen, data) in have.difference(want) {
        trie.remove(&Key::new(*plen, *data))
            .map_err(|error| DatapathError::Map { name, error })?;
    }
    Ok(())
}

/// Puts a trie back to `have` after a failed write.
pub(super) fn restore_trie<K: aya::Pod + Ord + Copy>(
    trie: &mut LpmTrie<MapData, K, u8>,
    have: &TrieEntries<K>,
    name: &'static str,
) -> Result<()> {
    let now = trie_entries(trie);
    for (plen, data) in now.difference(have) {
        // Removing an entry that a failed insert never wrote is not an error worth telling.
        let _ = trie.remove(&Key::new(*plen, *data));
    }
    add_entries(trie, have, &now, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Config {
        Config::from_yaml(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn ids_for(cfg: &Config) -> GroupIds {
        GroupIds::assign(&GroupIds::default(), cfg).expect("room").0
    }

    /// The ids `cfg` gets after a run of the config `prev_yaml`.
    fn ids_after(prev_yaml: &str, cfg: &Config) -> GroupIds {
        GroupIds::assign(&ids_for(&parse(prev_yaml)), cfg)
            .expect("room")
            .0
    }

    const TWO_GROUPS: &str = "\
groups:
  kubelet: { protocols: [tcp], ports: [10250], allow: [\"203.0.113.7/24\", \"2001:db8:1::5/64\"], action: drop }
  nodeport: { protocols: [tcp, udp], ports: [\"30000-30002\"], allow: [localhost], detect_sweeps: true }
";

    #[test]
    fn port_tables_map_each_port_to_its_group_per_protocol() {
        let cfg = parse(TWO_GROUPS);
        let ids = ids_for(&cfg);
        let [tcp, udp] = port_tables(&cfg, &ids);
        assert_eq!((tcp.len(), udp.len()), (65_536, 65_536));
        let kubelet = ids.id("kubelet").expect("id");
        let nodeport = ids.id("nodeport").expect("id");
        assert_eq!(tcp[10250], kubelet);
        assert_eq!(udp[10250], 0, "kubelet is TCP only");
        for port in 30000..=30002 {
            assert_eq!((tcp[port], udp[port]), (nodeport, nodeport), "{port}");
        }
        assert_eq!(
            (tcp[29999], tcp[30003]),
            (0, 0),
            "range ends are inclusive, no more"
        );
        let watched = |t: &[u8]| t.iter().filter(|g| **g != 0).count();
        assert_eq!((watched(&tcp), watched(&udp)), (4, 3));
        // The kernel ids follow the id assignment, not the config's own numbering.
        let swapped = ids_after(
            "groups:\n  nodeport: { protocols: [tcp], ports: [1] }\n  kubelet: { protocols: [tcp], ports: [2] }\n",
            &cfg,
        );
        let [tcp, _] = port_tables(&cfg, &swapped);
        assert_eq!((tcp[10250], tcp[30000]), (2, 1));
        // Matches the config's own table when ids follow file order.
        let (cfg_tcp, cfg_udp) = cfg.port_tables(|g| Some(g.id));
        assert_eq!(port_tables(&cfg, &ids), [cfg_tcp, cfg_udp]);
    }

    #[test]
    fn allow_keys_hold_the_group_byte_then_the_network() {
        let cfg = parse(TWO_GROUPS);
        let ids = ids_for(&cfg);
        let kubelet = ids.id("kubelet").expect("id");
        let nodeport = ids.id("nodeport").expect("id");
        let (v4, v6) = allow_keys(&cfg, &ids, cfg.resolve_allowlists(&[]));
        // Host bits are cleared; the prefix length counts the group byte.
        assert_eq!(
            v4,
            BTreeSet::from([
                (8 + 24, [kubelet, 203, 0, 113, 0]),
                (8 + 8, [nodeport, 127, 0, 0, 0]),
            ])
        );
        let mut db8 = [0u8; 17];
        db8[0] = kubelet;
        db8[1..].copy_from_slice(
            &"2001:db8:1::"
                .parse::<std::net::Ipv6Addr>()
                .expect("v6")
                .octets(),
        );
        let mut lo = [0u8; 17];
        lo[0] = nodeport;
        lo[16] = 1;
        assert_eq!(v6, BTreeSet::from([(8 + 64, db8), (8 + 128, lo)]));
    }

    #[test]
    fn allow_keys_take_resolved_sets_under_kernel_ids() {
        let cfg = parse(
            "groups:\n  a: { protocols: [tcp], ports: [1], allow: [node-subnets] }\n  b: { protocols: [tcp], ports: [2], allow: [node-subnets, \"198.51.100.0/24\"] }\n",
        );
        // An earlier run knew only b, as id 1: now a is 2, b still 1 (the config says a=1, b=2).
        let ids = ids_after("groups:\n  b: { protocols: [tcp], ports: [2] }\n", &cfg);
        assert_eq!((ids.id("a"), ids.id("b")), (Some(2), Some(1)));
        let subnets: [IpNet; 2] = [
            "198.51.100.0/24".parse().expect("net"),
            "2001:db8::/48".parse().expect("net"),
        ];
        let (v4, v6) = allow_keys(&cfg, &ids, cfg.resolve_allowlists(&subnets));
        let (a, b) = (ids.id("a").expect("a"), ids.id("b").expect("b"));
        // The same prefix under two groups is two entries; b's duplicate is one.
        assert_eq!(
            v4,
            BTreeSet::from([(32, [a, 198, 51, 100, 0]), (32, [b, 198, 51, 100, 0])])
        );
        assert_eq!(v6.len(), 2);
        assert!(
            v6.iter()
                .all(|(plen, k)| *plen == 8 + 48 && k[1..3] == [0x20, 0x01])
        );
        // A pair whose group the config does not know (stale resolution) is skipped.
        let (v4, v6) = allow_keys(&cfg, &ids, vec![(42, subnets[0])]);
        assert!(v4.is_empty() && v6.is_empty());
    }

    #[test]
    fn settings_carry_masks_by_kernel_id_and_a_fresh_generation() {
        let cfg = parse(TWO_GROUPS);
        let ids = ids_for(&cfg);
        let kubelet = ids.id("kubelet").expect("id");
        let nodeport = ids.id("nodeport").expect("id");
        let after = |generation, revoked_generation| Settings {
            generation,
            revoked_generation,
            ..Settings::default()
        };
        let none = Revocation {
            everything: false,
            suspect_ranges: 0,
        };
        let s = settings_for(&cfg, &ids, &after(6, 3), &none, 1000);
        assert_eq!(s.drop_mask, 1 << kubelet, "only kubelet enforces");
        assert_eq!(s.sweep_mask, 1 << nodeport);
        assert_eq!(s.generation, 7);
        assert_eq!(
            s.source_slot_mask, 1023,
            "the table size is the next power of two"
        );
        assert_eq!(s.flow_idle_ns, cfg.limits.flow_idle_timeout_ms * 1_000_000);
        assert_eq!(s.sample_one_in, cfg.sampling.allowed_flows_one_in);
        assert_eq!(s.events_per_sec, cfg.limits.events_per_source_per_second);
        assert_eq!(s.events_per_group, cfg.limits.events_per_group_per_second);
        assert_eq!(s.revoked_generation, 3, "kept when nothing is taken away");
        let all = Revocation {
            everything: true,
            suspect_ranges: 4,
        };
        let s = settings_for(&cfg, &ids, &after(6, 3), &all, 1000);
        assert_eq!(
            (s.revoked_generation, s.suspect_ranges),
            (7, 4),
            "the new generation when everything is"
        );
        // The generation wraps past 0: 0 would match an entry cached before any config.
        assert_eq!(
            settings_for(&cfg, &ids, &after(u32::MAX, 0), &none, 1000).generation,
            1
        );
        assert_eq!(
            settings_for(&cfg, &ids, &after(0, 0), &none, 1000).generation,
            1
        );
    }

    #[test]
    fn a_config_revokes_everything_when_it_moves_a_port_away() {
        let ports = |v: &[u8]| v.to_vec();
        let same = [ports(&[0, 1, 2]), ports(&[0, 0, 0])];
        let r = |new: [&Vec<u8>; 2]| ports_revoke(&same, &new);
        assert!(!r([&same[0], &same[1]]), "nothing moved");
        assert!(r([&ports(&[0, 2, 2]), &same[1]]), "port 1 left group 1");
        assert!(!r([&ports(&[3, 1, 2]), &same[1]]), "a port newly watched");
    }

    #[test]
    fn entries_taken_away_become_suspect_ranges_while_they_fit() {
        let e = |g: u8, last: u8| (8 + 32, [g, 203, 0, 113, last]);
        let have = BTreeSet::from([e(1, 1), e(2, 2), e(SUSPECT_GROUP, 9)]);
        let allow = BTreeSet::from([e(1, 1), e(3, 3)]);
        let none = BTreeSet::new();
        let s = Suspects::after(&have, &allow, &none, &none, 10);
        // The one taken away (group 2's) and the one already suspect, under the suspect byte.
        assert_eq!(
            s.v4,
            BTreeSet::from([e(SUSPECT_GROUP, 2), e(SUSPECT_GROUP, 9)])
        );
        assert!(!s.overflow && s.v6.is_empty());
        assert_eq!(s.count(), 2);
        let (v4, _) = s.with_allowlists(allow.clone(), BTreeSet::new());
        assert_eq!(v4.len(), 4);
        // Only added: no new suspect range (the old one stays).
        let grown = BTreeSet::from([e(1, 1), e(2, 2), e(3, 3)]);
        assert_eq!(Suspects::after(&have, &grown, &none, &none, 10).count(), 1);
        // Not room for them beside the allowlists: none kept, and everything is revoked.
        let s = Suspects::after(&have, &allow, &none, &none, 3);
        assert!(s.overflow && s.v4.is_empty());
    }

    #[test]
    fn port_changes_write_only_what_differs() {
        let have = [0u8, 1, 1, 2, 0];
        let want = [0u8, 1, 3, 0, 0];
        assert_eq!(
            port_changes(&want, &have).collect::<Vec<_>>(),
            [(2, 3), (3, 0)]
        );
        assert_eq!(port_changes(&want, &want).count(), 0);
    }

    // --- writing a config into loaded maps (root: these load the programs) ----------------

    use std::{net::Ipv4Addr, path::PathBuf};

    use aya::programs::{TestRun as _, TestRunOptions};
    use node_monitor_common::VERDICT_DENIED;

    use crate::datapath::{LoadOptions, unpin_all};

    const KUBELET_A: &str = "limits: { allow_entries: 4 }\ngroups:\n  kubelet: { protocols: [tcp], ports: [10250], allow: [198.51.100.1/32, 198.51.100.2/32, 198.51.100.3/32] }\n";
    const KUBELET_B: &str = "limits: { allow_entries: 4 }\ngroups:\n  kubelet: { protocols: [tcp], ports: [10250, 10255], allow: [203.0.113.1/32, 203.0.113.2/32, 203.0.113.3/32] }\n";

    fn load(cfg: &Config, pin_dir: Option<PathBuf>) -> Datapath {
        Datapath::load(cfg, &[], &LoadOptions { pin_dir })
            .unwrap_or_else(|e| panic!("loading the data path (needs root and bpffs): {e}"))
    }

    /// A TCP SYN from `src` to 198.51.100.100:`dport` in an Ethernet frame.
    fn syn(src: Ipv4Addr, dport: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
        let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&[198, 51, 100, 100]);
        let sum: u32 = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        let folded = (sum & 0xffff) + (sum >> 16);
        let checksum = !((folded & 0xffff) + (folded >> 16)) as u16;
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&40_000u16.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        f
    }

    fn run_xdp(dp: &Datapath, frame: &[u8]) {
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat: 1,
            ..Default::default()
        };
        dp.xdp_program()
            .expect("xdp")
            .test_run(opts)
            .expect("test run");
    }

    fn denied_new_conns(dp: &Datapath, group: &str) -> u64 {
        denied(dp, group, |s| s.new_conns)
    }

    fn denied(dp: &Datapath, group: &str, what: impl Fn(&GroupStats) -> u64) -> u64 {
        dp.group_counters()
            .expect("counters")
            .iter()
            .filter(|c| c.group == group && c.verdict == VERDICT_DENIED)
            .map(|c| what(&c.stats))
            .sum()
    }

    /// A pin directory of its own on the bpf filesystem, unpinned and removed on drop.
    struct PinDir(PathBuf);

    impl PinDir {
        fn new(tag: &str) -> PinDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            PinDir(PathBuf::from(format!(
                "/sys/fs/bpf/nm-unit-{}-{nanos}-{tag}",
                std::process::id()
            )))
        }
    }

    impl Drop for PinDir {
        fn drop(&mut self) {
            let _ = unpin_all(&self.0);
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_config_that_does_not_fit_changes_nothing() {
        let mut dp = load(&parse(KUBELET_A), None);
        let entries = |dp: &Datapath| trie_entries(&dp.allow_v4);
        let before = entries(&dp);
        assert_eq!(before.len(), 3);
        // Five entries for a trie of four: refused before anything is written (the port
        // tables come first in the order of writes, so a late check would leave 10255
        // watched under a config that was never applied).
        let too_many = KUBELET_B.replace(
            "203.0.113.3/32]",
            "203.0.113.3/32, 203.0.113.4/32, 203.0.113.5/32]",
        );
        let err = dp
            .apply_config(&parse(&too_many), &[])
            .expect_err("must not fit");
        assert!(
            matches!(
                err,
                DatapathError::AllowlistFull {
                    needed: 5,
                    max: 4,
                    ..
                }
            ),
            "{err}"
        );
        // Nothing was written: the running config is intact, in the maps themselves.
        assert_eq!(
            dp.ports_tcp.get(&10255, 0).expect("port"),
            0,
            "10255 must stay unwatched"
        );
        assert_ne!(dp.ports_tcp.get(&10250, 0).expect("port"), 0);
        assert_eq!(entries(&dp), before, "the running allowlist stays");
        assert_eq!(dp.ids.iter().count(), 1);
        // And a source of the running allowlist is still allowed.
        run_xdp(&dp, &syn(Ipv4Addr::new(198, 51, 100, 1), 10250));
        assert_eq!(denied_new_conns(&dp, "kubelet"), 0);
    }

    #[test]
    fn allowlists_that_fit_only_one_at_a_time_are_swapped_stale_first() {
        let mut dp = load(&parse(KUBELET_A), None);
        // Three new entries beside three old ones in a trie of four: the stale ones leave
        // first, and the new config is applied in full.
        dp.apply_config(&parse(KUBELET_B), &[])
            .expect("fits on its own");
        let want: Vec<[u8; 5]> = trie_entries(&dp.allow_v4)
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        let id = dp.ids.id("kubelet").expect("id");
        assert_eq!(
            want,
            [
                [id, 203, 0, 113, 1],
                [id, 203, 0, 113, 2],
                [id, 203, 0, 113, 3]
            ]
        );
        assert_eq!(dp.ports_tcp.get(&10255, 0).expect("port"), id);
        run_xdp(&dp, &syn(Ipv4Addr::new(198, 51, 100, 1), 10250));
        assert_eq!(
            denied_new_conns(&dp, "kubelet"),
            1,
            "the old source is revoked"
        );
    }

    #[test]
    fn a_restart_that_replaces_the_settings_never_trusts_verdicts_cached_by_the_last_run() {
        // The verdict cache is per CPU: keep this thread on one CPU, so that the second run
        // looks in the cache the first run filled.
        let mut cpu = nix::sched::CpuSet::new();
        cpu.set(0).expect("cpu 0");
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpu).expect("affinity");

        let pins = PinDir::new("gen");
        let src = Ipv4Addr::new(198, 51, 100, 1);
        let dp = load(&parse(KUBELET_A), Some(pins.0.clone()));
        run_xdp(&dp, &syn(src, 10250));
        assert_eq!(
            denied_new_conns(&dp, "kubelet"),
            0,
            "allowed, and cached as allowed"
        );
        drop(dp);
        // The next run replaces the settings map (as when its shape changed) and adopts the
        // rest, the verdict cache among them; its config no longer allows `src`.
        std::fs::remove_file(pins.0.join("maps").join(map_name::SETTINGS)).expect("unpin");
        let dp = load(&parse(KUBELET_B), Some(pins.0.clone()));
        run_xdp(&dp, &syn(src, 10250));
        assert_eq!(
            denied(&dp, "kubelet", |s| s.packets),
            1,
            "a source the new config does not allow is judged so on its first packet"
        );
    }
}
