//! Interface name patterns: the syntax check of a name or glob, shared by the validator and
//! the interface watcher.

/// The `interfaces` entry that stands for the interfaces carrying a default route (what an
/// empty list means), so that a list can add interfaces beside them: `[default-route,
/// "vxlan.calico"]`. The kernel would take it as an interface name; an interface so named
/// can only be watched through a glob (`default-rout[e]`).
pub const DEFAULT_ROUTE: &str = "default-route";

/// An interface named outright: neither a glob nor [`DEFAULT_ROUTE`]. The daemon requires
/// these to exist at start.
#[must_use]
pub fn is_name(pattern: &str) -> bool {
    !is_glob(pattern) && pattern != DEFAULT_ROUTE
}

/// Longest interface name the kernel takes (`IFNAMSIZ - 1`).
pub const MAX_IFACE_NAME: usize = 15;

/// An interface name (at most 15 bytes) or a glob over names (`*`, `?`, `[...]`, `[!...]`).
///
/// # Errors
///
/// A message for the config error: empty, too long, a character the kernel does not allow in
/// a name, or a malformed glob.
pub fn check_iface_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("an empty interface name".to_owned());
    }
    if pattern.contains('/') || pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{pattern}` is not a valid interface name or glob: `/` and white space are not allowed"
        ));
    }
    if is_glob(pattern) {
        glob::Pattern::new(pattern).map_err(|e| {
            format!(
                "`{pattern}` is not a valid glob: {} (at character {}); use `*`, `?` and `[...]`",
                e.msg,
                e.pos + 1
            )
        })?;
    } else if pattern.len() > MAX_IFACE_NAME {
        return Err(format!(
            "interface name `{pattern}` is {} bytes long: interface names are at most \
             {MAX_IFACE_NAME} bytes",
            pattern.len()
        ));
    } else if pattern == "." || pattern == ".." {
        return Err(format!("`{pattern}` is not a valid interface name"));
    }
    Ok(())
}

/// A pods' interface name or glob: [`check_iface_pattern`], and not [`DEFAULT_ROUTE`], which
/// stands for the uplinks and belongs in `interfaces` (the config's `pod_interfaces` and the
/// command line's `--pod-iface` alike).
///
/// # Errors
///
/// As [`check_iface_pattern`], or [`DEFAULT_ROUTE`].
pub fn check_pod_iface_pattern(pattern: &str) -> Result<(), String> {
    if pattern == DEFAULT_ROUTE {
        return Err(format!(
            "`{DEFAULT_ROUTE}` stands for the uplinks and belongs in `interfaces`, not in the pods' interfaces"
        ));
    }
    check_iface_pattern(pattern)
}

/// Whether an interface pattern uses glob syntax (otherwise it is an exact name).
#[must_use]
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}
