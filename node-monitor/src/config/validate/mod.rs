//! Validation: raw → [`Config`]. Each value is checked at its own location, so that every
//! error points at what to fix.

mod addresses;
mod groups;
mod limits;
mod settings;
mod sinks;

use serde_saphyr::{Location, Spanned};

use super::error::ConfigError;
use super::model::{Config, Limits, Sampling};
use super::raw::RawConfig;
use limits::SAMPLING_ONE_IN;

#[cfg(test)]
pub(super) use groups::parse_allow_entry;

/// Validates the raw config read from `origin`.
pub(super) fn validate(raw: RawConfig, origin: &str) -> Result<Config, ConfigError> {
    Validator { origin }.config(raw)
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

struct Validator<'a> {
    origin: &'a str,
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

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let groups = self.groups(raw.groups.unwrap_or_default())?;
        let sampling = match raw.sampling {
            None => Sampling::DEFAULT,
            Some(s) => Sampling {
                allowed_flows_one_in: self.opt_u32(
                    "sampling",
                    &SAMPLING_ONE_IN,
                    s.allowed_flows_one_in,
                    Sampling::DEFAULT.allowed_flows_one_in,
                )?,
            },
        };
        let limits = match raw.limits {
            None => Limits::DEFAULT,
            Some(l) => self.limits(l)?,
        };
        Ok(Config {
            groups,
            sampling,
            limits,
            interfaces: self.interfaces(raw.interfaces)?,
            attach: self.attach(raw.attach)?,
            alerts: self.alerts(raw.alerts)?,
            sinks: self.sinks(raw.sinks)?,
            metrics: self.metrics(raw.metrics)?,
        })
    }

    /// Checks an optional number against its bounds; `default` when absent.
    fn opt_u64(
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

    fn opt_u32(
        &self,
        section: &str,
        bound: &Bound,
        value: Option<Spanned<u64>>,
        default: u32,
    ) -> Result<u32, ConfigError> {
        debug_assert!(bound.max <= u64::from(u32::MAX));
        let at = value.as_ref().map(|v| v.referenced);
        let v = self.opt_u64(section, bound, value, u64::from(default))?;
        u32::try_from(v).map_err(|_| {
            self.error(
                at,
                format!("{section}.{}", bound.field),
                format!("{v} does not fit in 32 bits"),
            )
        })
    }
}
