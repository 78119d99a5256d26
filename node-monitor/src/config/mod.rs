//! Configuration: the YAML schema (documented in `CONFIG.md`), its defaults, validation with
//! `file:line:column: field: message` errors, and the tables derived from it that the
//! datapath writes (port → group id, allowlist prefixes).
//!
//! The pipeline, one file per step:
//!
//! 1. `yaml`: serde-saphyr reads the text into the `raw` structs, which keep the source
//!    location of every value (`serde_saphyr::Spanned`) and reject unknown fields. A syntax
//!    error stops here, as a single error.
//! 2. `validate`: checks every value and builds the public [`Config`] (`model`, `outputs`).
//!    It goes on past a bad value, so that one pass reports every error of the file
//!    ([`ConfigErrors`], in file order), each at its own location.
//! 3. What the daemon derives from a [`Config`]: the data path's tables (`tables`), the
//!    canonical form and digest (`canonical`) and reload plans (`reload`).

mod audit;
mod canonical;
mod cluster;
mod error;
mod iface;
mod model;
mod outputs;
mod raw;
mod reload;
mod tables;
mod validate;
mod yaml;

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]
mod tests;

use std::path::Path;

pub use audit::{AuditSettings, FindingSeverity};
pub use cluster::{ClusterMode, ClusterSettings};
pub use error::{ConfigError, ConfigErrors};
pub use iface::{
    DEFAULT_ROUTE, MAX_IFACE_NAME, check_iface_pattern, check_pod_iface_pattern, is_glob, is_name,
};
pub use model::{
    Action, AlertSettings, AllowEntry, AttachMode, Config, DEFAULT_POD_INTERFACES, Group, Limits,
    MAX_USER_GROUPS, MetricsSettings, NODE_LOCAL_GROUPS, PodSelector, PortRange, Protocol,
    Sampling, SymbolicSet,
};
pub use outputs::{ClientTls, Format, SinkKind, SinkSpec, SyslogTransport};
pub use reload::ReloadPlan;
pub use tables::SetValues;

/// The embedded default configuration (the port catalog), used when no config file is given.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("default-config.yaml");

/// Origin used in errors about the embedded default.
const DEFAULT_ORIGIN: &str = "<embedded default config>";

impl Config {
    /// The embedded default (the port catalog of `default-config.yaml`).
    ///
    /// # Panics
    ///
    /// Never in a tested build: a unit test parses the embedded file.
    #[must_use]
    pub fn default_config() -> Config {
        // The embedded file is covered by unit tests, so this cannot fail in a tested build.
        Config::from_yaml(DEFAULT_CONFIG_YAML, DEFAULT_ORIGIN)
            .unwrap_or_else(|e| panic!("the embedded default config is invalid: {e}"))
    }

    /// Parses and validates `text`; `origin` (usually the file name) prefixes every error.
    ///
    /// # Errors
    ///
    /// [`ConfigErrors`]: every problem found, in file order. A YAML syntax error, an unknown
    /// field or a value of the wrong type stops the reading, and is the only error; otherwise
    /// each value out of range, each bad entry and each port that two groups share is one.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        let raw = yaml::parse_raw(text, origin)?.unwrap_or_default();
        validate::validate(raw, origin)
    }

    /// Reads and validates the file at `path`.
    ///
    /// # Errors
    ///
    /// As [`Config::from_yaml`], with the path as origin; a file that cannot be read is a
    /// [`ConfigError`] too, without a position.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_with_text(path).map(|(cfg, _)| cfg)
    }

    /// As [`Config::load`], with the text it was read from: what the daemon hands its audit
    /// process, so that the audit judges the config the daemon runs even after the file on
    /// disk has changed or broken.
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn load_with_text(path: &Path) -> Result<(Config, String), ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: None,
            column: None,
            field: String::new(),
            message: format!("cannot read the config file: {e}"),
        })?;
        let cfg = Config::from_yaml(&text, &origin)?;
        Ok((cfg, text))
    }
}
