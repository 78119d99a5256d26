//! Config files for the daemon under test: the embedded default catalog with edits, and a
//! file replaced the way a ConfigMap update lands.

use std::path::Path;

/// The embedded default's `audit.enabled` line (its start).
const AUDIT_ENABLED: &str = "  enabled: true        # false";
/// The tests' configs leave the periodic posture audit off (its findings, sent at start,
/// would mix with the alerts and flows a test counts); this replacement turns it back on.
pub(crate) const AUDIT_ON: (&str, &str) = ("  enabled: false       # test default", AUDIT_ENABLED);

/// The embedded default catalog with edits: `(from, to)` replacements (each must match)
/// and extra groups appended to the `groups:` map. The periodic audit is off ([`AUDIT_ON`]).
pub(crate) fn catalog_with(replacements: &[(&str, &str)], extra_groups: &str) -> String {
    let mut y = node_monitor::config::DEFAULT_CONFIG_YAML.to_owned();
    assert!(
        y.contains(AUDIT_ENABLED),
        "the default config no longer contains {AUDIT_ENABLED:?}"
    );
    y = y.replacen(AUDIT_ENABLED, AUDIT_ON.0, 1);
    for (from, to) in replacements {
        assert!(
            y.contains(from),
            "the default config no longer contains {from:?}"
        );
        y = y.replacen(from, to, 1);
    }
    if !extra_groups.is_empty() {
        let at = y
            .find("\nsampling:")
            .expect("the default config has a sampling section");
        y.insert_str(at + 1, extra_groups);
    }
    y
}

/// Writes `text` to `path` the way a ConfigMap update lands: a new file in the same
/// directory, renamed over the old one (one atomic change).
pub(crate) fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-new");
    std::fs::write(&tmp, text).expect("write the new file");
    std::fs::rename(&tmp, path).expect("rename over the old file");
}
