//! bpffs for the lab: mounts it at [`BPFFS`] when it is missing, and gives each daemon
//! its own pin directory ([`BpfPinDir`], `/sys/fs/bpf/nmlab-*`), removed on drop, because
//! bpffs is shared by every network namespace.

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    sync::Mutex,
};

use anyhow::Context as _;

use crate::names::unique_name;

/// Where bpffs is mounted (shared by every network namespace).
pub const BPFFS: &str = "/sys/fs/bpf";

/// Whether bpffs is mounted at [`BPFFS`].
pub fn bpffs_mounted() -> anyhow::Result<bool> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("read /proc/mounts")?;
    Ok(mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&BPFFS) && f.get(2) == Some(&"bpf")
    }))
}

/// Mounts bpffs at [`BPFFS`] unless it is there. Returns whether it mounted it.
pub fn ensure_bpffs() -> anyhow::Result<bool> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if bpffs_mounted()? {
        return Ok(false);
    }
    nix::mount::mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mount -t bpf bpf {BPFFS} (root needed)"))?;
    Ok(true)
}

/// A unique directory `/sys/fs/bpf/nmlab-<pid>-<counter>-<tag>` for one daemon's pins
/// (bpffs is shared by all network namespaces); removed with everything in it on drop.
#[derive(Debug)]
pub struct BpfPinDir {
    /// The directory (created empty).
    pub path: PathBuf,
}

impl BpfPinDir {
    /// Mounts bpffs if needed and creates the directory.
    pub fn new(tag: &str) -> anyhow::Result<BpfPinDir> {
        ensure_bpffs()?;
        let path = Path::new(BPFFS).join(unique_name(tag));
        std::fs::create_dir(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(BpfPinDir { path })
    }

    /// Names of the entries in the directory (pins and subdirectories).
    pub fn entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.path)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for BpfPinDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => eprintln!("lab: could not remove {}: {e}", self.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_dir_is_removed() {
        let d = BpfPinDir::new("unit").unwrap();
        assert!(d.path.is_dir());
        assert!(d.entries().is_empty());
        let p = d.path.clone();
        drop(d);
        assert!(!p.exists());
    }
}
