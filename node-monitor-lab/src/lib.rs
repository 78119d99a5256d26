//! The lab network of node-monitor: network namespaces joined by veth pairs, lab
//! addresses, bpffs pin directories and bounded child processes, shared by the
//! integration tests, `cargo xtask demo|bench|lab`.
//!
//! Rules this crate enforces (see DESIGN.md, "Tests and the lab network"):
//! - everything lives in network namespaces created here, named
//!   `nmlab-<pid>-<counter>-<role>` ([`NAME_PREFIX`]), and removed by `Drop` guards even
//!   when a test panics (`cargo xtask lab down`, [`remove_all`], removes leftovers of a
//!   killed process);
//! - nothing is ever added to the root namespace: veths are created by running `ip`
//!   inside a lab namespace (`ip -n NS link add ... peer ... netns OTHER`);
//! - addresses come from 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32 only
//!   ([`addr`]), and no namespace has a default route or a link to the root namespace;
//! - every wait is bounded in count and time.
//!
//! One file per job: `names` ([`NAME_PREFIX`]), [`addr`], `process`
//! ([`output_with_timeout`], [`Child`]), `netns` ([`Netns`]), `bpffs` ([`BpfPinDir`]),
//! `topology` ([`Lab`]) and `cleanup` ([`remove_all`]).
//!
//! ```no_run
//! use node_monitor_lab::{Lab, addr};
//! let lab = Lab::new()?;
//! let out = lab.outside.exec("ping", &["-c1", "-W1", &addr::NODE_V4.to_string()])?;
//! assert!(out.status.success());
//! // std sockets inside a namespace:
//! let listener = lab.node.run(|| std::net::TcpListener::bind((addr::NODE_V4, 10250)))??;
//! # anyhow::Ok(())
//! ```

pub mod addr;
mod bpffs;
mod cleanup;
mod names;
mod netns;
mod process;
mod topology;

pub use bpffs::{BPFFS, BpfPinDir, bpffs_mounted, ensure_bpffs};
pub use cleanup::remove_all;
pub use names::NAME_PREFIX;
pub use netns::{EXEC_TIMEOUT, Netns, NsThread, list_namespaces};
pub use process::{Child, describe, output_with_timeout, run_ok};
pub use topology::{Lab, NODE_IFACE};
