//! Validation: raw → [`Config`]. Each value is checked at its own location, so that every
//! error points at what to fix, and checking goes on past a bad value, so that one pass
//! reports every error of the file. One file per section of the config.

mod addresses;
mod audit;
mod cluster;
mod groups;
mod limits;
mod settings;
mod sinks;
mod tls;

use std::cell::RefCell;

#[cfg(test)]
pub(super) use groups::parse_allow_entry;
use serde_saphyr::{Location, Spanned};

use super::{
    error::{ConfigError, ConfigErrors},
    model::{Config, Limits, Sampling},
    raw::RawConfig,
};

/// Validates the raw config read from `origin`: the model, or every error found.
pub(super) fn validate(raw: RawConfig, origin: &str) -> Result<Config, ConfigErrors> {
    let validator = Validator {
        origin,
        errors: RefCell::new(Vec::new()),
    };
    let config = validator.config(raw);
    match ConfigErrors::from_vec(validator.errors.into_inner()) {
        None => Ok(config),
        Some(errors) => Err(errors),
    }
}

/// Bounds of one numeric setting.
struct Bound {
    field: &'static str,
    min: u64,
    max: u64,
    note: &'static str,
    /// The kernel wants a power of two (ring buffer sizes).
    power_of_two: bool,
}

/// Checks raw values and builds the model. A bad value is reported (at its location) and
/// replaced by its default or left out, so that checking goes on: the model built from a
/// config with errors is thrown away, and every error is reported instead.
struct Validator<'a> {
    origin: &'a str,
    /// What was found so far, in the order it was found.
    errors: RefCell<Vec<ConfigError>>,
}

impl Validator<'_> {
    fn error(
        &self,
        at: Option<Location>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let at = at.filter(|l| l.line() > 0);
        ConfigError {
            origin: self.origin.to_owned(),
            line: at.and_then(|l| usize::try_from(l.line()).ok()),
            column: at.and_then(|l| usize::try_from(l.column()).ok()),
            field: field.into(),
            message: message.into(),
        }
    }

    /// Records an error; validation goes on.
    fn report(&self, error: ConfigError) {
        self.errors.borrow_mut().push(error);
    }

    /// The value, or `None` after recording the error.
    fn check<T>(&self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.report(e)).ok()
    }

    fn config(&self, raw: RawConfig) -> Config {
        let groups = self.groups(raw.groups.unwrap_or_default());
        let sampling = raw.sampling.map_or(Sampling::DEFAULT, |s| self.sampling(s));
        let limits = raw.limits.map_or(Limits::DEFAULT, |l| self.limits(l));
        Config {
            groups,
            sampling,
            limits,
            interfaces: self.interfaces(raw.interfaces),
            pod_interfaces: self.pod_interfaces(raw.pod_interfaces),
            attach: self.attach(raw.attach),
            alerts: self.alerts(raw.alerts),
            sinks: self.sinks(raw.sinks),
            metrics: self.metrics(raw.metrics),
            cluster: self.cluster(raw.cluster),
            audit: self.audit(raw.audit),
        }
    }

    /// Checks an optional number against its bounds; `default` when absent or reported.
    fn opt_u64(
        &self,
        section: &str,
        bound: &Bound,
        value: Option<Spanned<u64>>,
        default: u64,
    ) -> u64 {
        self.check(self.bounded(section, bound, value, default))
            .unwrap_or(default)
    }

    /// [`Validator::opt_u64`] for a setting that the kernel or the daemon keeps in 32 bits.
    fn opt_u32(
        &self,
        section: &str,
        bound: &Bound,
        value: Option<Spanned<u64>>,
        default: u32,
    ) -> u32 {
        debug_assert!(u32::try_from(bound.max).is_ok());
        let at = value.as_ref().map(|v| v.referenced);
        let v = self.opt_u64(section, bound, value, u64::from(default));
        let fits = u32::try_from(v).map_err(|_| {
            self.error(
                at,
                format!("{section}.{}", bound.field),
                format!("{v} does not fit in 32 bits"),
            )
        });
        self.check(fits).unwrap_or(default)
    }

    /// The value if it is within its bounds (and a power of two where the kernel wants one).
    fn bounded(
        &self,
        section: &str,
        bound: &Bound,
        value: Option<Spanned<u64>>,
        default: u64,
    ) -> Result<u64, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        let field = format!("{section}.{}", bound.field);
        let v = value.value;
        if !(bound.min..=bound.max).contains(&v) {
            return Err(self.error(
                Some(value.referenced),
                field,
                format!(
                    "{v} is out of range: must be between {} and {}{}",
                    bound.min, bound.max, bound.note
                ),
            ));
        }
        if bound.power_of_two && !v.is_power_of_two() {
            let above = v.next_power_of_two();
            return Err(self.error(
                Some(value.referenced),
                field,
                format!(
                    "{v} is not a power of two (the kernel requires one): use {} or {above}",
                    above / 2
                ),
            ));
        }
        Ok(v)
    }
}
