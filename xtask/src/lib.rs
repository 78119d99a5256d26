//! Developer entry points of node-monitor (`cargo xtask ...`) and the lab network that
//! the demo and the integration tests share.
//!
//! - [`lab`]: network namespaces, veths, addresses, bpffs pin directories and process
//!   guards, all removed on drop (used by node-monitor's integration tests).
//! - [`setup`]: installs what the build and the tests need.
//! - [`tasks`]: `build`, `test`, `bench`; [`demo`]: the scripted demo.

pub mod demo;
pub mod lab;
pub mod setup;
pub mod tasks;

use std::path::{Path, PathBuf};

/// The workspace root (the directory that holds the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
