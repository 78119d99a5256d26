//! Developer entry points of node-monitor (`cargo xtask ...`). The lab network that the
//! demo, the bench and the integration tests share is its own crate, `node-monitor-lab`.
//!
//! - [`setup`]: installs what the build and the tests need; `toolchain`: the pinned
//!   nightly of the eBPF crate, provided offline from an installed `nightly` of that build.
//! - [`tasks`]: `build`, `test` (`test_log`: its tests' output and the account of their
//!   failures it prints last), `bench`; [`demo`]: the scripted demo; [`deploy`]: the checks
//!   of `deploy/` (chart, manifests, rules, systemd unit) and `deploy-manifests`; [`soak`]:
//!   the soak with faults (`soak_daemon`: the daemon under soak and its metrics;
//!   `soak_peers`: its traffic and receivers; `soak_report`: what it measures;
//!   `soak_section`: the section it writes).

pub mod demo;
pub mod deploy;
pub mod fuzz;
pub mod setup;
pub mod soak;
mod soak_daemon;
mod soak_peers;
mod soak_report;
mod soak_section;
pub mod tasks;
mod test_log;
pub(crate) mod toolchain;

use std::path::{Path, PathBuf};

/// The workspace root (the directory that holds the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
