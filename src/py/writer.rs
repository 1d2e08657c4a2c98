//! `Writer`: validates and serializes `data` from Python objects, then hands the line to the
//! core appender. Blocking work (write, fdatasync, waiting on the flusher) runs without the GIL.

use super::cache::SchemaCache;
use super::convert::{with_serialized, with_shape, Opts};

/// A part's relative path (the core's) with its text as a Python string.
type PartName = (Arc<str>, Py<PyString>);

/// A validation's outcome.
type Valid = std::result::Result<(), crate::core::schema::Violation>;
use super::{schema_err, to_py};
use crate::core::schema_file::SchemaFile;
use crate::core::writer::{self as cw, Config, Durability, EventHead};
use crate::core::Error;
use pyo3::prelude::*;
use pyo3::sync::GILProtected;
use pyo3::types::{PyDict, PyString, PyTuple};
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[pyclass(frozen, module = "ledgerx._core")]
pub struct Writer {
    inner: cw::Writer,
    schemas: SchemaFile,
    durability: &'static str,
    /// The part's relative path as a Python string, reused while the part does not change
    /// (read and set under the GIL only: no lock of its own).
    last_file: GILProtected<RefCell<Option<PartName>>>,
    /// NaN/±Inf become null (`nonfinite="null"`) instead of being refused.
    nonfinite_null: bool,
    /// `default=`: called with values no built-in rule serializes.
    default: Option<Py<PyAny>>,
    /// This writer's key in each thread's `FIRST_UNFLUSHED` (unique in the process).
    key: u64,
    /// Schema lookups per event type, while their registry is current.
    cache: SchemaCache,
    /// Tests only: abandon the part between an fsync-mode line's write and its sync.
    #[cfg(feature = "test-hooks")]
    abandon_after_write: std::sync::atomic::AtomicBool,
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Group mode, per thread: (writer key, first seq this thread emitted since its last
    /// flush() of that writer), so its flush() raises a failed commit that held its events
    /// even when another thread's flush() took the error first.
    static FIRST_UNFLUSHED: RefCell<Vec<(u64, u64)>> = const { RefCell::new(Vec::new()) };
}

impl Writer {
    fn file_str(&self, py: Python<'_>, rel: &Arc<str>) -> Py<PyString> {
        let cell = self.last_file.get(py);
        if let Ok(g) = cell.try_borrow() {
            if let Some((s, obj)) = g.as_ref() {
                // (the same part shares its path: a pointer compare, then the text)
                if Arc::ptr_eq(s, rel) || **s == **rel {
                    return obj.clone_ref(py);
                }
            }
        }
        let obj: Py<PyString> = PyString::new(py, rel).unbind();
        if let Ok(mut g) = cell.try_borrow_mut() {
            *g = Some((Arc::clone(rel), obj.clone_ref(py)));
        }
        obj
    }

    /// Validate (`validate`) and place one serialized event: under the GIL in group mode
    /// (queueing is a memcpy under a short lock: cheaper than a GIL round trip), else without.
    fn place(
        &self,
        py: Python<'_>,
        group: bool,
        head: &EventHead<'_>,
        version: u32,
        bytes: &[u8],
        validate: &(dyn Fn() -> Valid + Sync),
    ) -> Result<(cw::Position, bool, u64), Error> {
        let event_type = head.event_type;
        let work = || -> Result<(cw::Position, bool, u64), Error> {
            validate().map_err(|v| Error::Schema {
                message: format!("{event_type} v{version}: {}", v.render("data")),
                event_type: None,
                version: None,
                path: Some(v.path_str("data")),
            })?;
            let e = self.inner.emit_deferred(head, bytes)?;
            if let Some(t) = &e.sync {
                #[cfg(feature = "test-hooks")]
                if self.abandon_after_write.load(Ordering::Relaxed) {
                    t.abandon_part_for_test();
                }
                // Another thread's failed fdatasync of this part may have come between
                // this line's write and now: then it is never reported durable.
                t.sync_unless_abandoned()?;
            }
            Ok((e.pos, e.backpressure, e.seq))
        };
        if group {
            work()
        } else {
            py.allow_threads(work)
        }
    }
}

#[pymethods]
impl Writer {
    #[new]
    #[pyo3(signature = (root, durability = "group", commit_interval_ms = 2, max_part_bytes = 100_000_000, max_event_bytes = 16 * 1024 * 1024, writer_id = None, nonfinite = "error", default = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        root: PathBuf,
        durability: &str,
        commit_interval_ms: u64,
        max_part_bytes: u64,
        max_event_bytes: usize,
        writer_id: Option<String>,
        nonfinite: &str,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let nonfinite_null = match nonfinite {
            "error" => false,
            "null" => true,
            other => {
                return Err(to_py(Error::config(format!(
                    "nonfinite must be 'error' or 'null', not {other:?}"
                ))))
            }
        };
        if let Some(d) = &default {
            if !d.bind(py).is_callable() {
                return Err(to_py(Error::config(
                    "default must be a callable (value -> JSON value)",
                )));
            }
        }
        let mode = Durability::parse(durability)
            .ok_or_else(|| {
                Error::config(format!(
                    "durability must be 'fsync', 'group' or 'os', not {durability:?}"
                ))
            })
            .map_err(to_py)?;
        if max_part_bytes == 0 || max_event_bytes == 0 {
            return Err(to_py(Error::config(
                "max_part_bytes and max_event_bytes must be positive",
            )));
        }
        let events = cw::events_dir(&root);
        let mut cfg = Config::new(&events);
        cfg.durability = mode;
        cfg.commit_interval = std::time::Duration::from_millis(commit_interval_ms.max(1));
        cfg.max_part_bytes = max_part_bytes;
        cfg.max_event_bytes = max_event_bytes;
        cfg.writer_id = writer_id;
        let (inner, schemas) = py
            .allow_threads(|| Ok::<_, Error>((cw::Writer::open(cfg)?, SchemaFile::open(&events)?)))
            .map_err(to_py)?;
        Ok(Writer {
            inner,
            schemas,
            durability: match mode {
                Durability::Fsync => "fsync",
                Durability::Group => "group",
                Durability::Os => "os",
            },
            last_file: GILProtected::new(RefCell::new(None)),
            nonfinite_null,
            default,
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            cache: SchemaCache::default(),
            #[cfg(feature = "test-hooks")]
            abandon_after_write: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Why the last periodic re-read of `_schema.json` failed (None when it did not): emits
    /// are validated with the last good registry meanwhile.
    #[getter]
    fn registry_error(&self) -> Option<String> {
        self.schemas.last_error()
    }

    #[getter]
    fn writer_id(&self) -> String {
        self.inner.writer_id()
    }

    #[getter]
    fn durability(&self) -> &'static str {
        self.durability
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    #[pyo3(signature = (event_type, data, run_id = None, schema_version = None, event_id = None, ts_us = None))]
    #[allow(clippy::too_many_arguments)]
    fn emit<'py>(
        &self,
        py: Python<'py>,
        event_type: &str,
        data: &Bound<'py, PyAny>,
        run_id: Option<&str>,
        schema_version: Option<u32>,
        event_id: Option<&str>,
        ts_us: Option<i64>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        if let Some(r) = run_id {
            cw::check_run_id(r).map_err(to_py)?;
        }
        let invalid = |msg: String, version: Option<u32>, path: Option<String>| {
            schema_err(msg, Some(event_type.to_string()), version, path)
        };
        let found = self
            .cache
            .find(&self.schemas, event_type, schema_version)
            .map_err(to_py)?
            .map_err(|m| invalid(m, schema_version, None))?;
        let version = found.version;
        let data = data.downcast::<PyDict>().map_err(|_| {
            let ty = data.get_type().name().map(|n| n.to_string());
            let msg = format!(
                "{event_type}: data must be a dict, not {}",
                ty.unwrap_or_default()
            );
            invalid(msg, Some(version), Some("data".into()))
        })?;
        let head = EventHead {
            event_type,
            schema_version: version,
            run_id,
            event_id,
            ts_us,
        };
        // Refused before serializing, like the run id (the core checks again on emit).
        cw::check_overrides(&head).map_err(|e| to_py(e.for_event(event_type, Some(version))))?;
        // Reading Python objects needs the GIL; everything after works on the bytes.
        let default = self.default.as_ref().map(|d| d.bind(py));
        let opts = Opts {
            nonfinite_null: self.nonfinite_null,
            default,
        };
        let group = self.durability == "group";
        let place = |bytes: &[u8], validate: &(dyn Fn() -> Valid + Sync)| {
            self.place(py, group, &head, version, bytes, validate)
        };
        let result = if found.by_shape() {
            with_shape(data.as_any(), opts, |bytes, shape| {
                place(bytes, &|| found.validate_shape(shape, bytes))
            })
        } else {
            with_serialized(data.as_any(), opts, |bytes, tape| {
                let tape = &*tape;
                place(bytes, &|| found.validate_tape(bytes, tape))
            })
        }
        .map_err(|e| {
            let msg = format!("{event_type} v{version}: {}", e.render("data"));
            invalid(msg, Some(version), Some(e.path_str("data")))
        })?;
        let (pos, backpressure, seq) =
            result.map_err(|e| to_py(e.for_event(event_type, Some(version))))?;
        if group {
            FIRST_UNFLUSHED.with_borrow_mut(|v| {
                if !v.iter().any(|(k, _)| *k == self.key) {
                    v.push((self.key, seq));
                }
            });
        }
        if backpressure {
            py.allow_threads(|| self.inner.wait_drained());
        }
        let file = self.file_str(py, &pos.file);
        PyTuple::new(
            py,
            [
                file.into_any(),
                pos.offset.into_pyobject(py)?.into_any().unbind(),
            ],
        )
    }

    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let first = FIRST_UNFLUSHED.with_borrow_mut(|v| {
            let i = v.iter().position(|(k, _)| *k == self.key)?;
            Some(v.swap_remove(i).1)
        });
        py.allow_threads(|| self.inner.flush_from(first))
            .map_err(to_py)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.allow_threads(|| self.inner.close()).map_err(to_py)
    }

    fn reload_schemas(&self, py: Python<'_>) -> PyResult<()> {
        py.allow_threads(|| self.schemas.reload()).map_err(to_py)
    }

    /// Group-commit figures: batches, events, max_latency_us (emit to durable, oldest event of a
    /// batch) and latency_log2_us (batches per power-of-two microsecond bucket).
    fn commit_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.commit_stats();
        let d = PyDict::new(py);
        d.set_item("batches", s.batches)?;
        d.set_item("events", s.events)?;
        d.set_item("max_latency_us", s.max_latency_us)?;
        d.set_item("latency_log2_us", s.latency_log2_us.to_vec())?;
        Ok(d)
    }

    /// Tests only (the `test-hooks` feature): fix the clock.
    #[cfg(feature = "test-hooks")]
    fn _set_fake_now(&self, us: Option<i64>) {
        self.inner.set_fake_now(us);
    }

    /// Tests only (the `test-hooks` feature): in fsync mode, abandon the part after each line's
    /// write and before its sync, as another thread's failed fdatasync of that part would.
    #[cfg(feature = "test-hooks")]
    fn _abandon_after_write(&self, on: bool) {
        self.abandon_after_write.store(on, Ordering::Relaxed);
    }
}

/// Raise `SchemaError` unless `run_id` is a valid run id: the log's rule (`rules::check_run_id`),
/// for Python code that checks a run id before any event is written (`ledger.run(run_id=...)`).
#[pyfunction]
pub fn check_run_id(run_id: &str) -> PyResult<()> {
    cw::check_run_id(run_id).map_err(to_py)
}
