//! `node-monitor firewall`: the config's allowlists as the kernel firewall's own rules, for a
//! team that would rather enforce in netfilter than with XDP drop. Each group's ports accept
//! the group's allowlist (symbolic sets resolved on this node) and drop everything else, in a
//! chain (iptables) or table (nft) of node-monitor's own that is replaced atomically when the
//! printed text is loaded again. Loopback traffic is left alone (node-monitor does not watch
//! `lo` either: the node talking to itself). Printed for review, never applied by
//! node-monitor.
use std::fmt::Write as _;

use ipnet::IpNet;

use crate::config::{AllowEntry, Config, Group, PortRange, Protocol, SetValues};

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// IPv4 rules for `iptables-restore --noflush` (chain `NODE-MONITOR` in `filter`).
    Iptables,
    /// IPv6 rules for `ip6tables-restore --noflush`.
    Ip6tables,
    /// Both families for `nft -f` (table `inet node_monitor`).
    Nft,
}

/// The iptables chain and the nft table node-monitor owns.
pub const CHAIN: &str = "NODE-MONITOR";
pub const NFT_TABLE: &str = "node_monitor";

/// One group's rule inputs: its ports by protocol and its resolved allowlist by family.
struct GroupRules<'a> {
    group: &'a Group,
    v4: Vec<IpNet>,
    v6: Vec<IpNet>,
}

fn per_group<'a>(cfg: &'a Config, sets: &SetValues) -> Vec<GroupRules<'a>> {
    let resolved = cfg.resolve_allowlists_with(sets);
    cfg.groups
        .iter()
        .map(|g| {
            let nets = resolved
                .iter()
                .filter(|(id, _)| *id == g.id)
                .map(|(_, n)| *n);
            GroupRules {
                group: g,
                v4: nets.clone().filter(|n| matches!(n, IpNet::V4(_))).collect(),
                v6: nets.filter(|n| matches!(n, IpNet::V6(_))).collect(),
            }
        })
        .collect()
}

fn range_ipt(r: PortRange) -> String {
    if r.start == r.end {
        r.start.to_string()
    } else {
        format!("{}:{}", r.start, r.end)
    }
}

fn range_nft(r: PortRange) -> String {
    if r.start == r.end {
        r.start.to_string()
    } else {
        format!("{}-{}", r.start, r.end)
    }
}

/// The allow entries that only the cluster can resolve (`control-plane-nodes`, `nodes`,
/// `pod-cidrs`, `apiserver-endpoints`, `{pods: ...}`), as `group: entry`. Rules printed
/// without their addresses would drop the very sources the config allows, so `firewall`
/// refuses a config that has any.
#[must_use]
pub fn cluster_entries(cfg: &Config) -> Vec<String> {
    cfg.groups
        .iter()
        .flat_map(|g| g.allow.iter().map(move |e| (g, e)))
        .filter_map(|(g, e)| match e {
            AllowEntry::Set(s) if s.from_cluster() => Some(format!("{}: {}", g.name, s.name())),
            AllowEntry::Pods(sel) => Some(format!("{}: {sel}", g.name)),
            _ => None,
        })
        .collect()
}

/// The rules in `format`, for a config without cluster sets (see [`cluster_entries`]).
#[must_use]
pub fn render(cfg: &Config, node_subnets: &[IpNet], format: Format, origin: &str) -> String {
    render_with(
        cfg,
        &SetValues {
            node_subnets: node_subnets.to_vec(),
            ..SetValues::default()
        },
        format,
        origin,
        None,
    )
}

/// Where the cluster sets were read, and who holds an address there.
pub struct ClusterSource<'a> {
    /// Printed in the header.
    pub from: &'a str,
    /// The identity of an address of the cluster (`node cp-1`, `pod ns/name`), None for one
    /// it does not know.
    pub who: &'a dyn Fn(std::net::IpAddr) -> Option<String>,
}

/// How a rule's comment names the holder of an address: `node NAME`, `node NAME (host
/// network)`, `pod NAMESPACE/NAME`; None for an address the cluster does not hold.
#[must_use]
pub fn identity_label(id: &crate::record::SourceIdentity) -> Option<String> {
    use crate::record::SourceIdentity as S;
    match id {
        S::Node(n) => Some(format!("node {}", n.name)),
        S::HostNetwork(n) => Some(format!("node {} (host network)", n.name)),
        S::Pod(p) => Some(format!("pod {}/{}", p.namespace, p.name)),
        S::External | S::Unresolved => None,
    }
}

/// Longest comment the iptables `comment` match takes.
const MAX_COMMENT: usize = 255;
/// Longest comment of an nft set element (`NFTNL_UDATA_COMMENT_MAXLEN` 128, its NUL included).
const MAX_NFT_COMMENT: usize = 127;

/// `text` cut to `max` bytes at most, on a character boundary (Kubernetes names are ASCII).
fn cut(mut text: String, max: usize) -> String {
    text.truncate(text.floor_char_boundary(max));
    text
}

/// The identity of a one-address prefix (`/32`, `/128`) by `who`; None for a wider one.
fn holder(cluster: Option<&ClusterSource<'_>>, n: &IpNet) -> Option<String> {
    let c = cluster?;
    (n.prefix_len() == n.max_prefix_len())
        .then(|| (c.who)(n.addr()))
        .flatten()
}

/// The rules in `format` with every set's value given: `cluster` says where the cluster
/// sets were read (printed in the header, with their values and who holds each address) and
/// names the holder of each address in its comment (the iptables rule's, the nft element's).
#[must_use]
pub fn render_with(
    cfg: &Config,
    sets: &SetValues,
    format: Format,
    origin: &str,
    cluster: Option<&ClusterSource<'_>>,
) -> String {
    let groups = per_group(cfg, sets);
    let node_subnets = &sets.node_subnets;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# node-monitor firewall rules from {origin} (digest {}); node-subnets = {}",
        cfg.digest(),
        if node_subnets.is_empty() {
            "(none)".to_owned()
        } else {
            node_subnets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if let Some(c) = cluster {
        let list = |nets: &[IpNet]| {
            if nets.is_empty() {
                "(none)".to_owned()
            } else {
                nets.iter()
                    .map(|n| match holder(cluster, n) {
                        Some(who) => format!("{n} ({who})"),
                        None => n.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let _ = writeln!(s, "# cluster sets, listed once from {}:", c.from);
        for (name, nets) in [
            ("control-plane-nodes", &sets.control_plane_nodes),
            ("nodes", &sets.nodes),
            ("pod-cidrs", &sets.pod_cidrs),
            ("apiserver-endpoints", &sets.apiserver_endpoints),
        ] {
            let _ = writeln!(s, "#   {name} = {}", list(nets));
        }
        for (sel, nets) in &sets.pods {
            let _ = writeln!(s, "#   {sel} = {}", list(nets));
        }
        let _ = writeln!(
            s,
            "# They follow the cluster; these rules do not: print and load them again when it changes."
        );
    }
    match format {
        Format::Iptables | Format::Ip6tables => {
            let v6 = format == Format::Ip6tables;
            let tool = if v6 { "ip6tables" } else { "iptables" };
            let _ = writeln!(
                s,
                "# Load: {tool}-restore --noflush < FILE   (replaces the {CHAIN} chain only)\n\
                 # Hook it once: {tool} -C INPUT -j {CHAIN} || {tool} -I INPUT -j {CHAIN}"
            );
            s.push_str("*filter\n");
            let _ = writeln!(s, ":{CHAIN} - [0:0]");
            // The node talking to itself: node-monitor does not watch loopback either.
            let _ = writeln!(
                s,
                "-A {CHAIN} -i lo -m comment --comment \"loopback\" -j RETURN"
            );
            for g in &groups {
                let nets = if v6 { &g.v6 } else { &g.v4 };
                for proto in &g.group.protocols {
                    for r in &g.group.ports {
                        let m = format!(
                            "-p {} -m {} --dport {}",
                            proto.name(),
                            proto.name(),
                            range_ipt(*r)
                        );
                        for n in nets {
                            let mut comment = format!("{} allow", g.group.name);
                            if let Some(who) = holder(cluster, n) {
                                comment.push(' ');
                                comment.push_str(&who);
                            }
                            let comment = cut(comment, MAX_COMMENT);
                            let _ = writeln!(
                                s,
                                "-A {CHAIN} {m} -s {n} -m comment --comment \"{comment}\" -j RETURN"
                            );
                        }
                        let _ = writeln!(
                            s,
                            "-A {CHAIN} {m} -m comment --comment \"{} drop\" -j DROP",
                            g.group.name
                        );
                    }
                }
            }
            s.push_str("COMMIT\n");
        }
        Format::Nft => {
            let _ = writeln!(
                s,
                "# Load: nft -f FILE   (replaces the table inet {NFT_TABLE} only, atomically)"
            );
            // Declaring, deleting and defining the table in one file replaces it in one
            // transaction, whether it existed or not.
            let _ = writeln!(
                s,
                "table inet {NFT_TABLE} {{\n}}\ndelete table inet {NFT_TABLE}"
            );
            let _ = writeln!(s, "table inet {NFT_TABLE} {{\n\tchain input {{");
            let _ = writeln!(
                s,
                "\t\ttype filter hook input priority filter - 1; policy accept;"
            );
            let _ = writeln!(s, "\t\tiifname \"lo\" accept comment \"loopback\"");
            for g in &groups {
                for proto in &g.group.protocols {
                    let p = match proto {
                        Protocol::Tcp => "tcp",
                        Protocol::Udp => "udp",
                    };
                    let ports: Vec<String> = g.group.ports.iter().map(|r| range_nft(*r)).collect();
                    let ports = if ports.len() == 1 {
                        ports[0].clone()
                    } else {
                        format!("{{ {} }}", ports.join(", "))
                    };
                    for (fam, nets) in [("ip", &g.v4), ("ip6", &g.v6)] {
                        if nets.is_empty() {
                            continue;
                        }
                        // Each element of a cluster set named by its holder.
                        let set: Vec<String> = nets
                            .iter()
                            .map(|n| match holder(cluster, n) {
                                Some(who) => {
                                    format!("{n} comment \"{}\"", cut(who, MAX_NFT_COMMENT))
                                }
                                None => n.to_string(),
                            })
                            .collect();
                        let _ = writeln!(
                            s,
                            "\t\t{p} dport {ports} {fam} saddr {{ {} }} accept comment \"{} allow\"",
                            set.join(", "),
                            g.group.name
                        );
                    }
                    let _ = writeln!(
                        s,
                        "\t\t{p} dport {ports} drop comment \"{} drop\"",
                        g.group.name
                    );
                }
            }
            s.push_str("\t}\n}\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::from_yaml(
            "groups:\n  kubelet: { protocols: [tcp], ports: [\"10250\"], allow: [node-subnets, \"2001:db8:1::/64\"] }\n  \
             etcd: { protocols: [tcp], ports: [\"2379-2380\", \"2381\"], allow: [localhost] }\n  \
             nodeport: { protocols: [tcp, udp], ports: [\"30000-32767\"], allow: [\"0.0.0.0/0\", \"::/0\"] }\n",
            "test",
        )
        .unwrap()
    }

    fn subnets() -> Vec<IpNet> {
        vec!["198.51.100.0/24".parse().unwrap()]
    }

    #[test]
    fn cluster_sets_are_named() {
        assert!(cluster_entries(&cfg()).is_empty());
        let c = Config::from_yaml(
            "groups:\n  kubelet: { protocols: [tcp], ports: [\"10250\"], allow: [localhost, nodes] }\n  \
             etcd: { protocols: [tcp], ports: [\"2379\"], allow: [{pods: {namespace: kube-system, selector: \"k=v\"}}] }\n",
            "test",
        )
        .unwrap();
        assert_eq!(
            cluster_entries(&c),
            [
                "kubelet: nodes",
                "etcd: {pods: {namespace: kube-system, selector: \"k=v\"}}"
            ]
        );
    }

    #[test]
    fn cluster_addresses_are_named_in_the_header_and_their_rules() {
        let c = Config::from_yaml(
            "groups:\n  kubelet: { protocols: [tcp], ports: [\"10250\"], allow: [control-plane-nodes, pod-cidrs] }\n",
            "test",
        )
        .unwrap();
        let sets = SetValues {
            control_plane_nodes: vec![
                "198.51.100.2/32".parse().unwrap(),
                "198.51.100.3/32".parse().unwrap(),
            ],
            pod_cidrs: vec!["203.0.113.0/26".parse().unwrap()],
            ..SetValues::default()
        };
        let long = "n".repeat(300);
        let who = |ip: std::net::IpAddr| match ip.to_string().as_str() {
            "198.51.100.2" => Some("node cp-1".to_owned()),
            // The holder of a wide prefix is never asked.
            "203.0.113.0" => Some("wrong".to_owned()),
            "198.51.100.3" => Some(format!("pod kube-system/{long}")),
            _ => None,
        };
        let src = ClusterSource {
            from: "the fake API",
            who: &who,
        };
        let t = render_with(&c, &sets, Format::Iptables, "test", Some(&src));
        assert!(
            t.contains(
                "#   control-plane-nodes = 198.51.100.2/32 (node cp-1), 198.51.100.3/32 (pod kube-system/nnn"
            ),
            "{t}"
        );
        assert!(t.contains("#   pod-cidrs = 203.0.113.0/26\n"), "{t}");
        assert!(
            t.contains(
                "-s 198.51.100.2/32 -m comment --comment \"kubelet allow node cp-1\" -j RETURN"
            ),
            "{t}"
        );
        assert!(
            t.contains("-s 203.0.113.0/26 -m comment --comment \"kubelet allow\" -j RETURN"),
            "{t}"
        );
        // The comment match takes 255 bytes at most.
        let pod = t
            .lines()
            .find(|l| l.contains("-s 198.51.100.3/32"))
            .unwrap();
        let comment = pod.split('"').nth(1).unwrap();
        assert_eq!(comment.len(), MAX_COMMENT, "{pod}");
        assert!(
            comment.starts_with("kubelet allow pod kube-system/nnn"),
            "{pod}"
        );
        // nft names them in the header and in each set element's comment (127 bytes at most).
        let n = render_with(&c, &sets, Format::Nft, "test", Some(&src));
        assert!(n.contains("198.51.100.2/32 (node cp-1)"), "{n}");
        assert!(
            n.contains("ip saddr { 198.51.100.2/32 comment \"node cp-1\", 198.51.100.3/32 comment \"pod kube-system/nnn"),
            "{n}"
        );
        let element = n.split("198.51.100.3/32 comment \"").nth(1).unwrap();
        assert_eq!(
            element.split('"').next().unwrap().len(),
            MAX_NFT_COMMENT,
            "{n}"
        );
        assert!(n.contains(", 203.0.113.0/26 }"), "{n}");
    }

    #[test]
    fn iptables_rules() {
        let t = render(&cfg(), &subnets(), Format::Iptables, "test");
        let rules: Vec<&str> = t.lines().filter(|l| l.starts_with("-A")).collect();
        assert_eq!(
            rules,
            [
                "-A NODE-MONITOR -i lo -m comment --comment \"loopback\" -j RETURN",
                "-A NODE-MONITOR -p tcp -m tcp --dport 10250 -s 198.51.100.0/24 -m comment --comment \"kubelet allow\" -j RETURN",
                "-A NODE-MONITOR -p tcp -m tcp --dport 10250 -m comment --comment \"kubelet drop\" -j DROP",
                "-A NODE-MONITOR -p tcp -m tcp --dport 2379:2380 -s 127.0.0.0/8 -m comment --comment \"etcd allow\" -j RETURN",
                "-A NODE-MONITOR -p tcp -m tcp --dport 2379:2380 -m comment --comment \"etcd drop\" -j DROP",
                "-A NODE-MONITOR -p tcp -m tcp --dport 2381 -s 127.0.0.0/8 -m comment --comment \"etcd allow\" -j RETURN",
                "-A NODE-MONITOR -p tcp -m tcp --dport 2381 -m comment --comment \"etcd drop\" -j DROP",
                "-A NODE-MONITOR -p tcp -m tcp --dport 30000:32767 -s 0.0.0.0/0 -m comment --comment \"nodeport allow\" -j RETURN",
                "-A NODE-MONITOR -p tcp -m tcp --dport 30000:32767 -m comment --comment \"nodeport drop\" -j DROP",
                "-A NODE-MONITOR -p udp -m udp --dport 30000:32767 -s 0.0.0.0/0 -m comment --comment \"nodeport allow\" -j RETURN",
                "-A NODE-MONITOR -p udp -m udp --dport 30000:32767 -m comment --comment \"nodeport drop\" -j DROP",
            ]
        );
        assert!(t.contains("*filter\n:NODE-MONITOR - [0:0]\n"));
        assert!(t.ends_with("COMMIT\n"));
        let t6 = render(&cfg(), &subnets(), Format::Ip6tables, "test");
        assert!(t6.contains("--dport 10250 -s 2001:db8:1::/64 "), "{t6}");
        assert!(t6.contains("--dport 2381 -s ::1/128 "), "{t6}");
        assert!(!t6.contains("198.51.100.0/24 -m"), "{t6}");
    }

    #[test]
    fn nft_rules() {
        let t = render(&cfg(), &subnets(), Format::Nft, "test");
        assert!(t.contains("table inet node_monitor {\n}\ndelete table inet node_monitor\n"));
        assert!(
            t.contains("policy accept;\n\t\tiifname \"lo\" accept comment \"loopback\"\n"),
            "{t}"
        );
        assert!(t.contains("\t\ttcp dport 10250 ip saddr { 198.51.100.0/24 } accept comment \"kubelet allow\"\n"), "{t}");
        assert!(t.contains("\t\ttcp dport 10250 ip6 saddr { 2001:db8:1::/64 } accept comment \"kubelet allow\"\n"), "{t}");
        assert!(
            t.contains("\t\ttcp dport { 2379-2380, 2381 } ip saddr { 127.0.0.0/8 } accept"),
            "{t}"
        );
        assert!(
            t.contains("\t\tudp dport 30000-32767 drop comment \"nodeport drop\"\n"),
            "{t}"
        );
    }
}
