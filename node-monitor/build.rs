//! Builds the eBPF object (node-monitor-ebpf) with the pinned nightly toolchain and
//! bpf-linker, and leaves it in OUT_DIR for `include_bytes_aligned!`.
//!
//! `AYA_BUILD_SKIP=1` skips the eBPF build (for editors and lint-only runs): an empty
//! object is written instead, and loading it at run time fails with a clear error.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        fs::write(out_dir.join("node-monitor"), b"").context("write placeholder eBPF object")?;
    }
    let manifest = env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = PathBuf::from(manifest).join("../node-monitor-ebpf");
    let ebpf_dir = ebpf_dir
        .canonicalize()
        .context("locate node-monitor-ebpf")?;
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {ebpf_dir:?}"))?;
    // The nightly toolchain is pinned once, in node-monitor-ebpf/rust-toolchain.toml.
    let toolchain_file = fs::read_to_string(ebpf_dir.join("rust-toolchain.toml"))
        .context("read node-monitor-ebpf/rust-toolchain.toml")?;
    let channel = toolchain_file
        .lines()
        .find_map(|l| {
            let value = l.trim().strip_prefix("channel")?.trim_start();
            let value = value.strip_prefix('=')?.split('#').next()?.trim();
            let value = value.trim_matches(['"', '\'']);
            (!value.is_empty()).then(|| value.to_owned())
        })
        .ok_or_else(|| anyhow!("no channel in node-monitor-ebpf/rust-toolchain.toml"))?;
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join("rust-toolchain.toml").display()
    );
    // aya-build watches the eBPF crate's directory only; the programs also compile the shared
    // types and pure functions of node-monitor-common, whose changes must rebuild them too.
    let common_dir = ebpf_dir.join("../node-monitor-common");
    println!(
        "cargo:rerun-if-changed={}",
        common_dir.join("src").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        common_dir.join("Cargo.toml").display()
    );
    let channel: &'static str = Box::leak(channel.into_boxed_str());
    aya_build::build_ebpf(
        [Package {
            name: "node-monitor-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(channel),
    )
    .with_context(|| {
        format!(
            "build node-monitor-ebpf with the pinned toolchain {channel} \
             (`cargo xtask setup` provides it, with rust-src and bpf-linker)"
        )
    })
}
