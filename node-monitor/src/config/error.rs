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
