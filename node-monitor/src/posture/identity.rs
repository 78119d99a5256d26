//! The checks that need the cluster's identity: etcd listening on a node that is not a
//! control-plane node (NM-2003), and a listener in the NodePort range that no Service owns
//! (NM-2004). Without identity (no cluster, or a cache that has not completed its first
//! lists) they are skipped, and the report says why.
use std::{net::IpAddr, sync::Arc};

use super::{Finding, Severity, listeners::Listener};
use crate::{
    cluster::Snapshot,
    config::{Config, PortRange, Protocol},
    record::SourceIdentity,
};

/// What the identity checks read.
#[derive(Debug, Clone)]
pub enum Identity {
    /// No identity: why (shown as the checks' `skipped` detail).
    Unavailable(String),
    /// A cache of the cluster at one moment, and this node's name when known.
    Cluster {
        snapshot: Arc<Snapshot>,
        node: Option<String>,
    },
    /// What the checks need of a synced cache, taken out of it ([`Identity::facts`]): the
    /// form the daemon hands to the audit process it runs (on the process's stdin).
    Facts(Facts),
}

/// What the identity checks read of a synced cluster cache, for one node: whether this node
/// is a control-plane node, and which NodePorts in the NodePort ranges a Service owns.
/// Serializable: the daemon computes it from its own cache (the cache the alerts use, no
/// second list of the cluster) and passes it to the audit process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Facts {
    /// This node's name and whether it is a control-plane node, or why it is not known.
    pub this_node: Result<(String, bool), String>,
    /// The TCP NodePorts (in the config's NodePort ranges) that a Service owns.
    pub tcp_node_ports: Vec<u16>,
    /// The same for UDP.
    pub udp_node_ports: Vec<u16>,
}

/// An identity as it crosses to the daemon's audit process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WireIdentity {
    /// No identity: why.
    Unavailable(String),
    Facts(Facts),
}

impl From<WireIdentity> for Identity {
    fn from(w: WireIdentity) -> Identity {
        match w {
            WireIdentity::Unavailable(why) => Identity::Unavailable(why),
            WireIdentity::Facts(f) => Identity::Facts(f),
        }
    }
}

impl Identity {
    /// A one-shot read of the cluster for the command line (`audit`, `firewall`): the
    /// credentials the daemon would use (`cluster` settings, `KUBECONFIG`, in-cluster), every
    /// watched kind listed once, within `wait`. `Unavailable` when no cluster is to be used
    /// (`cluster.enabled: off`, or `auto` without credentials).
    ///
    /// # Errors
    ///
    /// `cluster.enabled: on` without credentials, or a cluster whose lists did not all
    /// complete within `wait` (unreachable, or refusing the credentials).
    pub async fn one_shot(
        settings: &crate::config::ClusterSettings,
        wait: std::time::Duration,
    ) -> Result<Identity, String> {
        use crate::cluster::{Backoff, Cluster, connect, node_name};
        let Some(client) = connect(settings).await.map_err(|e| e.to_string())? else {
            return Ok(Identity::Unavailable(
                "no cluster: cluster.enabled is off, or no Kubernetes credentials were found (KUBECONFIG, ~/.kube/config, in-cluster service account)"
                    .to_owned(),
            ));
        };
        let node = node_name(settings);
        let cluster = Cluster::start(&client, settings, node.clone(), Backoff::DAEMON);
        let deadline = tokio::time::Instant::now() + wait;
        let snapshot = loop {
            let s = cluster.snapshot();
            if s.synced {
                break Some(s);
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        cluster.shutdown().await;
        match snapshot {
            Some(snapshot) => Ok(Identity::Cluster { snapshot, node }),
            None => Err(format!(
                "the cluster's objects could not all be listed within {}s (API server unreachable, or the credentials refused)",
                wait.as_secs()
            )),
        }
    }
}

impl Identity {
    /// What the checks need of this identity on this node (`local`: its addresses), for
    /// `cfg`'s NodePort ranges: the checks give the same answer on it as on `self`.
    #[must_use]
    pub fn facts(&self, cfg: &Config, local: &[IpAddr]) -> WireIdentity {
        let (snapshot, node) = match self {
            Identity::Unavailable(why) => return WireIdentity::Unavailable(why.clone()),
            Identity::Facts(f) => return WireIdentity::Facts(f.clone()),
            Identity::Cluster { snapshot, node } => (snapshot, node.as_deref()),
        };
        if !snapshot.synced {
            return WireIdentity::Unavailable(NOT_SYNCED.to_owned());
        }
        let owned = |protocol: Protocol| -> Vec<u16> {
            node_port_ranges(cfg)
                .iter()
                .flat_map(|r| r.start..=r.end)
                .filter(|p| snapshot.node_port(*p, protocol).is_some())
                .collect()
        };
        WireIdentity::Facts(Facts {
            this_node: this_node_control_plane(snapshot, node, local),
            tcp_node_ports: owned(Protocol::Tcp),
            udp_node_ports: owned(Protocol::Udp),
        })
    }
}

const NOT_SYNCED: &str = "the cluster cache has not completed its first lists yet";

impl Default for Identity {
    fn default() -> Self {
        Identity::Unavailable("no cluster identity was given".to_owned())
    }
}

/// The etcd ports (client, peer) by the catalog.
const ETCD_PORTS: [u16; 2] = [2379, 2380];
/// Kubernetes' default `--service-node-port-range`, when the config has no `nodeport` group.
const DEFAULT_NODE_PORTS: PortRange = PortRange {
    start: 30000,
    end: 32767,
};

/// Whether this node is a control-plane node, as the cluster knows it: the node whose name
/// is `node` (else whichever node holds one of `local` addresses) is labelled
/// `node-role.kubernetes.io/control-plane`. `Err`: this node is not in the cache.
fn this_node_control_plane(
    snapshot: &Snapshot,
    node: Option<&str>,
    local: &[IpAddr],
) -> Result<(String, bool), String> {
    let mut fallback = None;
    for ip in local {
        if let Some(SourceIdentity::Node(n) | SourceIdentity::HostNetwork(n)) =
            snapshot.address(*ip)
        {
            // The same test as the `control-plane-nodes` set: the node's addresses are in it.
            let cp = snapshot.control_plane_nodes.binary_search(ip).is_ok();
            let hit = (n.name.to_string(), cp);
            if node.is_none_or(|want| want == &*n.name) {
                return Ok(hit);
            }
            fallback.get_or_insert(hit);
        }
    }
    fallback.ok_or_else(|| {
        format!(
            "this node ({}) is not among the cluster's nodes: none of its addresses is a node's InternalIP or ExternalIP",
            node.unwrap_or("name unknown")
        )
    })
}

/// The NodePort ranges: the config's `nodeport` group's, else Kubernetes' default.
fn node_port_ranges(cfg: &Config) -> Vec<PortRange> {
    cfg.groups
        .iter()
        .find(|g| g.name == "nodeport")
        .map_or_else(|| vec![DEFAULT_NODE_PORTS], |g| g.ports.clone())
}

/// The identity checks: `Ok((findings, detail))`, or `Err(why skipped)`.
///
/// # Errors
///
/// No identity, a cache not yet synced, or this node not in the cache: the reason.
pub fn findings(
    identity: &Identity,
    ls: &[Listener],
    cfg: &Config,
    local: &[IpAddr],
) -> Result<(Vec<Finding>, String), String> {
    let facts = match identity.facts(cfg, local) {
        WireIdentity::Unavailable(why) => return Err(why),
        WireIdentity::Facts(f) => f,
    };
    let mut out = Vec::new();
    let mut detail = Vec::new();
    // etcd outside the control plane.
    let etcd: Vec<&Listener> = ls
        .iter()
        .filter(|l| l.protocol == Protocol::Tcp && ETCD_PORTS.contains(&l.port))
        .collect();
    match facts.this_node {
        Ok((name, cp)) => {
            detail.push(format!(
                "node {name} is {}a control-plane node",
                if cp { "" } else { "not " }
            ));
            if !cp {
                for l in etcd.iter().filter(|l| !l.loopback_only()) {
                    out.push(Finding::new(
                        "NM-2003",
                        Severity::High,
                        "etcd listening on a node that is not a control-plane node",
                        format!(
                            "node {name} (no control-plane role) listening: {}",
                            l.describe()
                        ),
                        "run etcd on control-plane nodes only (or label this node node-role.kubernetes.io/control-plane if it is one); stop the stray etcd",
                        None,
                    ));
                }
            }
        }
        // The NodePort check does not need to know this node: it goes on.
        Err(why) => detail.push(format!(
            "etcd check skipped ({} etcd listeners): {why}",
            etcd.len()
        )),
    }
    // NodePort-range listeners that no Service owns.
    let ranges = node_port_ranges(cfg);
    let mut in_range = 0;
    for l in ls {
        if !ranges.iter().any(|r| (r.start..=r.end).contains(&l.port)) {
            continue;
        }
        in_range += 1;
        let owned = match l.protocol {
            Protocol::Tcp => &facts.tcp_node_ports,
            Protocol::Udp => &facts.udp_node_ports,
        };
        if !owned.contains(&l.port) {
            out.push(Finding::new(
                "NM-2004",
                Severity::Medium,
                "listener in the NodePort range that no Service owns",
                format!(
                    "listening: {} (no Service has NodePort {}/{})",
                    l.describe(),
                    l.port,
                    l.protocol.name()
                ),
                "move the process off the NodePort range (or narrow --service-node-port-range), so that no Service's NodePort lands on it and it is not reachable as if it were one",
                None,
            ));
        }
    }
    detail.push(format!(
        "{in_range} listeners in the NodePort range ({})",
        ranges
            .iter()
            .map(|r| format!("{}-{}", r.start, r.end))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok((out, detail.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing::{
        objects::{node, service},
        synthetic::snapshot_of,
    };

    fn l(port: u16, addr: &str, protocol: Protocol) -> Listener {
        Listener {
            protocol,
            addr: addr.parse().unwrap(),
            port,
            inode: 1,
            process: Some((7, "x".into())),
        }
    }

    fn cluster(worker_roles: &[&str]) -> Identity {
        Identity::Cluster {
            snapshot: snapshot_of(
                &[
                    node("w-1", &[("InternalIP", "198.51.100.1")], &[], worker_roles),
                    node(
                        "cp-1",
                        &[("InternalIP", "198.51.100.2")],
                        &[],
                        &["control-plane"],
                    ),
                ],
                &[service(
                    "shop",
                    "web",
                    &[(80, 30080, "TCP")],
                    "Cluster",
                    &[],
                )],
            ),
            node: Some("w-1".into()),
        }
    }

    #[test]
    fn etcd_off_the_control_plane_and_nodeports_without_a_service() {
        let cfg = Config::default_config();
        let ls = [
            l(2379, "0.0.0.0", Protocol::Tcp),
            l(2380, "127.0.0.1", Protocol::Tcp),
            l(30080, "0.0.0.0", Protocol::Tcp),
            l(30080, "0.0.0.0", Protocol::Udp),
            l(30090, "::", Protocol::Tcp),
        ];
        let local: [IpAddr; 1] = ["198.51.100.1".parse().unwrap()];
        let (f, detail) = findings(&cluster(&["worker"]), &ls, &cfg, &local).unwrap();
        let got: Vec<(&str, &str)> = f.iter().map(|f| (f.id, &*f.evidence)).collect();
        assert_eq!(
            got,
            [
                (
                    "NM-2003",
                    "node w-1 (no control-plane role) listening: 0.0.0.0:2379/tcp (x, pid 7)"
                ),
                (
                    "NM-2004",
                    "listening: 0.0.0.0:30080/udp (x, pid 7) (no Service has NodePort 30080/udp)"
                ),
                (
                    "NM-2004",
                    "listening: [::]:30090/tcp (x, pid 7) (no Service has NodePort 30090/tcp)"
                ),
            ]
        );
        assert!(
            detail.contains("node w-1 is not a control-plane node"),
            "{detail}"
        );
        // On a control-plane node etcd is where it belongs.
        let (f, _) = findings(&cluster(&["control-plane"]), &ls, &cfg, &local).unwrap();
        assert!(f.iter().all(|f| f.id == "NM-2004"), "{f:?}");
    }

    /// The facts the daemon hands its audit process, through JSON, give the checks the same
    /// answers as the cache they were taken from.
    #[test]
    fn facts_through_json_give_the_same_findings() {
        let cfg = Config::default_config();
        let ls = [
            l(2379, "0.0.0.0", Protocol::Tcp),
            l(30080, "0.0.0.0", Protocol::Tcp),
            l(30080, "0.0.0.0", Protocol::Udp),
            l(30090, "::", Protocol::Tcp),
        ];
        let local: [IpAddr; 1] = ["198.51.100.1".parse().unwrap()];
        for roles in [&["worker"][..], &["control-plane"], &[]] {
            let direct = cluster(roles);
            let wire = serde_json::to_string(&direct.facts(&cfg, &local)).unwrap();
            let back: Identity = serde_json::from_str::<WireIdentity>(&wire).unwrap().into();
            assert_eq!(
                findings(&back, &ls, &cfg, &local),
                findings(&direct, &ls, &cfg, &local),
                "{wire}"
            );
        }
        let why = serde_json::to_string(&Identity::default().facts(&cfg, &local)).unwrap();
        let back: Identity = serde_json::from_str::<WireIdentity>(&why).unwrap().into();
        assert_eq!(
            findings(&back, &ls, &cfg, &local).unwrap_err(),
            "no cluster identity was given"
        );
    }

    #[test]
    fn skipped_with_a_reason() {
        let cfg = Config::default_config();
        let ls = [l(2379, "0.0.0.0", Protocol::Tcp)];
        let why = findings(&Identity::default(), &ls, &cfg, &[]).unwrap_err();
        assert_eq!(why, "no cluster identity was given");
        let unsynced = Identity::Cluster {
            snapshot: Arc::new(Snapshot::default()),
            node: None,
        };
        assert!(
            findings(&unsynced, &ls, &cfg, &[])
                .unwrap_err()
                .contains("not completed its first lists")
        );
        // This node unknown: the etcd part says so, the NodePort part still runs.
        let (f, detail) = findings(&cluster(&[]), &ls, &cfg, &[]).unwrap();
        assert!(f.is_empty(), "{f:?}");
        assert!(
            detail.contains("etcd check skipped (1 etcd listeners): this node (w-1) is not among the cluster's nodes"),
            "{detail}"
        );
    }
}
