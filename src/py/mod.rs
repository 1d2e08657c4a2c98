//! The PyO3 binding: conversion and error mapping only; the work is in `crate::core`.

mod arrow;
mod convert;
mod scan;
mod schema;
mod writer;

use crate::core::{self, Error};
use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

create_exception!(
    _core,
    SchemaError,
    PyValueError,
    "An invalid event or schema."
);
create_exception!(
    _core,
    LedgerIOError,
    PyOSError,
    "A disk fault; the message names the path."
);
create_exception!(_core, ClosedError, LedgerIOError, "The ledger is closed.");

/// One mapping from the core error enum to the Python exception hierarchy.
pub fn to_py(e: Error) -> PyErr {
    match e {
        Error::Schema(m) => SchemaError::new_err(m),
        Error::Closed => ClosedError::new_err("ledger is closed"),
        Error::Io { path, source } => {
            let errno = source.raw_os_error().unwrap_or(libc::EIO);
            LedgerIOError::new_err((errno, format!("{path}: {source}"), path))
        }
    }
}

#[pyfunction]
fn day_of(ts_us: i64) -> String {
    core::clock::day_of(ts_us)
}

#[pyfunction]
fn format_ts(ts_us: i64) -> String {
    String::from_utf8_lossy(&core::clock::format_ts(ts_us)).into_owned()
}

#[pyfunction]
fn parse_ts(ts: &str) -> Option<i64> {
    core::clock::parse_ts(ts.as_bytes())
}

#[pyfunction]
#[pyo3(name = "crc32c")]
fn crc32c_of(data: &[u8]) -> u32 {
    ::crc32c::crc32c(data)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SchemaError", py.get_type::<SchemaError>())?;
    m.add("LedgerIOError", py.get_type::<LedgerIOError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    m.add("BUILTIN_REGISTRY", core::builtin::BUILTIN_REGISTRY)?;
    m.add(
        "SUPPORTED_KEYWORDS",
        core::schema::SUPPORTED_KEYWORDS.to_vec(),
    )?;
    m.add("ANNOTATIONS", core::schema::ANNOTATIONS.to_vec())?;
    m.add_class::<writer::Writer>()?;
    m.add_class::<schema::SchemaValidator>()?;
    m.add_class::<scan::ScanBatch>()?;
    m.add_function(wrap_pyfunction!(scan::scan_files, m)?)?;
    m.add_function(wrap_pyfunction!(convert::to_json, m)?)?;
    m.add_function(wrap_pyfunction!(day_of, m)?)?;
    m.add_function(wrap_pyfunction!(format_ts, m)?)?;
    m.add_function(wrap_pyfunction!(parse_ts, m)?)?;
    m.add_function(wrap_pyfunction!(crc32c_of, m)?)?;
    Ok(())
}
