//! `cargo xtask setup`: checks, and installs what is missing, everything the build, the
//! tests and the demo need. Idempotent; quick when all is present. Each step prints one
//! line. The versions and the package list are pinned here, the nightly channel in
//! `node-monitor-ebpf/rust-toolchain.toml`.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};

use node_monitor_lab::{self as lab, output_with_timeout, run_ok};

/// bpf-linker must be exactly this version: 0.11+ wants a system LLVM 23.
pub const BPF_LINKER_VERSION: &str = "0.10.0";

/// Debian packages used by the tests and the demo.
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
    "prometheus",
];

/// Rust components the stable (default) toolchain needs for `cargo xtask test`.
pub const STABLE_COMPONENTS: &[&str] = &["clippy", "rustfmt"];

/// The eBPF crate builds with `-Z build-std=core` (rust-src) and is linted on its own
/// toolchain (clippy).
pub const NIGHTLY_COMPONENTS: &[&str] = &["rust-src", "clippy"];

const QUICK: Duration = Duration::from_secs(60);
const INSTALL: Duration = Duration::from_secs(30 * 60);

/// The nightly channel pinned in `node-monitor-ebpf/rust-toolchain.toml`.
pub fn nightly_channel(root: &Path) -> anyhow::Result<String> {
    let file = root.join("node-monitor-ebpf/rust-toolchain.toml");
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
    parse_channel(&text).ok_or_else(|| anyhow!("no `channel = \"...\"` in {}", file.display()))
}

fn parse_channel(toml: &str) -> Option<String> {
    toml.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("channel")?.trim_start();
        let value = rest.strip_prefix('=')?.trim();
        let value = value.split('#').next()?.trim().trim_matches(['"', '\'']);
        (!value.is_empty()).then(|| value.to_owned())
    })
}

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
    let out = output_with_timeout(
        command(
            "rustup",
            &["component", "list", "--installed", "--toolchain", toolchain],
        ),
        QUICK,
    )
    .context("rustup is needed")?;
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
                .map(|o| !String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(true)
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

fn step_nightly(root: &Path) -> anyhow::Result<()> {
    let channel = nightly_channel(root)?;
    match installed_components(&channel)? {
        Some(c) => {
            let missing: Vec<&str> = NIGHTLY_COMPONENTS
                .iter()
                .copied()
                .filter(|x| !has_component(&c, x))
                .collect();
            if missing.is_empty() {
                println!(
                    "setup: toolchain {channel}: {} present",
                    NIGHTLY_COMPONENTS.join(", ")
                );
                return Ok(());
            }
            println!("setup: toolchain {channel}: adding {}", missing.join(", "));
            let mut args = vec!["component", "add", "--toolchain", &channel];
            args.extend(&missing);
            install("rustup", &args)
        }
        None => {
            println!(
                "setup: toolchain {channel}: installing it with {}",
                NIGHTLY_COMPONENTS.join(", ")
            );
            let mut args = vec!["toolchain", "install", &channel, "--profile", "minimal"];
            for c in NIGHTLY_COMPONENTS {
                args.extend(["--component", c]);
            }
            install("rustup", &args)
        }
    }
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
    step_bpffs().context("setup: bpffs")?;
    // `ip` must now work: a cheap sanity check that names the fix.
    run_ok(command("ip", &["netns", "list"]), QUICK).context("setup: `ip netns list`")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_is_read() {
        assert_eq!(
            parse_channel("[toolchain]\nchannel = \"nightly\"\n").as_deref(),
            Some("nightly")
        );
        assert_eq!(
            parse_channel(
                "[toolchain]\nchannel = \"nightly-2026-01-02\" # pinned\ncomponents = []"
            )
            .as_deref(),
            Some("nightly-2026-01-02")
        );
        assert_eq!(parse_channel("[toolchain]\n"), None);
    }

    #[test]
    fn repo_channel_is_readable() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert!(!nightly_channel(&root).unwrap().is_empty());
    }

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
