//! The lab topology ([`Lab`]): a router, the node, a control-plane peer and an outside
//! host, each in its own network namespace, wired by veths and checked with pings.
//!
//! ```text
//!   cp (eth0 198.51.100.2)  ──┐
//!                             ├── br0 198.51.100.254 ── router ── vout 203.0.113.254 ── outside (eth0 203.0.113.2)
//!   node (eth0 198.51.100.1) ─┘     2001:db8:1::fe                 2001:db8:2::fe          2001:db8:2::2
//! ```
//!
//! Veths are created inside the router namespace with their peer sent straight into the
//! other lab namespace, so no end ever exists in the root namespace; no namespace gets a
//! default route.

use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{addr, netns::Netns};

/// The interface name of the node (and of cp and outside) inside its namespace.
pub const NODE_IFACE: &str = "eth0";

/// The lab: a router, the node, a control-plane peer and an outside host, each in its own
/// namespace (see the module doc for the topology). Dropping it removes all four.
#[derive(Debug)]
pub struct Lab {
    /// `br0` (node LAN) and the leg to `outside`; forwards IPv4 and IPv6.
    pub router: Netns,
    /// The monitored node: `eth0` with [`addr::NODE_V4`], [`addr::NODE_V6`].
    pub node: Netns,
    /// A control-plane peer on the node LAN: [`addr::CP_V4`], [`addr::CP_V6`].
    pub cp: Netns,
    /// A host beyond the router: [`addr::OUTSIDE_V4`], [`addr::OUTSIDE_V6`].
    pub outside: Netns,
}

impl Lab {
    /// Builds the topology and checks with pings (IPv4, IPv6) that cp and outside reach
    /// the node. Needs root, iproute2, procps (sysctl) and iputils-ping.
    pub fn new() -> anyhow::Result<Lab> {
        let router = Netns::new("router")?;
        let node = Netns::new("node")?;
        let cp = Netns::new("cp")?;
        let outside = Netns::new("outside")?;
        let lab = Lab {
            router,
            node,
            cp,
            outside,
        };
        lab.wire().context("build the lab topology")?;
        lab.check_connectivity()?;
        Ok(lab)
    }

    fn wire(&self) -> anyhow::Result<()> {
        use addr::*;
        let r = &self.router;
        r.sysctl(&[
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.conf.default.forwarding=1",
        ])?;
        r.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        r.ip(&["addr", "add", &format!("{ROUTER_LAN_V4}/24"), "dev", "br0"])?;
        r.ip(&[
            "addr",
            "add",
            &format!("{ROUTER_LAN_V6}/64"),
            "dev",
            "br0",
            "nodad",
        ])?;
        r.ip(&["link", "set", "br0", "up"])?;
        // Each veth is created inside the router namespace, its peer sent straight into
        // the other lab namespace: no end ever exists in the root namespace.
        for (leg, ns) in [
            ("vnode", &self.node),
            ("vcp", &self.cp),
            ("vout", &self.outside),
        ] {
            r.ip(&[
                "link", "add", leg, "type", "veth", "peer", "name", NODE_IFACE, "netns", &ns.name,
            ])?;
        }
        r.ip(&["link", "set", "vnode", "master", "br0", "up"])?;
        r.ip(&["link", "set", "vcp", "master", "br0", "up"])?;
        r.ip(&["addr", "add", &format!("{ROUTER_OUT_V4}/24"), "dev", "vout"])?;
        r.ip(&[
            "addr",
            "add",
            &format!("{ROUTER_OUT_V6}/64"),
            "dev",
            "vout",
            "nodad",
        ])?;
        r.ip(&["link", "set", "vout", "up"])?;

        let lan_routes = [
            (OUTSIDE_SUBNET_V4, ROUTER_LAN_V4.to_string()),
            (OUTSIDE_SUBNET_V6, ROUTER_LAN_V6.to_string()),
        ];
        let out_routes = [
            (NODE_SUBNET_V4, ROUTER_OUT_V4.to_string()),
            (NODE_SUBNET_V6, ROUTER_OUT_V6.to_string()),
        ];
        for (ns, v4, v6, routes) in [
            (
                &self.node,
                NODE_V4.to_string(),
                NODE_V6.to_string(),
                &lan_routes,
            ),
            (&self.cp, CP_V4.to_string(), CP_V6.to_string(), &lan_routes),
            (
                &self.outside,
                OUTSIDE_V4.to_string(),
                OUTSIDE_V6.to_string(),
                &out_routes,
            ),
        ] {
            ns.sysctl(&[
                "net.ipv6.conf.eth0.accept_dad=0",
                "net.ipv6.conf.eth0.accept_ra=0",
            ])?;
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", NODE_IFACE])?;
            ns.ip(&[
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                NODE_IFACE,
                "nodad",
            ])?;
            ns.ip(&["link", "set", NODE_IFACE, "up"])?;
            for (subnet, via) in routes {
                ns.ip(&["route", "add", subnet, "via", via])?;
            }
        }
        Ok(())
    }

    /// Pings the node from cp and from outside, IPv4 and IPv6 (at most 5 tries of 1 s each).
    pub fn check_connectivity(&self) -> anyhow::Result<()> {
        let node_v4 = addr::NODE_V4.to_string();
        let node_v6 = addr::NODE_V6.to_string();
        for (from, to) in [
            (&self.cp, &node_v4),
            (&self.cp, &node_v6),
            (&self.outside, &node_v4),
            (&self.outside, &node_v6),
        ] {
            let mut last = String::new();
            let ok = (0..5).any(|_| {
                match from.exec_timeout(Duration::from_secs(5), "ping", &["-n", "-c1", "-W1", to]) {
                    Ok(o) if o.status.success() => true,
                    Ok(o) => {
                        last = format!(
                            "{}{}",
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        );
                        false
                    }
                    Err(e) => {
                        last = format!("{e:#}");
                        false
                    }
                }
            });
            if !ok {
                bail!(
                    "lab connectivity check failed: {} cannot ping {to} ({}). Is iputils-ping installed (`cargo xtask setup`)?",
                    from.name,
                    last.trim()
                );
            }
        }
        Ok(())
    }

    /// The four namespaces, router first.
    pub fn namespaces(&self) -> [&Netns; 4] {
        [&self.router, &self.node, &self.cp, &self.outside]
    }

    /// Leaves the lab in place after this value is gone; returns the namespace names
    /// (router, node, cp, outside). Remove it with [`remove_all`](crate::remove_all).
    pub fn keep(self) -> [String; 4] {
        let Lab {
            router,
            node,
            cp,
            outside,
        } = self;
        [router.keep(), node.keep(), cp.keep(), outside.keep()]
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::{TcpListener, TcpStream},
        path::Path,
        thread,
    };

    use super::*;
    use crate::netns::list_namespaces;

    fn exists(name: &str) -> bool {
        Path::new("/run/netns").join(name).exists()
    }

    #[test]
    fn lab_connects_both_families_and_is_removed() {
        let lab = Lab::new().unwrap();
        let names: Vec<String> = lab.namespaces().iter().map(|n| n.name.clone()).collect();
        assert!(names.iter().all(|n| exists(n)));
        let listed = list_namespaces().unwrap();
        assert!(names.iter().all(|n| listed.contains(n)));
        // No default route anywhere.
        for ns in lab.namespaces() {
            for fam in ["-4", "-6"] {
                let routes = ns.ip(&[fam, "route", "show", "default"]).unwrap();
                assert!(routes.trim().is_empty(), "{}: {routes}", ns.name);
            }
        }
        // TCP over both families, cp -> node and outside -> node, with std sockets.
        let l4 = lab
            .node
            .run(|| TcpListener::bind((addr::NODE_V4, 10250)))
            .unwrap()
            .unwrap();
        let l6 = lab
            .node
            .run(|| TcpListener::bind((addr::NODE_V6, 10250)))
            .unwrap()
            .unwrap();
        let server = thread::spawn(move || {
            let mut seen = Vec::new();
            for l in [&l4, &l6, &l4, &l6] {
                let (mut s, peer) = l.accept().unwrap();
                let mut b = [0u8; 2];
                s.read_exact(&mut b).unwrap();
                seen.push(peer.ip());
            }
            seen
        });
        for ns in [&lab.cp, &lab.outside] {
            for dst in [
                std::net::IpAddr::V4(addr::NODE_V4),
                std::net::IpAddr::V6(addr::NODE_V6),
            ] {
                ns.run(move || {
                    let mut s =
                        TcpStream::connect_timeout(&(dst, 10250).into(), Duration::from_secs(2))
                            .unwrap();
                    s.write_all(b"hi").unwrap();
                })
                .unwrap();
            }
        }
        let seen = server.join().unwrap();
        let want: Vec<std::net::IpAddr> = vec![
            addr::CP_V4.into(),
            addr::CP_V6.into(),
            addr::OUTSIDE_V4.into(),
            addr::OUTSIDE_V6.into(),
        ];
        assert_eq!(seen, want);
        // A process in a namespace is ended when the lab drops.
        let mut sleeper = lab.node.command("sleep");
        sleeper.arg("30");
        let sleeper = sleeper.spawn().unwrap();
        drop(lab);
        assert!(
            names.iter().all(|n| !exists(n)),
            "namespaces left: {names:?}"
        );
        let mut sleeper = sleeper;
        let st = sleeper.wait().unwrap();
        assert!(!st.success());
    }
}
