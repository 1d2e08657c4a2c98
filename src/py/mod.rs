//! The PyO3 binding: conversion only (errors: `errors.rs`); the work is in `crate::core`.

mod arrow;
mod cache;
mod convert;
mod errors;
mod keys;
mod scan;
mod schema;
mod sigterm;
mod stream;
mod values;
mod watch;
mod writer;

use crate::core;
use pyo3::prelude::*;

pub use errors::{schema_err, to_py, SchemaError};

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

/// The one rule for an event_id (the writer's, the scanner's and `schema validate`'s).
#[pyfunction]
fn is_event_id(s: &str) -> bool {
    core::ids::is_uuid(s.as_bytes())
}

#[pyfunction]
#[pyo3(name = "crc32c")]
fn crc32c_of(data: &[u8]) -> u32 {
    ::crc32c::crc32c(data)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("BUILTIN_REGISTRY", core::builtin::BUILTIN_REGISTRY)?;
    m.add(
        "SUPPORTED_KEYWORDS",
        core::schema::SUPPORTED_KEYWORDS.to_vec(),
    )?;
    m.add("ANNOTATIONS", core::schema::ANNOTATIONS.to_vec())?;
    m.add_class::<writer::Writer>()?;
    m.add_class::<schema::SchemaValidator>()?;
    m.add_class::<scan::ScanBatch>()?;
    m.add_class::<scan::Scanner>()?;
    m.add_class::<stream::ScanStream>()?;
    m.add_class::<watch::DirWatch>()?;
    m.add_function(wrap_pyfunction!(scan::scan_files, m)?)?;
    m.add_function(wrap_pyfunction!(scan::check_line, m)?)?;
    m.add_function(wrap_pyfunction!(scan::check_json, m)?)?;
    m.add_function(wrap_pyfunction!(scan::trial_shapes, m)?)?;
    m.add_function(wrap_pyfunction!(writer::check_run_id, m)?)?;
    m.add_function(wrap_pyfunction!(scan::quarantine, m)?)?;
    m.add_function(wrap_pyfunction!(convert::to_json, m)?)?;
    #[cfg(feature = "test-hooks")]
    m.add_function(wrap_pyfunction!(convert::_tape_matches_parse, m)?)?;
    #[cfg(feature = "test-hooks")]
    m.add_function(wrap_pyfunction!(convert::_shape_matches_parse, m)?)?;
    m.add_function(wrap_pyfunction!(sigterm::install_sigterm_watchdog, m)?)?;
    m.add_function(wrap_pyfunction!(day_of, m)?)?;
    m.add_function(wrap_pyfunction!(format_ts, m)?)?;
    m.add_function(wrap_pyfunction!(parse_ts, m)?)?;
    m.add_function(wrap_pyfunction!(crc32c_of, m)?)?;
    m.add_function(wrap_pyfunction!(is_event_id, m)?)?;
    Ok(())
}
