//! The pinned nightly toolchain of the eBPF crate: reads the pin from
//! `node-monitor-ebpf/rust-toolchain.toml` (the one place it is named) and, on machines
//! that cannot download toolchains, provides a dated pin (`nightly-YYYY-MM-DD`) from the
//! installed `nightly` when that is exactly the same build.
//!
//! rustup names a nightly by its channel date, the day after the commit date of its
//! rustc: `nightly-2026-05-20` is `rustc 1.97.0-nightly (e50aa6fba 2026-05-19)`. The date
//! is in the toolchain's `lib/rustlib/multirust-channel-manifest.toml` (`date = "..."`).
//! rustup refuses `rustup toolchain link` for a name that looks like an official
//! toolchain, so the pin is provided the way rustup itself lays out an installed
//! toolchain: a symlink `<rustup home>/toolchains/nightly-YYYY-MM-DD-<host>` to the
//! `nightly` directory. `rustup toolchain uninstall nightly-YYYY-MM-DD` removes only that
//! symlink.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use node_monitor_lab::output_with_timeout;

/// The file that pins the nightly, relative to the workspace root.
const TOOLCHAIN_FILE: &str = "node-monitor-ebpf/rust-toolchain.toml";

/// The undated channel whose build may stand in for a dated pin.
pub(crate) const NIGHTLY: &str = "nightly";

const QUICK: Duration = Duration::from_secs(60);

/// The nightly channel pinned in `node-monitor-ebpf/rust-toolchain.toml`.
pub(crate) fn nightly_channel(root: &Path) -> anyhow::Result<String> {
    let file = root.join(TOOLCHAIN_FILE);
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
    parse_channel(&text).ok_or_else(|| anyhow!("no `channel = \"...\"` in {}", file.display()))
}

/// The value of `channel = "..."` in a rust-toolchain.toml.
fn parse_channel(toml: &str) -> Option<String> {
    toml.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("channel")?.trim_start();
        let value = rest.strip_prefix('=')?.trim();
        let value = value.split('#').next()?.trim().trim_matches(['"', '\'']);
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// The date of a dated nightly channel (`nightly-2026-05-20` -> `2026-05-20`), None for
/// `nightly`, `stable` and the like.
pub(crate) fn pinned_date(channel: &str) -> Option<&str> {
    let date = channel.strip_prefix("nightly-")?.get(..10)?;
    let b = date.as_bytes();
    let digits = [0, 1, 2, 3, 5, 6, 8, 9]
        .iter()
        .all(|&i| b[i].is_ascii_digit());
    (digits && b[4] == b'-' && b[7] == b'-').then_some(date)
}

/// The `date = "..."` of a channel manifest (`multirust-channel-manifest.toml`).
fn manifest_date(manifest: &str) -> Option<&str> {
    manifest.lines().find_map(|l| {
        let value = l
            .trim()
            .strip_prefix("date")?
            .trim_start()
            .strip_prefix('=')?;
        Some(value.trim().trim_matches('"'))
    })
}

/// What `rustc -vV` of one toolchain says, and where that toolchain lives.
#[derive(Debug, Clone)]
pub(crate) struct Build {
    /// The first line, e.g. `rustc 1.97.0-nightly (e50aa6fba 2026-05-19)`.
    pub(crate) version: String,
    /// `commit-hash:`.
    pub(crate) commit: String,
    /// `host:`, e.g. `x86_64-unknown-linux-gnu`.
    pub(crate) host: String,
    /// `rustc --print sysroot`: the toolchain's directory.
    pub(crate) sysroot: PathBuf,
    /// The channel date from the toolchain's manifest, if it has one.
    pub(crate) date: Option<String>,
}

impl Build {
    fn describe(&self) -> String {
        let date = self.date.as_deref().unwrap_or("unknown");
        format!(
            "{} (commit {}, channel date {date}) at {}",
            self.version,
            self.commit,
            self.sysroot.display()
        )
    }
}

/// `rustc -vV` fields: (first line, commit-hash, host).
fn parse_version(vv: &str) -> Option<(String, String, String)> {
    let field = |name: &str| {
        vv.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    Some((
        vv.lines().next()?.trim().to_owned(),
        field("commit-hash:")?,
        field("host:")?,
    ))
}

fn rustup_rustc(toolchain: &str, args: &[&str]) -> anyhow::Result<Option<String>> {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", toolchain, "rustc"])
        .args(args)
        .stdin(Stdio::null())
        // Never download here: a toolchain that is not installed is a `None`.
        .env("RUSTUP_AUTO_INSTALL", "0")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC");
    let out = output_with_timeout(cmd, QUICK).context("rustup is needed")?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// The build of an installed toolchain, None if rustup does not have it.
pub(crate) fn installed_build(toolchain: &str) -> anyhow::Result<Option<Build>> {
    let Some(vv) = rustup_rustc(toolchain, &["-vV"])? else {
        return Ok(None);
    };
    let (version, commit, host) = parse_version(&vv)
        .ok_or_else(|| anyhow!("cannot read `rustc -vV` of {toolchain}: {vv}"))?;
    let sysroot = rustup_rustc(toolchain, &["--print", "sysroot"])?
        .map(|s| PathBuf::from(s.trim()))
        .ok_or_else(|| anyhow!("`rustc --print sysroot` of {toolchain} failed"))?;
    let manifest = sysroot.join("lib/rustlib/multirust-channel-manifest.toml");
    let date = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|m| manifest_date(&m).map(str::to_owned));
    Ok(Some(Build {
        version,
        commit,
        host,
        sysroot,
        date,
    }))
}

/// Checks that `nightly` is the build that `channel` (dated `date`) names, by the channel
/// date in its manifest; the error names the build needed and the build found.
pub(crate) fn check_same_build(channel: &str, date: &str, nightly: &Build) -> anyhow::Result<()> {
    if nightly.date.as_deref() == Some(date) {
        return Ok(());
    }
    let repin = nightly.date.as_deref().map_or_else(String::new, |d| {
        format!(", or pin the installed build (`channel = \"nightly-{d}\"`)")
    });
    bail!(
        "{TOOLCHAIN_FILE} pins {channel}, the nightly of channel date {date}, which is not \
         installed, and the installed `{NIGHTLY}` cannot stand in for it: it is another build, \
         {}. Install {channel} (`rustup toolchain install {channel} --profile minimal \
         --component rust-src --component clippy`, which needs rustup's servers){repin}",
        nightly.describe()
    )
}

/// Makes `channel` an installed toolchain that is `nightly`'s directory: a symlink
/// `<toolchains>/<channel>-<host>` next to it. A dangling symlink left by a removed
/// toolchain is replaced; anything else in the way is an error.
pub(crate) fn link(channel: &str, nightly: &Build) -> anyhow::Result<PathBuf> {
    let toolchains = nightly.sysroot.parent().ok_or_else(|| {
        anyhow!(
            "no toolchains directory above {}",
            nightly.sysroot.display()
        )
    })?;
    let link = toolchains.join(format!("{channel}-{}", nightly.host));
    match std::fs::symlink_metadata(&link) {
        Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&link)
            .with_context(|| format!("remove the stale link {}", link.display()))?,
        Ok(_) => bail!(
            "{} exists but rustup does not run it: remove it (`rustup toolchain uninstall {channel}`) and run setup again",
            link.display()
        ),
        Err(_) => {}
    }
    std::os::unix::fs::symlink(&nightly.sysroot, &link)
        .with_context(|| format!("link {} -> {}", link.display(), nightly.sysroot.display()))?;
    Ok(link)
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
    fn repo_channel_is_a_dated_nightly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let channel = nightly_channel(&root).unwrap();
        assert!(
            pinned_date(&channel).is_some(),
            "{channel} is not pinned to a date"
        );
    }

    #[test]
    fn dates_of_channels() {
        assert_eq!(pinned_date("nightly-2026-05-20"), Some("2026-05-20"));
        assert_eq!(
            pinned_date("nightly-2026-05-20-x86_64-unknown-linux-gnu"),
            Some("2026-05-20")
        );
        assert_eq!(pinned_date("nightly"), None);
        assert_eq!(pinned_date("stable"), None);
        assert_eq!(pinned_date("nightly-x86_64-unknown-linux-gnu"), None);
        assert_eq!(pinned_date("nightly-2026-5-20"), None);
    }

    #[test]
    fn manifest_and_version_are_read() {
        let manifest = "manifest-version = \"2\"\ndate = \"2026-05-20\"\n\n[pkg.cargo]\n";
        assert_eq!(manifest_date(manifest), Some("2026-05-20"));
        assert_eq!(manifest_date("[pkg.cargo]\n"), None);
        let vv = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\n\
                  commit-hash: e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a\n\
                  commit-date: 2026-05-19\nhost: x86_64-unknown-linux-gnu\n";
        let (version, commit, host) = parse_version(vv).unwrap();
        assert_eq!(version, "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)");
        assert_eq!(commit, "e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a");
        assert_eq!(host, "x86_64-unknown-linux-gnu");
    }

    fn build(date: Option<&str>, sysroot: &Path) -> Build {
        Build {
            version: "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)".to_owned(),
            commit: "e50aa6fba".to_owned(),
            host: "x86_64-unknown-linux-gnu".to_owned(),
            sysroot: sysroot.to_path_buf(),
            date: date.map(str::to_owned),
        }
    }

    #[test]
    fn another_build_is_refused_with_both_names() {
        let b = build(Some("2026-06-01"), Path::new("/r/toolchains/nightly-x"));
        check_same_build(
            "nightly-2026-05-20",
            "2026-05-20",
            &build(Some("2026-05-20"), Path::new("/r")),
        )
        .unwrap();
        let err = format!(
            "{:#}",
            check_same_build("nightly-2026-05-20", "2026-05-20", &b).unwrap_err()
        );
        assert!(err.contains("nightly-2026-05-20"), "{err}");
        assert!(err.contains("channel date 2026-06-01"), "{err}");
        assert!(
            err.contains("rustc 1.97.0-nightly (e50aa6fba 2026-05-19)"),
            "{err}"
        );
        let unknown = build(None, Path::new("/r/toolchains/nightly-x"));
        assert!(check_same_build("nightly-2026-05-20", "2026-05-20", &unknown).is_err());
    }

    #[test]
    fn link_points_at_nightly_and_replaces_a_dangling_one() {
        let dir = std::env::temp_dir().join(format!("xtask-toolchain-{}", std::process::id()));
        let nightly_dir = dir.join("nightly-x86_64-unknown-linux-gnu");
        std::fs::create_dir_all(&nightly_dir).unwrap();
        let b = build(Some("2026-05-20"), &nightly_dir);
        let want = dir.join("nightly-2026-05-20-x86_64-unknown-linux-gnu");
        // A dangling link from a toolchain that is gone is replaced.
        std::os::unix::fs::symlink(dir.join("gone"), &want).unwrap();
        let made = link("nightly-2026-05-20", &b).unwrap();
        assert_eq!(made, want);
        assert_eq!(std::fs::read_link(&made).unwrap(), nightly_dir);
        // A real directory in the way is not touched.
        std::fs::remove_file(&made).unwrap();
        std::fs::create_dir(&made).unwrap();
        assert!(link("nightly-2026-05-20", &b).is_err());
        assert!(made.is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
