//! One error enum for the core; `src/py/errors.rs` maps each variant to one exception type of
//! `ledgerx.errors` (Schema → SchemaError, Config → ConfigError, Io → LedgerIOError,
//! Commit → CommitError, Closed → ClosedError).

use std::fmt;
use std::io;
use std::path::Path;

#[derive(Debug)]
pub enum Error {
    /// The event or schema is invalid: bad type, schema violation, not I-JSON, too large, bad
    /// run id. `event_type`/`version` name the schema when known; `path` is where in the
    /// document the violation is (`data.metrics.sharpe`).
    Schema {
        message: String,
        event_type: Option<String>,
        version: Option<u32>,
        path: Option<String>,
    },
    /// A configuration mistake (durability mode, sizes): nothing was opened or written.
    Config(String),
    /// A disk fault, with the path it concerns.
    Io { path: String, source: io::Error },
    /// A group commit failed: `lost` queued events were not made durable.
    Commit {
        path: String,
        source: io::Error,
        lost: u64,
    },
    /// The writer was closed.
    Closed,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn schema(msg: impl Into<String>) -> Self {
        Error::Schema {
            message: msg.into(),
            event_type: None,
            version: None,
            path: None,
        }
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }

    pub fn io(path: &Path, source: io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Name the event's schema on a schema error that does not name one yet.
    pub fn for_event(self, ty: &str, ver: Option<u32>) -> Self {
        match self {
            Error::Schema {
                message,
                event_type,
                version,
                path,
            } => Error::Schema {
                message,
                event_type: event_type.or_else(|| Some(ty.to_string())),
                version: version.or(ver),
                path,
            },
            other => other,
        }
    }

    /// The raw OS errno, when there is one (mapped to `OSError.errno` in Python).
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } | Error::Commit { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Schema { message, .. } => f.write_str(message),
            Error::Config(m) => f.write_str(m),
            Error::Io { path, source } => write!(f, "{path}: {source}"),
            Error::Commit { path, source, lost } => write!(
                f,
                "{path}: {source} ({lost} queued events not made durable)"
            ),
            Error::Closed => f.write_str("ledger is closed"),
        }
    }
}

impl std::error::Error for Error {}
