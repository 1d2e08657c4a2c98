//! `scan_files`: parallel scanning of part files without the GIL; each result is a `ScanBatch`
//! exported through the Arrow PyCapsule interface (`__arrow_c_array__`).

use super::arrow::{export_array, export_schema, FfiArray, FfiSchema};
use super::to_py;
use crate::core::scanner::{scan_file, Columns, ScanOptions, ScanResult};
use crate::core::Result;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[pyclass(frozen, module = "ledgerx._core")]
pub struct ScanBatch {
    #[pyo3(get)]
    file: String,
    #[pyo3(get)]
    start_offset: u64,
    #[pyo3(get)]
    end_offset: u64,
    #[pyo3(get)]
    pending_bytes: u64,
    #[pyo3(get)]
    file_size: u64,
    #[pyo3(get)]
    bad_lines: Vec<(u64, u64, String)>,
    /// Why the file could not be read at all (not a regular file, I/O error), else None.
    #[pyo3(get)]
    error: Option<String>,
    columns: Arc<Columns>,
}

#[pymethods]
impl ScanBatch {
    #[getter]
    fn num_rows(&self) -> usize {
        self.columns.len()
    }

    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let _ = requested_schema;
        let schema = PyCapsule::new_with_destructor(
            py,
            export_schema(),
            Some(CString::new("arrow_schema").expect("name")),
            |mut s: FfiSchema, _| s.release_if_owned(),
        )?;
        let array = PyCapsule::new_with_destructor(
            py,
            export_array(&self.columns),
            Some(CString::new("arrow_array").expect("name")),
            |mut a: FfiArray, _| a.release_if_owned(),
        )?;
        Ok((schema, array))
    }

    fn __repr__(&self) -> String {
        format!(
            "ScanBatch(file={:?}, rows={}, {}..{}, bad={})",
            self.file,
            self.columns.len(),
            self.start_offset,
            self.end_offset,
            self.bad_lines.len()
        )
    }
}

/// Scan each (path relative to `events_dir`, start offset), in parallel, without the GIL.
#[pyfunction]
#[pyo3(signature = (events_dir, files, strict = false, max_bytes = 64 * 1024 * 1024, threads = 0))]
pub fn scan_files(
    py: Python<'_>,
    events_dir: PathBuf,
    files: Vec<(String, u64)>,
    strict: bool,
    max_bytes: u64,
    threads: usize,
) -> PyResult<Vec<ScanBatch>> {
    let opts = ScanOptions {
        strict,
        max_bytes,
        ..ScanOptions::default()
    };
    let n = files.len();
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
    .clamp(1, n.max(1));
    let results: Vec<Mutex<Option<Result<ScanResult>>>> =
        (0..n).map(|_| Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    py.allow_threads(|| {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let (rel, start) = &files[i];
                    let r = scan_file(&events_dir.join(rel), *start, opts);
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(r);
                    }
                });
            }
        })
    });
    let mut out = Vec::with_capacity(n);
    for ((rel, start), slot) in files.into_iter().zip(results) {
        let r = slot
            .into_inner()
            .ok()
            .flatten()
            .unwrap_or_else(|| Ok(ScanResult::default()));
        // One unreadable file (a FIFO or symlink dropped into the log, an I/O error) is reported
        // on its own batch; the other files are still scanned.
        let (r, error) = match r {
            Ok(r) => (r, None),
            Err(e) => (
                ScanResult {
                    end_offset: start,
                    ..ScanResult::default()
                },
                Some(to_py(e).to_string()),
            ),
        };
        out.push(ScanBatch {
            file: rel,
            start_offset: start,
            end_offset: r.end_offset,
            pending_bytes: r.pending_bytes,
            file_size: r.file_size,
            bad_lines: r
                .bad
                .into_iter()
                .map(|b| (b.offset, b.len, b.reason))
                .collect(),
            error,
            columns: Arc::new(r.columns),
        });
    }
    Ok(out)
}
