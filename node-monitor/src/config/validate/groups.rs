//! Validation of `groups`: names, protocols, ports, allowlists, actions, and ports that two
//! groups claim.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_saphyr::{Location, Spanned};

use super::Validator;
use crate::config::{
    model::{
        Action, AllowEntry, Group, MAX_USER_GROUPS, PodSelector, PortRange, Protocol, SymbolicSet,
        default_detect_sweeps,
    },
    raw::{RawAllow, RawGroups, RawPods, RawPort},
    tables::PORT_TABLE_LEN,
};

/// Which group id owns each port, per protocol (0: none yet): for the overlap check.
struct PortOwners {
    tcp: Vec<u8>,
    udp: Vec<u8>,
}

impl PortOwners {
    fn new() -> PortOwners {
        PortOwners {
            tcp: vec![0; PORT_TABLE_LEN],
            udp: vec![0; PORT_TABLE_LEN],
        }
    }

    fn of(&mut self, proto: Protocol) -> &mut [u8] {
        match proto {
            Protocol::Tcp => &mut self.tcp,
            Protocol::Udp => &mut self.udp,
        }
    }
}

impl Validator<'_> {
    pub(super) fn groups(&self, raw: RawGroups) -> Vec<Group> {
        let mut groups: Vec<Group> = Vec::with_capacity(raw.0.len());
        let mut owners = PortOwners::new();
        for (index, (name, raw_group)) in raw.0.into_iter().enumerate() {
            let path = format!("groups.{}", name.value);
            let valid_name = check_group_name(&name.value)
                .map_err(|m| self.error(Some(name.referenced), path.as_str(), m));
            self.check(valid_name);
            // Ids 1..=63; the groups past the last id are not checked further.
            let Some(id) = u8::try_from(index + 1)
                .ok()
                .filter(|_| index < MAX_USER_GROUPS)
            else {
                self.report(self.error(
                    Some(name.referenced),
                    path.as_str(),
                    format!("too many groups: at most {MAX_USER_GROUPS} are supported"),
                ));
                break;
            };

            let protocols = self.protocols(&path, name.referenced, raw_group.protocols);
            let (ports, port_locations) = self.ports(&path, name.referenced, raw_group.ports);
            let allow = self.allow(&path, raw_group.allow.as_deref().unwrap_or_default());
            let action = raw_group.action.map_or(Action::Monitor, |a| {
                let action = Action::from_name(&a.value).ok_or_else(|| {
                    self.error(
                        Some(a.referenced),
                        format!("{path}.action"),
                        format!(
                            "unknown action `{}`: expected one of {}",
                            a.value,
                            Action::ALL.map(Action::name).join(", ")
                        ),
                    )
                });
                self.check(action).unwrap_or(Action::Monitor)
            });
            let group = Group {
                name: name.value,
                id,
                protocols,
                allow,
                action,
                detect_sweeps: raw_group
                    .detect_sweeps
                    .map_or_else(|| default_detect_sweeps(&ports), |d| d.value),
                ports,
            };
            self.claim_ports(&path, &group, &port_locations, &groups, &mut owners);
            groups.push(group);
        }
        groups
    }

    /// A port belongs to one group per protocol: gives `group` the ports nobody has yet, and
    /// reports, for each entry of its `ports`, the first port (in port order then protocol
    /// order) that an earlier group already has.
    fn claim_ports(
        &self,
        path: &str,
        group: &Group,
        locations: &[Location],
        earlier: &[Group],
        owners: &mut PortOwners,
    ) {
        for (j, (range, at)) in group.ports.iter().zip(locations).enumerate() {
            let taken = (range.start..=range.end).find_map(|port| {
                group.protocols.iter().find_map(|&proto| {
                    let owner = owners.of(proto)[usize::from(port)];
                    (owner != 0 && owner != group.id).then_some((port, proto, owner))
                })
            });
            if let Some((port, proto, owner)) = taken {
                let other = earlier
                    .get(usize::from(owner) - 1)
                    .map_or("?", |g| g.name.as_str());
                self.report(self.error(
                    Some(*at),
                    format!("{path}.ports[{j}]"),
                    format!("port {port}/{proto} is already in group {other}"),
                ));
            }
        }
        for &proto in &group.protocols {
            let table = owners.of(proto);
            for range in &group.ports {
                for owner in &mut table[usize::from(range.start)..=usize::from(range.end)] {
                    if *owner == 0 {
                        *owner = group.id;
                    }
                }
            }
        }
    }

    /// The protocols, each bad entry reported and left out.
    fn protocols(
        &self,
        path: &str,
        group_at: Location,
        raw: Option<Spanned<Vec<Spanned<String>>>>,
    ) -> Vec<Protocol> {
        let field = format!("{path}.protocols");
        let Some(raw) = raw else {
            self.report(self.error(
                Some(group_at),
                field,
                "missing field `protocols` (a list of tcp and/or udp)",
            ));
            return Vec::new();
        };
        if raw.value.is_empty() {
            self.report(self.error(
                Some(raw.referenced),
                field,
                "must list at least one protocol (tcp, udp)",
            ));
            return Vec::new();
        }
        let mut protocols = Vec::with_capacity(raw.value.len());
        for (i, p) in raw.value.iter().enumerate() {
            let at = Some(p.referenced);
            let field = format!("{field}[{i}]");
            let proto = Protocol::from_name(&p.value).ok_or_else(|| {
                self.error(
                    at,
                    field.as_str(),
                    format!(
                        "unknown protocol `{}`: expected one of {}",
                        p.value,
                        Protocol::ALL.map(Protocol::name).join(", ")
                    ),
                )
            });
            let Some(proto) = self.check(proto) else {
                continue;
            };
            if protocols.contains(&proto) {
                self.report(self.error(at, field, format!("duplicate protocol {proto}")));
            } else {
                protocols.push(proto);
            }
        }
        protocols
    }

    /// The port entries and where each is written; each bad entry reported and left out.
    fn ports(
        &self,
        path: &str,
        group_at: Location,
        raw: Option<Spanned<Vec<Spanned<RawPort>>>>,
    ) -> (Vec<PortRange>, Vec<Location>) {
        let field = format!("{path}.ports");
        let Some(raw) = raw else {
            self.report(self.error(
                Some(group_at),
                field,
                r#"missing field `ports` (a list such as ["10250", "30000-32767"])"#,
            ));
            return (Vec::new(), Vec::new());
        };
        if raw.value.is_empty() {
            self.report(self.error(
                Some(raw.referenced),
                field,
                "must list at least one port or range",
            ));
            return (Vec::new(), Vec::new());
        }
        let mut ranges = Vec::with_capacity(raw.value.len());
        let mut locations = Vec::with_capacity(raw.value.len());
        for (i, p) in raw.value.iter().enumerate() {
            let range = parse_port_entry(&p.value)
                .map_err(|m| self.error(Some(p.referenced), format!("{field}[{i}]"), m));
            if let Some(range) = self.check(range) {
                ranges.push(range);
                locations.push(p.referenced);
            }
        }
        (ranges, locations)
    }

    /// The allow entries, each bad one reported and left out.
    fn allow(&self, path: &str, raw: &[Spanned<RawAllow>]) -> Vec<AllowEntry> {
        raw.iter()
            .enumerate()
            .filter_map(|(i, entry)| match &entry.value {
                RawAllow::Text(text) => {
                    let parsed = parse_allow_entry(text).map_err(|m| {
                        self.error(Some(entry.referenced), format!("{path}.allow[{i}]"), m)
                    });
                    self.check(parsed)
                }
                RawAllow::Pods(pods) => {
                    self.pods_entry(&format!("{path}.allow[{i}].pods"), entry.referenced, pods)
                }
            })
            .collect()
    }

    /// `{pods: {namespace, selector}}`: a namespace name and `k=v` pairs.
    fn pods_entry(&self, path: &str, at: Location, pods: &RawPods) -> Option<AllowEntry> {
        let namespace =
            match &pods.namespace {
                None => {
                    self.report(self.error(
                        Some(at),
                        format!("{path}.namespace"),
                        "missing: name the pods' namespace",
                    ));
                    None
                }
                Some(ns) => self
                    .check(check_namespace(&ns.value).map_err(|m| {
                        self.error(Some(ns.referenced), format!("{path}.namespace"), m)
                    }))
                    .map(|()| ns.value.clone()),
            };
        let labels = match &pods.selector {
            None => {
                self.report(self.error(
                    Some(at),
                    format!("{path}.selector"),
                    "missing: a label selector such as \"k8s-app=metrics-server\" (every pod of a namespace is too broad to allow by default)",
                ));
                None
            }
            Some(sel) => self.check(
                parse_selector(&sel.value)
                    .map_err(|m| self.error(Some(sel.referenced), format!("{path}.selector"), m)),
            ),
        };
        Some(AllowEntry::Pods(PodSelector {
            namespace: namespace?,
            labels: labels?,
        }))
    }
}

/// `[a-z0-9][a-z0-9_-]{0,62}`: a label that fits in metrics, alerts and file names.
pub(super) fn check_group_name(name: &str) -> Result<(), String> {
    let valid_first = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let valid_rest = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid_first && valid_rest && name.len() <= 63 {
        Ok(())
    } else {
        Err(format!(
            "invalid group name `{name}`: use 1 to 63 characters a-z, 0-9, `_` and `-`, \
             starting with a letter or digit"
        ))
    }
}

fn port_number(value: i128, written: &str) -> Result<u16, String> {
    match u16::try_from(value) {
        Ok(0) => Err("port 0 is not a valid port (ports are 1-65535)".to_owned()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!(
            "port {written} is out of range (ports are 1-65535)"
        )),
    }
}

/// `10250`, `"10250"` or `"30000-32767"` (inclusive).
fn parse_port_entry(raw: &RawPort) -> Result<PortRange, String> {
    let text = match raw {
        RawPort::Int(n) => return port_number(*n, &n.to_string()).map(PortRange::single),
        RawPort::Str(s) => s.trim(),
    };
    let garbage =
        || format!(r#"`{text}` is not a port or a port range (write 10250 or "30000-32767")"#);
    let number = |s: &str| -> Result<u16, String> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(garbage());
        }
        // All digits: only an overflow can fail, and that is out of range too.
        let value = s.parse::<i128>().unwrap_or(i128::MAX);
        port_number(value, s)
    };
    match text.split_once('-') {
        None => number(text).map(PortRange::single),
        Some((start, end)) => {
            let (start, end) = (number(start)?, number(end)?);
            if start > end {
                Err(format!(
                    "range {start}-{end} is reversed: write {end}-{start}"
                ))
            } else {
                Ok(PortRange { start, end })
            }
        }
    }
}

/// A CIDR, a bare IP (/32 or /128) or a symbolic set name.
pub(in crate::config) fn parse_allow_entry(text: &str) -> Result<AllowEntry, String> {
    let text = text.trim();
    if let Some(set) = SymbolicSet::from_name(text) {
        return Ok(AllowEntry::Set(set));
    }
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(AllowEntry::Cidr(net));
    }
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(AllowEntry::Cidr(IpNet::from(addr)));
    }
    let looks_like_address =
        text.contains(['.', ':', '/']) || text.starts_with(|c: char| c.is_ascii_digit());
    if looks_like_address {
        Err(format!(
            "`{text}` is not a valid IP address or CIDR (such as 203.0.113.0/24, \
             2001:db8::/32 or 198.51.100.7)"
        ))
    } else {
        Err(format!(
            "unknown symbolic set `{text}`: known sets are {}",
            SymbolicSet::known_names()
        ))
    }
}

/// A namespace name: a DNS-1123 label.
fn check_namespace(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a namespace name (lower-case letters, digits and `-`, at most 63)"
        ))
    }
}

/// `k=v,k2=v2` (equality only; `==` is read as `=`): sorted, without duplicates.
pub(in crate::config) fn parse_selector(text: &str) -> Result<Vec<(String, String)>, String> {
    let valid = |s: &str, key: bool| {
        s.len() <= if key { 317 } else { 63 }
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') || (key && b == b'/')
            })
    };
    let mut labels = Vec::new();
    for term in text.split(',').map(str::trim) {
        let (k, v) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .ok_or_else(|| {
                format!(
                    "`{term}` is not `key=value`: only equality selectors are supported, such as \"k8s-app=metrics-server,tier=monitoring\""
                )
            })?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || !valid(k, true) || !valid(v, false) || v.contains('!') {
            return Err(format!("`{term}` is not a valid label key and value"));
        }
        labels.push((k.to_owned(), v.to_owned()));
    }
    labels.sort();
    labels.dedup();
    Ok(labels)
}
