//! Configuration errors: each names the file, the line and column of the offending value and
//! the dotted path of its field.

use std::fmt;

/// A configuration error that names the file, the position of the offending value (1-based,
/// when known) and the dotted path of the field, such as `groups.kubelet.allow[1]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", DisplayConfigError(self))]
pub struct ConfigError {
    pub origin: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: String,
    pub message: String,
}

/// `{origin}:{line}:{column}: {field}: {message}`, or `{origin}: {field}: {message}` when the
/// position is not known; `{field}: ` is left out when the error concerns no field (I/O).
struct DisplayConfigError<'a>(&'a ConfigError);

impl fmt::Display for DisplayConfigError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        f.write_str(&e.origin)?;
        if let Some(line) = e.line {
            write!(f, ":{line}")?;
            if let Some(column) = e.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !e.field.is_empty() {
            write!(f, "{}: ", e.field)?;
        }
        f.write_str(&e.message)
    }
}

/// Every error found in a config, in file order (by line, then column); never empty.
///
/// Displayed one error a line, each as [`ConfigError`] displays it, so that a config with a
/// single error prints exactly that error's line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", DisplayConfigErrors(self))]
pub struct ConfigErrors {
    /// Never empty.
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// The errors in file order; `None` when there are none. Errors without a position sort
    /// last, and errors at the same position keep the order they were found in.
    #[must_use]
    pub(crate) fn from_vec(mut errors: Vec<ConfigError>) -> Option<ConfigErrors> {
        if errors.is_empty() {
            return None;
        }
        errors.sort_by_key(|e| (e.line.is_none(), e.line, e.column));
        Some(ConfigErrors { errors })
    }

    /// The first error in file order.
    #[must_use]
    pub fn first(&self) -> &ConfigError {
        // `errors` is never empty: both constructors make sure of it.
        &self.errors[0]
    }

    /// Every error, in file order.
    #[must_use]
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors {
            errors: vec![error],
        }
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// One error a line, without a trailing newline.
struct DisplayConfigErrors<'a>(&'a ConfigErrors);

impl fmt::Display for DisplayConfigErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
