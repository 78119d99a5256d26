//! Does the node's own firewall drop a new connection from outside a port's allowlist
//! before it reaches the socket? Read from `iptables-save` / `ip6tables-save` (legacy and
//! nft-backed iptables alike) and from nft's JSON ruleset (native nft tables), and
//! evaluated for one packet: a new TCP or UDP connection to the port from a source that no
//! rule names (a source outside the allowlist is, in general, one no rule was written for).
//!
//! The evaluation is deliberately modest and errs towards "open": a rule counts only when
//! all its matches are understood (protocol, destination ports, interface, conntrack state,
//! source prefixes, an ipset of sources, a loopback destination: outside traffic never targets
//! one, and which of the node's addresses it targets is not known); a rule with a source prefix (or
//! `-m set --match-set NAME src`, nft `saddr @set`) never matches that unnamed source, one
//! with a negated source prefix always does; a rule on the loopback interface never does.
//! `DROP`/`REJECT` (nft `drop`/`reject`) filter, `ACCEPT` ends the chain open, jumps and
//! returns are followed, the chain's policy decides at the end. A jump whose matches are not
//! understood may be taken or not: the chain it names is walked, and if it would accept the
//! packet, the port is open (kube-proxy's and the CNIs' chains jump on marks and ipsets).
//! For nft, every base chain on the input hook must let the packet through.
use std::collections::HashMap;

use serde_json::Value;

use crate::config::Protocol;

/// What happens to a new connection from an unnamed source to (protocol, port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Dropped or rejected before the socket.
    Filtered,
    /// Accepted, or no rule stops it.
    Open,
}

/// One iptables rule, as far as the evaluation needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rule {
    proto: Option<String>,
    /// Destination port ranges (empty: any port).
    dports: Vec<(u16, u16)>,
    /// `-s` without `!`: matches only the named sources.
    source_restricted: bool,
    in_iface_lo: bool,
    /// `-d` a loopback prefix: never traffic from outside.
    dest_loopback: bool,
    /// `--ctstate`/`--state` without NEW: never a new connection.
    not_new: bool,
    /// A match this evaluation does not understand.
    unknown: bool,
    target: Option<String>,
}

/// The filter table of one `iptables-save` output: chains with their policies and rules.
#[derive(Debug, Default)]
pub struct Iptables {
    policies: HashMap<String, String>,
    rules: HashMap<String, Vec<Rule>>,
}

/// Whether a prefix (`127.0.0.0/8`, `::1/128`, `127.0.0.1`) lies wholly in loopback space;
/// None when it does not parse.
fn is_loopback(prefix: &str) -> Option<bool> {
    let net: ipnet::IpNet = prefix
        .parse()
        .or_else(|_| prefix.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .ok()?;
    Some(match net {
        ipnet::IpNet::V4(n) => n.prefix_len() >= 8 && n.network().is_loopback(),
        ipnet::IpNet::V6(n) => n.prefix_len() == 128 && n.network().is_loopback(),
    })
}

fn parse_ports(s: &str) -> Option<Vec<(u16, u16)>> {
    s.split(',')
        .map(|p| match p.split_once(':') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => {
                let n = p.parse().ok()?;
                Some((n, n))
            }
        })
        .collect()
}

/// Parses the `*filter` table of `iptables-save` output.
#[must_use]
pub fn parse_iptables_save(text: &str) -> Iptables {
    let mut t = Iptables::default();
    let mut in_filter = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(table) = line.strip_prefix('*') {
            in_filter = table == "filter";
            continue;
        }
        if !in_filter {
            continue;
        }
        if let Some(rest) = line.strip_prefix(':') {
            let mut f = rest.split_whitespace();
            if let (Some(chain), Some(policy)) = (f.next(), f.next()) {
                t.policies.insert(chain.to_owned(), policy.to_owned());
                t.rules.entry(chain.to_owned()).or_default();
            }
            continue;
        }
        let Some(rest) = line.strip_prefix("-A ") else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let Some((chain, args)) = words.split_first() else {
            continue;
        };
        t.rules
            .entry((*chain).to_owned())
            .or_default()
            .push(parse_rule(args));
    }
    t
}

fn parse_rule(args: &[&str]) -> Rule {
    let mut r = Rule::default();
    let mut i = 0;
    let mut negate = false;
    while i < args.len() {
        let a = args[i];
        let next = args.get(i + 1).copied().unwrap_or("");
        let mut took = 2;
        match a {
            "!" => {
                negate = true;
                i += 1;
                continue;
            }
            "-p" | "--protocol" => r.proto = Some(next.to_owned()),
            "-s" | "--source" => r.source_restricted |= !negate,
            // The node's own address, which one the packet names is not known here: only a
            // loopback prefix is understood (outside traffic never targets it), as kube-proxy's
            // "block incoming localnet connections" rule uses it (`-d 127.0.0.0/8 ... -j DROP`,
            // on every node: read as any destination, it closed every port).
            "-d" | "--destination" => match (is_loopback(next), negate) {
                (Some(true), false) => r.dest_loopback = true,
                (Some(true), true) => {}
                _ => r.unknown = true,
            },
            // Only `lo` keeps outside traffic out: any other interface may be the one it
            // arrives on, and `! -i lo` takes it in.
            "-i" | "--in-interface" => r.in_iface_lo |= next == "lo" && !negate,
            "-m" | "--match" => match next {
                "tcp" | "udp" | "multiport" | "comment" | "conntrack" | "state" | "set" => {}
                _ => r.unknown = true,
            },
            // An ipset of sources is a source restriction; one of destinations (or of ports)
            // is not understood.
            "--match-set" => {
                let flags = args.get(i + 2).copied().unwrap_or("");
                if flags.split(',').next() == Some("src") {
                    r.source_restricted |= !negate;
                } else {
                    r.unknown = true;
                }
                took = 3;
            }
            "--dport" | "--dports" | "--destination-port" | "--destination-ports" => {
                match parse_ports(next) {
                    Some(p) if !negate => r.dports = p,
                    _ => r.unknown = true,
                }
            }
            "--ctstate" | "--state" => {
                if !next.split(',').any(|s| s == "NEW") {
                    r.not_new = !negate;
                }
            }
            "--comment" => {
                // A quoted comment may hold spaces: skip to the closing quote.
                if next.starts_with('"') && !(next.len() > 1 && next.ends_with('"')) {
                    let mut j = i + 2;
                    while j < args.len() && !args[j].ends_with('"') {
                        j += 1;
                    }
                    took = j + 1 - i;
                }
            }
            "-j" | "--jump" | "-g" | "--goto" => r.target = Some(next.to_owned()),
            "--syn" => took = 1,
            // Flags and source ports: a new connection may or may not match.
            "--sport" | "--sports" | "--source-port" | "--source-ports" => r.unknown = true,
            "--tcp-flags" => {
                r.unknown = true;
                took = 3;
            }
            "--reject-with" | "--log-prefix" | "--log-level" | "--to-ports" | "--set-mark" => {}
            _ => {
                if a.starts_with('-') {
                    r.unknown = true;
                    took = 1;
                } else {
                    took = 1;
                }
            }
        }
        negate = false;
        i += took;
    }
    r
}

impl Rule {
    /// Does this rule match a new connection from an unnamed, non-loopback source to
    /// (proto, port)? `None`: cannot tell.
    fn matches(&self, proto: Protocol, port: u16) -> Option<bool> {
        if self.unknown {
            return None;
        }
        if let Some(p) = &self.proto
            && p != proto.name()
            && p != "all"
        {
            return Some(false);
        }
        if !self.dports.is_empty() && !self.dports.iter().any(|(a, b)| (*a..=*b).contains(&port)) {
            return Some(false);
        }
        if !self.dports.is_empty() && self.proto.is_none() {
            return None;
        }
        Some(!(self.source_restricted || self.in_iface_lo || self.dest_loopback || self.not_new))
    }
}

impl Iptables {
    /// True when the output had a filter table at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The fate of a new connection to (proto, port) through INPUT.
    #[must_use]
    pub fn fate(&self, proto: Protocol, port: u16) -> Fate {
        match self.walk("INPUT", proto, port, 0) {
            Some(v) => v,
            None => match self.policies.get("INPUT").map(String::as_str) {
                Some("DROP") => Fate::Filtered,
                _ => Fate::Open,
            },
        }
    }

    /// `Some(fate)` when a rule decides, `None` when the chain runs out (or returns).
    fn walk(&self, chain: &str, proto: Protocol, port: u16, depth: u8) -> Option<Fate> {
        if depth > 16 {
            return Some(Fate::Open);
        }
        for r in self.rules.get(chain)? {
            // A rule we cannot read: it may accept (it may not drop), so it decides nothing
            // towards filtered; an accept we cannot read is taken as open.
            let m = r.matches(proto, port);
            let target = r.target.as_deref().unwrap_or("");
            match (m, target) {
                (None | Some(true), "ACCEPT") => return Some(Fate::Open),
                (Some(true), "DROP" | "REJECT") => return Some(Fate::Filtered),
                (Some(true), "RETURN") => return None,
                (Some(true), t) if self.rules.contains_key(t) => {
                    if let Some(v) = self.walk(t, proto, port, depth + 1) {
                        return Some(v);
                    }
                }
                // A jump that may or may not be taken: open if the chain would accept.
                (None, t)
                    if self.rules.contains_key(t)
                        && self.walk(t, proto, port, depth + 1) == Some(Fate::Open) =>
                {
                    return Some(Fate::Open);
                }
                _ => {}
            }
        }
        None
    }
}

/// Native nft base chains on the input hook, with their rules, from `nft -j list ruleset`.
/// The `filter` tables of families `ip` and `ip6` are left out when `skip_iptables` (they are
/// iptables-nft's, read through `iptables-save`).
/// A chain: its policy (base chains) and its rules' expression lists.
type NftChain = (Option<String>, Vec<Vec<Value>>);

#[derive(Debug, Default)]
pub struct Nft {
    /// (table key, chain name) → chain.
    chains: HashMap<(String, String), NftChain>,
    base: Vec<(String, String)>,
}

/// Parses nft's JSON ruleset.
pub fn parse_nft_json(text: &str, skip_iptables: bool) -> Result<Nft, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("nft JSON: {e}"))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("nft JSON: no `nftables` array")?;
    let mut n = Nft::default();
    let key = |o: &Value| -> Option<String> {
        let fam = o.get("family")?.as_str()?;
        let table = o.get("table")?.as_str()?;
        if skip_iptables && table == "filter" && (fam == "ip" || fam == "ip6") {
            return None;
        }
        Some(format!("{fam} {table}"))
    };
    for item in items {
        if let Some(c) = item.get("chain") {
            let (Some(t), Some(name)) = (key(c), c.get("name").and_then(Value::as_str)) else {
                continue;
            };
            let is_input = c.get("hook").and_then(Value::as_str) == Some("input")
                && c.get("type").and_then(Value::as_str) == Some("filter");
            let policy = c.get("policy").and_then(Value::as_str).map(str::to_owned);
            let k = (t, name.to_owned());
            if is_input {
                n.base.push(k.clone());
            }
            n.chains.entry(k).or_insert((None, Vec::new())).0 = policy;
        } else if let Some(r) = item.get("rule") {
            let (Some(t), Some(chain)) = (key(r), r.get("chain").and_then(Value::as_str)) else {
                continue;
            };
            let expr = r
                .get("expr")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            n.chains
                .entry((t, chain.to_owned()))
                .or_insert((None, Vec::new()))
                .1
                .push(expr);
        }
    }
    Ok(n)
}

/// An nft address expression (`right` of a daddr match) as a prefix's text: an address, or
/// `{"prefix": {"addr", "len"}}`; None for a set or anything else.
fn nft_prefix(right: &Value) -> Option<String> {
    if let Some(a) = right.as_str() {
        return (!a.starts_with('@')).then(|| a.to_owned());
    }
    let p = right.get("prefix")?;
    Some(format!(
        "{}/{}",
        p.get("addr")?.as_str()?,
        p.get("len")?.as_u64()?
    ))
}

/// Does an nft port expression (`right` of a dport match) contain `port`?
fn nft_port_in(right: &Value, port: u16) -> Option<bool> {
    let p = i64::from(port);
    if let Some(n) = right.as_i64() {
        return Some(n == p);
    }
    if let Some(r) = right.get("range").and_then(Value::as_array) {
        return Some(r.first()?.as_i64()? <= p && p <= r.get(1)?.as_i64()?);
    }
    if let Some(set) = right.get("set").and_then(Value::as_array) {
        let mut any = false;
        for e in set {
            any |= nft_port_in(e, port)?;
        }
        return Some(any);
    }
    None
}

impl Nft {
    /// The fate of a new connection to (proto, port): filtered when any input base chain
    /// drops it.
    #[must_use]
    pub fn fate(&self, proto: Protocol, port: u16) -> Fate {
        for k in &self.base {
            let verdict = self.walk(k, proto, port, 0);
            let filtered = match verdict {
                Some(f) => f == Fate::Filtered,
                None => self
                    .chains
                    .get(k)
                    .and_then(|c| c.0.as_deref())
                    .is_some_and(|p| p == "drop"),
            };
            if filtered {
                return Fate::Filtered;
            }
        }
        Fate::Open
    }

    fn walk(&self, k: &(String, String), proto: Protocol, port: u16, depth: u8) -> Option<Fate> {
        if depth > 16 {
            return Some(Fate::Open);
        }
        for expr in &self.chains.get(k)?.1 {
            let mut matches = Some(true);
            let mut verdict: Option<(&str, Option<&str>)> = None;
            for e in expr {
                if let Some(m) = e.get("match") {
                    let op = m.get("op").and_then(Value::as_str).unwrap_or("==");
                    let left = m.get("left").unwrap_or(&Value::Null);
                    let right = m.get("right").unwrap_or(&Value::Null);
                    let field = left.pointer("/payload/field").and_then(Value::as_str);
                    let lproto = left.pointer("/payload/protocol").and_then(Value::as_str);
                    let meta = left.pointer("/meta/key").and_then(Value::as_str);
                    let r = match (field, meta) {
                        (Some("dport"), _) => {
                            let same = lproto == Some(proto.name());
                            if !same {
                                Some(false)
                            } else {
                                nft_port_in(right, port).map(|inn| inn == (op == "=="))
                            }
                        }
                        (Some("saddr"), _) => Some(op == "!="),
                        // As for iptables' `-d`: only a loopback prefix is understood.
                        (Some("daddr"), _) => nft_prefix(right)
                            .and_then(|p| is_loopback(&p))
                            .and_then(|lo| lo.then_some(op == "!=")),
                        (_, Some("l4proto" | "nfproto")) => {
                            if meta == Some("l4proto") {
                                right.as_str().map(|p| (p == proto.name()) == (op == "=="))
                            } else {
                                Some(true)
                            }
                        }
                        (_, Some("iifname" | "iif")) => {
                            Some(!(right.as_str() == Some("lo") && op == "=="))
                        }
                        _ if left.get("ct").is_some() => {
                            // ct state: a new connection is `new`.
                            let s = right.to_string();
                            Some(s.contains("new") == (op != "!="))
                        }
                        _ => None,
                    };
                    matches = match (matches, r) {
                        (Some(false), _) | (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    };
                } else if e.get("accept").is_some() {
                    verdict = Some(("accept", None));
                } else if e.get("drop").is_some() || e.get("reject").is_some() {
                    verdict = Some(("drop", None));
                } else if e.get("return").is_some() {
                    verdict = Some(("return", None));
                } else if let Some(j) = e.get("jump").or_else(|| e.get("goto")) {
                    verdict = Some(("jump", j.get("target").and_then(Value::as_str)));
                } else if e.get("xt").is_some() {
                    matches = None;
                }
            }
            let Some((v, target)) = verdict else { continue };
            match (matches, v) {
                // A jump that may or may not be taken: open if the chain would accept.
                (None, "jump") => {
                    if let Some(t) = target {
                        let sub = (k.0.clone(), t.to_owned());
                        if self.walk(&sub, proto, port, depth + 1) == Some(Fate::Open) {
                            return Some(Fate::Open);
                        }
                    }
                }
                (Some(false), _) | (None, "drop" | "return") => {}
                (_, "accept") => return Some(Fate::Open),
                (Some(true), "drop") => return Some(Fate::Filtered),
                (Some(true), "return") => return None,
                (Some(true), "jump") => {
                    if let Some(t) = target {
                        let sub = (k.0.clone(), t.to_owned());
                        if let Some(f) = self.walk(&sub, proto, port, depth + 1) {
                            return Some(f);
                        }
                    }
                }
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp --dport 10250 -j DROP\nCOMMIT\n\
        *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:NODE-MONITOR - [0:0]\n\
        -A INPUT -i lo -j ACCEPT\n\
        -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
        -A INPUT -j NODE-MONITOR\n\
        -A INPUT -p tcp -m tcp --dport 6443 -j ACCEPT\n\
        -A NODE-MONITOR -p tcp -m tcp --dport 10250 -s 198.51.100.0/24 -m comment --comment \"kubelet allow\" -j RETURN\n\
        -A NODE-MONITOR -p tcp -m tcp --dport 10250 -m comment --comment \"kubelet drop\" -j DROP\n\
        -A NODE-MONITOR -s 203.0.113.0/24 -p tcp -m multiport --dports 2379:2381 -j ACCEPT\n\
        -A NODE-MONITOR -p tcp -m multiport --dports 2379:2381,10259 -j REJECT --reject-with tcp-reset\n\
        -A NODE-MONITOR -p udp -m set --match-set evil src -j DROP\n\
        COMMIT\n";

    #[test]
    fn iptables_fates() {
        let t = parse_iptables_save(SAVE);
        assert_eq!(t.fate(Protocol::Tcp, 10250), Fate::Filtered);
        assert_eq!(t.fate(Protocol::Tcp, 2380), Fate::Filtered);
        assert_eq!(t.fate(Protocol::Tcp, 10259), Fate::Filtered);
        assert_eq!(t.fate(Protocol::Tcp, 6443), Fate::Open);
        assert_eq!(t.fate(Protocol::Tcp, 10255), Fate::Open);
        assert_eq!(
            t.fate(Protocol::Udp, 30000),
            Fate::Open,
            "a set of sources never names the unnamed source"
        );
        let dropall = parse_iptables_save(
            "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n",
        );
        assert_eq!(dropall.fate(Protocol::Tcp, 10250), Fate::Filtered);
        assert_eq!(dropall.fate(Protocol::Tcp, 22), Fate::Open);
        assert!(parse_iptables_save("").is_empty());
    }

    /// kube-proxy's filter table (iptables mode, as `iptables-save` prints it on a node with a
    /// NodePort health check and a Service without endpoints), with an admin's rules after
    /// it: the kubelet allowed from an ipset of control-plane addresses, etcd through a chain.
    const KUBE_PROXY: &str = "*filter\n\
        :INPUT ACCEPT [0:0]\n\
        :FORWARD ACCEPT [0:0]\n\
        :OUTPUT ACCEPT [0:0]\n\
        :KUBE-EXTERNAL-SERVICES - [0:0]\n\
        :KUBE-FIREWALL - [0:0]\n\
        :KUBE-KUBELET-CANARY - [0:0]\n\
        :KUBE-NODEPORTS - [0:0]\n\
        :KUBE-PROXY-FIREWALL - [0:0]\n\
        :KUBE-SERVICES - [0:0]\n\
        :ETCD - [0:0]\n\
        :MARKED - [0:0]\n\
        -A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
        -A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n\
        -A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n\
        -A INPUT -j KUBE-FIREWALL\n\
        -A INPUT -m mark --mark 0x4000/0x4000 -j MARKED\n\
        -A INPUT -p tcp -m tcp --dport 10250 -m set --match-set control-plane src -j ACCEPT\n\
        -A INPUT -p tcp -m tcp --dport 10250 -j DROP\n\
        -A INPUT -p tcp -m multiport --dports 2379:2381 -j ETCD\n\
        -A KUBE-EXTERNAL-SERVICES -d 198.51.100.10/32 -p tcp -m comment --comment \"default/nosvc has no endpoints\" -m addrtype --dst-type LOCAL -m tcp --dport 30080 -j REJECT --reject-with icmp-port-unreachable\n\
        -A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n\
        -A KUBE-NODEPORTS -p tcp -m comment --comment \"default/lb:http health check node port\" -m tcp --dport 31500 -j ACCEPT\n\
        -A ETCD -s 203.0.113.0/24 -j ACCEPT\n\
        -A ETCD -j DROP\n\
        -A MARKED -p tcp -m tcp --dport 6443 -j ACCEPT\n\
        COMMIT\n";

    #[test]
    fn kube_proxys_rules_neither_close_nor_open_what_they_do_not_touch() {
        let t = parse_iptables_save(KUBE_PROXY);
        // Its localnet drop names 127.0.0.0/8 as the destination: not every port closed.
        assert_eq!(t.fate(Protocol::Tcp, 10255), Fate::Open);
        assert_eq!(t.fate(Protocol::Udp, 30000), Fate::Open);
        // The admin's rules behind it close the kubelet (the ipset names the allowed) and etcd.
        assert_eq!(t.fate(Protocol::Tcp, 10250), Fate::Filtered);
        assert_eq!(t.fate(Protocol::Tcp, 2380), Fate::Filtered);
        // Its health check port is accepted; a REJECT on a node address is not understood,
        // so it closes nothing.
        assert_eq!(t.fate(Protocol::Tcp, 31500), Fate::Open);
        assert_eq!(t.fate(Protocol::Tcp, 30080), Fate::Open);
        // A jump on a mark may be taken: its chain accepts 6443, so 6443 is open.
        assert_eq!(t.fate(Protocol::Tcp, 6443), Fate::Open);
        let closed = parse_iptables_save(&KUBE_PROXY.replace(
            "-A INPUT -p tcp -m multiport --dports 2379:2381 -j ETCD\n",
            "-A INPUT -p tcp -m multiport --dports 2379:2381 -j ETCD\n-A INPUT -p tcp -m tcp --dport 6443 -j DROP\n",
        ));
        assert_eq!(
            closed.fate(Protocol::Tcp, 6443),
            Fate::Open,
            "the marked jump"
        );
        let unmarked = parse_iptables_save(&closed_without_marked());
        assert_eq!(unmarked.fate(Protocol::Tcp, 6443), Fate::Filtered);
        // The loopback rule alone, destinations of both families.
        for rule in [
            "-A INPUT -d 127.0.0.0/8 -j DROP",
            "-A INPUT -d 127.0.0.1/32 -j DROP",
            "-A INPUT -d ::1/128 -j DROP",
        ] {
            let t = parse_iptables_save(&format!("*filter\n:INPUT ACCEPT [0:0]\n{rule}\nCOMMIT\n"));
            assert_eq!(t.fate(Protocol::Tcp, 10250), Fate::Open, "{rule}");
        }
        // A node address, or a negated loopback, may be the packet's: not understood, so a
        // drop on it closes nothing; a drop on every destination but loopback closes.
        for (rule, fate) in [
            ("-A INPUT -d 198.51.100.10/32 -j DROP", Fate::Open),
            ("-A INPUT ! -d 127.0.0.0/8 -j DROP", Fate::Filtered),
            ("-A INPUT ! -d 198.51.100.10/32 -j DROP", Fate::Open),
        ] {
            let t = parse_iptables_save(&format!("*filter\n:INPUT ACCEPT [0:0]\n{rule}\nCOMMIT\n"));
            assert_eq!(t.fate(Protocol::Tcp, 10250), fate, "{rule}");
        }
    }

    fn closed_without_marked() -> String {
        KUBE_PROXY
            .replace("-A INPUT -m mark --mark 0x4000/0x4000 -j MARKED\n", "")
            .replace(
                "-A INPUT -p tcp -m multiport --dports 2379:2381 -j ETCD\n",
                "-A INPUT -p tcp -m multiport --dports 2379:2381 -j ETCD\n-A INPUT -p tcp -m tcp --dport 6443 -j DROP\n",
            )
    }

    #[test]
    fn nft_fates() {
        let json = r#"{"nftables":[{"metainfo":{"json_schema_version":1}},
          {"table":{"family":"ip","name":"filter","handle":1}},
          {"chain":{"family":"ip","table":"filter","name":"INPUT","handle":1,"type":"filter","hook":"input","prio":0,"policy":"drop"}},
          {"table":{"family":"inet","name":"node_monitor","handle":2}},
          {"chain":{"family":"inet","table":"node_monitor","name":"input","handle":1,"type":"filter","hook":"input","prio":-1,"policy":"accept"}},
          {"rule":{"family":"inet","table":"node_monitor","chain":"input","expr":[
            {"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":{"set":[10250,{"range":[30000,32767]}]}}},
            {"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"198.51.100.0","len":24}}}},
            {"accept":null}]}},
          {"rule":{"family":"inet","table":"node_monitor","chain":"input","expr":[
            {"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":10250}},{"counter":{"packets":0,"bytes":0}},{"drop":null}]}},
          {"rule":{"family":"inet","table":"node_monitor","chain":"input","expr":[
            {"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"udp"}},{"jump":{"target":"udp"}}]}},
          {"chain":{"family":"inet","table":"node_monitor","name":"udp","handle":3}},
          {"rule":{"family":"inet","table":"node_monitor","chain":"udp","expr":[
            {"match":{"op":"==","left":{"payload":{"protocol":"udp","field":"dport"}},"right":{"range":[30000,32767]}}},{"reject":null}]}}
        ]}"#;
        let n = parse_nft_json(json, true).unwrap();
        assert_eq!(n.fate(Protocol::Tcp, 10250), Fate::Filtered);
        assert_eq!(n.fate(Protocol::Tcp, 31000), Fate::Open);
        assert_eq!(
            n.fate(Protocol::Udp, 31000),
            Fate::Filtered,
            "through the jump"
        );
        assert_eq!(
            n.fate(Protocol::Tcp, 6443),
            Fate::Open,
            "iptables' table skipped"
        );
        let with_ipt = parse_nft_json(json, false).unwrap();
        assert_eq!(
            with_ipt.fate(Protocol::Tcp, 6443),
            Fate::Filtered,
            "its drop policy"
        );
        assert!(parse_nft_json("{}", false).is_err());
        // A drop on a loopback destination closes nothing; a jump the walk cannot read is
        // open when its chain accepts.
        let json = r#"{"nftables":[
          {"table":{"family":"inet","name":"t","handle":1}},
          {"chain":{"family":"inet","table":"t","name":"input","handle":1,"type":"filter","hook":"input","prio":0,"policy":"accept"}},
          {"rule":{"family":"inet","table":"t","chain":"input","expr":[
            {"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"127.0.0.0","len":8}}}},{"drop":null}]}},
          {"rule":{"family":"inet","table":"t","chain":"input","expr":[
            {"match":{"op":"==","left":{"payload":{"protocol":"ip6","field":"daddr"}},"right":"::1"}},{"drop":null}]}},
          {"rule":{"family":"inet","table":"t","chain":"input","expr":[
            {"match":{"op":"==","left":{"meta":{"key":"mark"}},"right":16384}},{"jump":{"target":"marked"}}]}},
          {"rule":{"family":"inet","table":"t","chain":"input","expr":[
            {"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":{"set":[6443,10250]}}},{"drop":null}]}},
          {"chain":{"family":"inet","table":"t","name":"marked","handle":2}},
          {"rule":{"family":"inet","table":"t","chain":"marked","expr":[
            {"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":6443}},{"accept":null}]}}
        ]}"#;
        let n = parse_nft_json(json, false).unwrap();
        assert_eq!(n.fate(Protocol::Tcp, 10250), Fate::Filtered);
        assert_eq!(n.fate(Protocol::Tcp, 6443), Fate::Open, "the marked jump");
        assert_eq!(
            n.fate(Protocol::Udp, 30000),
            Fate::Open,
            "loopback drops close nothing"
        );
        let daddr_node = json.replace(
            r#""right":{"prefix":{"addr":"127.0.0.0","len":8}}"#,
            r#""right":"198.51.100.10""#,
        );
        let n = parse_nft_json(&daddr_node, false).unwrap();
        assert_eq!(
            n.fate(Protocol::Tcp, 10250),
            Fate::Filtered,
            "not understood: no drop"
        );
        assert_eq!(n.fate(Protocol::Udp, 30000), Fate::Open);
    }
}
