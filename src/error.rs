//! One error type for the whole program: a message that already says what went wrong and
//! where (table, file, line, column or setting), rendered by `main` as one `F_JX0D03:` line.

use std::fmt;

/// An error whose message is complete and safe to print: it names the place at fault and
/// never contains a credential (see [`crate::storage::redact`]).
#[derive(Debug)]
pub struct Error {
    message: String,
    /// Whether doing the same again may succeed: a commit that lost to another writer, or an
    /// object-store request whose retries ran out.
    transient: bool,
}

/// `text` with control characters escaped, so that it prints as one line.
fn one_line(text: String) -> String {
    if !text.chars().any(char::is_control) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Result with the program's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with this message, kept to one line: line breaks and other control
    /// characters a value may bring into it are shown escaped (`\n`).
    pub fn msg(message: impl Into<String>) -> Self {
        Error {
            message: one_line(message.into()),
            transient: false,
        }
    }

    /// Puts `context: ` in front of the message, e.g. the table or file it concerns.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Error {
            message: one_line(format!("{context}: {}", self.message)),
            transient: self.transient,
        }
    }

    /// Whether the failed step may succeed when done again on the table's latest version:
    /// another writer committed first, or the store stayed unreachable through its retries
    /// (then the outcome of a commit is unknown).
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// The message, without any prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Adds context to any fallible result, turning its error into ours.
pub trait Context<T> {
    /// Prefixes the error with `context`.
    fn context(self, context: impl fmt::Display) -> Result<T>;
    /// Prefixes the error with a lazily built context.
    fn with_context<C: fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
    fn with_context<C: fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

macro_rules! from_display {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::msg(crate::storage::redact(&e.to_string()))
            }
        }
    )*};
}

from_display!(
    std::io::Error,
    arrow::error::ArrowError,
    parquet::errors::ParquetError,
    serde_json::Error,
    url::ParseError
);
#[cfg(feature = "lake")]
from_display!(datafusion::error::DataFusionError, object_store::Error);

#[cfg(feature = "lake")]
impl From<deltalake::DeltaTableError> for Error {
    fn from(e: deltalake::DeltaTableError) -> Self {
        use deltalake::DeltaTableError as D;
        use deltalake::kernel::transaction::TransactionError as T;
        let transient = match &e {
            D::VersionAlreadyExists(_) | D::ObjectStore { .. } => true,
            D::Transaction { source } => {
                matches!(source, T::CommitConflict(_) | T::MaxCommitAttempts(_))
            }
            _ => false,
        };
        Error {
            transient,
            ..Error::msg(crate::storage::redact(&e.to_string()))
        }
    }
}

/// Returns early with a formatted [`Error`].
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::msg(format!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_stay_on_one_line() {
        let e = Error::msg("setting '\n' in the userarg is not name=value");
        assert_eq!(
            e.message(),
            "setting '\\n' in the userarg is not name=value"
        );
        let e = Error::msg("plain").context("t\r1");
        assert_eq!(e.to_string(), "t\\r1: plain");
    }
}
