//! Validation of `cluster`.

use std::borrow::Cow;

use serde_saphyr::Spanned;

use super::{Bound, Validator, groups::parse_allow_entry};
use crate::config::{
    cluster::{ClusterMode, ClusterSettings, check_node_name},
    model::AllowEntry,
    raw::RawCluster,
};

const RESYNC: Bound = Bound {
    field: "resync_s",
    min: 60,
    max: 86_400,
    note: "",
    power_of_two: false,
};
const STALE_AFTER: Bound = Bound {
    field: "stale_after_s",
    min: 1,
    max: 3600,
    note: "",
    power_of_two: false,
};

impl Validator<'_> {
    pub(super) fn cluster(&self, raw: Option<RawCluster>) -> ClusterSettings {
        let d = ClusterSettings::DEFAULT;
        let Some(raw) = raw else {
            return d;
        };
        let enabled = raw.enabled.and_then(|e| {
            let mode = ClusterMode::from_name(&e.value).ok_or_else(|| {
                self.error(
                    Some(e.referenced),
                    "cluster.enabled",
                    format!(
                        "unknown value `{}`: expected one of {}",
                        e.value,
                        ClusterMode::ALL.map(ClusterMode::name).join(", ")
                    ),
                )
            });
            self.check(mode)
        });
        let node_name = raw.node_name.and_then(|n| {
            let checked = check_node_name(&n.value)
                .map_err(|m| self.error(Some(n.referenced), "cluster.node_name", m));
            self.check(checked).map(|()| n.value)
        });
        let secs = std::time::Duration::from_secs;
        let node_port_also_allow = raw
            .node_port_also_allow
            .map_or(d.node_port_also_allow, |v| Cow::Owned(self.also_allow(&v)));
        ClusterSettings {
            node_port_also_allow,
            enabled: enabled.unwrap_or(d.enabled),
            node_name,
            resync: secs(self.opt_u64("cluster", &RESYNC, raw.resync_s, d.resync.as_secs())),
            stale_after: secs(self.opt_u64(
                "cluster",
                &STALE_AFTER,
                raw.stale_after_s,
                d.stale_after.as_secs(),
            )),
        }
    }

    /// `cluster.node_port_also_allow`: CIDRs, addresses and symbolic set names.
    fn also_allow(&self, raw: &[Spanned<String>]) -> Vec<AllowEntry> {
        raw.iter()
            .enumerate()
            .filter_map(|(i, entry)| {
                let parsed = parse_allow_entry(&entry.value).map_err(|m| {
                    self.error(
                        Some(entry.referenced),
                        format!("cluster.node_port_also_allow[{i}]"),
                        m,
                    )
                });
                self.check(parsed)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{AllowEntry, Config, SymbolicSet, cluster::NODE_PORT_ALSO_ALLOW};

    #[test]
    fn node_port_also_allow_defaults_parses_and_names_bad_entries() {
        let d = Config::from_yaml("cluster:\n  enabled: off\n", "t").expect("config");
        assert_eq!(&*d.cluster.node_port_also_allow, NODE_PORT_ALSO_ALLOW);
        let c = Config::from_yaml(
            "cluster:\n  node_port_also_allow: [nodes, \"203.0.113.0/24\", 2001:db8::7]\n",
            "t",
        )
        .expect("config");
        assert_eq!(
            &*c.cluster.node_port_also_allow,
            [
                AllowEntry::Set(SymbolicSet::Nodes),
                AllowEntry::Cidr("203.0.113.0/24".parse().expect("net")),
                AllowEntry::Cidr("2001:db8::7/128".parse().expect("net")),
            ]
        );
        let none = Config::from_yaml("cluster:\n  node_port_also_allow: []\n", "t").expect("c");
        assert!(none.cluster.node_port_also_allow.is_empty());
        assert_ne!(none.digest(), d.digest(), "the digest follows it");
        let err = Config::from_yaml(
            "cluster:\n  node_port_also_allow: [nodes, everyone]\n",
            "t.yaml",
        )
        .expect_err("bad entry")
        .to_string();
        assert!(
            err.contains("t.yaml:2:")
                && err.contains("cluster.node_port_also_allow[1]")
                && err.contains("unknown symbolic set `everyone`"),
            "{err}"
        );
    }
}
