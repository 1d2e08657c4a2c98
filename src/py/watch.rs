//! `DirWatch`: the core's directory watch (`core::watch`), waited on without the GIL.

use crate::core::watch;
use pyo3::prelude::*;
use std::path::PathBuf;

use super::to_py;

/// Wakes when a file in one of the watched directories changes (Linux inotify).
#[pyclass(module = "ledgerx._core", frozen)]
pub struct DirWatch {
    inner: watch::DirWatch,
}

#[pymethods]
impl DirWatch {
    #[new]
    fn new(dirs: Vec<PathBuf>) -> PyResult<Self> {
        let inner = watch::DirWatch::new().map_err(to_py)?;
        for d in &dirs {
            inner.add(d).map_err(to_py)?;
        }
        Ok(DirWatch { inner })
    }

    /// True when something changed since the last call; False after `timeout_s` seconds or
    /// when a signal arrived.
    fn wait(&self, py: Python<'_>, timeout_s: f64) -> PyResult<bool> {
        let ms = (timeout_s.max(0.0) * 1000.0).ceil().min(i32::MAX as f64) as i32;
        py.allow_threads(|| self.inner.wait(ms)).map_err(to_py)
    }
}
