//! Attaching the programs to interfaces: XDP or tc ingress plus tc egress, each link pinned
//! as `links/<hook>@<iface>`; adopting the pinned links of an earlier run, pruning the ones
//! no longer wanted, and detaching from interfaces that go away.
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    tc::{self, SchedClassifierLink, TcAttachOptions},
    xdp::XdpLink,
};
use node_monitor_common::prog_name;
use tracing::{info, warn};

use super::{Datapath, DatapathError, Result};
use crate::config::AttachMode;

/// One of the three hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Hook {
    Xdp,
    TcIngress,
    TcEgress,
}

impl Hook {
    const ALL: [Hook; 3] = [Hook::Xdp, Hook::TcIngress, Hook::TcEgress];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcIngress => "tc-ingress",
            Hook::TcEgress => "tc-egress",
        }
    }
    /// The program (function name in the eBPF object) this hook runs.
    pub(super) fn program(self) -> &'static str {
        match self {
            Hook::Xdp => prog_name::XDP_INGRESS,
            Hook::TcIngress => prog_name::TC_INGRESS,
            Hook::TcEgress => prog_name::TC_EGRESS,
        }
    }
    fn from_str(s: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

/// The file name of a pinned link under `links/`: `<hook>@<iface>`, with every `.` of the
/// interface name written `%2e` (and `%` written `%25`, so that two names never share a pin):
/// bpffs refuses names with a dot (`bpf_lookup`: "reserved for future extensions"), and
/// tunnel and VLAN interfaces have them (`vxlan.calico`, `flannel.1`, `bond0.100`).
fn link_pin_name(hook: Hook, iface: &str) -> String {
    let mut name = format!("{}@", hook.as_str());
    for c in iface.chars() {
        match c {
            '.' => name.push_str("%2e"),
            '%' => name.push_str("%25"),
            c => name.push(c),
        }
    }
    name
}

/// Whether a file under `links/` is one of ours (`<known hook>@<anything>`).
fn is_link_pin_name(name: &str) -> bool {
    name.split_once('@')
        .and_then(|(h, _)| Hook::from_str(h))
        .is_some()
}

/// The names among `names` (files under `links/`) that are our link pins and not in `keep`.
fn stale_link_pins(
    names: impl IntoIterator<Item = String>,
    keep: &BTreeSet<String>,
) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| is_link_pin_name(n) && !keep.contains(n))
        .collect()
}

/// What an attach did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Attachment {
    pub(crate) iface: String,
    pub(crate) hook: Hook,
    /// "native", "generic", "tcx" or "netlink"; "pinned" for an adopted XDP link (it keeps
    /// the mode it was first attached in).
    pub(crate) mode: &'static str,
    /// True when an existing pinned link was adopted (program swapped in place).
    pub(crate) adopted: bool,
}

pub(super) enum HeldLink {
    /// Pinned: the pin keeps the link (and the node watched) after this process exits.
    Pinned(PinnedLink),
    /// Held by this process (unpinned, or adopted: then its pin keeps it as well).
    Xdp(XdpLink),
    Tc(SchedClassifierLink),
}

impl HeldLink {
    /// Lets go of the link. An fd-based link stays attached while a pin holds it; a netlink
    /// attachment (kernels without bpf_link) is detached explicitly.
    pub(super) fn release(self) {
        use aya::programs::links::Link as _;
        let r = match self {
            HeldLink::Pinned(p) => {
                drop(p);
                Ok(())
            }
            HeldLink::Xdp(l) => l.detach(),
            HeldLink::Tc(l) => l.detach(),
        };
        if let Err(e) = r {
            warn!(error = %e, "detaching a link");
        }
    }
}

impl Datapath {
    /// Attaches to `iface`: ingress by `mode`, and tc egress for answer tracking. With a pin
    /// directory, a pinned link from an earlier run is adopted (program swapped in place).
    pub(crate) fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<Vec<Attachment>> {
        if crate::netif::ifindex(iface).is_none() {
            return Err(DatapathError::NoSuchInterface(iface.to_owned()));
        }
        let ingress = match mode {
            AttachMode::Xdp => Hook::Xdp,
            AttachMode::Tc => Hook::TcIngress,
        };
        let mut out = Vec::new();
        for hook in [ingress, Hook::TcEgress] {
            let a = self.attach_hook(iface, hook)?;
            out.push(a);
        }
        Ok(out)
    }

    fn link_pin_path(&self, iface: &str, hook: Hook) -> Option<PathBuf> {
        self.pin_dir
            .as_ref()
            .map(|d| d.join("links").join(link_pin_name(hook, iface)))
    }

    fn attach_hook(&mut self, iface: &str, hook: Hook) -> Result<Attachment> {
        let pin = self.link_pin_path(iface, hook);
        let name = hook.program();
        // Adopt a pinned link: swap our program into it atomically.
        if let Some(path) = &pin
            && path.exists()
        {
            match self.adopt(path, hook) {
                Ok((mode, held)) => {
                    let att = Attachment {
                        iface: iface.to_owned(),
                        hook,
                        mode,
                        adopted: true,
                    };
                    info!(
                        iface,
                        hook = hook.as_str(),
                        mode,
                        "adopted pinned link; program replaced in place"
                    );
                    self.links.push((att.clone(), held));
                    return Ok(att);
                }
                Err(e) => {
                    warn!(iface, hook = hook.as_str(), error = %e, "pinned link unusable (interface gone or recreated?); attaching anew");
                    let _ = fs::remove_file(path);
                }
            }
        }
        let (mode, link) = match hook {
            Hook::Xdp => {
                let prog: &mut Xdp = self.program_mut(name)?;
                let (id, mode) = match prog.attach(iface, XdpMode::Driver) {
                    Ok(id) => (id, "native"),
                    Err(native_err) => {
                        warn!(iface, error = %native_err, "native XDP unavailable; falling back to generic (skb) mode");
                        let id = prog.attach(iface, XdpMode::Skb).map_err(|error| {
                            DatapathError::Attach {
                                iface: iface.to_owned(),
                                hook: "xdp",
                                error: Box::new(error),
                                hint: " (is another XDP program attached? try --attach tc)",
                            }
                        })?;
                        (id, "generic")
                    }
                };
                let link = prog.take_link(id).map_err(|error| DatapathError::Program {
                    name,
                    error: Box::new(error),
                })?;
                (mode, HeldLink::Xdp(link))
            }
            Hook::TcIngress | Hook::TcEgress => {
                let ty = if hook == Hook::TcIngress {
                    TcAttachType::Ingress
                } else {
                    TcAttachType::Egress
                };
                let tcx = aya::util::KernelVersion::current()
                    .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0));
                let prog: &mut SchedClassifier = self.program_mut(name)?;
                let res = if tcx {
                    prog.attach_with_options(
                        iface,
                        ty,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                } else {
                    // Classic clsact; "already exists" is fine.
                    let _ = tc::qdisc_add_clsact(iface);
                    prog.attach(iface, ty)
                };
                let id = res.map_err(|error| DatapathError::Attach {
                    iface: iface.to_owned(),
                    hook: hook.as_str(),
                    error: Box::new(error),
                    hint: "",
                })?;
                let link = prog.take_link(id).map_err(|error| DatapathError::Program {
                    name,
                    error: Box::new(error),
                })?;
                (if tcx { "tcx" } else { "netlink" }, HeldLink::Tc(link))
            }
        };
        // Pin fd-based links (bpf_link: XDP on 5.9+, tcx on 6.6+); netlink attachments have
        // no link object to pin and detach when the daemon exits.
        let held = match (pin, link) {
            (Some(path), link) if mode != "netlink" => {
                let fd = match link {
                    HeldLink::Xdp(l) => FdLink::try_from(l),
                    HeldLink::Tc(l) => FdLink::try_from(l),
                    HeldLink::Pinned(p) => Ok(FdLink::from(p)),
                }
                .map_err(|error| DatapathError::NotPinnable {
                    what: format!("{} link on {iface}", hook.as_str()),
                    error,
                })?;
                let pinned = fd.pin(&path).map_err(|error| DatapathError::Pin {
                    what: format!("{} link on {iface}", hook.as_str()),
                    path: path.clone(),
                    error,
                })?;
                HeldLink::Pinned(pinned)
            }
            (Some(_), link) => {
                warn!(
                    iface,
                    hook = hook.as_str(),
                    "this kernel gives no pinnable link for this hook; it detaches when the daemon exits"
                );
                link
            }
            (None, link) => link,
        };
        let att = Attachment {
            iface: iface.to_owned(),
            hook,
            mode,
            adopted: false,
        };
        info!(
            iface,
            hook = hook.as_str(),
            mode,
            pinned = matches!(held, HeldLink::Pinned(_)),
            "attached"
        );
        self.links.push((att.clone(), held));
        Ok(att)
    }

    fn adopt(&mut self, path: &Path, hook: Hook) -> Result<(&'static str, HeldLink), String> {
        let pinned = PinnedLink::from_pin(path).map_err(|e| e.to_string())?;
        let fd = FdLink::from(pinned);
        let name = hook.program();
        match hook {
            Hook::Xdp => {
                let link = XdpLink::try_from(fd).map_err(|e| e.to_string())?;
                let prog: &mut Xdp = self.program_mut(name).map_err(|e| e.to_string())?;
                let id = prog.attach_to_link(link).map_err(|e| e.to_string())?;
                let link = prog.take_link(id).map_err(|e| e.to_string())?;
                Ok(("pinned", HeldLink::Xdp(link)))
            }
            Hook::TcIngress | Hook::TcEgress => {
                let link = SchedClassifierLink::try_from(fd).map_err(|e| e.to_string())?;
                let prog: &mut SchedClassifier =
                    self.program_mut(name).map_err(|e| e.to_string())?;
                let id = prog.attach_to_link(link).map_err(|e| e.to_string())?;
                let link = prog.take_link(id).map_err(|e| e.to_string())?;
                Ok(("tcx", HeldLink::Tc(link)))
            }
        }
    }

    /// Removes pinned links that this run did not attach or adopt (interfaces or hooks no
    /// longer configured). Call after every wanted interface is attached.
    pub(crate) fn prune_stale_links(&mut self) -> Result<Vec<String>> {
        let Some(dir) = &self.pin_dir else {
            return Ok(Vec::new());
        };
        let dir = dir.join("links");
        let keep: BTreeSet<String> = self
            .attachments()
            .map(|a| link_pin_name(a.hook, &a.iface))
            .collect();
        let entries = fs::read_dir(&dir).map_err(|error| DatapathError::PinDir {
            path: dir.clone(),
            error,
        })?;
        // Our pins are named from UTF-8 strings: a name that is not UTF-8 is not ours.
        let names = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok());
        let removed = stale_link_pins(names, &keep);
        for name in &removed {
            let path = dir.join(name);
            fs::remove_file(&path).map_err(|error| DatapathError::PinDir { path, error })?;
            info!(link = %name, "removed a pinned link that the current config and flags no longer want");
        }
        Ok(removed)
    }

    /// Detaches from `iface` (all hooks) and removes its pins. For an interface that is gone,
    /// this only forgets it: the kernel already dropped its attachments.
    pub(crate) fn detach_iface(&mut self, iface: &str) {
        let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|(a, _)| a.iface == iface);
        self.links = keep;
        for (_, held) in gone {
            held.release();
        }
        for hook in Hook::ALL {
            if let Some(path) = self.link_pin_path(iface, hook) {
                let _ = fs::remove_file(path);
            }
        }
    }

    pub(crate) fn attachments(&self) -> impl Iterator<Item = &Attachment> {
        self.links.iter().map(|(a, _)| a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_names_round_trip_and_name_their_programs() {
        for hook in Hook::ALL {
            assert_eq!(Hook::from_str(hook.as_str()), Some(hook));
        }
        assert_eq!(
            Hook::ALL.map(Hook::as_str),
            ["xdp", "tc-ingress", "tc-egress"],
            "pins of earlier runs carry these names: renaming one orphans them"
        );
        assert_eq!(
            Hook::ALL.map(Hook::program),
            [
                prog_name::XDP_INGRESS,
                prog_name::TC_INGRESS,
                prog_name::TC_EGRESS
            ]
        );
        assert_eq!(Hook::from_str("tc_ingress"), None);
        assert_eq!(Hook::from_str(""), None);
    }

    #[test]
    fn link_pins_are_named_hook_at_iface() {
        assert_eq!(link_pin_name(Hook::Xdp, "eth0"), "xdp@eth0");
        assert_eq!(
            link_pin_name(Hook::TcEgress, "veth-a.1"),
            "tc-egress@veth-a%2e1"
        );
        // No dot ever reaches bpffs, and distinct names keep distinct pins.
        for (iface, pin) in [
            ("vxlan.calico", "xdp@vxlan%2ecalico"),
            ("flannel.1", "xdp@flannel%2e1"),
            ("a%2eb", "xdp@a%252eb"),
            ("a.b", "xdp@a%2eb"),
        ] {
            assert_eq!(link_pin_name(Hook::Xdp, iface), pin);
            assert!(is_link_pin_name(pin) && !pin.contains('.'));
        }
        assert!(is_link_pin_name("tc-ingress@eth0"));
        // The hook is what comes before the first '@'.
        assert!(is_link_pin_name("xdp@we@ird"));
        assert!(!is_link_pin_name("xdp"));
        assert!(!is_link_pin_name("other@eth0"));
    }

    #[test]
    fn pruning_removes_only_our_pins_that_no_attachment_holds() {
        let keep: BTreeSet<String> = [
            link_pin_name(Hook::Xdp, "eth0"),
            link_pin_name(Hook::TcEgress, "eth0"),
        ]
        .into();
        let names = [
            "xdp@eth0",        // kept: attached this run
            "tc-egress@eth0",  // kept
            "tc-ingress@eth0", // stale: the mode changed from tc to xdp
            "xdp@eth1",        // stale: interface no longer configured
            "README",          // not ours
            "foo@eth1",        // not ours
        ]
        .map(String::from);
        assert_eq!(
            stale_link_pins(names, &keep),
            ["tc-ingress@eth0", "xdp@eth1"]
        );
        assert!(stale_link_pins(Vec::new(), &keep).is_empty());
    }
}
