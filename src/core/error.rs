//! One error enum for the core; the Python layer maps each variant to one exception type.

use std::fmt;
use std::io;
use std::path::Path;

#[derive(Debug)]
pub enum Error {
    /// The event is invalid: bad type, schema violation, not I-JSON, too large, bad run id.
    Schema(String),
    /// A disk fault, with the path it concerns.
    Io { path: String, source: io::Error },
    /// The writer was closed.
    Closed,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn schema(msg: impl Into<String>) -> Self {
        Error::Schema(msg.into())
    }

    pub fn io(path: &Path, source: io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// The raw OS errno, when there is one (mapped to `OSError.errno` in Python).
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Schema(m) => f.write_str(m),
            Error::Io { path, source } => write!(f, "{path}: {source}"),
            Error::Closed => f.write_str("ledger is closed"),
        }
    }
}

impl std::error::Error for Error {}
