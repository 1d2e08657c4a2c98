//! `ScanStream`: the batches of a scan as one Arrow C stream (`__arrow_c_stream__`), so DuckDB
//! inserts a big round straight from the scanner's buffers: no pyarrow (whose import, with
//! `pyarrow.compute` and the `duckdb` package's Arrow adapters, was ~0.2 s of a 100k-event
//! `ledgerx rebuild --full-rebuild` process) and no per-batch Python Arrow work.

use super::arrow::{
    end_of_stream, export_stream_array, export_stream_schema, ArrowC, FfiArray, FfiSchema,
};
use super::scan::ScanBatch;
use crate::core::scanner::Columns;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyIterator};
use std::ffi::{c_char, c_int, c_void, CString};
use std::ops::Range;
use std::ptr;
use std::sync::{Arc, Mutex};

/// The Arrow C stream interface's `ArrowArrayStream`.
#[repr(C)]
pub struct FfiStream {
    get_schema: Option<unsafe extern "C" fn(*mut FfiStream, *mut FfiSchema) -> c_int>,
    get_next: Option<unsafe extern "C" fn(*mut FfiStream, *mut FfiArray) -> c_int>,
    get_last_error: Option<unsafe extern "C" fn(*mut FfiStream) -> *const c_char>,
    release: Option<unsafe extern "C" fn(*mut FfiStream)>,
    private_data: *mut c_void,
}

// SAFETY: the struct owns its private data (a Python iterator reference, which pyo3 lets any
// thread drop: without the GIL the decref waits in pyo3's pool; and an error text); the stream
// contract has one consumer at a time call it, so moving it to another thread is sound.
unsafe impl Send for FfiStream {}

impl ArrowC for FfiStream {
    fn release_fn(&self) -> Option<unsafe extern "C" fn(*mut Self)> {
        self.release
    }
}

struct StreamPrivate {
    batches: Py<PyIterator>,
    error: Option<CString>,
}

/// # Safety
/// `s` is null or a stream made by `ScanStream.__arrow_c_stream__` (the release callback
/// contract); it is released once, then marked released.
unsafe extern "C" fn release_stream(s: *mut FfiStream) {
    if s.is_null() || (*s).release.is_none() {
        return;
    }
    drop(Box::from_raw((*s).private_data as *mut StreamPrivate));
    (*s).release = None;
}

/// # Safety
/// `out` points to writable memory for one `FfiSchema` (the get_schema contract).
unsafe extern "C" fn stream_schema(_s: *mut FfiStream, out: *mut FfiSchema) -> c_int {
    ptr::write(out, export_stream_schema());
    0
}

/// A batch's columns, its rows and its file.
type Next = (Arc<Columns>, Range<usize>, String);

/// The next batch with rows from the Python iterator (under the GIL), or None at its end.
fn next_batch(batches: &Py<PyIterator>) -> PyResult<Option<Next>> {
    Python::with_gil(|py| {
        for item in batches.bind(py).clone() {
            let item = item?;
            let b = item.downcast::<ScanBatch>()?.get();
            if !b.rows.is_empty() {
                return Ok(Some((
                    Arc::clone(&b.columns),
                    b.rows.clone(),
                    b.file.clone(),
                )));
            }
        }
        Ok(None)
    })
}

/// # Safety
/// `s` is a live stream made by `__arrow_c_stream__`, called by one consumer thread at a time;
/// `out` points to writable memory for one `FfiArray` (the get_next contract).
unsafe extern "C" fn stream_next(s: *mut FfiStream, out: *mut FfiArray) -> c_int {
    let p = &mut *((*s).private_data as *mut StreamPrivate);
    match next_batch(&p.batches) {
        Ok(Some((cols, rows, file))) => {
            ptr::write(out, export_stream_array(&cols, &rows, &file));
            0
        }
        Ok(None) => {
            ptr::write(out, end_of_stream());
            0
        }
        Err(e) => {
            let text = e.to_string().replace('\0', " ");
            p.error = CString::new(text).ok();
            libc::EIO
        }
    }
}

/// # Safety
/// `s` is a live stream made by `__arrow_c_stream__` (the get_last_error contract: the text
/// stays valid until the next call on the stream or its release).
unsafe extern "C" fn stream_error(s: *mut FfiStream) -> *const c_char {
    let p = &*((*s).private_data as *const StreamPrivate);
    p.error.as_ref().map_or(ptr::null(), |e| e.as_ptr())
}

/// The batches an iterable yields (`ScanBatch`es; those without rows are skipped) as one Arrow
/// C stream, exported once: each batch's columns, `data` typed `arrow.json`, and `file`
/// (dictionary-encoded). An exception of the iterable ends the stream with an error.
#[pyclass(frozen, module = "ledgerx._core")]
pub struct ScanStream {
    batches: Mutex<Option<Py<PyIterator>>>,
}

#[pymethods]
impl ScanStream {
    #[new]
    fn new(batches: &Bound<'_, PyAny>) -> PyResult<Self> {
        let it = PyIterator::from_object(batches)?.unbind();
        Ok(ScanStream {
            batches: Mutex::new(Some(it)),
        })
    }

    /// The schema of the stream's batches.
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        PyCapsule::new_with_destructor(
            py,
            export_stream_schema(),
            Some(CString::new("arrow_schema").expect("name")),
            |mut s: FfiSchema, _| s.release_if_owned(),
        )
    }

    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let batches = self
            .batches
            .lock()
            .map_err(|_| PyValueError::new_err("ScanStream: poisoned"))?
            .take()
            .ok_or_else(|| PyValueError::new_err("ScanStream: the stream was already exported"))?;
        let private = Box::new(StreamPrivate {
            batches,
            error: None,
        });
        let stream = FfiStream {
            get_schema: Some(stream_schema),
            get_next: Some(stream_next),
            get_last_error: Some(stream_error),
            release: Some(release_stream),
            private_data: Box::into_raw(private) as *mut c_void,
        };
        PyCapsule::new_with_destructor(
            py,
            stream,
            Some(CString::new("arrow_array_stream").expect("name")),
            |mut s: FfiStream, _| s.release_if_owned(),
        )
    }
}
