//! Config → map contents: the per-protocol port tables, the LPM trie allowlists and the
//! settings slot, computed from the config under kernel group ids and written as diffs.
use std::collections::BTreeSet;

use aya::maps::{Array, LpmTrie, MapData, lpm_trie::Key};
use ipnet::IpNet;
use node_monitor_common::{
    AllowKeyV4, AllowKeyV6, PORT_TABLE_ENTRIES, Settings, map_name, source_slots,
};

use super::{Datapath, DatapathError, GroupIds, Result};
use crate::config::{Action, Config};

impl Datapath {
    /// Writes the config into the maps: settings, port tables, allowlists. Used at start and
    /// on reload; programs stay attached and counters keep counting. Entries are added
    /// before stale ones are removed, so an allowed source is never briefly denied.
    pub fn apply_config(&mut self, cfg: &Config, node_subnets: &[IpNet]) -> Result<()> {
        let (ids, fresh) =
            GroupIds::assign(&self.ids, cfg).map_err(|max| DatapathError::TooManyGroups { max })?;
        // New ids start from zero, whatever an old group under the same id left behind.
        self.reset_group_counters(&fresh)?;

        let [tcp, udp] = port_tables(cfg, &ids);
        let [shadow_tcp, shadow_udp] = &mut self.ports_shadow;
        write_port_table(&mut self.ports_tcp, shadow_tcp, tcp, map_name::PORTS_TCP)?;
        write_port_table(&mut self.ports_udp, shadow_udp, udp, map_name::PORTS_UDP)?;

        let (want_v4, want_v6) = allow_keys(cfg, &ids, cfg.resolve_allowlists(node_subnets));
        let max = self.limits.allow_entries;
        sync_trie(
            &mut self.allow_v4,
            &want_v4,
            "IPv4",
            max,
            map_name::ALLOW_V4,
        )?;
        sync_trie(
            &mut self.allow_v6,
            &want_v6,
            "IPv6",
            max,
            map_name::ALLOW_V6,
        )?;

        // Settings last: the new generation voids every cached verdict, now that the tries
        // hold the new allowlists.
        let prev = self.read_settings()?;
        // The table's size as loaded: `limits.sources` changes only with a restart.
        let settings = settings_for(cfg, &ids, prev.generation, self.limits.sources);
        self.write_settings(settings)?;

        self.write_group_names(&ids)?;
        self.ids = ids;
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
type TrieEntries<K> = BTreeSet<(u32, K)>;

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
fn settings_for(cfg: &Config, ids: &GroupIds, prev_generation: u32, sources: u32) -> Settings {
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
        generation: prev_generation.wrapping_add(1).max(1),
        source_slot_mask: source_slots(sources) - 1,
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

/// Brings a port table to `want`, writing only the entries that differ from what the map
/// holds (read once into `shadow` when not yet known).
fn write_port_table(
    map: &mut Array<MapData, u8>,
    shadow: &mut Option<Vec<u8>>,
    want: Vec<u8>,
    name: &'static str,
) -> Result<()> {
    let have = match shadow.take() {
        Some(h) => h,
        None => {
            let mut h = vec![0u8; PORT_TABLE_ENTRIES as usize];
            for (port, slot) in h.iter_mut().enumerate() {
                *slot = map
                    .get(&(port as u32), 0)
                    .map_err(|error| DatapathError::Map { name, error })?;
            }
            h
        }
    };
    for (port, g) in port_changes(&want, &have) {
        map.set(port, g, 0)
            .map_err(|error| DatapathError::Map { name, error })?;
    }
    *shadow = Some(want);
    Ok(())
}

/// Brings a trie to `want`: inserts what is missing, then removes what is stale.
fn sync_trie<K: aya::Pod + Ord + Copy>(
    trie: &mut LpmTrie<MapData, K, u8>,
    want: &TrieEntries<K>,
    family: &'static str,
    max: u32,
    name: &'static str,
) -> Result<()> {
    if want.len() > max as usize {
        return Err(DatapathError::AllowlistFull {
            family,
            needed: want.len(),
            max,
        });
    }
    let have: TrieEntries<K> = trie
        .keys()
        .filter_map(std::result::Result::ok)
        .map(|k| (k.prefix_len(), k.data()))
        .collect();
    for (plen, data) in want.difference(&have) {
        trie.insert(&Key::new(*plen, *data), 1, 0)
            .map_err(|error| DatapathError::Map { name, error })?;
    }
    for (plen, data) in have.difference(want) {
        trie.remove(&Key::new(*plen, *data))
            .map_err(|error| DatapathError::Map { name, error })?;
    }
    Ok(())
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
        let s = settings_for(&cfg, &ids, 6, 1000);
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
        // The generation wraps past 0: 0 would match an entry cached before any config.
        assert_eq!(settings_for(&cfg, &ids, u32::MAX, 1000).generation, 1);
        assert_eq!(settings_for(&cfg, &ids, 0, 1000).generation, 1);
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
}
