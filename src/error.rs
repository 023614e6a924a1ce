//! One error type for the whole program: a message that already says what went wrong and
//! where (table, file, line, column or setting), rendered by `main` as one `F_JX0D03:` line.

use std::fmt;

/// What kind of failure an error is; decides, wherever the error is handled, whether the
/// step that failed is done again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Bad input, a bad setting, a table hvrlake cannot use: the same again fails the same way.
    Fatal,
    /// Another writer committed the version this commit wanted.
    Conflict,
    /// The object store failed through its own retries (5xx, throttling, a dropped
    /// connection, a timeout): the outcome of the request is unknown.
    Store,
}

/// An error whose message is complete and safe to print: it names the place at fault and
/// never contains a credential (see [`crate::redact`]). It keeps the error it came from as its
/// [`std::error::Error::source`].
#[derive(Debug)]
pub struct Error {
    message: String,
    kind: Kind,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
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
            kind: Kind::Fatal,
            source: None,
        }
    }

    /// A lost race with another writer, with this message: done again on the latest version.
    pub fn conflict(message: impl Into<String>) -> Self {
        Error {
            kind: Kind::Conflict,
            ..Error::msg(message)
        }
    }

    /// `source` as an error of `kind`, its message redacted.
    fn wrap(source: impl std::error::Error + Send + Sync + 'static, kind: Kind) -> Self {
        Error {
            message: one_line(crate::redact::redact(&source.to_string())),
            kind,
            source: Some(Box::new(source)),
        }
    }

    /// Puts `context: ` in front of the message, e.g. the table or file it concerns.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Error {
            message: one_line(format!("{context}: {}", self.message)),
            ..self
        }
    }

    /// Whether the failed step may succeed when done again on the table's latest version:
    /// another writer committed first, or the store stayed unreachable through its retries
    /// (then the outcome of a commit is unknown).
    pub fn is_transient(&self) -> bool {
        self.kind != Kind::Fatal
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> Kind {
        self.kind
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

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

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

/// The kind of a failure that came as `e` from any of the libraries hvrlake calls: an
/// object-store failure is [`Kind::Store`] wherever it surfaced (through delta-rs, DataFusion,
/// parquet-rs or hvrlake's own requests), a lost commit race is [`Kind::Conflict`]; the
/// source chain is followed through errors that wrap others.
fn kind_of(e: &(dyn std::error::Error + 'static)) -> Kind {
    #[cfg(feature = "lake")]
    {
        use datafusion::error::DataFusionError as F;
        use deltalake::DeltaTableError as D;
        use deltalake::kernel::transaction::TransactionError as T;
        if e.is::<object_store::Error>() {
            return Kind::Store;
        }
        if let Some(d) = e.downcast_ref::<D>() {
            match d {
                D::VersionAlreadyExists(_) => return Kind::Conflict,
                D::ObjectStore { .. } => return Kind::Store,
                D::Transaction { source } => {
                    return match source {
                        T::CommitConflict(_)
                        | T::MaxCommitAttempts(_)
                        | T::VersionAlreadyExists(_) => Kind::Conflict,
                        T::ObjectStore { .. } => Kind::Store,
                        _ => Kind::Fatal,
                    };
                }
                _ => {}
            }
        }
        if let Some(F::ObjectStore(_)) = e.downcast_ref::<F>() {
            return Kind::Store;
        }
    }
    // An io::Error shows the error it wraps as its own, and gives that error's source.
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        return kind_of(inner);
    }
    match e.source() {
        Some(inner) => kind_of(inner),
        None => Kind::Fatal,
    }
}

macro_rules! from_library {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                let kind = kind_of(&e);
                Error::wrap(e, kind)
            }
        }
    )*};
}

from_library!(
    std::io::Error,
    arrow::error::ArrowError,
    parquet::errors::ParquetError,
    serde_json::Error,
    url::ParseError
);
#[cfg(feature = "lake")]
from_library!(
    datafusion::error::DataFusionError,
    object_store::Error,
    deltalake::DeltaTableError
);

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

    #[cfg(feature = "lake")]
    #[test]
    fn a_store_failure_is_transient_wherever_it_surfaces() {
        let store = || object_store::Error::Generic {
            store: "S3",
            source: "503 Slow Down after 10 retries".into(),
        };
        let direct = Error::from(store());
        assert_eq!(direct.kind(), Kind::Store);
        assert!(direct.message().contains("503 Slow Down"), "{direct}");
        // Through parquet-rs (a ranged read of a data file), DataFusion, an io::Error (an
        // upload) and delta-rs: the same kind, and the source kept.
        let parquet = Error::from(parquet::errors::ParquetError::External(Box::new(store())));
        assert_eq!(parquet.kind(), Kind::Store);
        assert!(std::error::Error::source(&parquet).is_some());
        let df = datafusion::error::DataFusionError::Context(
            "scan".into(),
            Box::new(datafusion::error::DataFusionError::ObjectStore(Box::new(
                store(),
            ))),
        );
        assert_eq!(Error::from(df).kind(), Kind::Store);
        let io = std::io::Error::other(store());
        assert_eq!(Error::from(io).context("data file x").kind(), Kind::Store);
        let delta = deltalake::DeltaTableError::from(store());
        assert_eq!(Error::from(delta).kind(), Kind::Store);
        // A lost commit race is a conflict; bad input is fatal.
        let lost = deltalake::DeltaTableError::VersionAlreadyExists(3);
        assert_eq!(Error::from(lost).kind(), Kind::Conflict);
        let bad = Error::from(std::io::Error::new(std::io::ErrorKind::InvalidData, "x"));
        assert_eq!(bad.kind(), Kind::Fatal);
        assert!(!bad.is_transient());
        assert!(Error::msg("plain").context("t").kind() == Kind::Fatal);
    }

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
