//! The one mapping from core errors to Python exceptions. The exception classes are defined in
//! Python (`ledgerx.errors`, where every one derives from `LedgerError`) and imported here once
//! per interpreter, so a traceback names `ledgerx.SchemaError`, never a class of `_core`.

use crate::core::Error;
use pyo3::import_exception;
use pyo3::prelude::*;

import_exception!(ledgerx.errors, SchemaError);
import_exception!(ledgerx.errors, ConfigError);
import_exception!(ledgerx.errors, LedgerIOError);
import_exception!(ledgerx.errors, ClosedError);
import_exception!(ledgerx.errors, CommitError);

/// `SchemaError(message, event_type, version, path)`.
pub fn schema_err(
    message: String,
    event_type: Option<String>,
    version: Option<u32>,
    path: Option<String>,
) -> PyErr {
    SchemaError::new_err((message, event_type, version, path))
}

/// Map a core error to its exception.
pub fn to_py(e: Error) -> PyErr {
    match e {
        Error::Schema {
            message,
            event_type,
            version,
            path,
        } => schema_err(message, event_type, version, path),
        Error::Config(m) => ConfigError::new_err(m),
        Error::Closed => ClosedError::new_err("ledger is closed"),
        Error::Io { path, source } => {
            let errno = source.raw_os_error().unwrap_or(libc::EIO);
            LedgerIOError::new_err((errno, format!("{path}: {source}"), path))
        }
        Error::Commit { path, source, lost } => {
            let errno = source.raw_os_error().unwrap_or(libc::EIO);
            let msg = format!("{path}: {source} ({lost} queued events not made durable)");
            CommitError::new_err((errno, msg, path, lost))
        }
    }
}
