//! Removal of lab leftovers (`cargo xtask lab down`): every `nmlab-*` namespace and
//! every `nmlab-*` directory in bpffs, whoever made them (a killed test, `lab up`).

use anyhow::Context as _;

use crate::{
    bpffs::BPFFS,
    names::NAME_PREFIX,
    netns::{destroy_netns, list_namespaces},
};

/// Removes every lab namespace (ending its processes) and every `nmlab-*` directory in
/// bpffs, whoever made them. Returns what it removed.
pub fn remove_all() -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in list_namespaces()? {
        destroy_netns(&name);
        removed.push(format!("netns {name}"));
    }
    if let Ok(entries) = std::fs::read_dir(BPFFS) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(NAME_PREFIX) {
                let path = e.path();
                std::fs::remove_dir_all(&path)
                    .with_context(|| format!("remove {}", path.display()))?;
                removed.push(path.display().to_string());
            }
        }
    }
    Ok(removed)
}
